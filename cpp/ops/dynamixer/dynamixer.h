// Internals of the dynamixer operator shared by its CPU, CUDA and Meta kernels.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace mlpmix::dynamixer_impl {

// Sizes of one call, all validated: x is (..., N at token_dim, ..., D).
struct Dims {
  int64_t token_dim;  // wrapped, never the channel axis
  int64_t N;          // tokens
  int64_t D;          // channels
  int64_t S;          // segments
  int64_t d;          // reduced dim per segment
};

// Validates every argument (rank, dtype, device, shapes) with messages naming it.
Dims check_inputs(const char* op, const at::Tensor& x, const at::Tensor& compress_weight,
                  const std::optional<at::Tensor>& compress_bias,
                  const at::Tensor& generate_weight,
                  const std::optional<at::Tensor>& generate_bias, int64_t num_segments,
                  int64_t dim);

// The backward's checks: the inputs, grad_out against x and, when given, what the forward
// kept: the compressed input (B', S, N*d) and the mixing weights (B', S, N*N).
Dims check_backward(const char* op, const at::Tensor& grad_out, const at::Tensor& x,
                    const at::Tensor& compress_weight,
                    const std::optional<at::Tensor>& compress_bias,
                    const at::Tensor& generate_weight,
                    const std::optional<at::Tensor>& generate_bias, int64_t num_segments,
                    int64_t dim, const std::optional<at::Tensor>& compressed,
                    const std::optional<at::Tensor>& weights);

// The matrix products of the compression and its backward: ATen's (any device) or those of
// common/gemm_cpu.h (the CPU kernels).
struct MatrixProducts {
  // x (M, K) @ weight (N, K)^T + bias
  at::Tensor (*linear)(const at::Tensor& x, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias);
  // a @ b
  at::Tensor (*product)(const at::Tensor& a, const at::Tensor& b);
  // out += a @ b, out contiguous
  void (*add_product)(const at::Tensor& out, const at::Tensor& a, const at::Tensor& b);
};
extern const MatrixProducts kAtenProducts;

// Step 1 of spec 2.1: Z, the compressed input regrouped per segment, (B', S, N*d),
// contiguous.
at::Tensor compress(const at::Tensor& x, const at::Tensor& compress_weight,
                    const std::optional<at::Tensor>& compress_bias, const Dims& dims,
                    const MatrixProducts& products = kAtenProducts);

// Backward of compress given grad_compressed (B', S, N*d): adds the gradient of x into
// grad_x (contiguous, shaped like x) and returns (grad_compress_weight, grad_compress_bias).
std::tuple<at::Tensor, at::Tensor> compress_backward(
    const at::Tensor& grad_compressed, const at::Tensor& x, const at::Tensor& compress_weight,
    const Dims& dims, at::Tensor& grad_x, const MatrixProducts& products = kAtenProducts);

// Steps 1-2 of spec 2.1 with ATen GEMMs (any device): returns (Z, G) where
// Z is the compressed input regrouped per segment, (B', S, N*d), and G the mixing logits,
// (B', S, N*N) with flat index i*N + j (i input token, j output token).
std::tuple<at::Tensor, at::Tensor> compress_and_generate(
    const at::Tensor& x, const at::Tensor& compress_weight,
    const std::optional<at::Tensor>& compress_bias, const at::Tensor& generate_weight,
    const std::optional<at::Tensor>& generate_bias, const Dims& dims);

// Backward of compress_and_generate given grad_logits (B', S, N*N). Adds the gradient that
// flows through the compression into grad_x (contiguous, shaped like x) and returns
// (grad_compress_weight, grad_compress_bias, grad_generate_weight, grad_generate_bias).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> compress_and_generate_backward(
    const at::Tensor& grad_logits, const at::Tensor& compressed, const at::Tensor& x,
    const at::Tensor& compress_weight, const at::Tensor& generate_weight, const Dims& dims,
    at::Tensor& grad_x);

}  // namespace mlpmix::dynamixer_impl
