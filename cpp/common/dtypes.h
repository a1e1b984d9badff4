// The floating dtypes each backend's kernels compute in: the one place where a backend gains
// a dtype. The kernels dispatch on these lists and checks::floating accepts exactly them, on
// CUDA the CUDA list, on Meta (whose tensors stand in for any device) either, and on every
// other device the CPU list.
#pragma once

#include <ATen/Dispatch_v2.h>

#define MLPMIX_CPU_FLOATING_TYPES at::kFloat, at::kDouble
#define MLPMIX_CUDA_FLOATING_TYPES at::kFloat, at::kDouble, at::kHalf, at::kBFloat16

#define MLPMIX_DISPATCH_CPU_FLOATING(TYPE, NAME, ...) \
  AT_DISPATCH_V2(TYPE, NAME, AT_WRAP(__VA_ARGS__), MLPMIX_CPU_FLOATING_TYPES)
#define MLPMIX_DISPATCH_CUDA_FLOATING(TYPE, NAME, ...) \
  AT_DISPATCH_V2(TYPE, NAME, AT_WRAP(__VA_ARGS__), MLPMIX_CUDA_FLOATING_TYPES)
