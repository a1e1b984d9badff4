// Helpers shared by the operators' C++ autograd Functions.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace mlpmix {

// autograd::Function takes optional tensors as undefined ones; this turns them back.
std::optional<at::Tensor> optional_of(const at::Tensor& t);

// Raises the error of an op whose backward is not itself differentiable.
[[noreturn]] void double_backward_unsupported(const char* op);

}  // namespace mlpmix
