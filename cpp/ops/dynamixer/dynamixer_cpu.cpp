// mlpmix::dynamixer CPU kernels. The GEMM steps (compress, generate) go through ATen; the
// softmax over input tokens and the per-segment mixing are fused here, one (sequence,
// segment) pair per work item, reading x and grad_out in place through their strides.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/sequences.h"
#include "ops/dynamixer/dynamixer.h"

namespace mlpmix::dynamixer_impl {
namespace {

// p[i*N + j] = softmax over i of logits[i*N + j] (each output token j's weights over the
// input tokens i sum to one).
template <typename scalar_t, typename acc_t>
void softmax_over_inputs(const scalar_t* logits, acc_t* p, acc_t* column, int64_t N) {
  for (int64_t j = 0; j < N; ++j) {
    column[j] = static_cast<acc_t>(logits[j]);
  }
  for (int64_t i = 1; i < N; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      column[j] = std::max(column[j], static_cast<acc_t>(logits[i * N + j]));
    }
  }
  for (int64_t i = 0; i < N; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      p[i * N + j] = std::exp(static_cast<acc_t>(logits[i * N + j]) - column[j]);
    }
  }
  std::fill(column, column + N, acc_t(0));
  for (int64_t i = 0; i < N; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      column[j] += p[i * N + j];
    }
  }
  for (int64_t j = 0; j < N; ++j) {
    column[j] = acc_t(1) / column[j];
  }
  for (int64_t i = 0; i < N; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      p[i * N + j] *= column[j];
    }
  }
}

// Copies the (N, width) block of one segment of one sequence into a dense buffer.
template <typename scalar_t, typename acc_t>
void gather(const scalar_t* base, const SequenceLayout& layout, int64_t sequence,
            int64_t channel0, int64_t N, int64_t width, acc_t* dense) {
  const scalar_t* src = base + layout.offsets[sequence] + channel0 * layout.channel_stride;
  for (int64_t i = 0; i < N; ++i) {
    for (int64_t c = 0; c < width; ++c) {
      dense[i * width + c] =
          static_cast<acc_t>(src[i * layout.token_stride + c * layout.channel_stride]);
    }
  }
}

template <typename scalar_t, typename acc_t>
void scatter(const acc_t* dense, const SequenceLayout& layout, int64_t sequence,
             int64_t channel0, int64_t N, int64_t width, scalar_t* base) {
  scalar_t* dst = base + layout.offsets[sequence] + channel0 * layout.channel_stride;
  for (int64_t i = 0; i < N; ++i) {
    for (int64_t c = 0; c < width; ++c) {
      dst[i * layout.token_stride + c * layout.channel_stride] =
          static_cast<scalar_t>(dense[i * width + c]);
    }
  }
}

// Work items are (sequence, segment) pairs; aim for ~64k multiply-adds per task.
int64_t grain_size(const Dims& dims) {
  const int64_t work = dims.N * dims.N * (dims.D / dims.S);
  return std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(work, 1));
}

