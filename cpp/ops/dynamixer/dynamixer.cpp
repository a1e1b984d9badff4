// mlpmix::dynamixer — schema, C++ API, argument checks, the device-agnostic GEMM steps,
// Meta kernels and autograd. The CPU kernels live in dynamixer_cpu.cpp, the CUDA ones in
// dynamixer_cuda.cu.
#include "ops/dynamixer/dynamixer.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#include "common/autocast.h"
#include "common/autograd.h"
#include "common/checked.h"
#include "common/checks.h"
#include "common/op_outputs.h"
#include "common/sequences.h"
#include "mlpmix/mlpmix.h"

namespace mlpmix {

// ---- C++ API (through the dispatcher) ------------------------------------------------

at::Tensor dynamixer(const at::Tensor& x, const at::Tensor& compress_weight,
                     const std::optional<at::Tensor>& compress_bias,
                     const at::Tensor& generate_weight,
                     const std::optional<at::Tensor>& generate_bias, int64_t num_segments,
                     int64_t dim) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mlpmix::dynamixer", "")
                       .typed<decltype(dynamixer)>();
  return op.call(x, compress_weight, compress_bias, generate_weight, generate_bias,
                 num_segments, dim);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> dynamixer_backward(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& compress_weight,
    const std::optional<at::Tensor>& compress_bias, const at::Tensor& generate_weight,
    const std::optional<at::Tensor>& generate_bias, int64_t num_segments, int64_t dim,
    const std::optional<at::Tensor>& compressed, const std::optional<at::Tensor>& weights) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mlpmix::dynamixer_backward", "")
                       .typed<decltype(dynamixer_backward)>();
  return op.call(grad_out, x, compress_weight, compress_bias, generate_weight, generate_bias,
                 num_segments, dim, compressed, weights);
}

