// Internals of the reweight_branches operator shared by its kernels: DynaMixer's split
// attention over its three branches (spec section 2.2), out = sum_k branch_k * a_k with
//   a[b, d, :] = softmax_k(fc2(GELU(fc1(mean_t(h + w + c)[b])))[d*3 + k]).
// The full-size passes over the branches (B, ..., D) are the kernels' own; the re-weighting
// MLP on the (B, D) token means is small and runs on ATen for every device (its softmax over
// the three branches in the CPU kernel's own loop). reweight_branches.cpp also composes the
// whole op of ATen ops for every device but the CPU.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace mlpmix::reweight_branches_impl {

// The re-weighting MLP's parameters: fc1 (hidden, D), (hidden,); fc2 (3D, hidden), (3D,).
struct Mlp {
  const at::Tensor& fc1_weight;
  const at::Tensor& fc1_bias;
  const at::Tensor& fc2_weight;
  const at::Tensor& fc2_bias;
};

// Validates the branches h, w, c (B, ..., D), all of one shape with at least one token, and
// the MLP, with messages naming them.
void check_inputs(const char* op, const at::Tensor& h, const at::Tensor& w, const at::Tensor& c,
                  const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                  const at::Tensor& fc2_weight, const at::Tensor& fc2_bias);

// The backward's checks: the inputs and grad_out, shaped like h.
void check_backward(const char* op, const at::Tensor& grad_out, const at::Tensor& h,
                    const at::Tensor& w, const at::Tensor& c, const at::Tensor& fc1_weight,
                    const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
                    const at::Tensor& fc2_bias);

// The number of tokens per sample: the product of h's middle sizes.
int64_t tokens_of(const at::Tensor& h);

// The re-weighting MLP on the token sums (B, D) of h + w + c, up to the branch logits
// (B, 3D), whose column d*3 + k scores branch k of channel d.
struct MlpForward {
  at::Tensor mean, pre_activation, hidden, logits;
};
MlpForward mlp_forward(const at::Tensor& sums, int64_t tokens, const Mlp& mlp);

// The MLP's backward from the logits' gradient.
struct MlpGradients {
  at::Tensor grad_per_token;  // (B, D): the gradient of the mean over T, divided by T
  at::Tensor grad_fc1_weight, grad_fc1_bias, grad_fc2_weight, grad_fc2_bias;
};
MlpGradients mlp_backward(const MlpForward& f, const at::Tensor& grad_logits, int64_t tokens,
                          const Mlp& mlp);

using Gradients = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                             at::Tensor, at::Tensor>;

}  // namespace mlpmix::reweight_branches_impl
