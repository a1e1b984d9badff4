// mlpmix::dynamixer CPU kernels. The GEMM steps (compress, generate) run as whole-tensor
// ATen ops; the softmax over input tokens and the per-segment mixing, Y = P^T X, and their
// backward run here, one (sequence, segment) pair per work item, reading x and grad_out in
// place through their token strides (channels must be unit-stride; other layouts are copied
// once). The inner loops work on blocks of channels and are cloned for AVX2.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "common/sequences.h"
#include "common/simd.h"
#include "ops/dynamixer/dynamixer.h"

namespace mlpmix::dynamixer_impl {
namespace {

// Output rows computed together: independent accumulator chains that share each load.
constexpr int64_t kOutRows = 4;

// A (rows, columns) matrix with unit column stride: row i starts at data + i * stride.
template <typename T>
struct Rows {
  T* data;
  int64_t stride;
};

// Coefficients c(k, m) = data[k * sum_stride + m * out_stride] of a linear combination.
template <typename T>
struct Coefficients {
  const T* data;
  int64_t sum_stride, out_stride;
  T operator()(int64_t k, int64_t m) const { return data[k * sum_stride + m * out_stride]; }
};

// Rows m0 .. m0+R-1 of out = sum_k c(k, m) * in[k, :].
template <int64_t R, typename T>
inline void combine_block(Coefficients<T> c, Rows<const T> in, Rows<T> out, int64_t m0,
                          int64_t K, int64_t width) {
  using V = simd::Vec<T>;
  int64_t c0 = 0;
  for (; c0 + V::lanes <= width; c0 += V::lanes) {
    typename V::type acc[R] = {};
    for (int64_t k = 0; k < K; ++k) {
      const auto in_block = V::load(in.data + k * in.stride + c0);
#pragma GCC unroll 8
      for (int64_t r = 0; r < R; ++r) {
        acc[r] += V::broadcast(c(k, m0 + r)) * in_block;
      }
    }
#pragma GCC unroll 8
    for (int64_t r = 0; r < R; ++r) {
      V::store(out.data + (m0 + r) * out.stride + c0, acc[r]);
    }
  }
  for (; c0 < width; ++c0) {
    for (int64_t r = 0; r < R; ++r) {
      T acc = 0;
      for (int64_t k = 0; k < K; ++k) {
        acc += c(k, m0 + r) * in.data[k * in.stride + c0];
      }
      out.data[(m0 + r) * out.stride + c0] = acc;
    }
  }
}

// out[m, :] = sum_k c(k, m) * in[k, :] for M output rows and K input rows: a small GEMM.
template <typename T>
inline void combine_rows_impl(Coefficients<T> c, Rows<const T> in, Rows<T> out, int64_t M,
                              int64_t K, int64_t width) {
  int64_t m0 = 0;
  for (; m0 + kOutRows <= M; m0 += kOutRows) {
    combine_block<kOutRows>(c, in, out, m0, K, width);
  }
  for (; m0 < M; ++m0) {
    combine_block<1>(c, in, out, m0, K, width);
  }
}

// target_clones takes no templates: one overload per dtype.
MLPMIX_CLONE_FOR_AVX2 void combine_rows(Coefficients<float> c, Rows<const float> in,
                                        Rows<float> out, int64_t M, int64_t K, int64_t width) {
  combine_rows_impl(c, in, out, M, K, width);
}
MLPMIX_CLONE_FOR_AVX2 void combine_rows(Coefficients<double> c, Rows<const double> in,
                                        Rows<double> out, int64_t M, int64_t K,
                                        int64_t width) {
  combine_rows_impl(c, in, out, M, K, width);
}

// dst (width, N) = src (N, width) transposed.
template <typename T>
void transpose_into(Rows<const T> src, int64_t N, int64_t width, T* dst) {
  for (int64_t i = 0; i < N; ++i) {
    for (int64_t c = 0; c < width; ++c) {
      dst[c * N + i] = src.data[i * src.stride + c];
    }
  }
}

// p[i*N + j] = softmax over i of logits[i*N + j]: each output token j's weights over the
// input tokens i sum to one. `column` holds N scratch values. Loops run along j.
template <typename T>
inline void softmax_over_inputs_impl(const T* logits, T* p, T* column, int64_t N) {
  std::copy(logits, logits + N, column);
  for (int64_t i = 1; i < N; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      column[j] = std::max(column[j], logits[i * N + j]);
    }
  }
  for (int64_t i = 0; i < N; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      p[i * N + j] = logits[i * N + j] - column[j];
    }
  }
  simd::exp_nonpositive(p, N * N);
  std::fill(column, column + N, T(0));
  for (int64_t i = 0; i < N; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      column[j] += p[i * N + j];
    }
  }
  for (int64_t j = 0; j < N; ++j) {
    column[j] = T(1) / column[j];
  }
  for (int64_t i = 0; i < N; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      p[i * N + j] *= column[j];
    }
  }
}

