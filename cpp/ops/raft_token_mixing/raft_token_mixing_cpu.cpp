// mlpmix::raft_token_mixing CPU kernels: the LayerNorm over C, written straight into the
// regrouped rows layout (forward) and read back from it (backward), one (b, column) line of
// N tokens per work item, reading x through its strides. The MLP steps go through ATen.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/sequences.h"
#include "common/simd.h"
#include "ops/raft_token_mixing/raft_token_mixing.h"

namespace mlpmix::raft_token_mixing_impl {
namespace {

// Element offsets into a (B, H, W, C) tensor of token n of line (b, m) along the mixed axis.
struct TokenGrid {
  int64_t batch_stride, token_stride, line_stride, channel_stride;

  TokenGrid(const at::Tensor& t, const Dims& d)
      : batch_stride(t.stride(0)),
        token_stride(t.stride(d.axis)),
        line_stride(t.stride(3 - d.axis)),
        channel_stride(t.stride(3)) {}

  int64_t offset(int64_t b, int64_t m, int64_t n) const {
    return b * batch_stride + m * line_stride + n * token_stride;
  }
};

// Element offsets into the rows buffer (B, o, M, r, N): token (b, m, n) starts at
// token_offset, its channel c = i*o + j sits channel_offsets[c] further.
struct RowsLayout {
  std::vector<int64_t> channel_offsets;
  int64_t o, M, N, row_width;

  explicit RowsLayout(const Dims& d) : channel_offsets(d.C), o(d.o), M(d.M), N(d.N) {
    row_width = d.r * d.N;
    for (int64_t i = 0; i < d.r; ++i) {
      for (int64_t j = 0; j < d.o; ++j) {
        channel_offsets[i * d.o + j] = j * d.M * row_width + i * d.N;
      }
    }
  }

  int64_t token_offset(int64_t b, int64_t m, int64_t n) const {
    return (b * o * M + m) * row_width + n;
  }
};

// Work items are lines of N tokens; aim for ~32k elements per task.
int64_t grain_size(const Dims& d) {
  return std::max<int64_t>(1, (int64_t{1} << 15) / (d.N * d.C));
}

// Mean and 1/std over the C unit-stride channels of one token (two passes, like ATen).
template <typename T>
inline void token_moments_impl(const T* token, int64_t C, T eps, T* mean, T* rstd) {
  using V = simd::Vec<T>;
  auto sum = V::broadcast(0);
  int64_t c = 0;
  for (; c + V::lanes <= C; c += V::lanes) {
    sum += V::load(token + c);
  }
  T total = 0;
  for (; c < C; ++c) {
    total += token[c];
  }
  for (int64_t l = 0; l < V::lanes; ++l) {
    total += sum[l];
  }
  const T mu = total / C;
  auto squares = V::broadcast(0);
  const auto mu_v = V::broadcast(mu);
  for (c = 0; c + V::lanes <= C; c += V::lanes) {
    const auto centred = V::load(token + c) - mu_v;
    squares += centred * centred;
  }
  T variance = 0;
  for (; c < C; ++c) {
    variance += (token[c] - mu) * (token[c] - mu);
  }
  for (int64_t l = 0; l < V::lanes; ++l) {
    variance += squares[l];
  }
  *mean = mu;
  *rstd = T(1) / std::sqrt(variance / C + eps);
}

// target_clones takes no templates: one overload per dtype.
MLPMIX_CLONE_FOR_AVX2 void token_moments(const float* token, int64_t C, float eps, float* mean,
                                         float* rstd) {
  token_moments_impl(token, C, eps, mean, rstd);
}
MLPMIX_CLONE_FOR_AVX2 void token_moments(const double* token, int64_t C, double eps,
                                         double* mean, double* rstd) {
  token_moments_impl(token, C, eps, mean, rstd);
}

// The LayerNorm of x in the rows layout, (B*o*M, r*N): `normed` with the affine applied
// (the MLP input), optionally `normalized` without it (for the backward), and 1/std per
// token, (B*M, N).
struct NormalizedRows {
  at::Tensor normed, normalized, rstd;
};

NormalizedRows normalize_into_rows(const at::Tensor& x_any, const at::Tensor& norm_weight,
                                   const at::Tensor& norm_bias, double eps, const Dims& d,
                                   bool keep_normalized) {
  const auto x = contiguous_channels(x_any);
  const int64_t batch = x.size(0);
  NormalizedRows result;
  result.normed = at::empty({batch * d.o * d.M, d.r * d.N}, x.options());
  if (keep_normalized) {
    result.normalized = at::empty_like(result.normed);
  }
  result.rstd = at::empty({batch * d.M, d.N}, x.options());
  const auto weight = norm_weight.contiguous();
  const auto bias = norm_bias.contiguous();
  const TokenGrid grid(x, d);
  const RowsLayout layout(d);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mlpmix_raft_normalize_into_rows", [&] {
    const scalar_t* x_data = x.const_data_ptr<scalar_t>();
    const scalar_t* weight_data = weight.const_data_ptr<scalar_t>();
    const scalar_t* bias_data = bias.const_data_ptr<scalar_t>();
    scalar_t* normed_data = result.normed.mutable_data_ptr<scalar_t>();
    scalar_t* normalized_data =
        keep_normalized ? result.normalized.mutable_data_ptr<scalar_t>() : nullptr;
    scalar_t* rstd_data = result.rstd.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, batch * d.M, grain_size(d), [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> mean(d.N);
      for (int64_t line = begin; line < end; ++line) {
        const int64_t b = line / d.M, m = line % d.M;
        const scalar_t* first = x_data + grid.offset(b, m, 0);
        scalar_t* rstd = rstd_data + line * d.N;
        for (int64_t n = 0; n < d.N; ++n) {
          token_moments(first + n * grid.token_stride, d.C, static_cast<scalar_t>(eps),
                        &mean[n], &rstd[n]);
        }
        // Channel by channel, so that the N tokens of a row are written contiguously.
        const int64_t row0 = layout.token_offset(b, m, 0);
        for (int64_t c = 0; c < d.C; ++c) {
          const scalar_t gamma = weight_data[c], beta = bias_data[c];
          const scalar_t* in = first + c;
          scalar_t* normed = normed_data + row0 + layout.channel_offsets[c];
          for (int64_t n = 0; n < d.N; ++n) {
            const scalar_t value = (in[n * grid.token_stride] - mean[n]) * rstd[n];
            normed[n] = value * gamma + beta;
            if (normalized_data != nullptr) {
              normalized_data[row0 + layout.channel_offsets[c] + n] = value;
            }
          }
        }
      }
    });
  });
  return result;
}

