// mlpmix::channel_mlp on CUDA: the branch with ATen ops (channel_mlp.cpp): LayerNorm and GELU
// by ATen's CUDA kernels, fc1 and fc2 by cuBLAS. The fc1 pre-activation is kept for the
// backward as on CPU.
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/autocast.h"
#include "mlpmix/mlpmix.h"
#include "ops/channel_mlp/channel_mlp.h"

namespace mlpmix::channel_mlp_impl {
namespace {

// The checks run first: they name any argument on another device than x; then x's device
// is current for the ATen calls.
std::tuple<at::Tensor, at::Tensor> forward_cuda(const char* op, const at::Tensor& x,
                                                const at::Tensor& norm_weight,
                                                const at::Tensor& norm_bias,
                                                const at::Tensor& fc1_weight,
                                                const at::Tensor& fc1_bias,
                                                const at::Tensor& fc2_weight,
                                                const at::Tensor& fc2_bias, double eps,
                                                bool keep_hidden) {
  check_inputs(op, x, norm_weight, norm_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias);
  const c10::cuda::CUDAGuard guard(x.device());
  return mlp(x, norm_weight, norm_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias, eps,
             keep_hidden);
}

at::Tensor channel_mlp_cuda(const at::Tensor& x, const at::Tensor& norm_weight,
                            const at::Tensor& norm_bias, const at::Tensor& fc1_weight,
                            const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
                            const at::Tensor& fc2_bias, double eps) {
  return std::get<0>(forward_cuda("channel_mlp", x, norm_weight, norm_bias, fc1_weight,
                                  fc1_bias, fc2_weight, fc2_bias, eps, false));
}

std::tuple<at::Tensor, at::Tensor> channel_mlp_forward_cuda(
    const at::Tensor& x, const at::Tensor& norm_weight, const at::Tensor& norm_bias,
    const at::Tensor& fc1_weight, const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
    const at::Tensor& fc2_bias, double eps) {
  return forward_cuda("channel_mlp_forward", x, norm_weight, norm_bias, fc1_weight, fc1_bias,
                      fc2_weight, fc2_bias, eps, true);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
channel_mlp_backward_cuda(const at::Tensor& grad_out, const at::Tensor& x,
                          const at::Tensor& norm_weight, const at::Tensor& norm_bias,
                          const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                          const at::Tensor& fc2_weight, const at::Tensor& fc2_bias, double eps,
                          const std::optional<at::Tensor>& hidden) {
  const auto dims = check_inputs("channel_mlp_backward", x, norm_weight, norm_bias, fc1_weight,
                                 fc1_bias, fc2_weight, fc2_bias);
  check_grad_out(grad_out, x);
  check_hidden(hidden, x, dims);
  const c10::cuda::CUDAGuard guard(x.device());
  return mlp_backward(grad_out, x, norm_weight, norm_bias, fc1_weight, fc1_bias, fc2_weight,
                      fc2_bias, eps, hidden);
}

}  // namespace
}  // namespace mlpmix::channel_mlp_impl

TORCH_LIBRARY_IMPL(mlpmix, CUDA, m) {
  m.impl("channel_mlp", &mlpmix::channel_mlp_impl::channel_mlp_cuda);
  m.impl("channel_mlp_forward", &mlpmix::channel_mlp_impl::channel_mlp_forward_cuda);
  m.impl("channel_mlp_backward", &mlpmix::channel_mlp_impl::channel_mlp_backward_cuda);
}

TORCH_LIBRARY_IMPL(mlpmix, AutocastCUDA, m) {
  m.impl("channel_mlp", MLPMIX_AUTOCAST_CUDA(mlpmix::channel_mlp));
}
