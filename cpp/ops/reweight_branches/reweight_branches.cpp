// mlpmix::reweight_branches — schema, C++ API, argument checks, the re-weighting MLP and its
// backward, the ATen composition (every device but the CPU, whose kernels are in
// reweight_branches_cpu.cpp), Meta kernels and autograd.
#include "ops/reweight_branches/reweight_branches.h"

#include <ATen/ATen.h>
#include <c10/core/SymBool.h>
#include <torch/library.h>

#include "common/autocast.h"
#include "common/autograd.h"
#include "common/checked.h"
#include "common/checks.h"
#include "common/meta_kernels.h"
#include "mlpmix/mlpmix.h"

namespace mlpmix {

// ---- C++ API (through the dispatcher) ------------------------------------------------

at::Tensor reweight_branches(const at::Tensor& h, const at::Tensor& w, const at::Tensor& c,
                             const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                             const at::Tensor& fc2_weight, const at::Tensor& fc2_bias) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mlpmix::reweight_branches", "")
                       .typed<decltype(reweight_branches)>();
  return op.call(h, w, c, fc1_weight, fc1_bias, fc2_weight, fc2_bias);
}

ReweightBranchesGradients reweight_branches_backward(
    const at::Tensor& grad_out, const at::Tensor& h, const at::Tensor& w, const at::Tensor& c,
    const at::Tensor& fc1_weight, const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
    const at::Tensor& fc2_bias) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mlpmix::reweight_branches_backward", "")
                       .typed<decltype(reweight_branches_backward)>();
  return op.call(grad_out, h, w, c, fc1_weight, fc1_bias, fc2_weight, fc2_bias);
}