namespace dynamixer_impl {

// ---- checks --------------------------------------------------------------------------

Dims check_inputs(const char* op, const at::Tensor& x, const at::Tensor& compress_weight,
                  const std::optional<at::Tensor>& compress_bias,
                  const at::Tensor& generate_weight,
                  const std::optional<at::Tensor>& generate_bias, int64_t num_segments,
                  int64_t dim) {
  checks::rank(op, "x", x, 3, /*at_least=*/true);
  checks::floating(op, "x", x);
  const int64_t ndim = x.dim();
  const int64_t token_dim = checks::wrap_dim(op, "dim", dim, ndim);
  TORCH_CHECK(token_dim != ndim - 1, "mlpmix.", op, ": dim=", dim,
              " names the channel axis (the last one) of x with shape ", x.sym_sizes(),
              "; it must name the token axis, one of [", -ndim, ", ", -2, "] or [0, ",
              ndim - 2, "]");
  TORCH_CHECK(num_segments >= 1, "mlpmix.", op, ": num_segments must be positive, got ",
              num_segments);
  const int64_t N = x.sym_size(token_dim).guard_int(__FILE__, __LINE__);
  const int64_t D = x.sym_size(-1).guard_int(__FILE__, __LINE__);
  TORCH_CHECK(N >= 1 && D >= 1, "mlpmix.", op, ": x must have at least one token (axis ",
              token_dim, ") and one channel (last axis), got shape ", x.sym_sizes());
  TORCH_CHECK(D % num_segments == 0, "mlpmix.", op, ": num_segments=", num_segments,
              " must divide the channel count D=", D, " of x");

  checks::same_dtype_device(op, "compress_weight", compress_weight, "x", x);
  checks::rank(op, "compress_weight", compress_weight, 2);
  const int64_t Sd = compress_weight.sym_size(0).guard_int(__FILE__, __LINE__);
  TORCH_CHECK(Sd % num_segments == 0, "mlpmix.", op,
              ": compress_weight must have shape (S*d, D) with S=num_segments=", num_segments,
              ", but its first dimension ", Sd, " is not a multiple of ", num_segments);
  const int64_t d = Sd / num_segments;
  checks::shape(op, "compress_weight", compress_weight, {Sd, D}, "(S*d, D)");
  checks::optional_vector(op, "compress_bias", compress_bias, Sd, "(S*d,)", "x", x);
  checks::same_dtype_device(op, "generate_weight", generate_weight, "x", x);
  checks::shape(op, "generate_weight", generate_weight, {N * N, N * d}, "(N*N, N*d)");
  checks::optional_vector(op, "generate_bias", generate_bias, N * N, "(N*N,)", "x", x);
  return Dims{token_dim, N, D, num_segments, d};
}

namespace {

// (B', S, width) per segment of each sequence: B' counts the sequences, every axis of x but
// the token and channel ones.
std::vector<c10::SymInt> per_segment_shape(const at::Tensor& x, const Dims& dims,
                                           int64_t width) {
  c10::SymInt sequences = 1;
  for (int64_t axis = 0; axis + 1 < x.dim(); ++axis) {
    if (axis != dims.token_dim) {
      sequences = sequences * x.sym_size(axis);
    }
  }
  return {sequences, c10::SymInt(dims.S), c10::SymInt(width)};
}

std::vector<c10::SymInt> compressed_shape(const at::Tensor& x, const Dims& dims) {
  return per_segment_shape(x, dims, dims.N * dims.d);
}

std::vector<c10::SymInt> weights_shape(const at::Tensor& x, const Dims& dims) {
  return per_segment_shape(x, dims, dims.N * dims.N);
}

}  // namespace

Dims check_backward(const char* op, const at::Tensor& grad_out, const at::Tensor& x,
                    const at::Tensor& compress_weight,
                    const std::optional<at::Tensor>& compress_bias,
                    const at::Tensor& generate_weight,
                    const std::optional<at::Tensor>& generate_bias, int64_t num_segments,
                    int64_t dim, const std::optional<at::Tensor>& compressed,
                    const std::optional<at::Tensor>& weights) {
  const auto dims = check_inputs(op, x, compress_weight, compress_bias, generate_weight,
                                 generate_bias, num_segments, dim);
  checks::same_dtype_device(op, "grad_out", grad_out, "x", x);
  TORCH_CHECK(grad_out.sym_sizes() == x.sym_sizes(), "mlpmix.", op,
              ": grad_out must have the shape of x ", x.sym_sizes(), ", got ",
              grad_out.sym_sizes());
  checks::optional_tensor(op, "compressed", compressed, compressed_shape(x, dims),
                          "(B', S, N*d) of _dynamixer_forward", "x", x);
  checks::optional_tensor(op, "weights", weights, weights_shape(x, dims),
                          "(B', S, N*N) of _dynamixer_forward", "x", x);
  return dims;
}

// ---- the GEMM steps (device-agnostic ATen) ---------------------------------------------

const MatrixProducts kAtenProducts{
    [](const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
      return at::linear(x, weight, bias);
    },
    [](const at::Tensor& a, const at::Tensor& b) { return a.mm(b); },
    [](const at::Tensor& out, const at::Tensor& a, const at::Tensor& b) {
      const_cast<at::Tensor&>(out).addmm_(a, b);
    },
};

at::Tensor compress(const at::Tensor& x, const at::Tensor& compress_weight,
                    const std::optional<at::Tensor>& compress_bias, const Dims& dims,
                    const MatrixProducts& products) {
  const auto [token_dim, N, D, S, d] = dims;
  const int64_t sequences = x.numel() / (N * D);
  auto sizes = x.sizes().vec();
  sizes.back() = S * d;
  // Z is only S*d wide, so regrouping it (unlike x) is a cheap copy.
  return products.linear(x.reshape({-1, D}), compress_weight, compress_bias)
      .view(sizes)
      .movedim(token_dim, -2)
      .reshape({sequences, N, S, d})
      .permute({0, 2, 1, 3})
      .reshape({sequences, S, N * d})
      .contiguous();
}

std::tuple<at::Tensor, at::Tensor> compress_backward(
    const at::Tensor& grad_compressed, const at::Tensor& x, const at::Tensor& compress_weight,
    const Dims& dims, at::Tensor& grad_x, const MatrixProducts& products) {
  const auto [token_dim, N, D, S, d] = dims;
  auto sizes = sequence_major_sizes(x.sizes(), token_dim);
  sizes.back() = S * d;
  auto grad_tokens = grad_compressed.view({grad_compressed.size(0), S, N, d})
                         .permute({0, 2, 1, 3})
                         .reshape(sizes)
                         .movedim(-2, token_dim)
                         .reshape({x.numel() / D, S * d});
  products.add_product(grad_x.view({-1, D}), grad_tokens, compress_weight);
  return {products.product(grad_tokens.t(), x.reshape({-1, D})), grad_tokens.sum(0)};
}

std::tuple<at::Tensor, at::Tensor> compress_and_generate(
    const at::Tensor& x, const at::Tensor& compress_weight,
    const std::optional<at::Tensor>& compress_bias, const at::Tensor& generate_weight,
    const std::optional<at::Tensor>& generate_bias, const Dims& dims) {
  auto compressed = compress(x, compress_weight, compress_bias, dims);
  auto logits = at::linear(compressed, generate_weight, generate_bias);
  return {compressed, logits};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> compress_and_generate_backward(
    const at::Tensor& grad_logits, const at::Tensor& compressed, const at::Tensor& x,
    const at::Tensor& compress_weight, const at::Tensor& generate_weight, const Dims& dims,
    at::Tensor& grad_x) {
  const auto [token_dim, N, D, S, d] = dims;
  const int64_t rows = grad_logits.size(0) * S;
  auto grad_logits_2d = grad_logits.reshape({rows, N * N});
  auto grad_generate_weight = grad_logits_2d.t().mm(compressed.reshape({rows, N * d}));
  auto grad_generate_bias = grad_logits_2d.sum(0);
  auto [grad_compress_weight, grad_compress_bias] = compress_backward(
      at::matmul(grad_logits, generate_weight), x, compress_weight, dims, grad_x);
  return {grad_compress_weight, grad_compress_bias, grad_generate_weight, grad_generate_bias};
}

// ---- Meta kernels ------------------------------------------------------------------------

namespace {

template <bool keep>
auto dynamixer_meta(const Dims& dims, const at::Tensor& x) {
  return op_outputs<keep>(at::empty_symint(x.sym_sizes(), x.options()),
                          at::empty_symint(compressed_shape(x, dims), x.options()),
                          at::empty_symint(weights_shape(x, dims), x.options()));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> dynamixer_backward_meta(
    const Dims& dims, const at::Tensor& grad_out, const at::Tensor& x,
    const at::Tensor& compress_weight, const std::optional<at::Tensor>& compress_bias,
    const at::Tensor& generate_weight) {
  return {at::empty_symint(x.sym_sizes(), x.options()),
          at::empty_like(compress_weight, at::MemoryFormat::Contiguous),
          at::empty({dims.S * dims.d}, x.options()),
          at::empty_like(generate_weight, at::MemoryFormat::Contiguous),
          at::empty({dims.N * dims.N}, x.options())};
}

}  // namespace

// ---- registration ------------------------------------------------------------------------

TORCH_LIBRARY_FRAGMENT(mlpmix, m) {
  m.def(
      "dynamixer(Tensor x, Tensor compress_weight, Tensor? compress_bias, "
      "Tensor generate_weight, Tensor? generate_bias, int num_segments, int dim=-2) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  // Internal: the forward that also returns, for the backward, Z, the compressed input
  // regrouped per segment (B', S, N*d) as `compress` makes it, and P, the mixing weights
  // (B', S, N*N), the softmax over input tokens i of the logits at flat index i*N + j.
  m.def(
      "_dynamixer_forward(Tensor x, Tensor compress_weight, Tensor? compress_bias, "
      "Tensor generate_weight, Tensor? generate_bias, int num_segments, int dim=-2) "
      "-> (Tensor out, Tensor compressed, Tensor weights)",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "dynamixer_backward(Tensor grad_out, Tensor x, Tensor compress_weight, "
      "Tensor? compress_bias, Tensor generate_weight, Tensor? generate_bias, "
      "int num_segments, int dim, Tensor? compressed=None, Tensor? weights=None) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
}

TORCH_LIBRARY_IMPL(mlpmix, Meta, m) {
  m.impl("dynamixer", checked<"dynamixer", check_inputs, dynamixer_meta<false>>);
  m.impl("_dynamixer_forward", checked<"_dynamixer_forward", check_inputs, dynamixer_meta<true>>);
  m.impl("dynamixer_backward",
         checked<"dynamixer_backward", check_backward, dynamixer_backward_meta>);
}

// On CPU the compressed input Z (S*d/D the size of x) and the mixing weights P (N*S/D times
// x) are kept: the backward then runs neither the compression nor the generation GEMM, nor
// the softmax. CUDA recomputes them.
TORCH_LIBRARY_IMPL(mlpmix, Autograd, m) {
  using Autograd = mlpmix::Autograd<"dynamixer", &dynamixer, &dynamixer_backward, 2>;
  m.impl("dynamixer", &Autograd::forward);
  m.impl("dynamixer_backward", &Autograd::backward);
}

MLPMIX_AUTOCAST(dynamixer)

}  // namespace dynamixer_impl
}  // namespace mlpmix
