// mlpmix::raft_token_mixing — schema, C++ API, argument checks, the device-agnostic MLP
// steps, Meta kernels and autograd. The CPU kernels (the whole branch fused per tile of
// lines) live in raft_token_mixing_cpu.cpp, the CUDA ones in raft_token_mixing_cuda.cu.
#include "ops/raft_token_mixing/raft_token_mixing.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#include <vector>

#include "common/autocast.h"
#include "common/autograd.h"
#include "common/checked.h"
#include "common/checks.h"
#include "common/meta_kernels.h"
#include "common/op_outputs.h"
#include "mlpmix/mlpmix.h"

namespace mlpmix {

// ---- C++ API (through the dispatcher) ------------------------------------------------

at::Tensor raft_token_mixing(const at::Tensor& x, const at::Tensor& norm_weight,
                             const at::Tensor& norm_bias, const at::Tensor& fc1_weight,
                             const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
                             const at::Tensor& fc2_bias, int64_t raft_size, int64_t dim,
                             double eps) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mlpmix::raft_token_mixing", "")
                       .typed<decltype(raft_token_mixing)>();
  return op.call(x, norm_weight, norm_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias,
                 raft_size, dim, eps);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
raft_token_mixing_backward(const at::Tensor& grad_out, const at::Tensor& x,
                           const at::Tensor& norm_weight, const at::Tensor& norm_bias,
                           const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                           const at::Tensor& fc2_weight, const at::Tensor& fc2_bias,
                           int64_t raft_size, int64_t dim, double eps,
                           const std::optional<at::Tensor>& hidden) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mlpmix::raft_token_mixing_backward", "")
                       .typed<decltype(raft_token_mixing_backward)>();
  return op.call(grad_out, x, norm_weight, norm_bias, fc1_weight, fc1_bias, fc2_weight,
                 fc2_bias, raft_size, dim, eps, hidden);
}