at::Tensor dynamixer_cpu(const at::Tensor& x, const at::Tensor& compress_weight,
                         const std::optional<at::Tensor>& compress_bias,
                         const at::Tensor& generate_weight,
                         const std::optional<at::Tensor>& generate_bias, int64_t num_segments,
                         int64_t dim) {
  const auto dims = check_inputs("dynamixer", x, compress_weight, compress_bias,
                                 generate_weight, generate_bias, num_segments, dim);
  auto logits = std::get<1>(compress_and_generate(x, compress_weight, compress_bias,
                                                  generate_weight, generate_bias, dims))
                    .contiguous();
  auto out = at::empty(x.sizes(), x.options());
  const auto x_layout = sequence_layout(x, dims.token_dim);
  const auto out_layout = sequence_layout(out, dims.token_dim);
  const int64_t N = dims.N, S = dims.S, width = dims.D / dims.S;

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mlpmix_dynamixer_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* logits_data = logits.const_data_ptr<scalar_t>();
    const scalar_t* x_data = x.const_data_ptr<scalar_t>();
    scalar_t* out_data = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, logits.size(0) * S, grain_size(dims), [&](int64_t begin, int64_t end) {
      std::vector<acc_t> p(N * N), column(N), xs(N * width), ys(N * width);
      for (int64_t item = begin; item < end; ++item) {
        const int64_t sequence = item / S, segment = item % S;
        softmax_over_inputs(logits_data + item * N * N, p.data(), column.data(), N);
        gather(x_data, x_layout, sequence, segment * width, N, width, xs.data());
        // ys[j, :] = sum_i p[i, j] * xs[i, :]
        std::fill(ys.begin(), ys.end(), acc_t(0));
        for (int64_t i = 0; i < N; ++i) {
          const acc_t* x_row = xs.data() + i * width;
          for (int64_t j = 0; j < N; ++j) {
            const acc_t weight = p[i * N + j];
            acc_t* y_row = ys.data() + j * width;
            for (int64_t c = 0; c < width; ++c) {
              y_row[c] += weight * x_row[c];
            }
          }
        }
        scatter(ys.data(), out_layout, sequence, segment * width, N, width, out_data);
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> dynamixer_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& compress_weight,
    const std::optional<at::Tensor>& compress_bias, const at::Tensor& generate_weight,
    const std::optional<at::Tensor>& generate_bias, int64_t num_segments, int64_t dim) {
  const auto dims = check_inputs("dynamixer_backward", x, compress_weight, compress_bias,
                                 generate_weight, generate_bias, num_segments, dim);
  check_grad_out(grad_out, x);
  auto [compressed, logits_any] = compress_and_generate(
      x, compress_weight, compress_bias, generate_weight, generate_bias, dims);
  auto logits = logits_any.contiguous();
  auto grad_logits = at::empty_like(logits);
  auto grad_x = at::empty(x.sizes(), x.options());
  const auto x_layout = sequence_layout(x, dims.token_dim);
  const auto grad_out_layout = sequence_layout(grad_out, dims.token_dim);
  const auto grad_x_layout = sequence_layout(grad_x, dims.token_dim);
  const int64_t N = dims.N, S = dims.S, width = dims.D / dims.S;

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mlpmix_dynamixer_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* logits_data = logits.const_data_ptr<scalar_t>();
    const scalar_t* x_data = x.const_data_ptr<scalar_t>();
    const scalar_t* grad_out_data = grad_out.const_data_ptr<scalar_t>();
    scalar_t* grad_logits_data = grad_logits.mutable_data_ptr<scalar_t>();
    scalar_t* grad_x_data = grad_x.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, logits.size(0) * S, grain_size(dims), [&](int64_t begin, int64_t end) {
      std::vector<acc_t> p(N * N), column(N), xs(N * width), gys(N * width),
          gxs(N * width), gp(N * N);
      for (int64_t item = begin; item < end; ++item) {
        const int64_t sequence = item / S, segment = item % S;
        softmax_over_inputs(logits_data + item * N * N, p.data(), column.data(), N);
        gather(x_data, x_layout, sequence, segment * width, N, width, xs.data());
        gather(grad_out_data, grad_out_layout, sequence, segment * width, N, width,
               gys.data());
        // gxs[i, :] = sum_j p[i, j] gys[j, :];  gp[i, j] = <xs[i, :], gys[j, :]>
        for (int64_t i = 0; i < N; ++i) {
          acc_t* gx_row = gxs.data() + i * width;
          const acc_t* x_row = xs.data() + i * width;
          std::fill(gx_row, gx_row + width, acc_t(0));
          for (int64_t j = 0; j < N; ++j) {
            const acc_t weight = p[i * N + j];
            const acc_t* gy_row = gys.data() + j * width;
            acc_t dot = 0;
            for (int64_t c = 0; c < width; ++c) {
              gx_row[c] += weight * gy_row[c];
              dot += x_row[c] * gy_row[c];
            }
            gp[i * N + j] = dot;
          }
        }
        scatter(gxs.data(), grad_x_layout, sequence, segment * width, N, width, grad_x_data);
        // softmax backward over i: g[i, j] = p[i, j] * (gp[i, j] - sum_i' p[i', j] gp[i', j])
        std::fill(column.begin(), column.end(), acc_t(0));
        for (int64_t i = 0; i < N; ++i) {
          for (int64_t j = 0; j < N; ++j) {
            column[j] += p[i * N + j] * gp[i * N + j];
          }
        }
        scalar_t* g = grad_logits_data + item * N * N;
        for (int64_t i = 0; i < N; ++i) {
          for (int64_t j = 0; j < N; ++j) {
            g[i * N + j] = static_cast<scalar_t>(p[i * N + j] * (gp[i * N + j] - column[j]));
          }
        }
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
