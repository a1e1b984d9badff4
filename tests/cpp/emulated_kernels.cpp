// mlpmix's CUDA kernels built for the CPU through tests/cpp/cuda_emulation.h, registered as
// torch.ops.mlpmix_emulated.* for tests/test_cuda_emulated.py. Each op launches one kernel
// the way the op's .cu file does (same indexers, same arguments) on CPU tensors; `blocks`
// is the grid size (the kernels loop over the work items beyond it).
#include <ATen/ATen.h>
#include <torch/library.h>

#include "common/dtypes.h"
#include "cuda_emulation.h"
#include "ops/dynamixer/dynamixer_kernels.cuh"
#include "ops/raft_token_mixing/raft_token_mixing_kernels.cuh"

namespace {

constexpr unsigned int kThreads = mlpmix::cuda::kThreads;

mlpmix::dynamixer_impl::Dims dynamixer_dims(const at::Tensor& x, int64_t S, int64_t token_dim) {
  return {token_dim, x.size(token_dim), x.size(-1), S, /*d=*/0};
}

// out = the per-segment mixing of x by softmax-over-inputs of logits (B', S, N*N).
at::Tensor dynamixer_mix(const at::Tensor& logits, const at::Tensor& x, int64_t S,
                         int64_t token_dim, int64_t blocks, bool aten) {
  const auto dims = dynamixer_dims(x, S, token_dim);
  auto out = at::empty(x.sizes(), x.options());
  if (aten) {
    mlpmix::dynamixer_impl::mix_aten(logits, x, out, dims);
    return out;
  }
  const auto input = mlpmix::index_sequences(x, token_dim);
  const auto out_index = mlpmix::sequence_indexer(out, token_dim).value();
  MLPMIX_DISPATCH_CUDA_FLOATING(x.scalar_type(), "mix", [&] {
    cuda_emulation::launch(blocks, kThreads, [&] {
      mlpmix::dynamixer_impl::mix_kernel<scalar_t>(
          logits.const_data_ptr<scalar_t>(), input.tensor.const_data_ptr<scalar_t>(),
          input.index, out.mutable_data_ptr<scalar_t>(), out_index, logits.size(0) * S,
          dims.N, S, dims.D / S);
    });
  });
  return out;
}

// (grad_x through the mixing only, grad_logits).
std::tuple<at::Tensor, at::Tensor> dynamixer_mix_backward(const at::Tensor& logits,
                                                          const at::Tensor& x,
                                                          const at::Tensor& grad_out, int64_t S,
                                                          int64_t token_dim, int64_t blocks,
                                                          bool aten) {
  const auto dims = dynamixer_dims(x, S, token_dim);
  auto grad_x = at::empty(x.sizes(), x.options());
  auto grad_logits = at::empty_like(logits);
  if (aten) {
    mlpmix::dynamixer_impl::mix_backward_aten(logits, x, grad_out, grad_x, grad_logits, dims);
    return {grad_x, grad_logits};
  }
  const auto input = mlpmix::index_sequences(x, token_dim);
  const auto upstream = mlpmix::index_sequences(grad_out, token_dim);
  const auto grad_x_index = mlpmix::sequence_indexer(grad_x, token_dim).value();
  MLPMIX_DISPATCH_CUDA_FLOATING(x.scalar_type(), "mix_backward", [&] {
    cuda_emulation::launch(blocks, kThreads, [&] {
      mlpmix::dynamixer_impl::mix_backward_kernel<scalar_t>(
          logits.const_data_ptr<scalar_t>(), input.tensor.const_data_ptr<scalar_t>(),
          input.index, upstream.tensor.const_data_ptr<scalar_t>(), upstream.index,
          grad_x.mutable_data_ptr<scalar_t>(), grad_x_index,
          grad_logits.mutable_data_ptr<scalar_t>(), logits.size(0) * S, dims.N, S,
          dims.D / S);
    });
  });
  return {grad_x, grad_logits};
}

mlpmix::raft_token_mixing_impl::Dims raft_dims(const at::Tensor& x, int64_t r, int64_t axis) {
  const int64_t H = x.size(1), W = x.size(2), C = x.size(3);
  return {axis, H, W, C, axis == 1 ? H : W, axis == 1 ? W : H, r, C / r, /*hidden=*/0};
}

// (normed, normalized, mean, rstd): the LayerNorm of x in the rows layout (B*o*M, r*N).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> raft_normalize(
    const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps, int64_t r,
    int64_t axis, int64_t blocks) {
  using namespace mlpmix::raft_token_mixing_impl;
  const auto d = raft_dims(x, r, axis);
  const int64_t lines = x.size(0) * d.M;
  auto normed = at::empty({x.size(0) * d.o * d.M, d.r * d.N}, x.options());
  auto normalized = at::empty_like(normed);
  const auto statistics = x.options().dtype(at::toOpMathType(x.scalar_type()));
  auto mean = at::empty({lines, d.N}, statistics);
  auto rstd = at::empty({lines, d.N}, statistics);
  MLPMIX_DISPATCH_CUDA_FLOATING(x.scalar_type(), "normalize", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    cuda_emulation::launch(blocks, kThreads, [&] {
      normalize_into_rows_kernel<scalar_t>(
          x.const_data_ptr<scalar_t>(), token_grid(x, d), weight.const_data_ptr<scalar_t>(),
          bias.const_data_ptr<scalar_t>(), normed.mutable_data_ptr<scalar_t>(),
          normalized.mutable_data_ptr<scalar_t>(), mean.mutable_data_ptr<acc_t>(),
          rstd.mutable_data_ptr<acc_t>(), lines, rows_index(d), d.C, static_cast<acc_t>(eps));
    });
  });
  return {normed, normalized, mean, rstd};
}

// grad_x (B, H, W, C) from the gradient of the normalised x in the rows layout.
at::Tensor raft_normalize_backward(const at::Tensor& grad_rows, const at::Tensor& x,
                                   const at::Tensor& mean, const at::Tensor& rstd, int64_t r,
                                   int64_t axis, int64_t blocks) {
  using namespace mlpmix::raft_token_mixing_impl;
  const auto d = raft_dims(x, r, axis);
  auto grad_x = at::empty(x.sizes(), x.options());
  MLPMIX_DISPATCH_CUDA_FLOATING(x.scalar_type(), "backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    cuda_emulation::launch(blocks, kThreads, [&] {
      normalize_backward_kernel<scalar_t>(
          grad_rows.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), token_grid(x, d),
          mean.const_data_ptr<acc_t>(), rstd.const_data_ptr<acc_t>(),
          grad_x.mutable_data_ptr<scalar_t>(), token_grid(grad_x, d), x.size(0) * d.M,
          rows_index(d), d.C);
    });
  });
  return grad_x;
}

}  // namespace

TORCH_LIBRARY(mlpmix_emulated, m) {
  m.def("dynamixer_mix", &dynamixer_mix);
  m.def("dynamixer_mix_backward", &dynamixer_mix_backward);
  m.def("raft_normalize", &raft_normalize);
  m.def("raft_normalize_backward", &raft_normalize_backward);
}
