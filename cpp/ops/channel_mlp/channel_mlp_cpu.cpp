// mlpmix::channel_mlp CPU kernels: the branch fused per tile of tokens.
//
// A tile is `rows` consecutive tokens held as row-major matrices: the LayerNorm output
// U (rows, C) and the hidden layer A (rows, hidden); fc2 writes straight into the output's
// rows:
//
//   A = GELU(U @ W1^T + b1),   out[tile] = A @ W2^T + b2
//
// Per tile, in cache: the LayerNorm of x into U, fc1 (ATen GEMM), bias and exact GELU in one
// vectorised pass (copying the pre-activation out when the forward keeps it), fc2 (ATen GEMM
// into the output), bias. The backward likewise: LayerNorm recomputed, GELU and its slope
// from the kept pre-activation (or fc1 recomputed), the weight gradients accumulated per
// thread by GEMMs with beta = 1, the LayerNorm backward straight into grad_x. No
// hidden-width tensor exists but the kept pre-activation (T, hidden), and no whole-tensor
// intermediate of width C but the output and grad_x themselves.
//
// Precision: see common/layer_norm_gelu_cpu.h.
#pragma GCC diagnostic ignored "-Wpsabi"

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "common/checked.h"
#include "common/dtypes.h"
#include "common/gemm_cpu.h"
#include "common/reduced_precision_cpu.h"
#include "common/layer_norm_gelu_cpu.h"
#include "common/mlp_gradients_cpu.h"
#include "common/op_outputs.h"
#include "common/phase.h"
#include "common/sequences.h"
#include "common/simd.h"
#include "ops/channel_mlp/channel_mlp.h"

namespace mlpmix::channel_mlp_impl {
namespace {

using namespace cpu_math;

// ---- geometry ------------------------------------------------------------------------

// Element offsets of the tokens of a tensor (..., C) with unit channel stride, in the
// row-major order of its leading axes: any other strides are read in place.
class Tokens {
 public:
  explicit Tokens(const at::Tensor& t)
      : layout_(t.dim() == 1 ? sequence_layout(t.unsqueeze(0), 0)
                             : sequence_layout(t, t.dim() - 2)),
        per_sequence_(t.dim() == 1 ? 1 : t.size(-2)) {}

  int64_t offset(int64_t token) const {
    return layout_.offsets[token / per_sequence_] +
           (token % per_sequence_) * layout_.token_stride;
  }

 private:
  SequenceLayout layout_;
  int64_t per_sequence_;
};

// One call's tiling: `tokens` tokens in `tiles` tiles of about 512 rows (1024 for 16-bit
// tiles: the same bytes; `tile_rows` at most), grouped into `chunks` runs of consecutive
// tiles, one per thread. Measured on RaftMLP's and DynaMixer's shapes: 512-row float32 tiles
// keep ATen's GEMMs at least as fast as one whole-tensor GEMM (whose output leaves the cache),
// while 128-row ones pay for packing the weights again per tile; bf16 fwd+bwd under autocast
// ran 0-18% faster in 1024-row tiles than in 512-row ones (Xeon AMX, 2 threads). The tile
// count is a multiple of the thread count where the tokens allow it, so the chunks are even;
// a call too small for two tiles is one chunk, run outside a parallel region, so that ATen's
// GEMMs use every thread themselves.
struct Tiling {
  int64_t tokens, tile_rows, tiles, chunks;

  Tiling(int64_t tokens_, int64_t element_size) : tokens(tokens_) {
    const int64_t target_rows = element_size == 2 ? 1024 : 512;
    const int64_t threads = at::get_num_threads();
    tiles = std::max<int64_t>((tokens + target_rows / 2) / target_rows, 1);
    if (tiles > 1) {
      tiles = (tiles + threads - 1) / threads * threads;
    }
    tile_rows = (tokens + tiles - 1) / tiles;
    tiles = (tokens + tile_rows - 1) / tile_rows;  // no empty tile when tiles^2 > tokens
    chunks = tiles > 1 ? std::min(threads, tiles) : 1;
  }

