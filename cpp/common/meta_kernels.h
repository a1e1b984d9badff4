// What the ops' Meta kernels return: empty tensors with the shapes (symbolic ones included),
// dtypes and devices of their CPU and CUDA kernels' results.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace mlpmix {

// One empty contiguous tensor like each of `tensors`: the gradients of a backward whose
// inputs' gradients have the inputs' shapes.
template <typename... T>
auto contiguous_like(const T&... tensors) {
  return std::tuple{at::empty_like(tensors, at::MemoryFormat::Contiguous)...};
}

}  // namespace mlpmix
