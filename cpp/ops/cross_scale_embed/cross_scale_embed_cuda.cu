// mlpmix::cross_scale_embed on CUDA: the merged-weight convolution of cross_scale_embed.cpp,
// which ATen runs with cuDNN (deterministic algorithms when
// torch.use_deterministic_algorithms(True) is set, as for any convolution).
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/autocast.h"
#include "mlpmix/mlpmix.h"
#include "ops/cross_scale_embed/cross_scale_embed.h"

namespace mlpmix::cross_scale_embed_impl {
namespace {

// The checks run first: they name any argument on another device than x; then x's device
// is current for the ATen calls.
at::Tensor embed_cuda(const at::Tensor& x, const at::Tensor& weight,
                      const std::optional<at::Tensor>& bias, at::IntArrayRef kernel_sizes) {
  check_inputs("cross_scale_embed", x, weight, bias, kernel_sizes);
  const c10::cuda::CUDAGuard guard(x.device());
  return embed(x, weight, bias, kernel_sizes);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> embed_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, at::IntArrayRef kernel_sizes, bool x_grad) {
  check_grad_out(grad_out, x,
                 check_inputs("cross_scale_embed_backward", x, weight, bias, kernel_sizes));
  const c10::cuda::CUDAGuard guard(x.device());
  return embed_backward(grad_out, x, weight, bias, kernel_sizes, x_grad);
}

}  // namespace
}  // namespace mlpmix::cross_scale_embed_impl

TORCH_LIBRARY_IMPL(mlpmix, CUDA, m) {
  m.impl("cross_scale_embed", &mlpmix::cross_scale_embed_impl::embed_cuda);
  m.impl("cross_scale_embed_backward", &mlpmix::cross_scale_embed_impl::embed_backward_cuda);
}

TORCH_LIBRARY_IMPL(mlpmix, AutocastCUDA, m) {
  m.impl("cross_scale_embed", MLPMIX_AUTOCAST_CUDA(mlpmix::cross_scale_embed));
}
