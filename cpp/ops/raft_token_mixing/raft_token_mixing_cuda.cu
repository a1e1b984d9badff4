// mlpmix::raft_token_mixing CUDA kernels: the LayerNorm over C written straight into the
// regrouped rows layout (forward) and its backward read from it, one block per (b, line)
// of N tokens along the mixed axis, x read in place through its strides. The MLP steps
// (two Linear layers on cuBLAS, exact GELU, the ungrouping) are the device-agnostic ATen
// code of raft_token_mixing.cpp. Statistics accumulate in float for float16/bfloat16 and
// are reduced in a fixed order (warp shuffles, no atomics): bitwise reproducible.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/checked.h"
#include "common/cuda_launch.cuh"
#include "common/phase.h"
#include "common/dtypes.h"
#include "ops/raft_token_mixing/raft_token_mixing.h"
#include "ops/raft_token_mixing/raft_token_mixing_kernels.cuh"

namespace mlpmix::raft_token_mixing_impl {
namespace {

// The LayerNorm of x in the rows layout, (B*o*M, r*N): `normed` with the affine applied
// (the MLP input); for the backward also `normalized` without it and the per-token mean
// and 1/std, (B*M, N), in the accumulation type.
struct NormalizedRows {
  at::Tensor normed, normalized, mean, rstd;
};

NormalizedRows normalize_into_rows(const at::Tensor& x, const at::Tensor& norm_weight,
                                   const at::Tensor& norm_bias, double eps, const Dims& d,
                                   bool for_backward) {
  const int64_t batch = x.size(0), lines = batch * d.M;
  NormalizedRows result;
  result.normed = at::empty({batch * d.o * d.M, d.r * d.N}, x.options());
  if (for_backward) {
    result.normalized = at::empty_like(result.normed);
    const auto statistics = x.options().dtype(at::toOpMathType(x.scalar_type()));
    result.mean = at::empty({lines, d.N}, statistics);
    result.rstd = at::empty({lines, d.N}, statistics);
  }
  if (lines == 0) {
    return result;
  }
  const auto weight = norm_weight.contiguous();
  const auto bias = norm_bias.contiguous();
  MLPMIX_DISPATCH_CUDA_FLOATING(x.scalar_type(), "mlpmix_raft_normalize_into_rows_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    normalize_into_rows_kernel<scalar_t>
        <<<cuda::blocks_for(lines), cuda::kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            x.const_data_ptr<scalar_t>(), token_grid(x, d), weight.const_data_ptr<scalar_t>(),
            bias.const_data_ptr<scalar_t>(), result.normed.mutable_data_ptr<scalar_t>(),
            for_backward ? result.normalized.mutable_data_ptr<scalar_t>() : nullptr,
            for_backward ? result.mean.mutable_data_ptr<acc_t>() : nullptr,
            for_backward ? result.rstd.mutable_data_ptr<acc_t>() : nullptr, lines,
            rows_index(d), d.C, static_cast<acc_t>(eps));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return result;
}

at::Tensor normalize_backward_from_rows(const at::Tensor& grad_rows_any, const at::Tensor& x,
                                        const NormalizedRows& rows, const Dims& d) {
  const int64_t batch = x.size(0), lines = batch * d.M;
  auto grad_x = at::empty({batch, d.H, d.W, d.C}, x.options());
  if (lines == 0) {
    return grad_x;
  }
  const auto grad_rows = grad_rows_any.contiguous();
  MLPMIX_DISPATCH_CUDA_FLOATING(x.scalar_type(), "mlpmix_raft_normalize_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    normalize_backward_kernel<scalar_t>
        <<<cuda::blocks_for(lines), cuda::kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            grad_rows.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
            token_grid(x, d), rows.mean.const_data_ptr<acc_t>(),
            rows.rstd.const_data_ptr<acc_t>(), grad_x.mutable_data_ptr<scalar_t>(),
            token_grid(grad_x, d), lines, rows_index(d), d.C);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_x;
}

// ---- the kernels registered at CUDA ------------------------------------------------------

at::Tensor raft_token_mixing_cuda(const Dims& dims, const at::Tensor& x,
                                  const at::Tensor& norm_weight, const at::Tensor& norm_bias,
                                  const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                                  const at::Tensor& fc2_weight, const at::Tensor& fc2_bias,
                                  int64_t raft_size, int64_t dim, double eps) {
  const c10::cuda::CUDAGuard guard(x.device());
  auto rows = phase("raft_token_mixing.layer_norm", [&] {
    return normalize_into_rows(x, norm_weight, norm_bias, eps, dims, false);
  });
  return phase("raft_token_mixing.mlp", [&] {
    return mix_rows(rows.normed, fc1_weight, fc1_bias, fc2_weight, fc2_bias, x.size(0), dims);
  });
}

// A kept fc1 pre-activation is not taken: the autograd keeps none on CUDA (cuBLAS
// recomputes it).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
raft_token_mixing_backward_cuda(const Dims& dims, const at::Tensor& grad_out,
                                const at::Tensor& x, const at::Tensor& norm_weight,
                                const at::Tensor& norm_bias, const at::Tensor& fc1_weight,
                                const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
                                const at::Tensor& fc2_bias, int64_t raft_size, int64_t dim,
                                double eps) {
  const c10::cuda::CUDAGuard guard(x.device());
  auto rows = phase("raft_token_mixing_backward.layer_norm", [&] {
    return normalize_into_rows(x, norm_weight, norm_bias, eps, dims, true);
  });
  auto [grad_normalized, gnw, gnb, g1w, g1b, g2w, g2b] =
      phase("raft_token_mixing_backward.mlp", [&] {
        return mix_rows_backward(grad_out, rows.normalized, rows.normed, norm_weight,
                                 fc1_weight, fc1_bias, fc2_weight, fc2_bias, x.size(0), dims);
      });
  auto grad_x = phase("raft_token_mixing_backward.layer_norm_backward", [&] {
    return normalize_backward_from_rows(grad_normalized, x, rows, dims);
  });
  return {grad_x, gnw, gnb, g1w, g1b, g2w, g2b};
}

}  // namespace

TORCH_LIBRARY_IMPL(mlpmix, CUDA, m) {
  m.impl("raft_token_mixing",
         checked<"raft_token_mixing", check_inputs, raft_token_mixing_cuda>);
  m.impl("raft_token_mixing_backward",
         checked<"raft_token_mixing_backward", check_backward, raft_token_mixing_backward_cuda>);
}

}  // namespace mlpmix::raft_token_mixing_impl
