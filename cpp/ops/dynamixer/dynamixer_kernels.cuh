// The dynamixer CUDA kernels (see dynamixer_cuda.cu) and the same steps with ATen ops for
// N too large for shared memory. Device code uses only common/cuda_device.cuh, so the CPU
// tests compile it with an emulation of the CUDA built-ins (tests/cpp/cuda_emulation.h).
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include "common/cuda_device.cuh"
#include "common/kernel_math.h"
#include "common/sequence_indexer.h"
#include "common/sequences.h"
#include "ops/dynamixer/dynamixer.h"

namespace mlpmix::dynamixer_impl {

// First element of segment `segment` (channels [segment*width, (segment+1)*width)) of
// sequence `sequence` of an indexed tensor.
template <typename T>
__device__ T* segment_start(T* base, const SequenceIndexer& index, int64_t sequence,
                            int64_t segment, int64_t width) {
  return base + index.offset(sequence) + segment * width * index.channel_stride;
}

// p[i*N + j] (shared) = softmax over i of logits[i*N + j]; one column j per thread.
template <typename scalar_t, typename acc_t>
__device__ void softmax_over_inputs(const scalar_t* logits, acc_t* p, int64_t N) {
  for (int64_t t = threadIdx.x; t < N * N; t += blockDim.x) {
    p[t] = static_cast<acc_t>(logits[t]);
  }
  __syncthreads();
  for (int64_t j = threadIdx.x; j < N; j += blockDim.x) {
    math::softmax_strided(p + j, N, N);
  }
  __syncthreads();
}

// out[j, c] = sum_i P[i, j] x[i, c] per (sequence, segment); N*N accumulators of shared memory.
template <typename scalar_t>
__global__ void __launch_bounds__(cuda::kThreads)
    mix_kernel(const scalar_t* __restrict__ logits, const scalar_t* __restrict__ x,
               SequenceIndexer x_index, scalar_t* __restrict__ out, SequenceIndexer out_index,
               int64_t items, int64_t N, int64_t S, int64_t width) {
  using acc_t = at::opmath_type<scalar_t>;
  MLPMIX_DYNAMIC_SHARED_MEMORY(acc_t, p);
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const int64_t sequence = item / S, segment = item % S;
    softmax_over_inputs(logits + item * N * N, p, N);
    const scalar_t* xs = segment_start(x, x_index, sequence, segment, width);
    scalar_t* ys = segment_start(out, out_index, sequence, segment, width);
    for (int64_t t = threadIdx.x; t < N * width; t += blockDim.x) {
      const int64_t j = t / width, c = t % width;
      const scalar_t* column = xs + c * x_index.channel_stride;
      acc_t acc = 0;
      for (int64_t i = 0; i < N; ++i) {
        acc += p[i * N + j] * static_cast<acc_t>(column[i * x_index.token_stride]);
      }
      ys[j * out_index.token_stride + c * out_index.channel_stride] = static_cast<scalar_t>(acc);
    }
    __syncthreads();  // p is overwritten by the next item
  }
}

