// Internals of the raft_token_mixing operator shared by its CPU, CUDA and Meta kernels.
//
// Kernels never regroup x itself: the LayerNorm is written straight into the "rows" buffer
// (B, o, M, r, N), contiguous, where N is the mixed axis (H or W), M the other spatial axis,
// o = C / r the raft count and r the raft size. Its (B*o*M, r*N) matrix view holds one
// MLP input row per (b, j, m) with feature i*N + n, i.e. the spec's regrouping
// `b h w (r o) -> b o w (r h)` (vertical) or `b h w (r o) -> b o h (r w)` (horizontal).
// mix_rows / mix_rows_backward run the MLP on that buffer with ATen ops (any device). The
// CPU kernels (raft_token_mixing_cpu.cpp) instead fuse the whole branch per tile of lines,
// in a transposed layout of their own, and keep the fc1 pre-activation for the backward
// (_raft_token_mixing_forward).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace mlpmix::raft_token_mixing_impl {

// Sizes of one call, all validated.
struct Dims {
  int64_t axis;    // axis of x mixed: 1 (H, vertical) or 2 (W, horizontal)
  int64_t H, W;    // token grid
  int64_t C;       // channels
  int64_t N;       // tokens mixed (size of `axis`)
  int64_t M;       // size of the other spatial axis
  int64_t r;       // raft size
  int64_t o;       // rafts, C / r
  int64_t hidden;  // MLP hidden width, fc1_weight.size(0)
};

// Validates every argument (rank, dtype, device, shapes) with messages naming it.
Dims check_inputs(const char* op, const at::Tensor& x, const at::Tensor& norm_weight,
                  const at::Tensor& norm_bias, const at::Tensor& fc1_weight,
                  const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
                  const at::Tensor& fc2_bias, int64_t raft_size, int64_t dim, double eps);

// The backward's checks: the inputs, grad_out against x and, when given, the kept fc1
// pre-activation (B*M, hidden, o).
Dims check_backward(const char* op, const at::Tensor& grad_out, const at::Tensor& x,
                    const at::Tensor& norm_weight, const at::Tensor& norm_bias,
                    const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                    const at::Tensor& fc2_weight, const at::Tensor& fc2_bias,
                    int64_t raft_size, int64_t dim, double eps,
                    const std::optional<at::Tensor>& hidden);

// Steps 3-4 of spec 1.1 with ATen ops (any device), given the LayerNorm output (affine
// applied) in the rows layout. Returns the branch, contiguous, shaped like x.
at::Tensor mix_rows(const at::Tensor& normed_rows, const at::Tensor& fc1_weight,
                    const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
                    const at::Tensor& fc2_bias, int64_t batch, const Dims& dims);

// Backward of the LayerNorm affine and mix_rows, given the normalised x before (`normalized`)
// and after (`normed`) the affine, both in the rows layout: returns the gradient with
// respect to normalized_rows and those of norm_weight, norm_bias, fc1_weight, fc1_bias,
// fc2_weight, fc2_bias.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
mix_rows_backward(const at::Tensor& grad_out, const at::Tensor& normalized_rows,
                  const at::Tensor& normed_rows, const at::Tensor& norm_weight,
                  const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                  const at::Tensor& fc2_weight, const at::Tensor& fc2_bias, int64_t batch,
                  const Dims& dims);

}  // namespace mlpmix::raft_token_mixing_impl
