// The floating dtypes each backend's kernels take: the one place where a backend gains a
// dtype. checks::floating accepts exactly these, on CUDA the CUDA list, on Meta (whose tensors
// stand in for any device) either, and on every other device the CPU list. The CUDA kernels
// dispatch on their list; the CPU kernels compute in float32 and float64 and take bfloat16
// and float16 through cpu::in_float32 or, storing bfloat16 themselves,
// cpu::with_native_bf16 (common/reduced_precision_cpu.h).
#pragma once

#include <ATen/Dispatch_v2.h>

#define MLPMIX_CPU_FLOATING_TYPES at::kFloat, at::kDouble, at::kHalf, at::kBFloat16
#define MLPMIX_CUDA_FLOATING_TYPES at::kFloat, at::kDouble, at::kHalf, at::kBFloat16

// The dtypes the CPU kernels compute in; kernels registered with cpu::with_native_bf16 also
// store bfloat16 (computing in float32).
#define MLPMIX_DISPATCH_CPU_FLOATING(TYPE, NAME, ...) \
  AT_DISPATCH_V2(TYPE, NAME, AT_WRAP(__VA_ARGS__), at::kFloat, at::kDouble)
#define MLPMIX_DISPATCH_CPU_FLOATING_AND_BF16(TYPE, NAME, ...) \
  AT_DISPATCH_V2(TYPE, NAME, AT_WRAP(__VA_ARGS__), at::kFloat, at::kDouble, at::kBFloat16)
#define MLPMIX_DISPATCH_CUDA_FLOATING(TYPE, NAME, ...) \
  AT_DISPATCH_V2(TYPE, NAME, AT_WRAP(__VA_ARGS__), MLPMIX_CUDA_FLOATING_TYPES)
