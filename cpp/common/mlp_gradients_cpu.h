// The parameter gradients of a LayerNorm + fc2(GELU(fc1(.))) branch as the fused CPU backward
// kernels (raft_token_mixing, channel_mlp) accumulate them: one share per chunk of tiles
// (one chunk per thread), summed in chunk order at the end, so the result is deterministic
// for a given thread count.
#pragma once

#include <ATen/ATen.h>

#include <tuple>
#include <vector>

namespace mlpmix {

struct MlpGradients {
  at::Tensor fc1_weight, fc2_weight;  // (hidden, features), (features, hidden): by GEMMs
  std::vector<double> fc1_bias, fc2_bias, norm_weight, norm_bias;

  MlpGradients() = default;
  // Zero vectors; the weight matrices are uninitialised (the first tile's GEMM has beta 0).
  MlpGradients(int64_t hidden, int64_t features, int64_t channels,
               const at::TensorOptions& options)
      : fc1_weight(at::empty({hidden, features}, options)),
        fc2_weight(at::empty({features, hidden}, options)),
        fc1_bias(hidden, 0.0),
        fc2_bias(features, 0.0),
        norm_weight(channels, 0.0),
        norm_bias(channels, 0.0) {}
};

// (norm_weight, norm_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias) summed over the
// shares in order, in `dtype` (the shares' weight matrices may be wider: float32 for
// bfloat16). Adds into the first share's weight matrices.
inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
sum_gradients(std::vector<MlpGradients>& shares, at::ScalarType dtype) {
  auto fc1_weight = shares[0].fc1_weight;
  auto fc2_weight = shares[0].fc2_weight;
  for (size_t k = 1; k < shares.size(); ++k) {
    fc1_weight.add_(shares[k].fc1_weight);
    fc2_weight.add_(shares[k].fc2_weight);
  }
  auto sum_vectors = [&](std::vector<double> MlpGradients::*member) {
    std::vector<double> total = shares[0].*member;
    for (size_t k = 1; k < shares.size(); ++k) {
      for (size_t e = 0; e < total.size(); ++e) {
        total[e] += (shares[k].*member)[e];
      }
    }
    return at::tensor(total, at::dtype(at::kDouble)).to(dtype);
  };
  return {sum_vectors(&MlpGradients::norm_weight), sum_vectors(&MlpGradients::norm_bias),
          fc1_weight.to(dtype), sum_vectors(&MlpGradients::fc1_bias),
          fc2_weight.to(dtype), sum_vectors(&MlpGradients::fc2_bias)};
}

// The backward's result for an input without tokens: grad_x as given (empty) and zero
// parameter gradients, in the order the ops return them.
inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                  at::Tensor>
no_token_gradients(const at::Tensor& grad_x, const at::Tensor& norm_weight,
                   const at::Tensor& norm_bias, const at::Tensor& fc1_weight,
                   const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
                   const at::Tensor& fc2_bias) {
  const auto zeros = [](const at::Tensor& t) {
    return at::zeros_like(t, at::MemoryFormat::Contiguous);
  };
  return {grad_x,           zeros(norm_weight), zeros(norm_bias), zeros(fc1_weight),
          zeros(fc1_bias), zeros(fc2_weight),  zeros(fc2_bias)};
}

}  // namespace mlpmix