  // Tiles [first(k), first(k + 1)) belong to chunk k.
  int64_t first(int64_t chunk) const { return chunk * tiles / chunks; }
  int64_t row0(int64_t tile) const { return tile * tile_rows; }
  int64_t rows(int64_t tile) const { return std::min(tile_rows, tokens - row0(tile)); }

  // Runs body(chunk_begin, chunk_end) over the chunks.
  template <typename Body>
  void run(const Body& body) const {
    if (chunks == 1) {
      body(0, 1);
    } else {
      cpu::parallel_for(0, chunks, 1, body);
    }
  }
};

// ---- per-tile passes (inlined into each clone) -------------------------------------------

// The LayerNorm (affine applied) of tokens [row0, row0 + rows) into u (rows, C); their
// statistics into mean/rstd when given.
template <typename T>
MLPMIX_INLINE void normalize_rows_impl(const T* x, const Tokens& tokens, int64_t row0,
                                       int64_t rows, int64_t C, const T* gamma, const T* beta,
                                       double eps, T* u, double* mean_out, double* rstd_out) {
  for (int64_t i = 0; i < rows; ++i) {
    const T* token = x + tokens.offset(row0 + i);
    double mean, rstd;
    token_moments(token, C, eps, &mean, &rstd);
    if (mean_out != nullptr) {
      mean_out[i] = mean;
      rstd_out[i] = rstd;
    }
    normalize_run(token, gamma, beta, C, mean, rstd, u + i * C);
  }
}

// Pre-activations h (rows, width) row-major, + bias[j] when given: GELU into `a` and, when
// given, GELU' into `s` (either may be h); h + bias copied to `kept` when given. float or
// bfloat16 storage (the slope in float), float arithmetic.
template <typename T>
MLPMIX_INLINE void gelu_rows_impl(const T* h, const T* bias, int64_t rows, int64_t width,
                                  T* kept, T* a, float* s) {
  constexpr int64_t L = FloatVec::lanes;
  using simd::load16;
  using simd::store16;
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t e0 = i * width;
    int64_t j = 0;
    for (; j + 16 <= width; j += 16) {
      auto v = load16(h + e0 + j);
      if (bias != nullptr) {
        v += load16(bias + j);
      }
      if (kept != nullptr) store16(kept + e0 + j, v);
      if (s == nullptr) {
        store16(a + e0 + j, gelu_value(v));
      } else {
        simd::Float16 value, slope;
        gelu_and_slope(v, &value, &slope);
        store16(a + e0 + j, value);
        store16(s + e0 + j, slope);
      }
    }
    for (; j < width; j += L) {
      const int64_t count = std::min(L, width - j);
      auto v = load_partial(h + e0 + j, count);
      if (bias != nullptr) {
        v += load_partial(bias + j, count);
      }
      if (kept != nullptr) store_partial(kept + e0 + j, v, count);
      if (s == nullptr) {
        store_partial(a + e0 + j, gelu_value(v), count);
      } else {
        FloatVec::type value, slope;
        gelu_and_slope(v, &value, &slope);
        store_partial(a + e0 + j, value, count);
        store_partial(s + e0 + j, slope, count);
      }
    }
  }
}

MLPMIX_INLINE void gelu_rows_impl(const double* h, const double* bias, int64_t rows,
                                  int64_t width, double* kept, double* a, double* s) {
  for (int64_t e = 0; e < rows * width; ++e) {
    const double v = h[e] + (bias != nullptr ? bias[e % width] : 0.0);
    if (kept != nullptr) {
      kept[e] = v;
    }
    double value, slope;
    gelu_and_slope(v, &value, &slope);
    a[e] = value;
    if (s != nullptr) {
      s[e] = slope;
    }
  }
}

// y (rows, width) = bias[j] per row: the products then accumulate onto it, rounding once.
template <typename T>
MLPMIX_INLINE void fill_bias_rows_impl(T* y, const T* bias, int64_t rows, int64_t width) {
  for (int64_t i = 0; i < rows; ++i) {
    std::memcpy(y + i * width, bias, width * sizeof(T));
  }
}

// m (rows, width) row-major, *= s first when s is given; its column sums added to sums
// (width, double).
template <typename T, typename S>
MLPMIX_INLINE void column_sums_impl(T* m, const S* s, int64_t rows, int64_t width,
                                    double* sums) {
  for (int64_t i = 0; i < rows; ++i) {
    T* row = m + i * width;
    const S* s_row = s != nullptr ? s + i * width : nullptr;
    int64_t j = 0;
    for (; j + 4 <= width; j += 4) {
      Double4 v = load4(row + j);
      if (s_row != nullptr) {
        v *= load4(s_row + j);  // the exact product, rounded once: T's own product
        store4(row + j, v);
        v = load4(row + j);
      }
      store4(sums + j, load4(sums + j) + v);
    }
    for (; j < width; ++j) {
      if (s_row != nullptr) {
        row[j] = static_cast<T>(static_cast<S>(row[j]) * s_row[j]);
      }
      sums[j] += static_cast<double>(row[j]);
    }
  }
}

// The same for bfloat16 m (float s), in float: row by row (the tile streams through once, in
// memory order), the column totals in a float row that stays in the L1 cache, each product
// rounded to bfloat16 as stored before it is summed.
MLPMIX_INLINE void column_sums_impl(c10::BFloat16* m, const float* s, int64_t rows,
                                    int64_t width, double* sums) {
  using simd::load16;
  using simd::store16;
  std::vector<float> totals(width);
  float* total = totals.data();
  for (int64_t i = 0; i < rows; ++i) {
    c10::BFloat16* row = m + i * width;
    const float* s_row = s != nullptr ? s + i * width : nullptr;
    int64_t j = 0;
    for (; j + 16 <= width; j += 16) {
      if (s_row != nullptr) {
        store16(row + j, load16(row + j) * load16(s_row + j));
      }
      store16(total + j, load16(total + j) + load16(row + j));
    }
    for (; j < width; ++j) {
      if (s_row != nullptr) {
        row[j] = static_cast<float>(row[j]) * s_row[j];
      }
      total[j] += static_cast<float>(row[j]);
    }
  }
  for (int64_t j = 0; j < width; ++j) {
    sums[j] += total[j];
  }
}

// The tokens [row0, row0 + rows) of a tensor laid out by `tokens` into g (rows, C).
template <typename T>
MLPMIX_INLINE void gather_rows_impl(const T* src, const Tokens& tokens, int64_t row0,
                                    int64_t rows, int64_t C, T* g) {
  for (int64_t i = 0; i < rows; ++i) {
    std::memcpy(g + i * C, src + tokens.offset(row0 + i), C * sizeof(T));
  }
}

// LayerNorm backward of tokens [row0, row0 + rows) given gu (rows, C), the gradient of the
// LayerNorm output: grad_x rows (contiguous (T, C)) and the affine's gradients.
template <typename T>
MLPMIX_INLINE void normalize_backward_rows_impl(const T* gu, const T* x, const Tokens& tokens,
                                                const double* mean, const double* rstd,
                                                const T* gamma, int64_t row0, int64_t rows,
                                                int64_t C, T* grad_x, double* grad_gamma,
                                                double* grad_beta) {
  for (int64_t i = 0; i < rows; ++i) {
    token_norm_backward(
        x + tokens.offset(row0 + i), 1, C, [&](int64_t) MLPMIX_VISIT { return gu + i * C; },
        mean[i], rstd[i], gamma, grad_x + (row0 + i) * C, grad_gamma, grad_beta);
  }
}

// ---- the cloned entry points (target_clones takes no templates: one overload per dtype) --

// T: the storage of x and the tiles; S: of the GELU slopes (float for bfloat16 tiles).
#define MLPMIX_CHANNEL_MLP_CLONES(T, S)                                                           \
  MLPMIX_CLONE_FOR_AVX512 void normalize_rows(const T* x, const Tokens& tokens, int64_t row0,     \
                                              int64_t rows, int64_t C, const T* gamma,            \
                                              const T* beta, double eps, T* u, double* mean,      \
                                              double* rstd) {                                     \
    normalize_rows_impl(x, tokens, row0, rows, C, gamma, beta, eps, u, mean, rstd);               \
  }                                                                                               \
  MLPMIX_CLONE_FOR_AVX512 void gelu_rows(const T* h, const T* bias, int64_t rows,                 \
                                         int64_t width, T* kept, T* a, S* s) {                    \
    gelu_rows_impl(h, bias, rows, width, kept, a, s);                                             \
  }                                                                                               \
  MLPMIX_CLONE_FOR_AVX512 void fill_bias_rows(T* y, const T* bias, int64_t rows,                  \
                                              int64_t width) {                                    \
    fill_bias_rows_impl(y, bias, rows, width);                                                    \
  }                                                                                               \
  MLPMIX_CLONE_FOR_AVX512 void column_sums(T* m, const S* s, int64_t rows, int64_t width,         \
                                           double* sums) {                                        \
    column_sums_impl(m, s, rows, width, sums);                                                    \
  }                                                                                               \
  MLPMIX_CLONE_FOR_AVX512 void gather_rows(const T* src, const Tokens& tokens, int64_t row0,      \
                                           int64_t rows, int64_t C, T* g) {                       \
    gather_rows_impl(src, tokens, row0, rows, C, g);                                              \
  }                                                                                               \
  MLPMIX_CLONE_FOR_AVX512 void normalize_backward_rows(                                           \
      const T* gu, const T* x, const Tokens& tokens, const double* mean, const double* rstd,      \
      const T* gamma, int64_t row0, int64_t rows, int64_t C, T* grad_x, double* grad_gamma,       \
      double* grad_beta) {                                                                        \
    normalize_backward_rows_impl(gu, x, tokens, mean, rstd, gamma, row0, rows, C, grad_x,         \
                                 grad_gamma, grad_beta);                                          \
  }

MLPMIX_CHANNEL_MLP_CLONES(float, float)
MLPMIX_CHANNEL_MLP_CLONES(double, double)
MLPMIX_CHANNEL_MLP_CLONES(at::BFloat16, float)
#undef MLPMIX_CHANNEL_MLP_CLONES

// A (rows, cols) matrix over the start of a per-thread buffer.
at::Tensor matrix(const at::Tensor& buffer, int64_t rows, int64_t cols) {
  return at::from_blob(buffer.data_ptr(), {rows, cols}, buffer.options());
}

int64_t token_count(const at::Tensor& x) { return x.numel() / x.size(-1); }

// ---- forward -----------------------------------------------------------------------------

// out (contiguous, shaped like x), and the fc1 pre-activation (T, hidden) when `keep_hidden`:
// the op's kernel and the internal forward's.
template <bool keep_hidden>
auto channel_mlp_cpu(const Dims& d, const at::Tensor& x_any, const at::Tensor& norm_weight,
                     const at::Tensor& norm_bias, const at::Tensor& fc1_weight,
                     const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
                     const at::Tensor& fc2_bias, double eps) {
  const auto x = contiguous_channels(x_any);
  const auto options = x.options();
  const int64_t T = token_count(x);
  auto out = at::empty(x.sizes(), options);
  auto hidden = keep_hidden ? at::empty({T, d.hidden}, options) : at::Tensor();
  if (T == 0) {
    return op_outputs<keep_hidden>(out, hidden);
  }
  const Tiling tiling(T, x.element_size());
  const Tokens tokens(x);
  const auto w1_t = fc1_weight.t(), w2_t = fc2_weight.t();
  const auto gamma = norm_weight.contiguous(), beta = norm_bias.contiguous();
  const auto b1 = fc1_bias.contiguous(), b2 = fc2_bias.contiguous();
  const auto out_rows = out.view({T, d.C});
  MLPMIX_DISPATCH_CPU_FLOATING_AND_BF16(x.scalar_type(), "mlpmix_channel_mlp_cpu", [&] {
    using slope_t = at::opmath_type<scalar_t>;
    const scalar_t* x_data = x.const_data_ptr<scalar_t>();
    tiling.run([&](int64_t chunk_begin, int64_t chunk_end) {
      const auto u_buffer = at::empty({tiling.tile_rows * d.C}, options);
      const auto a_buffer = at::empty({tiling.tile_rows * d.hidden}, options);
      for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
        for (int64_t tile = tiling.first(chunk); tile < tiling.first(chunk + 1); ++tile) {
          const int64_t row0 = tiling.row0(tile), rows = tiling.rows(tile);
          const auto u = matrix(u_buffer, rows, d.C);
          auto a = matrix(a_buffer, rows, d.hidden);
          scalar_t* a_data = a.mutable_data_ptr<scalar_t>();
          phase("channel_mlp.layer_norm", [&] {
            normalize_rows(x_data, tokens, row0, rows, d.C, gamma.const_data_ptr<scalar_t>(),
                           beta.const_data_ptr<scalar_t>(), eps, u.mutable_data_ptr<scalar_t>(),
                           nullptr, nullptr);
          });
          phase("channel_mlp.fc1", [&] { cpu::gemm_out(a, u, w1_t); });
          phase("channel_mlp.gelu", [&] {
            gelu_rows(a_data, b1.const_data_ptr<scalar_t>(), rows, d.hidden,
                      keep_hidden ? hidden.mutable_data_ptr<scalar_t>() + row0 * d.hidden
                                  : nullptr,
                      a_data, static_cast<slope_t*>(nullptr));
          });
          phase("channel_mlp.fc2", [&] {
            auto y = out_rows.narrow(0, row0, rows);
            fill_bias_rows(y.mutable_data_ptr<scalar_t>(), b2.const_data_ptr<scalar_t>(), rows,
                           d.C);
            cpu::gemm_out(y, a, w2_t, /*accumulate=*/true);
          });
        }
      }
    });
  });
  return op_outputs<keep_hidden>(out, hidden);
}

