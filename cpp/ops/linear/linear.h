// Internals of the linear operator shared by its kernels: y = x W^T + b over x's last axis,
// the projections of the models' blocks (nn.Linear's function). It exists so that those
// projections reach the CPU GEMMs of common/gemm_cpu.h; on other devices it is ATen's own
// linear and its gradients.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace mlpmix::linear_impl {

// Validates x (..., in_features), weight (out_features, in_features) and bias
// (out_features,) with messages naming them.
void check_inputs(const char* op, const at::Tensor& x, const at::Tensor& weight,
                  const std::optional<at::Tensor>& bias);

// The backward's checks: the inputs and grad_out, (..., out_features) with x's leading sizes.
void check_backward(const char* op, const at::Tensor& grad_out, const at::Tensor& x,
                    const at::Tensor& weight, const std::optional<at::Tensor>& bias);

// The number of rows x (..., in_features) holds: the product of its leading sizes (a
// reshape to (-1, in_features) is ambiguous when in_features is 0).
int64_t rows_of(const at::Tensor& x);

// The backward with its two matrix products computed by `mm` (ATen's on any device,
// common/gemm_cpu's for the CPU kernel). The bias gradient is (0,) when `bias` is absent.
using MatrixProduct = at::Tensor (*)(const at::Tensor&, const at::Tensor&);
std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_backward_with(
    MatrixProduct mm, const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias);

}  // namespace mlpmix::linear_impl