// grad_logits[i*N + j] = p[i, j] * (grad_p[i, j] - sum_i' p[i', j] grad_p[i', j]).
template <typename T>
inline void softmax_over_inputs_backward_impl(const T* p, const T* grad_p, T* column,
                                              int64_t N, T* grad_logits) {
  std::fill(column, column + N, T(0));
  for (int64_t i = 0; i < N; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      column[j] += p[i * N + j] * grad_p[i * N + j];
    }
  }
  for (int64_t i = 0; i < N; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      grad_logits[i * N + j] = p[i * N + j] * (grad_p[i * N + j] - column[j]);
    }
  }
}

MLPMIX_CLONE_FOR_AVX2 void softmax_over_inputs(const float* logits, float* p, float* column,
                                               int64_t N) {
  softmax_over_inputs_impl(logits, p, column, N);
}
MLPMIX_CLONE_FOR_AVX2 void softmax_over_inputs(const double* logits, double* p,
                                               double* column, int64_t N) {
  softmax_over_inputs_impl(logits, p, column, N);
}
MLPMIX_CLONE_FOR_AVX2 void softmax_over_inputs_backward(const float* p, const float* grad_p,
                                                        float* column, int64_t N,
                                                        float* grad_logits) {
  softmax_over_inputs_backward_impl(p, grad_p, column, N, grad_logits);
}
MLPMIX_CLONE_FOR_AVX2 void softmax_over_inputs_backward(const double* p, const double* grad_p,
                                                        double* column, int64_t N,
                                                        double* grad_logits) {
  softmax_over_inputs_backward_impl(p, grad_p, column, N, grad_logits);
}

// Where segment `segment` of sequence `sequence` of a unit-channel-stride tensor starts.
template <typename T>
Rows<T> segment_rows(T* base, const SequenceLayout& layout, int64_t sequence, int64_t segment,
                     int64_t width) {
  return {base + layout.offsets[sequence] + segment * width, layout.token_stride};
}

// Work items are (sequence, segment) pairs; aim for ~64k multiply-adds per task.
int64_t grain_size(const Dims& dims) {
  const int64_t work = dims.N * dims.N * (dims.D / dims.S);
  return std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(work, 1));
}