// ---- backward ----------------------------------------------------------------------------

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
channel_mlp_backward_cpu(const Dims& d, const at::Tensor& grad_out_any, const at::Tensor& x_any,
                         const at::Tensor& norm_weight, const at::Tensor& norm_bias,
                         const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                         const at::Tensor& fc2_weight, const at::Tensor& fc2_bias, double eps,
                         const std::optional<at::Tensor>& hidden_given) {
  const auto x = contiguous_channels(x_any);
  const auto grad_out = contiguous_channels(grad_out_any);
  const auto options = x.options();
  const int64_t T = token_count(x);
  auto grad_x = at::empty(x.sizes(), options);
  if (T == 0) {
    return no_token_gradients(grad_x, norm_weight, norm_bias, fc1_weight, fc1_bias,
                              fc2_weight, fc2_bias);
  }
  const auto hidden = hidden_given.has_value()
                          ? std::optional<at::Tensor>(hidden_given->contiguous())
                          : std::nullopt;
  const Tiling tiling(T, x.element_size());
  const Tokens x_tokens(x), grad_tokens(grad_out);
  const auto w1_t = fc1_weight.t(), w2_t = fc2_weight.t();
  const auto w1 = fc1_weight.contiguous(), w2 = fc2_weight.contiguous();
  const auto gamma = norm_weight.contiguous(), beta = norm_bias.contiguous();
  const auto b1 = fc1_bias.contiguous();
  std::vector<MlpGradients> partials(tiling.chunks);
  MLPMIX_DISPATCH_CPU_FLOATING_AND_BF16(x.scalar_type(), "mlpmix_channel_mlp_backward_cpu", [&] {
    using slope_t = at::opmath_type<scalar_t>;
    const auto wide = options.dtype(c10::CppTypeToScalarType<slope_t>::value);
    const scalar_t* x_data = x.const_data_ptr<scalar_t>();
    const scalar_t* grad_out_data = grad_out.const_data_ptr<scalar_t>();
    scalar_t* grad_x_data = grad_x.mutable_data_ptr<scalar_t>();
    const scalar_t* gamma_data = gamma.const_data_ptr<scalar_t>();
    tiling.run([&](int64_t chunk_begin, int64_t chunk_end) {
      const int64_t R = tiling.tile_rows;
      const auto u_buffer = at::empty({R * d.C}, options);
      const auto g_buffer = at::empty({R * d.C}, options);   // grad of fc2 output
      const auto gu_buffer = at::empty({R * d.C}, options);  // grad of the LayerNorm output
      const auto a_buffer = at::empty({R * d.hidden}, options);  // h, GELU, grad of h
      const auto s_buffer = at::empty({R * d.hidden}, wide);     // GELU'
      std::vector<double> mean(R), rstd(R);
      for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
        MlpGradients& p = partials[chunk];
        p = MlpGradients(d.hidden, d.C, d.C, wide);
        for (int64_t tile = tiling.first(chunk); tile < tiling.first(chunk + 1); ++tile) {
          const int64_t row0 = tiling.row0(tile), rows = tiling.rows(tile);
          const auto u = matrix(u_buffer, rows, d.C);
          auto g = matrix(g_buffer, rows, d.C);
          auto gu = matrix(gu_buffer, rows, d.C);
          auto a = matrix(a_buffer, rows, d.hidden);
          auto s = matrix(s_buffer, rows, d.hidden);
          scalar_t* a_data = a.mutable_data_ptr<scalar_t>();
          slope_t* s_data = s.mutable_data_ptr<slope_t>();
          phase("channel_mlp_backward.layer_norm", [&] {
            normalize_rows(x_data, x_tokens, row0, rows, d.C, gamma_data,
                           beta.const_data_ptr<scalar_t>(), eps, u.mutable_data_ptr<scalar_t>(),
                           mean.data(), rstd.data());
          });
          phase("channel_mlp_backward.fc2_bias", [&] {
            gather_rows(grad_out_data, grad_tokens, row0, rows, d.C,
                        g.mutable_data_ptr<scalar_t>());
            column_sums(g.mutable_data_ptr<scalar_t>(), static_cast<const slope_t*>(nullptr),
                        rows, d.C, p.fc2_bias.data());
          });
          phase("channel_mlp_backward.gelu", [&] {
            if (hidden.has_value()) {
              gelu_rows(hidden->const_data_ptr<scalar_t>() + row0 * d.hidden,
                        static_cast<const scalar_t*>(nullptr), rows, d.hidden,
                        static_cast<scalar_t*>(nullptr), a_data, s_data);
            } else {
              cpu::gemm_out(a, u, w1_t);
              gelu_rows(a_data, b1.const_data_ptr<scalar_t>(), rows, d.hidden,
                        static_cast<scalar_t*>(nullptr), a_data, s_data);
            }
          });
          const bool accumulate = tile != tiling.first(chunk);
          phase("channel_mlp_backward.fc2_weight", [&] {
            cpu::gemm_out(p.fc2_weight, g.t(), a, accumulate);
          });
          phase("channel_mlp_backward.fc2_input", [&] {
            cpu::gemm_out(a, g, w2);  // grad of the GELU output
          });
          phase("channel_mlp_backward.gelu_backward", [&] {  // grad of h, fc1's bias
            column_sums(a_data, s_data, rows, d.hidden, p.fc1_bias.data());
          });
          phase("channel_mlp_backward.fc1_weight", [&] {
            cpu::gemm_out(p.fc1_weight, a.t(), u, accumulate);
          });
          phase("channel_mlp_backward.fc1_input", [&] { cpu::gemm_out(gu, a, w1); });
          phase("channel_mlp_backward.layer_norm_backward", [&] {
            normalize_backward_rows(gu.const_data_ptr<scalar_t>(), x_data, x_tokens,
                                    mean.data(), rstd.data(), gamma_data, row0, rows, d.C,
                                    grad_x_data, p.norm_weight.data(), p.norm_bias.data());
          });
        }
      }
    });
  });
  auto [grad_norm_weight, grad_norm_bias, grad_fc1_weight, grad_fc1_bias, grad_fc2_weight,
        grad_fc2_bias] = sum_gradients(partials, x.scalar_type());
  return {grad_x,          grad_norm_weight, grad_norm_bias, grad_fc1_weight,
          grad_fc1_bias,   grad_fc2_weight,  grad_fc2_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(mlpmix, CPU, m) {
  m.impl("channel_mlp",
         checked<"channel_mlp", check_inputs, cpu::with_native_bf16<channel_mlp_cpu<false>>>);
  m.impl("_channel_mlp_forward", checked<"_channel_mlp_forward", check_inputs,
                                         cpu::with_native_bf16<channel_mlp_cpu<true>>>);
  m.impl("channel_mlp_backward",
         checked<"channel_mlp_backward", check_backward,
                 cpu::with_native_bf16<channel_mlp_backward_cpu>>);
}

}  // namespace mlpmix::channel_mlp_impl
