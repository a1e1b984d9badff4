// mlpmix::channel_mlp — schema, C++ API, argument checks, the ATen composition (every device
// but the CPU, whose kernels fuse the branch per tile of tokens in channel_mlp_cpu.cpp), Meta
// kernels and autograd.
#include "ops/channel_mlp/channel_mlp.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#include "common/autocast.h"
#include "common/autograd.h"
#include "common/checked.h"
#include "common/checks.h"
#include "common/meta_kernels.h"
#include "common/op_outputs.h"
#include "mlpmix/mlpmix.h"

namespace mlpmix {

// ---- C++ API (through the dispatcher) ------------------------------------------------

at::Tensor channel_mlp(const at::Tensor& x, const at::Tensor& norm_weight,
                       const at::Tensor& norm_bias, const at::Tensor& fc1_weight,
                       const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
                       const at::Tensor& fc2_bias, double eps) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mlpmix::channel_mlp", "")
                       .typed<decltype(channel_mlp)>();
  return op.call(x, norm_weight, norm_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias, eps);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
channel_mlp_backward(const at::Tensor& grad_out, const at::Tensor& x,
                     const at::Tensor& norm_weight, const at::Tensor& norm_bias,
                     const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                     const at::Tensor& fc2_weight, const at::Tensor& fc2_bias, double eps,
                     const std::optional<at::Tensor>& hidden) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mlpmix::channel_mlp_backward", "")
                       .typed<decltype(channel_mlp_backward)>();
  return op.call(grad_out, x, norm_weight, norm_bias, fc1_weight, fc1_bias, fc2_weight,
                 fc2_bias, eps, hidden);
}

