// mlpmix::linear on CUDA: ATen's linear and its gradients (cuBLAS), with x's device current.
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/autocast.h"
#include "mlpmix/mlpmix.h"
#include "ops/linear/linear.h"

namespace mlpmix::linear_impl {
namespace {

at::Tensor linear_cuda(const at::Tensor& x, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias) {
  check_inputs("linear", x, weight, bias);
  const c10::cuda::CUDAGuard guard(x.device());
  return linear_aten(x, weight, bias);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias) {
  check_inputs("linear_backward", x, weight, bias);
  check_grad_out(grad_out, x, weight);
  const c10::cuda::CUDAGuard guard(x.device());
  return linear_backward_aten(grad_out, x, weight, bias);
}

}  // namespace
}  // namespace mlpmix::linear_impl

TORCH_LIBRARY_IMPL(mlpmix, CUDA, m) {
  m.impl("linear", &mlpmix::linear_impl::linear_cuda);
  m.impl("linear_backward", &mlpmix::linear_impl::linear_backward_cuda);
}

TORCH_LIBRARY_IMPL(mlpmix, AutocastCUDA, m) {
  m.impl("linear", MLPMIX_AUTOCAST_CUDA(mlpmix::linear));
}
