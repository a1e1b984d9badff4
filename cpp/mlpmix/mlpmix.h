// mlpmix public C++ API: one function per operator, each calling through the PyTorch
// dispatcher (so autograd, CPU/CUDA/Meta dispatch and tracing all apply).
//
// Linking libmlpmix_ops registers the operators torch.ops.mlpmix.* in the process
// (TorchScript and AOTInductor models that use them then load). Including this header
// also keeps the library linked under --as-needed through the anchor below.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <tuple>

namespace mlpmix {

// Returns the number of operators the library registers. Referencing it keeps the
// library (and so its registrations) linked into an application.
int64_t registration_anchor();

// DynaMixer operation (spec section 2.1, steps 1-4): mixes the tokens of `x` along `dim`.
at::Tensor dynamixer(const at::Tensor& x, const at::Tensor& compress_weight,
                     const std::optional<at::Tensor>& compress_bias,
                     const at::Tensor& generate_weight,
                     const std::optional<at::Tensor>& generate_bias,
                     int64_t num_segments, int64_t dim = -2);

// Gradients of dynamixer: (grad_x, grad_compress_weight, grad_compress_bias,
// grad_generate_weight, grad_generate_bias). Bias gradients are returned even when the
// bias is absent. `compressed` and `weights`, when given, are the forward's compressed
// input and mixing weights as the internal op `_dynamixer_forward` returns them (the CPU
// kernel then does not recompute them).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> dynamixer_backward(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& compress_weight,
    const std::optional<at::Tensor>& compress_bias, const at::Tensor& generate_weight,
    const std::optional<at::Tensor>& generate_bias, int64_t num_segments, int64_t dim,
    const std::optional<at::Tensor>& compressed = std::nullopt,
    const std::optional<at::Tensor>& weights = std::nullopt);

// Raft token mixing branch (spec section 1.1, steps 1-3 and the ungrouping of step 4,
// without the residual add) on channels-last x (B, H, W, C): LayerNorm over C, regroup
// with raft size r (channel c = i*o + j), fc2(GELU(fc1(.))), ungroup. `dim` is 1 (or -3)
// to mix along H, 2 (or -2) to mix along W.
at::Tensor raft_token_mixing(const at::Tensor& x, const at::Tensor& norm_weight,
                             const at::Tensor& norm_bias, const at::Tensor& fc1_weight,
                             const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
                             const at::Tensor& fc2_bias, int64_t raft_size, int64_t dim,
                             double eps = 1e-5);

// Gradients of raft_token_mixing: (grad_x, grad_norm_weight, grad_norm_bias,
// grad_fc1_weight, grad_fc1_bias, grad_fc2_weight, grad_fc2_bias). `hidden` is the fc1
// pre-activation saved by the internal op _raft_token_mixing_forward (the autograd kernel
// passes it on CPU); without it the backward recomputes it.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
raft_token_mixing_backward(const at::Tensor& grad_out, const at::Tensor& x,
                           const at::Tensor& norm_weight, const at::Tensor& norm_bias,
                           const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                           const at::Tensor& fc2_weight, const at::Tensor& fc2_bias,
                           int64_t raft_size, int64_t dim, double eps,
                           const std::optional<at::Tensor>& hidden = std::nullopt);

// Channel-mixing branch (RaftMLP spec 1.1 channel mixing, DynaMixer spec 2.3 MLP(LN2(x)),
// without the residual add) over the last axis of x (..., C): LayerNorm over C, then
// fc2(GELU(fc1(.))) with fc1_weight (hidden, C) and fc2_weight (C, hidden).
at::Tensor channel_mlp(const at::Tensor& x, const at::Tensor& norm_weight,
                       const at::Tensor& norm_bias, const at::Tensor& fc1_weight,
                       const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
                       const at::Tensor& fc2_bias, double eps = 1e-5);

// Gradients of channel_mlp: (grad_x, grad_norm_weight, grad_norm_bias, grad_fc1_weight,
// grad_fc1_bias, grad_fc2_weight, grad_fc2_bias). `hidden` is the fc1 pre-activation
// (T, hidden) saved by the internal op _channel_mlp_forward (the autograd kernel passes it);
// without it the backward recomputes it.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
channel_mlp_backward(const at::Tensor& grad_out, const at::Tensor& x,
                     const at::Tensor& norm_weight, const at::Tensor& norm_bias,
                     const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                     const at::Tensor& fc2_weight, const at::Tensor& fc2_bias, double eps,
                     const std::optional<at::Tensor>& hidden = std::nullopt);

// Cross-scale patch embedding (spec section 1.2) of x (B, Cin, H, W) into channels-last
// tokens (B, H/s, W/s, Cout), s = min(kernel_sizes). `weight` is (Cout, Cin*sum(k*k)) with
// features ordered (c, kh, kw) per kernel, kernels in list order.
at::Tensor cross_scale_embed(const at::Tensor& x, const at::Tensor& weight,
                             const std::optional<at::Tensor>& bias,
                             at::IntArrayRef kernel_sizes);

// Gradients of cross_scale_embed: (grad_x, grad_weight, grad_bias). The bias gradient is
// returned even when the bias is absent; with x_grad false, grad_x is not computed and an
// empty (0,) tensor stands in for it (images entering a model need no gradient).
std::tuple<at::Tensor, at::Tensor, at::Tensor> cross_scale_embed_backward(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, at::IntArrayRef kernel_sizes, bool x_grad = true);

// y = x weight^T + bias over the last axis of x (..., in_features), weight
// (out_features, in_features): nn.Linear's function, as an op so that the models'
// projections run on mlpmix's CPU GEMMs (oneDNN for float32 where it runs).
at::Tensor linear(const at::Tensor& x, const at::Tensor& weight,
                  const std::optional<at::Tensor>& bias);

// Gradients of linear: (grad_x, grad_weight, grad_bias); grad_bias is an empty (0,) tensor
// when `bias` is absent (it is only checked, not read).
std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_backward(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias);

// DynaMixer's re-weighting of its three branches h, w, c (B, ..., D), all of one shape:
// out = h * a_0 + w * a_1 + c * a_2, where a[b, d, :] is the softmax over k of
// fc2(GELU(fc1(m_b)))[d*3 + k] and m_b the mean of h + w + c over the sample's tokens.
// fc1_weight (hidden, D), fc1_bias (hidden,), fc2_weight (3*D, hidden), fc2_bias (3*D,).
at::Tensor reweight_branches(const at::Tensor& h, const at::Tensor& w, const at::Tensor& c,
                             const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                             const at::Tensor& fc2_weight, const at::Tensor& fc2_bias);

// Gradients of reweight_branches: (grad_h, grad_w, grad_c, grad_fc1_weight, grad_fc1_bias,
// grad_fc2_weight, grad_fc2_bias).
using ReweightBranchesGradients = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                                             at::Tensor, at::Tensor, at::Tensor>;
ReweightBranchesGradients reweight_branches_backward(
    const at::Tensor& grad_out, const at::Tensor& h, const at::Tensor& w, const at::Tensor& c,
    const at::Tensor& fc1_weight, const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
    const at::Tensor& fc2_bias);

}  // namespace mlpmix

// Every translation unit that includes this header references the anchor, so the linker
// cannot drop libmlpmix_ops (torchvision's pattern). Weak: one definition per program.
extern "C" __attribute__((weak)) int64_t (*const mlpmix_keep_registered)() =
    &mlpmix::registration_anchor;