namespace raft_token_mixing_impl {

// ---- checks --------------------------------------------------------------------------

namespace {

// The expected MLP shapes, spelled for the mixed axis.
struct MlpShapes {
  const char* fc1_weight;
  const char* fc2_weight;
  const char* fc2_bias;
};
constexpr MlpShapes kVerticalShapes{"(hidden, r*H)", "(r*H, hidden)", "(r*H,)"};
constexpr MlpShapes kHorizontalShapes{"(hidden, r*W)", "(r*W, hidden)", "(r*W,)"};

}  // namespace

Dims check_inputs(const char* op, const at::Tensor& x, const at::Tensor& norm_weight,
                  const at::Tensor& norm_bias, const at::Tensor& fc1_weight,
                  const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
                  const at::Tensor& fc2_bias, int64_t raft_size, int64_t dim,
                  double /*eps*/) {
  checks::rank(op, "x", x, 4);
  checks::floating(op, "x", x);
  TORCH_CHECK(dim == 1 || dim == 2 || dim == -3 || dim == -2, "mlpmix.", op, ": dim=", dim,
              " must name a spatial axis of x (B, H, W, C): 1 or -3 (H, vertical mixing) "
              "or 2 or -2 (W, horizontal mixing)");
  const int64_t axis = dim < 0 ? dim + 4 : dim;
  const int64_t H = x.sym_size(1).guard_int(__FILE__, __LINE__);
  const int64_t W = x.sym_size(2).guard_int(__FILE__, __LINE__);
  const int64_t C = x.sym_size(3).guard_int(__FILE__, __LINE__);
  TORCH_CHECK(H >= 1 && W >= 1 && C >= 1, "mlpmix.", op,
              ": x must have at least one token along H and W and one channel, got shape ",
              x.sym_sizes());
  TORCH_CHECK(raft_size >= 1 && C % raft_size == 0, "mlpmix.", op, ": raft_size=",
              raft_size, " must be a positive divisor of x's channel count C=", C);
  const int64_t N = axis == 1 ? H : W;
  const int64_t M = axis == 1 ? W : H;
  const int64_t features = raft_size * N;
  const MlpShapes& shapes = axis == 1 ? kVerticalShapes : kHorizontalShapes;

  checks::vector(op, "norm_weight", norm_weight, C, "(C,)", "x", x);
  checks::vector(op, "norm_bias", norm_bias, C, "(C,)", "x", x);
  checks::same_dtype_device(op, "fc1_weight", fc1_weight, "x", x);
  checks::rank(op, "fc1_weight", fc1_weight, 2);
  const int64_t hidden = fc1_weight.sym_size(0).guard_int(__FILE__, __LINE__);
  checks::shape(op, "fc1_weight", fc1_weight, {hidden, features}, shapes.fc1_weight);
  checks::vector(op, "fc1_bias", fc1_bias, hidden, "(hidden,) with hidden = fc1_weight.size(0)",
                 "x", x);
  checks::same_dtype_device(op, "fc2_weight", fc2_weight, "x", x);
  checks::shape(op, "fc2_weight", fc2_weight, {features, hidden}, shapes.fc2_weight);
  checks::vector(op, "fc2_bias", fc2_bias, features, shapes.fc2_bias, "x", x);
  return Dims{axis, H, W, C, N, M, raft_size, C / raft_size, hidden};
}

namespace {

// (B*M, hidden, o): the shape of the kept fc1 pre-activation.
std::vector<c10::SymInt> hidden_shape(const at::Tensor& x, const Dims& d) {
  return {x.sym_size(0) * d.M, c10::SymInt(d.hidden), c10::SymInt(d.o)};
}

}  // namespace

Dims check_backward(const char* op, const at::Tensor& grad_out, const at::Tensor& x,
                    const at::Tensor& norm_weight, const at::Tensor& norm_bias,
                    const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                    const at::Tensor& fc2_weight, const at::Tensor& fc2_bias,
                    int64_t raft_size, int64_t dim, double eps,
                    const std::optional<at::Tensor>& hidden) {
  const auto dims = check_inputs(op, x, norm_weight, norm_bias, fc1_weight, fc1_bias,
                                 fc2_weight, fc2_bias, raft_size, dim, eps);
  checks::tensor(op, "grad_out", grad_out, x.sym_sizes(), "(B, H, W, C) of x", "x", x);
  checks::optional_tensor(op, "hidden", hidden, hidden_shape(x, dims),
                          "(B*M, hidden, o) of _raft_token_mixing_forward", "x", x);
  return dims;
}

// ---- the MLP steps (device-agnostic ATen) ----------------------------------------------

namespace {

// The rows buffer as (B, o, M, r, N).
at::Tensor rows_5d(const at::Tensor& rows, int64_t batch, const Dims& d) {
  return rows.view({batch, d.o, d.M, d.r, d.N});
}

// A rows buffer seen with x's axes, (B, H, W, r, o): the inverse regrouping, as a view.
at::Tensor grid_view(const at::Tensor& rows, int64_t batch, const Dims& d) {
  auto view = rows_5d(rows, batch, d).permute({0, 4, 2, 3, 1});  // (B, N, M, r, o)
  return d.axis == 1 ? view : view.transpose(1, 2);
}

// A per-channel vector (c = i*o + j) broadcastable over the rows buffer (B, o, M, r, N).
at::Tensor per_channel_in_rows(const at::Tensor& v, const Dims& d) {
  return v.view({d.r, d.o}).t().reshape({1, d.o, 1, d.r, 1});
}

// Sums a rows-layout tensor over everything but the channel: (C,), c = i*o + j.
at::Tensor sum_per_channel(const at::Tensor& rows, int64_t batch, const Dims& d) {
  return rows_5d(rows, batch, d).sum({0, 2, 4}).t().reshape({d.C});
}

}  // namespace

at::Tensor mix_rows(const at::Tensor& normed_rows, const at::Tensor& fc1_weight,
                    const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
                    const at::Tensor& fc2_bias, int64_t batch, const Dims& dims) {
  auto hidden = at::linear(normed_rows, fc1_weight, fc1_bias);
  at::gelu_(hidden);
  auto mixed = at::linear(hidden, fc2_weight, fc2_bias);
  auto out = at::empty({batch, dims.H, dims.W, dims.C}, mixed.options());
  out.unflatten(3, {dims.r, dims.o}).copy_(grid_view(mixed, batch, dims));
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
mix_rows_backward(const at::Tensor& grad_out, const at::Tensor& normalized_rows,
                  const at::Tensor& normed_rows, const at::Tensor& norm_weight,
                  const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                  const at::Tensor& fc2_weight, const at::Tensor& fc2_bias, int64_t batch,
                  const Dims& dims) {
  // Recompute the hidden layer rather than holding it between passes.
  auto hidden = at::linear(normed_rows, fc1_weight, fc1_bias);
  auto activated = at::gelu(hidden);

  auto grad_mixed = at::empty(normed_rows.sizes(), grad_out.options());
  grid_view(grad_mixed, batch, dims).copy_(grad_out.unflatten(3, {dims.r, dims.o}));
  auto grad_fc2_weight = grad_mixed.t().mm(activated);
  auto grad_fc2_bias = grad_mixed.sum(0);
  auto grad_hidden = at::gelu_backward(grad_mixed.mm(fc2_weight), hidden);
  auto grad_fc1_weight = grad_hidden.t().mm(normed_rows);
  auto grad_fc1_bias = grad_hidden.sum(0);
  auto grad_normed = grad_hidden.mm(fc1_weight);
  auto grad_norm_bias = sum_per_channel(grad_normed, batch, dims);
  auto grad_norm_weight = sum_per_channel(grad_normed * normalized_rows, batch, dims);
  rows_5d(grad_normed, batch, dims).mul_(per_channel_in_rows(norm_weight, dims));
  return {grad_normed,     grad_norm_weight, grad_norm_bias, grad_fc1_weight,
          grad_fc1_bias,   grad_fc2_weight,  grad_fc2_bias};
}

// ---- Meta kernels ------------------------------------------------------------------------

namespace {

template <bool keep_hidden>
auto raft_token_mixing_meta(const Dims& dims, const at::Tensor& x) {
  return op_outputs<keep_hidden>(at::empty_symint(x.sym_sizes(), x.options()),
                                 at::empty_symint(hidden_shape(x, dims), x.options()));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
raft_token_mixing_backward_meta(const Dims& dims, const at::Tensor& grad_out,
                                const at::Tensor& x, const at::Tensor& norm_weight,
                                const at::Tensor& norm_bias, const at::Tensor& fc1_weight,
                                const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
                                const at::Tensor& fc2_bias) {
  return contiguous_like(x, norm_weight, norm_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias);
}

}  // namespace

// ---- registration ------------------------------------------------------------------------

TORCH_LIBRARY_FRAGMENT(mlpmix, m) {
  m.def(
      "raft_token_mixing(Tensor x, Tensor norm_weight, Tensor norm_bias, "
      "Tensor fc1_weight, Tensor fc1_bias, Tensor fc2_weight, Tensor fc2_bias, "
      "int raft_size, int dim, float eps=1e-05) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  // Internal: the forward that also returns the fc1 pre-activation (bias added, before GELU)
  // for the backward. It is (B*M, hidden, o): [b*M + m, :, j] is the hidden layer of the MLP
  // row of raft j at position m of the other spatial axis (M its size).
  m.def(
      "_raft_token_mixing_forward(Tensor x, Tensor norm_weight, Tensor norm_bias, "
      "Tensor fc1_weight, Tensor fc1_bias, Tensor fc2_weight, Tensor fc2_bias, "
      "int raft_size, int dim, float eps=1e-05) -> (Tensor out, Tensor hidden)",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "raft_token_mixing_backward(Tensor grad_out, Tensor x, Tensor norm_weight, "
      "Tensor norm_bias, Tensor fc1_weight, Tensor fc1_bias, Tensor fc2_weight, "
      "Tensor fc2_bias, int raft_size, int dim, float eps, Tensor? hidden=None) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
}

TORCH_LIBRARY_IMPL(mlpmix, Meta, m) {
  m.impl("raft_token_mixing",
         checked<"raft_token_mixing", check_inputs, raft_token_mixing_meta<false>>);
  m.impl("_raft_token_mixing_forward",
         checked<"_raft_token_mixing_forward", check_inputs, raft_token_mixing_meta<true>>);
  m.impl("raft_token_mixing_backward",
         checked<"raft_token_mixing_backward", check_backward, raft_token_mixing_backward_meta>);
}

// On CPU the fc1 pre-activation is kept (2x the size of x): the backward then only
// recomputes the LayerNorm and GELU, not a GEMM. CUDA recomputes it.
TORCH_LIBRARY_IMPL(mlpmix, Autograd, m) {
  using Autograd =
      mlpmix::Autograd<"raft_token_mixing", &raft_token_mixing, &raft_token_mixing_backward, 1>;
  m.impl("raft_token_mixing", &Autograd::forward);
  m.impl("raft_token_mixing_backward", &Autograd::backward);
}

MLPMIX_AUTOCAST(raft_token_mixing)

}  // namespace raft_token_mixing_impl
}  // namespace mlpmix
