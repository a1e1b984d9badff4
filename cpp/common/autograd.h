// Helpers shared by the operators' C++ autograd Functions.
#pragma once

#include <ATen/core/Tensor.h>

#include <initializer_list>
#include <optional>

namespace mlpmix {

// autograd::Function takes optional tensors as undefined ones; this turns them back.
std::optional<at::Tensor> optional_of(const at::Tensor& t);

// Whether a call with these inputs records a graph: grad mode is on and one of them
// requires grad (absent optionals do not).
bool records_graph(std::initializer_list<std::optional<at::Tensor>> inputs);

// Raises the error of an op whose backward is not itself differentiable.
[[noreturn]] void double_backward_unsupported(const char* op);

}  // namespace mlpmix