namespace channel_mlp_impl {

// ---- checks --------------------------------------------------------------------------

Dims check_inputs(const char* op, const at::Tensor& x, const at::Tensor& norm_weight,
                  const at::Tensor& norm_bias, const at::Tensor& fc1_weight,
                  const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
                  const at::Tensor& fc2_bias, double /*eps*/) {
  checks::rank(op, "x", x, 1, /*at_least=*/true);
  checks::floating(op, "x", x);
  const int64_t C = x.sym_size(-1).guard_int(__FILE__, __LINE__);
  TORCH_CHECK(C >= 1, "mlpmix.", op, ": x (..., C) must have at least one channel C, got shape ",
              x.sym_sizes());
  checks::vector(op, "norm_weight", norm_weight, C, "(C,)", "x", x);
  checks::vector(op, "norm_bias", norm_bias, C, "(C,)", "x", x);
  checks::same_dtype_device(op, "fc1_weight", fc1_weight, "x", x);
  checks::rank(op, "fc1_weight", fc1_weight, 2);
  const int64_t hidden = fc1_weight.sym_size(0).guard_int(__FILE__, __LINE__);
  TORCH_CHECK(hidden >= 1, "mlpmix.", op,
              ": fc1_weight (hidden, C) must have a hidden width of at least 1, got shape ",
              fc1_weight.sym_sizes());
  checks::shape(op, "fc1_weight", fc1_weight, {hidden, C}, "(hidden, C)");
  checks::vector(op, "fc1_bias", fc1_bias, hidden, "(hidden,) with hidden = fc1_weight.size(0)",
                 "x", x);
  checks::same_dtype_device(op, "fc2_weight", fc2_weight, "x", x);
  checks::shape(op, "fc2_weight", fc2_weight, {C, hidden}, "(C, hidden)");
  checks::vector(op, "fc2_bias", fc2_bias, C, "(C,)", "x", x);
  return Dims{C, hidden};
}

namespace {

// (T, hidden): the shape of the kept fc1 pre-activation.
std::vector<c10::SymInt> hidden_shape(const at::Tensor& x, const Dims& dims) {
  c10::SymInt tokens = 1;
  for (int64_t k = 0; k + 1 < x.dim(); ++k) {
    tokens = tokens * x.sym_size(k);
  }
  return {tokens, c10::SymInt(dims.hidden)};
}

}  // namespace

Dims check_backward(const char* op, const at::Tensor& grad_out, const at::Tensor& x,
                    const at::Tensor& norm_weight, const at::Tensor& norm_bias,
                    const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                    const at::Tensor& fc2_weight, const at::Tensor& fc2_bias, double eps,
                    const std::optional<at::Tensor>& hidden) {
  const auto dims = check_inputs(op, x, norm_weight, norm_bias, fc1_weight, fc1_bias,
                                 fc2_weight, fc2_bias, eps);
  checks::tensor(op, "grad_out", grad_out, x.sym_sizes(), "(..., C) of x", "x", x);
  checks::optional_tensor(op, "hidden", hidden, hidden_shape(x, dims),
                          "(T, hidden) of _channel_mlp_forward, T = x.numel() / C", "x", x);
  return dims;
}

namespace {

// ---- the ATen composition (any device) -----------------------------------------------

// The branch, and the fc1 pre-activation (T, hidden) for the backward when `keep_hidden`.
template <bool keep_hidden>
auto channel_mlp_aten(const Dims& dims, const at::Tensor& x, const at::Tensor& norm_weight,
                      const at::Tensor& norm_bias, const at::Tensor& fc1_weight,
                      const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
                      const at::Tensor& fc2_bias, double eps) {
  const auto normed =
      at::layer_norm(x.reshape({-1, dims.C}), {dims.C}, norm_weight, norm_bias, eps);
  auto hidden = at::linear(normed, fc1_weight, fc1_bias);
  const auto activated = keep_hidden ? at::gelu(hidden) : at::gelu_(hidden);
  return op_outputs<keep_hidden>(at::linear(activated, fc2_weight, fc2_bias).view(x.sizes()),
                                 hidden);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
channel_mlp_backward_aten(const Dims& dims, const at::Tensor& grad_out, const at::Tensor& x,
                          const at::Tensor& norm_weight, const at::Tensor& norm_bias,
                          const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                          const at::Tensor& fc2_weight, const at::Tensor& fc2_bias, double eps,
                          const std::optional<at::Tensor>& hidden) {
  const int64_t C = dims.C;
  const auto tokens = x.reshape({-1, C});
  const auto [normed, mean, rstd] =
      at::native_layer_norm(tokens, {C}, norm_weight, norm_bias, eps);
  const auto h = hidden.has_value() ? *hidden : at::linear(normed, fc1_weight, fc1_bias);
  const auto g = grad_out.reshape({-1, C});
  auto grad_fc2_weight = g.t().mm(at::gelu(h));
  auto grad_fc2_bias = g.sum(0);
  const auto grad_h = at::gelu_backward(g.mm(fc2_weight), h);
  auto grad_fc1_weight = grad_h.t().mm(normed);
  auto grad_fc1_bias = grad_h.sum(0);
  auto [grad_x, grad_norm_weight, grad_norm_bias] = at::native_layer_norm_backward(
      grad_h.mm(fc1_weight), tokens, {C}, mean, rstd, norm_weight, norm_bias,
      {true, true, true});
  return {grad_x.reshape(x.sizes()), grad_norm_weight, grad_norm_bias, grad_fc1_weight,
          grad_fc1_bias, grad_fc2_weight, grad_fc2_bias};
}

// ---- Meta kernels ------------------------------------------------------------------------

template <bool keep_hidden>
auto channel_mlp_meta(const Dims& dims, const at::Tensor& x) {
  return op_outputs<keep_hidden>(at::empty_symint(x.sym_sizes(), x.options()),
                                 at::empty_symint(hidden_shape(x, dims), x.options()));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
channel_mlp_backward_meta(const Dims& dims, const at::Tensor& grad_out, const at::Tensor& x,
                          const at::Tensor& norm_weight, const at::Tensor& norm_bias,
                          const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                          const at::Tensor& fc2_weight, const at::Tensor& fc2_bias) {
  return contiguous_like(x, norm_weight, norm_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias);
}

}  // namespace

// ---- registration ------------------------------------------------------------------------

TORCH_LIBRARY_FRAGMENT(mlpmix, m) {
  m.def(
      "channel_mlp(Tensor x, Tensor norm_weight, Tensor norm_bias, Tensor fc1_weight, "
      "Tensor fc1_bias, Tensor fc2_weight, Tensor fc2_bias, float eps=1e-05) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  // Internal: the forward that also returns the fc1 pre-activation for the backward.
  m.def(
      "_channel_mlp_forward(Tensor x, Tensor norm_weight, Tensor norm_bias, Tensor fc1_weight, "
      "Tensor fc1_bias, Tensor fc2_weight, Tensor fc2_bias, float eps=1e-05) "
      "-> (Tensor out, Tensor hidden)",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "channel_mlp_backward(Tensor grad_out, Tensor x, Tensor norm_weight, Tensor norm_bias, "
      "Tensor fc1_weight, Tensor fc1_bias, Tensor fc2_weight, Tensor fc2_bias, float eps, "
      "Tensor? hidden=None) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
}

TORCH_LIBRARY_IMPL(mlpmix, CompositeExplicitAutograd, m) {
  m.impl("channel_mlp", checked<"channel_mlp", check_inputs, channel_mlp_aten<false>>);
  m.impl("_channel_mlp_forward",
         checked<"_channel_mlp_forward", check_inputs, channel_mlp_aten<true>>);
  m.impl("channel_mlp_backward",
         checked<"channel_mlp_backward", check_backward, channel_mlp_backward_aten>);
}

TORCH_LIBRARY_IMPL(mlpmix, Meta, m) {
  m.impl("channel_mlp", checked<"channel_mlp", check_inputs, channel_mlp_meta<false>>);
  m.impl("_channel_mlp_forward",
         checked<"_channel_mlp_forward", check_inputs, channel_mlp_meta<true>>);
  m.impl("channel_mlp_backward",
         checked<"channel_mlp_backward", check_backward, channel_mlp_backward_meta>);
}

// The fc1 pre-activation (hidden/C times the size of x) is kept: the backward then
// recomputes the LayerNorm and GELU, not a GEMM. Nothing else of the branch is saved.
TORCH_LIBRARY_IMPL(mlpmix, Autograd, m) {
  using Autograd = mlpmix::Autograd<"channel_mlp", &channel_mlp, &channel_mlp_backward, 1>;
  m.impl("channel_mlp", &Autograd::forward);
  m.impl("channel_mlp_backward", &Autograd::backward);
}

MLPMIX_AUTOCAST(channel_mlp)

}  // namespace channel_mlp_impl
}  // namespace mlpmix
