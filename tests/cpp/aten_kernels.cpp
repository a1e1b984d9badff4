// The ATen compositions behind the CUDA kernels of linear, channel_mlp and reweight_branches
// (their CUDA kernels call them with the device made current), registered for the CPU as
// mlpmix_aten::* so tests/test_aten_kernels.py can check them on machines without a GPU.
// Linked against libmlpmix_ops, which defines them.
#include <torch/library.h>

#include "ops/channel_mlp/channel_mlp.h"
#include "ops/linear/linear.h"
#include "ops/reweight_branches/reweight_branches.h"

namespace {

namespace rb = mlpmix::reweight_branches_impl;
namespace cm = mlpmix::channel_mlp_impl;

at::Tensor reweight_branches(const at::Tensor& h, const at::Tensor& w, const at::Tensor& c,
                             const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                             const at::Tensor& fc2_weight, const at::Tensor& fc2_bias) {
  return rb::reweight_branches_aten(h, w, c, {fc1_weight, fc1_bias, fc2_weight, fc2_bias});
}

rb::Gradients reweight_branches_backward(const at::Tensor& grad_out, const at::Tensor& h,
                                         const at::Tensor& w, const at::Tensor& c,
                                         const at::Tensor& fc1_weight,
                                         const at::Tensor& fc1_bias,
                                         const at::Tensor& fc2_weight,
                                         const at::Tensor& fc2_bias) {
  return rb::reweight_branches_backward_aten(grad_out, h, w, c,
                                             {fc1_weight, fc1_bias, fc2_weight, fc2_bias});
}

at::Tensor channel_mlp(const at::Tensor& x, const at::Tensor& norm_weight,
                       const at::Tensor& norm_bias, const at::Tensor& fc1_weight,
                       const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
                       const at::Tensor& fc2_bias, double eps) {
  cm::check_inputs("channel_mlp", x, norm_weight, norm_bias, fc1_weight, fc1_bias, fc2_weight,
                   fc2_bias);
  return std::get<0>(cm::mlp(x, norm_weight, norm_bias, fc1_weight, fc1_bias, fc2_weight,
                             fc2_bias, eps, /*keep_hidden=*/false));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
channel_mlp_backward(const at::Tensor& grad_out, const at::Tensor& x,
                     const at::Tensor& norm_weight, const at::Tensor& norm_bias,
                     const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                     const at::Tensor& fc2_weight, const at::Tensor& fc2_bias, double eps) {
  cm::check_inputs("channel_mlp_backward", x, norm_weight, norm_bias, fc1_weight, fc1_bias,
                   fc2_weight, fc2_bias);
  cm::check_grad_out(grad_out, x);
  return cm::mlp_backward(grad_out, x, norm_weight, norm_bias, fc1_weight, fc1_bias, fc2_weight,
                          fc2_bias, eps, std::nullopt);
}

}  // namespace

TORCH_LIBRARY(mlpmix_aten, m) {
  m.def("linear(Tensor x, Tensor weight, Tensor? bias) -> Tensor");
  m.def("linear_backward(Tensor grad_out, Tensor x, Tensor weight, Tensor? bias) "
        "-> (Tensor, Tensor, Tensor)");
  m.def("channel_mlp(Tensor x, Tensor norm_weight, Tensor norm_bias, Tensor fc1_weight, "
        "Tensor fc1_bias, Tensor fc2_weight, Tensor fc2_bias, float eps) -> Tensor");
  m.def("channel_mlp_backward(Tensor grad_out, Tensor x, Tensor norm_weight, "
        "Tensor norm_bias, Tensor fc1_weight, Tensor fc1_bias, Tensor fc2_weight, "
        "Tensor fc2_bias, float eps) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("reweight_branches(Tensor h, Tensor w, Tensor c, Tensor fc1_weight, Tensor fc1_bias, "
        "Tensor fc2_weight, Tensor fc2_bias) -> Tensor");
  m.def("reweight_branches_backward(Tensor grad_out, Tensor h, Tensor w, Tensor c, "
        "Tensor fc1_weight, Tensor fc1_bias, Tensor fc2_weight, Tensor fc2_bias) "
        "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(mlpmix_aten, CPU, m) {
  m.impl("linear", &mlpmix::linear_impl::linear_aten);
  m.impl("linear_backward", &mlpmix::linear_impl::linear_backward_aten);
  m.impl("channel_mlp", &channel_mlp);
  m.impl("channel_mlp_backward", &channel_mlp_backward);
  m.impl("reweight_branches", &reweight_branches);
  m.impl("reweight_branches_backward", &reweight_branches_backward);
}
