// mlpmix::reweight_branches on CUDA: the ATen composition of reweight_branches.cpp, with h's
// device current (its full-size passes are elementwise and reduction kernels of ATen's own).
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/autocast.h"
#include "mlpmix/mlpmix.h"
#include "ops/reweight_branches/reweight_branches.h"

namespace mlpmix::reweight_branches_impl {
namespace {

at::Tensor reweight_branches_cuda(const at::Tensor& h, const at::Tensor& w, const at::Tensor& c,
                                  const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                                  const at::Tensor& fc2_weight, const at::Tensor& fc2_bias) {
  const Mlp mlp{fc1_weight, fc1_bias, fc2_weight, fc2_bias};
  check_inputs("reweight_branches", h, w, c, mlp);
  const c10::cuda::CUDAGuard guard(h.device());
  return reweight_branches_aten(h, w, c, mlp);
}

Gradients reweight_branches_backward_cuda(const at::Tensor& grad_out, const at::Tensor& h,
                                          const at::Tensor& w, const at::Tensor& c,
                                          const at::Tensor& fc1_weight,
                                          const at::Tensor& fc1_bias,
                                          const at::Tensor& fc2_weight,
                                          const at::Tensor& fc2_bias) {
  const Mlp mlp{fc1_weight, fc1_bias, fc2_weight, fc2_bias};
  check_inputs("reweight_branches_backward", h, w, c, mlp);
  check_grad_out(grad_out, h);
  const c10::cuda::CUDAGuard guard(h.device());
  return reweight_branches_backward_aten(grad_out, h, w, c, mlp);
}

}  // namespace
}  // namespace mlpmix::reweight_branches_impl

TORCH_LIBRARY_IMPL(mlpmix, CUDA, m) {
  m.impl("reweight_branches", &mlpmix::reweight_branches_impl::reweight_branches_cuda);
  m.impl("reweight_branches_backward",
         &mlpmix::reweight_branches_impl::reweight_branches_backward_cuda);
}

TORCH_LIBRARY_IMPL(mlpmix, AutocastCUDA, m) {
  m.impl("reweight_branches", MLPMIX_AUTOCAST_CUDA(mlpmix::reweight_branches));
}