namespace reweight_branches_impl {

// ---- checks --------------------------------------------------------------------------

void check_inputs(const char* op, const at::Tensor& h, const at::Tensor& w, const at::Tensor& c,
                  const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                  const at::Tensor& fc2_weight, const at::Tensor& fc2_bias) {
  checks::rank(op, "h", h, 2, /*at_least=*/true);
  checks::floating(op, "h", h);
  c10::SymInt tokens = 1;
  for (int64_t i = 1; i + 1 < h.dim(); ++i) {
    tokens *= h.sym_size(i);
  }
  TORCH_CHECK(tokens.sym_gt(0).expect_true(__FILE__, __LINE__), "mlpmix.", op,
              ": h must have at least one token (B, ..., D with the middle sizes non-zero), got "
              "shape ", h.sym_sizes());

  checks::tensor(op, "w", w, h.sym_sizes(), "h's shape (B, ..., D)", "h", h);
  checks::tensor(op, "c", c, h.sym_sizes(), "h's shape (B, ..., D)", "h", h);
  const auto channels = h.sym_size(-1);
  checks::same_dtype_device(op, "fc1_weight", fc1_weight, "h", h);
  checks::rank(op, "fc1_weight", fc1_weight, 2);
  const auto hidden = fc1_weight.sym_size(0);
  checks::sym_shape(op, "fc1_weight", fc1_weight, {hidden, channels},
                    "(hidden, D), D = h.shape[-1]");
  checks::vector(op, "fc1_bias", fc1_bias, hidden.guard_int(__FILE__, __LINE__), "(hidden,)",
                 "h", h);
  checks::same_dtype_device(op, "fc2_weight", fc2_weight, "h", h);
  checks::sym_shape(op, "fc2_weight", fc2_weight, {channels * 3, hidden},
                    "(3*D, hidden), D = h.shape[-1]");
  checks::vector(op, "fc2_bias", fc2_bias, (channels * 3).guard_int(__FILE__, __LINE__),
                 "(3*D,)", "h", h);
}

void check_backward(const char* op, const at::Tensor& grad_out, const at::Tensor& h,
                    const at::Tensor& w, const at::Tensor& c, const at::Tensor& fc1_weight,
                    const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
                    const at::Tensor& fc2_bias) {
  check_inputs(op, h, w, c, fc1_weight, fc1_bias, fc2_weight, fc2_bias);
  checks::tensor(op, "grad_out", grad_out, h.sym_sizes(), "h's shape (B, ..., D)", "h", h);
}

int64_t tokens_of(const at::Tensor& h) {
  return c10::multiply_integers(h.sizes().begin() + 1, h.sizes().end() - 1);
}

// ---- the re-weighting MLP (small: (B, D) inputs) -------------------------------------

MlpForward mlp_forward(const at::Tensor& sums, int64_t tokens, const Mlp& mlp) {
  auto mean = sums / static_cast<double>(tokens);
  auto pre_activation = at::linear(mean, mlp.fc1_weight, mlp.fc1_bias);
  auto hidden = at::gelu(pre_activation);
  auto logits = at::linear(hidden, mlp.fc2_weight, mlp.fc2_bias);
  return {mean, pre_activation, hidden, logits};
}

MlpGradients mlp_backward(const MlpForward& f, const at::Tensor& grad_logits, int64_t tokens,
                          const Mlp& mlp) {
  auto grad_hidden = grad_logits.mm(mlp.fc2_weight);
  auto grad_pre = at::gelu_backward(grad_hidden, f.pre_activation);
  return {grad_pre.mm(mlp.fc1_weight) / static_cast<double>(tokens),
          grad_pre.t().mm(f.mean),
          grad_pre.sum(0),
          grad_logits.t().mm(f.hidden),
          grad_logits.sum(0)};
}

// ---- the ATen composition (any device) -----------------------------------------------

namespace {

// The branch weights (3, B, D), contiguous: the softmax over k of the logits (the CPU
// kernel has its own), and its backward to the logits' gradient (B, 3D), given
// grad_weights (3, B, D), the gradient of the branch weights (sum_t grad_out * branch_k).
at::Tensor softmax_over_branches(const at::Tensor& logits) {
  return logits.view({logits.size(0), logits.size(1) / 3, 3})
      .softmax(2)
      .permute({2, 0, 1})
      .contiguous();
}

at::Tensor softmax_over_branches_backward(const at::Tensor& weights,
                                          const at::Tensor& grad_weights) {
  const auto q = grad_weights.to(weights.scalar_type());
  return (weights * (q - (weights * q).sum(0, /*keepdim=*/true)))
      .permute({1, 2, 0})
      .reshape({weights.size(1), 3 * weights.size(2)});
}

// (B, T, D) views of branches shaped like h.
at::Tensor rows(const at::Tensor& t, const at::Tensor& h) {
  return t.reshape({h.size(0), tokens_of(h), h.size(-1)});
}

at::Tensor token_sums(const at::Tensor& h, const at::Tensor& w, const at::Tensor& c) {
  return rows(h, h).sum(1) + rows(w, h).sum(1) + rows(c, h).sum(1);
}

at::Tensor reweight_branches_aten(const at::Tensor& h, const at::Tensor& w, const at::Tensor& c,
                                  const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                                  const at::Tensor& fc2_weight, const at::Tensor& fc2_bias) {
  const Mlp mlp{fc1_weight, fc1_bias, fc2_weight, fc2_bias};
  const auto a =
      softmax_over_branches(mlp_forward(token_sums(h, w, c), tokens_of(h), mlp).logits)
          .unsqueeze(2);
  // into a contiguous output whatever the branches' layout (as the Meta kernel promises)
  auto out = at::empty(h.sizes(), h.options());
  auto out_rows = rows(out, h);
  at::mul_out(out_rows, rows(h, h), a[0]).addcmul_(rows(w, h), a[1]).addcmul_(rows(c, h), a[2]);
  return out;
}

Gradients reweight_branches_backward_aten(const at::Tensor& grad_out, const at::Tensor& h,
                                          const at::Tensor& w, const at::Tensor& c,
                                          const at::Tensor& fc1_weight,
                                          const at::Tensor& fc1_bias,
                                          const at::Tensor& fc2_weight,
                                          const at::Tensor& fc2_bias) {
  const Mlp mlp{fc1_weight, fc1_bias, fc2_weight, fc2_bias};
  const auto g = rows(grad_out, h);
  const auto grad_weights =
      at::stack({(g * rows(h, h)).sum(1), (g * rows(w, h)).sum(1), (g * rows(c, h)).sum(1)});
  const auto f = mlp_forward(token_sums(h, w, c), tokens_of(h), mlp);
  const auto weights = softmax_over_branches(f.logits);
  const auto r =
      mlp_backward(f, softmax_over_branches_backward(weights, grad_weights), tokens_of(h), mlp);
  const auto per_token = r.grad_per_token.unsqueeze(1);
  const auto a = weights.unsqueeze(2);
  const auto grad = [&](int64_t k) {
    auto grad_branch = at::empty(h.sizes(), h.options());
    auto grad_rows = rows(grad_branch, h);
    at::addcmul_out(grad_rows, per_token, g, a[k]);
    return grad_branch;
  };
  return {grad(0), grad(1), grad(2), r.grad_fc1_weight, r.grad_fc1_bias, r.grad_fc2_weight,
          r.grad_fc2_bias};
}

// ---- Meta kernels ------------------------------------------------------------------------

at::Tensor reweight_branches_meta(const at::Tensor& h) {
  return at::empty_symint(h.sym_sizes(), h.options());
}

Gradients reweight_branches_backward_meta(const at::Tensor& grad_out, const at::Tensor& h,
                                          const at::Tensor& w, const at::Tensor& c,
                                          const at::Tensor& fc1_weight,
                                          const at::Tensor& fc1_bias,
                                          const at::Tensor& fc2_weight,
                                          const at::Tensor& fc2_bias) {
  return contiguous_like(h, w, c, fc1_weight, fc1_bias, fc2_weight, fc2_bias);
}

}  // namespace

// ---- registration ------------------------------------------------------------------------

TORCH_LIBRARY_FRAGMENT(mlpmix, m) {
  m.def(
      "reweight_branches(Tensor h, Tensor w, Tensor c, Tensor fc1_weight, Tensor fc1_bias, "
      "Tensor fc2_weight, Tensor fc2_bias) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "reweight_branches_backward(Tensor grad_out, Tensor h, Tensor w, Tensor c, "
      "Tensor fc1_weight, Tensor fc1_bias, Tensor fc2_weight, Tensor fc2_bias) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
}

TORCH_LIBRARY_IMPL(mlpmix, CompositeExplicitAutograd, m) {
  m.impl("reweight_branches", checked<"reweight_branches", check_inputs, reweight_branches_aten>);
  m.impl("reweight_branches_backward",
         checked<"reweight_branches_backward", check_backward, reweight_branches_backward_aten>);
}

TORCH_LIBRARY_IMPL(mlpmix, Meta, m) {
  m.impl("reweight_branches", checked<"reweight_branches", check_inputs, reweight_branches_meta>);
  m.impl("reweight_branches_backward",
         checked<"reweight_branches_backward", check_backward, reweight_branches_backward_meta>);
}

TORCH_LIBRARY_IMPL(mlpmix, Autograd, m) {
  using Autograd =
      mlpmix::Autograd<"reweight_branches", &reweight_branches, &reweight_branches_backward>;
  m.impl("reweight_branches", &Autograd::forward);
  m.impl("reweight_branches_backward", &Autograd::backward);
}

MLPMIX_AUTOCAST(reweight_branches)

}  // namespace reweight_branches_impl
}  // namespace mlpmix
