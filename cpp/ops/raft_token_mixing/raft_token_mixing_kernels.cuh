// The raft_token_mixing CUDA kernels (see raft_token_mixing_cuda.cu). Device code uses only
// common/cuda_device.cuh, so the CPU tests compile it with an emulation of the CUDA built-ins
// (tests/cpp/cuda_emulation.h).
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>

#include "common/cuda_device.cuh"
#include "common/kernel_math.h"
#include "ops/raft_token_mixing/raft_token_mixing.h"

namespace mlpmix::raft_token_mixing_impl {

constexpr int kWarps = cuda::kThreads / cuda::kWarpSize;
constexpr int64_t kChunk = 32;  // tokens of a line whose statistics a block holds at once

// Element offsets into a (B, H, W, C) tensor of token n of line (b, m) along the mixed axis.
struct TokenGrid {
  int64_t batch_stride, token_stride, line_stride, channel_stride;

  __device__ int64_t offset(int64_t b, int64_t m, int64_t n) const {
    return b * batch_stride + m * line_stride + n * token_stride;
  }
};

inline TokenGrid token_grid(const at::Tensor& t, const Dims& d) {
  return {t.stride(0), t.stride(d.axis), t.stride(3 - d.axis), t.stride(3)};
}

// Element offsets into the contiguous rows buffer (B, o, M, r, N): channel c = i*o + j of
// token (b, m, n) is row (b, j, m), feature i*N + n.
struct RowsIndex {
  int64_t o, M, r, N;

