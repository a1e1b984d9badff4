// Internals of the channel_mlp operator shared by its kernels.
//
// channel_mlp is the channel-mixing branch of both model families, fc2(GELU(fc1(LN(x)))) per
// token over the last axis of x (..., C), without the residual add. Its T = numel / C tokens
// are taken in the row-major order of x's leading axes. channel_mlp.cpp computes it with ATen
// ops (any device); the CPU kernels (channel_mlp_cpu.cpp) fuse it per tile of tokens.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

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
                  const at::Tensor& fc2_bias, double eps);

// The backward's checks: the inputs, grad_out against x and, when given, the kept fc1
// pre-activation (T, hidden).
Dims check_backward(const char* op, const at::Tensor& grad_out, const at::Tensor& x,
                    const at::Tensor& norm_weight, const at::Tensor& norm_bias,
                    const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                    const at::Tensor& fc2_weight, const at::Tensor& fc2_bias, double eps,
                    const std::optional<at::Tensor>& hidden);

}  // namespace mlpmix::channel_mlp_impl
