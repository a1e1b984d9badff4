// Internals of the channel_mlp operator shared by its CPU, CUDA and Meta kernels.
//
// channel_mlp is the channel-mixing branch of both model families, fc2(GELU(fc1(LN(x)))) per
// token over the last axis of x (..., C), without the residual add. Its T = numel / C tokens
// are taken in the row-major order of x's leading axes. mlp / mlp_backward compute it with
// ATen ops (any device); the CPU kernels (channel_mlp_cpu.cpp) fuse it per tile of tokens.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>
#include <vector>

namespace mlpmix::channel_mlp_impl {

// Sizes of one call, all validated.
struct Dims {
  int64_t C;       // channels, x.size(-1)
  int64_t hidden;  // MLP hidden width, fc1_weight.size(0)
};

// Validates every argument (rank, dtype, device, shapes) with messages naming it.
Dims check_inputs(const char* op, const at::Tensor& x, const at::Tensor& norm_weight,
                  const at::Tensor& norm_bias, const at::Tensor& fc1_weight,
                  const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
                  const at::Tensor& fc2_bias);

// The backward also checks grad_out against x ...
void check_grad_out(const at::Tensor& grad_out, const at::Tensor& x);

// ... and, when given, the kept fc1 pre-activation: (T, hidden).
void check_hidden(const std::optional<at::Tensor>& hidden, const at::Tensor& x,
                  const Dims& dims);

// (T, hidden): the shape of the kept fc1 pre-activation.
std::vector<c10::SymInt> hidden_shape(const at::Tensor& x, const Dims& dims);

// The forward that also returns the fc1 pre-activation (bias added, before GELU) for the
// backward, through the dispatcher: `channel_mlp_forward`.
std::tuple<at::Tensor, at::Tensor> channel_mlp_forward(
    const at::Tensor& x, const at::Tensor& norm_weight, const at::Tensor& norm_bias,
    const at::Tensor& fc1_weight, const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
    const at::Tensor& fc2_bias, double eps);

// The branch with ATen ops (any device): out (contiguous, shaped like x) and, when
// `keep_hidden`, the fc1 pre-activation (T, hidden) (else an undefined tensor).
std::tuple<at::Tensor, at::Tensor> mlp(const at::Tensor& x, const at::Tensor& norm_weight,
                                       const at::Tensor& norm_bias,
                                       const at::Tensor& fc1_weight,
                                       const at::Tensor& fc1_bias,
                                       const at::Tensor& fc2_weight,
                                       const at::Tensor& fc2_bias, double eps,
                                       bool keep_hidden);

// Its backward with ATen ops: (grad_x, grad_norm_weight, grad_norm_bias, grad_fc1_weight,
// grad_fc1_bias, grad_fc2_weight, grad_fc2_bias); recomputes fc1 unless `hidden` is given.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
mlp_backward(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& norm_weight,
             const at::Tensor& norm_bias, const at::Tensor& fc1_weight,
             const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
             const at::Tensor& fc2_bias, double eps, const std::optional<at::Tensor>& hidden);

}  // namespace mlpmix::channel_mlp_impl