// LayerNorm backward without the affine part: from the gradient of the normalised x in the
// rows layout to grad_x, (B, H, W, C) contiguous.
at::Tensor normalize_backward_from_rows(const at::Tensor& grad_rows, const at::Tensor& rows,
                                        const at::Tensor& rstd, int64_t batch,
                                        const Dims& d) {
  auto grad_x = at::empty({batch, d.H, d.W, d.C}, rows.options());
  const TokenGrid grid(grad_x, d);
  const RowsLayout layout(d);
  AT_DISPATCH_FLOATING_TYPES(rows.scalar_type(), "mlpmix_raft_normalize_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* grad_rows_data = grad_rows.const_data_ptr<scalar_t>();
    const scalar_t* rows_data = rows.const_data_ptr<scalar_t>();
    const scalar_t* rstd_data = rstd.const_data_ptr<scalar_t>();
    scalar_t* grad_x_data = grad_x.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, batch * d.M, grain_size(d), [&](int64_t begin, int64_t end) {
      std::vector<acc_t> grad(d.C), normalized(d.C);
      for (int64_t line = begin; line < end; ++line) {
        const int64_t b = line / d.M, m = line % d.M;
        for (int64_t n = 0; n < d.N; ++n) {
          const int64_t token = layout.token_offset(b, m, n);
          acc_t grad_mean = 0, grad_dot_normalized = 0;
          for (int64_t c = 0; c < d.C; ++c) {
            grad[c] = static_cast<acc_t>(grad_rows_data[token + layout.channel_offsets[c]]);
            normalized[c] = static_cast<acc_t>(rows_data[token + layout.channel_offsets[c]]);
            grad_mean += grad[c];
            grad_dot_normalized += grad[c] * normalized[c];
          }
          grad_mean /= d.C;
          grad_dot_normalized /= d.C;
          const acc_t inv_std = static_cast<acc_t>(rstd_data[line * d.N + n]);
          scalar_t* out = grad_x_data + grid.offset(b, m, n);
          for (int64_t c = 0; c < d.C; ++c) {
            out[c * grid.channel_stride] = static_cast<scalar_t>(
                inv_std * (grad[c] - grad_mean - normalized[c] * grad_dot_normalized));
          }
        }
      }
    });
  });
  return grad_x;
}

at::Tensor raft_token_mixing_cpu(const at::Tensor& x, const at::Tensor& norm_weight,
                                 const at::Tensor& norm_bias, const at::Tensor& fc1_weight,
                                 const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
                                 const at::Tensor& fc2_bias, int64_t raft_size, int64_t dim,
                                 double eps) {
  const auto dims = check_inputs("raft_token_mixing", x, norm_weight, norm_bias, fc1_weight,
                                 fc1_bias, fc2_weight, fc2_bias, raft_size, dim);
  auto rows = normalize_into_rows(x, norm_weight, norm_bias, eps, dims, false);
  return mix_rows(rows.normed, fc1_weight, fc1_bias, fc2_weight, fc2_bias, x.size(0), dims);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
raft_token_mixing_backward_cpu(const at::Tensor& grad_out, const at::Tensor& x,
                               const at::Tensor& norm_weight, const at::Tensor& norm_bias,
                               const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                               const at::Tensor& fc2_weight, const at::Tensor& fc2_bias,
                               int64_t raft_size, int64_t dim, double eps) {
  const auto dims =
      check_inputs("raft_token_mixing_backward", x, norm_weight, norm_bias, fc1_weight,
                   fc1_bias, fc2_weight, fc2_bias, raft_size, dim);
  check_grad_out(grad_out, x);
  auto rows = normalize_into_rows(x, norm_weight, norm_bias, eps, dims, true);
  auto [grad_normalized, gnw, gnb, g1w, g1b, g2w, g2b] =
      mix_rows_backward(grad_out, rows.normalized, rows.normed, norm_weight, fc1_weight,
                        fc1_bias, fc2_weight, fc2_bias, x.size(0), dims);
  auto grad_x =
      normalize_backward_from_rows(grad_normalized, rows.normalized, rows.rstd, x.size(0), dims);
  return {grad_x, gnw, gnb, g1w, g1b, g2w, g2b};
}

}  // namespace
}  // namespace mlpmix::raft_token_mixing_impl

TORCH_LIBRARY_IMPL(mlpmix, CPU, m) {
  m.impl("raft_token_mixing", &mlpmix::raft_token_mixing_impl::raft_token_mixing_cpu);
  m.impl("raft_token_mixing_backward",
         &mlpmix::raft_token_mixing_impl::raft_token_mixing_backward_cpu);
}