at::Tensor dynamixer_cpu(const at::Tensor& x_any, const at::Tensor& compress_weight,
                         const std::optional<at::Tensor>& compress_bias,
                         const at::Tensor& generate_weight,
                         const std::optional<at::Tensor>& generate_bias, int64_t num_segments,
                         int64_t dim) {
  const auto dims = check_inputs("dynamixer", x_any, compress_weight, compress_bias,
                                 generate_weight, generate_bias, num_segments, dim);
  const auto x = contiguous_channels(x_any);
  auto logits = std::get<1>(compress_and_generate(x, compress_weight, compress_bias,
                                                  generate_weight, generate_bias, dims));
  auto out = at::empty(x.sizes(), x.options());
  const auto x_layout = sequence_layout(x, dims.token_dim);
  const auto out_layout = sequence_layout(out, dims.token_dim);
  const int64_t N = dims.N, S = dims.S, width = dims.D / dims.S;

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mlpmix_dynamixer_cpu", [&] {
    const scalar_t* logits_data = logits.const_data_ptr<scalar_t>();
    const scalar_t* x_data = x.const_data_ptr<scalar_t>();
    scalar_t* out_data = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, logits.size(0) * S, grain_size(dims), [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> p(N * N), column(N);
      for (int64_t item = begin; item < end; ++item) {
        const int64_t sequence = item / S, segment = item % S;
        softmax_over_inputs(logits_data + item * N * N, p.data(), column.data(), N);
        // out[j, :] = sum_i P[i, j] x[i, :]
        combine_rows(Coefficients<scalar_t>{p.data(), N, 1},
                     segment_rows(x_data, x_layout, sequence, segment, width),
                     segment_rows(out_data, out_layout, sequence, segment, width), N, N,
                     width);
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> dynamixer_backward_cpu(
    const at::Tensor& grad_out_any, const at::Tensor& x_any, const at::Tensor& compress_weight,
    const std::optional<at::Tensor>& compress_bias, const at::Tensor& generate_weight,
    const std::optional<at::Tensor>& generate_bias, int64_t num_segments, int64_t dim) {
  const auto dims = check_inputs("dynamixer_backward", x_any, compress_weight, compress_bias,
                                 generate_weight, generate_bias, num_segments, dim);
  check_grad_out(grad_out_any, x_any);
  const auto x = contiguous_channels(x_any);
  const auto grad_out = contiguous_channels(grad_out_any);
  auto [compressed, logits] = compress_and_generate(x, compress_weight, compress_bias,
                                                    generate_weight, generate_bias, dims);
  auto grad_logits = at::empty_like(logits);
  auto grad_x = at::empty(x.sizes(), x.options());
  const auto x_layout = sequence_layout(x, dims.token_dim);
  const auto grad_out_layout = sequence_layout(grad_out, dims.token_dim);
  const auto grad_x_layout = sequence_layout(grad_x, dims.token_dim);
  const int64_t N = dims.N, S = dims.S, width = dims.D / dims.S;

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mlpmix_dynamixer_backward_cpu", [&] {
    const scalar_t* logits_data = logits.const_data_ptr<scalar_t>();
    const scalar_t* x_data = x.const_data_ptr<scalar_t>();
    const scalar_t* grad_out_data = grad_out.const_data_ptr<scalar_t>();
    scalar_t* grad_logits_data = grad_logits.mutable_data_ptr<scalar_t>();
    scalar_t* grad_x_data = grad_x.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, logits.size(0) * S, grain_size(dims), [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> p(N * N), grad_p(N * N), column(N), gy_t(width * N);
      for (int64_t item = begin; item < end; ++item) {
        const int64_t sequence = item / S, segment = item % S;
        const auto gy = segment_rows(grad_out_data, grad_out_layout, sequence, segment, width);
        const auto xs = segment_rows(x_data, x_layout, sequence, segment, width);
        softmax_over_inputs(logits_data + item * N * N, p.data(), column.data(), N);
        // grad_x[i, :] = sum_j P[i, j] gy[j, :]
        combine_rows(Coefficients<scalar_t>{p.data(), 1, N}, gy,
                     segment_rows(grad_x_data, grad_x_layout, sequence, segment, width), N, N,
                     width);
        // grad_P[i, :] = sum_c x[i, c] gy^T[c, :]
        transpose_into(gy, N, width, gy_t.data());
        combine_rows(Coefficients<scalar_t>{xs.data, 1, xs.stride},
                     Rows<const scalar_t>{gy_t.data(), N},
                     Rows<scalar_t>{grad_p.data(), N}, N, width, N);
        softmax_over_inputs_backward(p.data(), grad_p.data(), column.data(), N,
                                     grad_logits_data + item * N * N);
      }
    });
  });
  auto [gcw, gcb, ggw, ggb] = compress_and_generate_backward(
      grad_logits, compressed, x, compress_weight, generate_weight, dims, grad_x);
  return {grad_x, gcw, gcb, ggw, ggb};
}

}  // namespace
}  // namespace mlpmix::dynamixer_impl

TORCH_LIBRARY_IMPL(mlpmix, CPU, m) {
  m.impl("dynamixer", &mlpmix::dynamixer_impl::dynamixer_cpu);
  m.impl("dynamixer_backward", &mlpmix::dynamixer_impl::dynamixer_backward_cpu);
}