// Per (sequence, segment): grad_x[i, c] = sum_j P[i, j] gy[j, c],
// grad_P[i, j] = sum_c x[i, c] gy[j, c], grad_logits = softmax backward of grad_P.
// 2*N*N accumulators of shared memory.
template <typename scalar_t>
__global__ void __launch_bounds__(cuda::kThreads)
    mix_backward_kernel(const scalar_t* __restrict__ logits, const scalar_t* __restrict__ x,
                        SequenceIndexer x_index, const scalar_t* __restrict__ grad_out,
                        SequenceIndexer grad_out_index, scalar_t* __restrict__ grad_x,
                        SequenceIndexer grad_x_index, scalar_t* __restrict__ grad_logits,
                        int64_t items, int64_t N, int64_t S, int64_t width) {
  using acc_t = at::opmath_type<scalar_t>;
  MLPMIX_DYNAMIC_SHARED_MEMORY(acc_t, p);
  acc_t* grad_p = p + N * N;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const int64_t sequence = item / S, segment = item % S;
    softmax_over_inputs(logits + item * N * N, p, N);
    const scalar_t* xs = segment_start(x, x_index, sequence, segment, width);
    const scalar_t* gy = segment_start(grad_out, grad_out_index, sequence, segment, width);
    scalar_t* gx = segment_start(grad_x, grad_x_index, sequence, segment, width);
    const int64_t x_token = x_index.token_stride, x_channel = x_index.channel_stride;
    const int64_t gy_token = grad_out_index.token_stride;
    const int64_t gy_channel = grad_out_index.channel_stride;
    for (int64_t t = threadIdx.x; t < N * width; t += blockDim.x) {
      const int64_t i = t / width, c = t % width;
      const scalar_t* column = gy + c * gy_channel;
      acc_t acc = 0;
      for (int64_t j = 0; j < N; ++j) {
        acc += p[i * N + j] * static_cast<acc_t>(column[j * gy_token]);
      }
      gx[i * grad_x_index.token_stride + c * grad_x_index.channel_stride] =
          static_cast<scalar_t>(acc);
    }
    for (int64_t t = threadIdx.x; t < N * N; t += blockDim.x) {
      const int64_t i = t / N, j = t % N;
      const scalar_t* x_row = xs + i * x_token;
      const scalar_t* gy_row = gy + j * gy_token;
      acc_t acc = 0;
      for (int64_t c = 0; c < width; ++c) {
        acc += static_cast<acc_t>(x_row[c * x_channel]) *
               static_cast<acc_t>(gy_row[c * gy_channel]);
      }
      grad_p[t] = acc;
    }
    __syncthreads();
    scalar_t* grad_logits_item = grad_logits + item * N * N;
    for (int64_t j = threadIdx.x; j < N; j += blockDim.x) {
      acc_t dot = 0;
      for (int64_t i = 0; i < N; ++i) {
        dot += p[i * N + j] * grad_p[i * N + j];
      }
      for (int64_t i = 0; i < N; ++i) {
        grad_logits_item[i * N + j] =
            static_cast<scalar_t>(math::softmax_backward(p[i * N + j], grad_p[i * N + j], dot));
      }
    }
    __syncthreads();  // p and grad_p are overwritten by the next item
  }
}

// ---- the same steps with ATen ops, for N too large for shared memory ---------------------

// t (shaped like x) as (B', S, N, D/S) segments, sequence axes flattened in row-major order.
inline at::Tensor as_segments(const at::Tensor& t, const Dims& dims, int64_t sequences) {
  return t.movedim(dims.token_dim, -2)
      .reshape({sequences, dims.N, dims.S, dims.D / dims.S})
      .transpose(1, 2);
}

// Writes (B', S, N, D/S) segments into `dst`, shaped like x.
inline void copy_from_segments(at::Tensor& dst, const at::Tensor& segments,
                               const Dims& dims) {
  dst.copy_(segments.transpose(1, 2)
                .reshape(sequence_major_sizes(dst.sizes(), dims.token_dim))
                .movedim(-2, dims.token_dim));
}

// P (B', S, N_in, N_out) in the accumulation type.
inline at::Tensor softmax_over_inputs_aten(const at::Tensor& logits, const Dims& dims) {
  return logits.view({logits.size(0), dims.S, dims.N, dims.N})
      .to(at::toOpMathType(logits.scalar_type()))
      .softmax(2);
}

inline void mix_aten(const at::Tensor& logits, const at::Tensor& x, at::Tensor& out,
                     const Dims& dims) {
  const auto p = softmax_over_inputs_aten(logits, dims);
  const auto xs = as_segments(x, dims, logits.size(0)).to(p.scalar_type());
  copy_from_segments(out, at::matmul(p.transpose(2, 3), xs), dims);
}

inline void mix_backward_aten(const at::Tensor& logits, const at::Tensor& x,
                              const at::Tensor& grad_out, at::Tensor& grad_x,
                              at::Tensor& grad_logits, const Dims& dims) {
  const auto p = softmax_over_inputs_aten(logits, dims);
  const auto xs = as_segments(x, dims, logits.size(0)).to(p.scalar_type());
  const auto gy = as_segments(grad_out, dims, logits.size(0)).to(p.scalar_type());
  copy_from_segments(grad_x, at::matmul(p, gy), dims);
  const auto grad_p = at::matmul(xs, gy.transpose(2, 3));
  const auto dot = (p * grad_p).sum(2, /*keepdim=*/true);
  grad_logits.copy_((p * (grad_p - dot)).view(grad_logits.sizes()));
}

}  // namespace mlpmix::dynamixer_impl
