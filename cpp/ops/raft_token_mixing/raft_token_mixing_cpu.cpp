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

// Returns (x - mean) * rstd in the rows layout, (B*o*M, r*N), and rstd per token, (B*M, N).
std::tuple<at::Tensor, at::Tensor> normalize_into_rows(const at::Tensor& x, double eps,
                                                       const Dims& d) {
  const int64_t batch = x.size(0);
  auto rows = at::empty({batch * d.o * d.M, d.r * d.N}, x.options());
  auto rstd = at::empty({batch * d.M, d.N}, x.options());
  const TokenGrid grid(x, d);
  const RowsLayout layout(d);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mlpmix_raft_normalize_into_rows", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* x_data = x.const_data_ptr<scalar_t>();
    scalar_t* rows_data = rows.mutable_data_ptr<scalar_t>();
    scalar_t* rstd_data = rstd.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, batch * d.M, grain_size(d), [&](int64_t begin, int64_t end) {
      std::vector<acc_t> centred(d.C);
      for (int64_t line = begin; line < end; ++line) {
        const int64_t b = line / d.M, m = line % d.M;
        for (int64_t n = 0; n < d.N; ++n) {
          const scalar_t* token = x_data + grid.offset(b, m, n);
          acc_t mean = 0;
          for (int64_t c = 0; c < d.C; ++c) {
            centred[c] = static_cast<acc_t>(token[c * grid.channel_stride]);
            mean += centred[c];
          }
          mean /= d.C;
          acc_t variance = 0;
          for (int64_t c = 0; c < d.C; ++c) {
            centred[c] -= mean;
            variance += centred[c] * centred[c];
          }
          const acc_t inv_std = acc_t(1) / std::sqrt(variance / d.C + static_cast<acc_t>(eps));
          rstd_data[line * d.N + n] = static_cast<scalar_t>(inv_std);
          scalar_t* row = rows_data + layout.token_offset(b, m, n);
          for (int64_t c = 0; c < d.C; ++c) {
            row[layout.channel_offsets[c]] = static_cast<scalar_t>(centred[c] * inv_std);
          }
        }
      }
    });
  });
  return {rows, rstd};
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
  auto normalized = std::get<0>(normalize_into_rows(x, eps, dims));
  return mix_rows(normalized, norm_weight, norm_bias, fc1_weight, fc1_bias, fc2_weight,
                  fc2_bias, x.size(0), dims);
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
  auto [normalized, rstd] = normalize_into_rows(x, eps, dims);
  auto [grad_normalized, gnw, gnb, g1w, g1b, g2w, g2b] =
      mix_rows_backward(grad_out, normalized, norm_weight, norm_bias, fc1_weight, fc1_bias,
                        fc2_weight, fc2_bias, x.size(0), dims);
  auto grad_x = normalize_backward_from_rows(grad_normalized, normalized, rstd, x.size(0), dims);
  return {grad_x, gnw, gnb, g1w, g1b, g2w, g2b};
}

}  // namespace
}  // namespace mlpmix::raft_token_mixing_impl

TORCH_LIBRARY_IMPL(mlpmix, CPU, m) {
  m.impl("raft_token_mixing", &mlpmix::raft_token_mixing_impl::raft_token_mixing_cpu);
  m.impl("raft_token_mixing_backward",
         &mlpmix::raft_token_mixing_impl::raft_token_mixing_backward_cpu);
}