  __device__ int64_t offset(int64_t b, int64_t m, int64_t n, int64_t c) const {
    const int64_t i = c / o, j = c % o;
    return (((b * o + j) * M + m) * r + i) * N + n;
  }
};

inline RowsIndex rows_index(const Dims& d) { return {d.o, d.M, d.r, d.N}; }

// Runs body(line, b, m, n0, len) over the block's lines (b, m), strided over the grid, and
// over each line's runs of at most kChunk tokens [n0, n0 + len), whose statistics the block
// holds at once.
template <typename Body>
__device__ void for_each_chunk(int64_t lines, const RowsIndex& rows, const Body& body) {
  for (int64_t line = blockIdx.x; line < lines; line += gridDim.x) {
    const int64_t b = line / rows.M, m = line % rows.M;
    for (int64_t n0 = 0; n0 < rows.N; n0 += kChunk) {
      body(line, b, m, n0, rows.N - n0 < kChunk ? rows.N - n0 : kChunk);
    }
  }
}

// Per token: mean and 1/std over C (two passes, one warp per token), then the normalised
// value with (normed) and optionally without (normalized) the affine, into the rows layout.
// mean_out/rstd_out, (B*M, N), may be null.
template <typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
__global__ void __launch_bounds__(cuda::kThreads)
    normalize_into_rows_kernel(const scalar_t* __restrict__ x, TokenGrid grid,
                               const scalar_t* __restrict__ weight,
                               const scalar_t* __restrict__ bias, scalar_t* __restrict__ normed,
                               scalar_t* __restrict__ normalized, acc_t* __restrict__ mean_out,
                               acc_t* __restrict__ rstd_out, int64_t lines, RowsIndex rows,
                               int64_t C, acc_t eps) {
  __shared__ acc_t mean[kChunk], rstd[kChunk];
  const int warp = threadIdx.x / cuda::kWarpSize, lane = threadIdx.x % cuda::kWarpSize;
  const int64_t N = rows.N;
  for_each_chunk(lines, rows, [&](int64_t line, int64_t b, int64_t m, int64_t n0,
                                  int64_t len) {
    for (int64_t k = warp; k < len; k += kWarps) {
      const scalar_t* token = x + grid.offset(b, m, n0 + k);
      acc_t sum = 0;
      for (int64_t c = lane; c < C; c += cuda::kWarpSize) {
        sum += static_cast<acc_t>(token[c * grid.channel_stride]);
      }
      const acc_t mu = cuda::warp_sum(sum) / static_cast<acc_t>(C);
      acc_t squares = 0;
      for (int64_t c = lane; c < C; c += cuda::kWarpSize) {
        const acc_t centred = static_cast<acc_t>(token[c * grid.channel_stride]) - mu;
        squares += centred * centred;
      }
      const acc_t inverse = math::inverse_std(cuda::warp_sum(squares), C, eps);
      if (lane == 0) {
        mean[k] = mu;
        rstd[k] = inverse;
        if (mean_out != nullptr) {
          mean_out[line * N + n0 + k] = mu;
          rstd_out[line * N + n0 + k] = inverse;
        }
      }
    }
    __syncthreads();
    // Token index fastest: the N tokens of a row are written contiguously.
    for (int64_t t = threadIdx.x; t < C * len; t += blockDim.x) {
      const int64_t c = t / len, k = t % len;
      const acc_t value = math::normalize(
          static_cast<acc_t>(x[grid.offset(b, m, n0 + k) + c * grid.channel_stride]),
          mean[k], rstd[k]);
      const int64_t offset = rows.offset(b, m, n0 + k, c);
      normed[offset] = static_cast<scalar_t>(value * static_cast<acc_t>(weight[c]) +
                                             static_cast<acc_t>(bias[c]));
      if (normalized != nullptr) {
        normalized[offset] = static_cast<scalar_t>(value);
      }
    }
    __syncthreads();  // mean and rstd are overwritten by the next chunk
  });
}

// LayerNorm backward without the affine: from grad_rows, the gradient of the normalised x
// in the rows layout, to grad_x. The normalised values are recomputed from x, mean and
// rstd in the accumulation type.
template <typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
__global__ void __launch_bounds__(cuda::kThreads)
    normalize_backward_kernel(const scalar_t* __restrict__ grad_rows,
                              const scalar_t* __restrict__ x, TokenGrid grid,
                              const acc_t* __restrict__ mean_in,
                              const acc_t* __restrict__ rstd_in, scalar_t* __restrict__ grad_x,
                              TokenGrid grad_grid, int64_t lines, RowsIndex rows, int64_t C) {
  __shared__ acc_t mean[kChunk], rstd[kChunk], grad_mean[kChunk], grad_dot_normalized[kChunk];
  const int warp = threadIdx.x / cuda::kWarpSize, lane = threadIdx.x % cuda::kWarpSize;
  const int64_t N = rows.N;
  for_each_chunk(lines, rows, [&](int64_t line, int64_t b, int64_t m, int64_t n0,
                                  int64_t len) {
    for (int64_t k = warp; k < len; k += kWarps) {
      const int64_t n = n0 + k;
      const acc_t mu = mean_in[line * N + n], inverse = rstd_in[line * N + n];
      const scalar_t* token = x + grid.offset(b, m, n);
      acc_t grad_sum = 0, grad_dot = 0;
      for (int64_t c = lane; c < C; c += cuda::kWarpSize) {
        const acc_t grad = static_cast<acc_t>(grad_rows[rows.offset(b, m, n, c)]);
        grad_sum += grad;
        grad_dot += grad * math::normalize(
                               static_cast<acc_t>(token[c * grid.channel_stride]), mu, inverse);
      }
      grad_sum = cuda::warp_sum(grad_sum);
      grad_dot = cuda::warp_sum(grad_dot);
      if (lane == 0) {
        mean[k] = mu;
        rstd[k] = inverse;
        grad_mean[k] = grad_sum / static_cast<acc_t>(C);
        grad_dot_normalized[k] = grad_dot / static_cast<acc_t>(C);
      }
    }
    __syncthreads();
    // Channel fastest: grad_x is written along its channels.
    for (int64_t t = threadIdx.x; t < len * C; t += blockDim.x) {
      const int64_t k = t / C, c = t % C, n = n0 + k;
      const acc_t normalized = math::normalize(
          static_cast<acc_t>(x[grid.offset(b, m, n) + c * grid.channel_stride]), mean[k],
          rstd[k]);
      const acc_t grad = static_cast<acc_t>(grad_rows[rows.offset(b, m, n, c)]);
      grad_x[grad_grid.offset(b, m, n) + c * grad_grid.channel_stride] =
          static_cast<scalar_t>(math::layer_norm_input_grad(
              rstd[k], grad, grad_mean[k], normalized, grad_dot_normalized[k]));
    }
    __syncthreads();  // the shared statistics are overwritten by the next chunk
  });
}

}  // namespace mlpmix::raft_token_mixing_impl
