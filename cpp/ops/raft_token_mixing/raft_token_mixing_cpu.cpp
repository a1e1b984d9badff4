// mlpmix::raft_token_mixing CPU kernels: the whole branch fused per tile of lines.
//
// A line (b, m) is the N tokens along the mixed axis at position m of the other spatial
// axis; it gives the o MLP rows (raft j) of spec 1.1, whose feature i*N + n is channel
// c = i*o + j of token n. A tile of `lines` consecutive lines is held feature-major and
// transposed: the (F, R) matrix, F = r*N, R = lines*o, with row n*r + i and column l*o + j
// holding channel i*o + j of token n of line l. So the o channels of raft position i of a
// token are one contiguous run, and moving a tile in and out of x's layout is a run of
// plain copies: there is no transpose anywhere. The MLP runs on the transposed tile with
// its weights' feature axis permuted to (n, i) once per call:
//
//   hidden^T (hidden, R) = W1p (hidden, F) @ X (F, R),   out^T (F, R) = W2p @ GELU(hidden^T)
//
// Per tile, in cache: the LayerNorm of x into X, fc1 (ATen GEMM), bias and exact GELU in one
// vectorised pass, fc2 (ATen GEMM), bias and copy into the output; the backward likewise,
// with the weight gradients accumulated per thread by GEMMs with beta = 1. No whole-tensor
// intermediate exists except the fc1 pre-activation that the forward keeps for the backward
// when autograd asks for it (_raft_token_mixing_forward): (B*M, hidden, o), one contiguous
// (hidden, o) block per line.
//
// Precision: see common/layer_norm_gelu_cpu.h. The vector helpers are always inlined: no
// vector crosses a call boundary.
#pragma GCC diagnostic ignored "-Wpsabi"

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
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
#include "ops/raft_token_mixing/raft_token_mixing.h"

namespace mlpmix::raft_token_mixing_impl {
namespace {

using namespace cpu_math;

// ---- geometry ------------------------------------------------------------------------

// Element offsets into a (B, H, W, C) tensor with unit channel stride of token n of line
// `line` = b*M + m along the mixed axis.
struct TokenGrid {
  int64_t batch_stride, token_stride, line_stride;

  TokenGrid(const at::Tensor& t, const Dims& d)
      : batch_stride(t.stride(0)),
        token_stride(t.stride(d.axis)),
        line_stride(t.stride(3 - d.axis)) {}

  int64_t offset(int64_t line, int64_t M, int64_t n) const {
    return (line / M) * batch_stride + (line % M) * line_stride + n * token_stride;
  }
};

// One call's tiling: `lines` = B*M lines, `tile_lines` lines per tile, tiles grouped into
// `chunks` runs of consecutive tiles (one per thread).
struct Tiling {
  int64_t lines, tile_lines, tiles, chunks;

  // Tiles [first(k), first(k + 1)) belong to chunk k.
  int64_t first(int64_t chunk) const { return chunk * tiles / chunks; }
};

// About 512 KiB of per-tile buffers (the backward's two F-row and two hidden-row matrices),
// at least one line.
Tiling make_tiling(int64_t batch, const Dims& d, int64_t element_size) {
  constexpr int64_t budget = 512 * 1024;
  const int64_t column_bytes = 2 * (d.r * d.N + d.hidden) * element_size;
  Tiling t;
  t.lines = batch * d.M;
  t.tile_lines =
      std::clamp<int64_t>(budget / (column_bytes * d.o), 1, std::max<int64_t>(t.lines, 1));
  t.tiles = (t.lines + t.tile_lines - 1) / t.tile_lines;
  t.chunks = std::min<int64_t>(at::get_num_threads(), t.tiles);
  return t;
}

// ---- vector helpers (inlined into each clone) ----------------------------------------

// Prefetches the C channels of a token.
template <typename T>
MLPMIX_INLINE void prefetch_token(const T* token, int64_t C) {
  for (int64_t c = 0; c < C; c += 64 / sizeof(T)) {
    __builtin_prefetch(token + c);
  }
}

// Calls visit(l, n, token) for the tokens of lines [line0, line0 + lines) of a tensor laid
// out by `grid`, token-major (along H the lines of a tile are adjacent in memory),
// prefetching each line's next token. `visit` must be an always-inline lambda (MLPMIX_VISIT)
// so that it is built for the instruction set of the clone that calls it.
template <typename T, typename Visit>
MLPMIX_INLINE void for_each_token(T* data, const TokenGrid& grid, const Dims& d, int64_t line0,
                                  int64_t lines, Visit&& visit) {
  for (int64_t n = 0; n < d.N; ++n) {
    for (int64_t l = 0; l < lines; ++l) {
      T* token = data + grid.offset(line0 + l, d.M, n);
      if (n + 1 < d.N) {
        prefetch_token(token + grid.token_stride, d.C);
      }
      visit(l, n, token);
    }
  }
}

// ---- LayerNorm into a tile -------------------------------------------------------------

// The LayerNorm (affine applied) of lines [line0, line0 + lines) of x into the tile's
// (F, R) matrix `xt`; the statistics per token, index l*N + n, into mean/rstd when given.
template <typename T>
MLPMIX_INLINE void normalize_tile_impl(const T* x, const TokenGrid& grid, const Dims& d,
                                       int64_t line0, int64_t lines, const T* gamma,
                                       const T* beta, double eps, T* xt, double* mean_out,
                                       double* rstd_out) {
  const int64_t R = lines * d.o;
  for_each_token(x, grid, d, line0, lines,
                 [&](int64_t l, int64_t n, const T* token) MLPMIX_VISIT {
    double mean, rstd;
    token_moments(token, d.C, eps, &mean, &rstd);
    if (mean_out != nullptr) {
      mean_out[l * d.N + n] = mean;
      rstd_out[l * d.N + n] = rstd;
    }
    for (int64_t i = 0; i < d.r; ++i) {
      normalize_run(token + i * d.o, gamma + i * d.o, beta + i * d.o, d.o, mean, rstd,
                    xt + (n * d.r + i) * R + l * d.o);
    }
  });
}

// ---- moving tiles in and out of x's layout ------------------------------------------------

// out(token n of line l, channel i*o + j) = yt(n*r + i, l*o + j) + bias(n*r + i).
template <typename T>
MLPMIX_INLINE void write_output_impl(const T* yt, const T* bias, const Dims& d, int64_t line0,
                                     int64_t lines, T* out, const TokenGrid& grid) {
  const int64_t R = lines * d.o;
  for_each_token(out, grid, d, line0, lines,
                 [&](int64_t l, int64_t n, T* token) MLPMIX_VISIT {
    for (int64_t i = 0; i < d.r; ++i) {
      using Math = at::opmath_type<T>;
      const T* in = yt + (n * d.r + i) * R + l * d.o;
      const Math b = bias[n * d.r + i];
      T* to = token + i * d.o;
      for (int64_t j = 0; j < d.o; ++j) {
        to[j] = static_cast<T>(static_cast<Math>(in[j]) + b);
      }
    }
  });
}

// gt(n*r + i, l*o + j) = g(token n of line l, channel i*o + j).
template <typename T>
MLPMIX_INLINE void gather_tile_impl(const T* g, const TokenGrid& grid, const Dims& d,
                                    int64_t line0, int64_t lines, T* gt) {
  const int64_t R = lines * d.o;
  for_each_token(g, grid, d, line0, lines,
                 [&](int64_t l, int64_t n, const T* token) MLPMIX_VISIT {
    for (int64_t i = 0; i < d.r; ++i) {
      std::memcpy(gt + (n * d.r + i) * R + l * d.o, token + i * d.o, d.o * sizeof(T));
    }
  });
}

// ---- LayerNorm backward from a tile ----------------------------------------------------

// From gt, the gradient of the LayerNorm output in the tile's (F, R) layout, and x: grad_x of
// the tile's tokens (ATen's formulation from x, mean and 1/std, in double), and the affine's
// gradients added to grad_gamma/grad_beta (C, double).
template <typename T>
MLPMIX_INLINE void normalize_backward_tile_impl(const T* gt, const T* x,
                                                const TokenGrid& x_grid, const double* mean,
                                                const double* rstd, const T* gamma,
                                                const Dims& d, int64_t line0, int64_t lines,
                                                T* grad_x, const TokenGrid& grad_grid,
                                                double* grad_gamma, double* grad_beta) {
  const int64_t R = lines * d.o;
  for_each_token(x, x_grid, d, line0, lines,
                 [&](int64_t l, int64_t n, const T* token) MLPMIX_VISIT {
    token_norm_backward(
        token, d.r, d.o,
        [&](int64_t i) MLPMIX_VISIT { return gt + (n * d.r + i) * R + l * d.o; },
        mean[l * d.N + n], rstd[l * d.N + n], gamma,
        grad_x + grad_grid.offset(line0 + l, d.M, n), grad_gamma, grad_beta);
  });
}

// ---- GELU and sums over a tile's rows ---------------------------------------------------

// Where element (k, l, j) of a tile's hidden layer lives (unit k, line l of the tile, raft
// j): k*row + l*line + j. The tile's buffers are {R, o}; the kept pre-activation, (B*M,
// hidden, o), is {o, hidden*o} from the tile's first line.
struct HiddenLayout {
  int64_t row, line;
};

// The tile's fc1 output h (hidden, R), in place: h + bias[k] is copied to `kept` (laid out
// by `kept_layout`) when given, and h becomes GELU(h + bias[k]). float or bfloat16 storage,
// float arithmetic.
template <typename T>
MLPMIX_INLINE void bias_gelu_impl(T* h, const T* bias, int64_t rows, int64_t lines, int64_t o,
                                  T* kept, HiddenLayout kept_layout) {
  constexpr int64_t L = FloatVec::lanes;
  using simd::load_vec;
  using simd::store_vec;
  for (int64_t l = 0; l < lines; ++l) {
    for (int64_t k = 0; k < rows; ++k) {
      T* run = h + k * lines * o + l * o;
      T* keep = kept != nullptr ? kept + k * kept_layout.row + l * kept_layout.line : nullptr;
      const auto b = FloatVec::broadcast(static_cast<float>(bias[k]));
      const auto b16 = simd::Float16{} + static_cast<float>(bias[k]);
      int64_t j = 0;
      for (; j + 16 <= o; j += 16) {
        const auto v = simd::load16(run + j) + b16;
        if (keep != nullptr) {
          simd::store16(keep + j, v);
        }
        simd::store16(run + j, gelu_value(v));
      }
      for (; j < o; j += L) {
        const int64_t count = std::min(L, o - j);
        const auto v = load_partial(run + j, count) + b;
        if (keep != nullptr) {
          store_partial(keep + j, v, count);
        }
        store_partial(run + j, gelu_value(v), count);
      }
    }
  }
}

MLPMIX_INLINE void bias_gelu_impl(double* h, const double* bias, int64_t rows, int64_t lines,
                                  int64_t o, double* kept, HiddenLayout kept_layout) {
  for (int64_t l = 0; l < lines; ++l) {
    for (int64_t k = 0; k < rows; ++k) {
      double* run = h + k * lines * o + l * o;
      for (int64_t j = 0; j < o; ++j) {
        const double v = run[j] + bias[k];
        if (kept != nullptr) {
          kept[k * kept_layout.row + l * kept_layout.line + j] = v;
        }
        run[j] = gelu_value(v);
      }
    }
  }
}

// From the pre-activation h (laid out by `layout`, + bias[k] when given): a = GELU and
// s = GELU', both (rows, R) tile buffers; a may be h. float or bfloat16 storage (the slope in
// float), float arithmetic.
template <typename T>
MLPMIX_INLINE void gelu_slope_impl(const T* h, HiddenLayout layout, const T* bias, int64_t rows,
                                   int64_t lines, int64_t o, T* a, float* s) {
  constexpr int64_t L = FloatVec::lanes;
  using simd::load_vec;
  using simd::store_vec;
  for (int64_t l = 0; l < lines; ++l) {
    for (int64_t k = 0; k < rows; ++k) {
      const T* run = h + k * layout.row + l * layout.line;
      T* a_run = a + k * lines * o + l * o;
      float* s_run = s + k * lines * o + l * o;
      const float bias_k = bias != nullptr ? static_cast<float>(bias[k]) : 0.0f;
      const auto b = FloatVec::broadcast(bias_k);
      const auto b16 = simd::Float16{} + bias_k;
      int64_t j = 0;
      for (; j + 16 <= o; j += 16) {
        simd::Float16 value, slope;
        gelu_and_slope(simd::load16(run + j) + b16, &value, &slope);
        simd::store16(a_run + j, value);
        simd::store16(s_run + j, slope);
      }
      for (; j < o; j += L) {
        const int64_t count = std::min(L, o - j);
        FloatVec::type value, slope;
        gelu_and_slope(load_partial(run + j, count) + b, &value, &slope);
        store_partial(a_run + j, value, count);
        store_partial(s_run + j, slope, count);
      }
    }
  }
}

MLPMIX_INLINE void gelu_slope_impl(const double* h, HiddenLayout layout, const double* bias,
                                   int64_t rows, int64_t lines, int64_t o, double* a,
                                   double* s) {
  for (int64_t l = 0; l < lines; ++l) {
    for (int64_t k = 0; k < rows; ++k) {
      for (int64_t j = 0; j < o; ++j) {
        const double v =
            h[k * layout.row + l * layout.line + j] + (bias != nullptr ? bias[k] : 0.0);
        const int64_t e = k * lines * o + l * o + j;
        gelu_and_slope(v, &a[e], &s[e]);
      }
    }
  }
}

// sums[row] += the sum of row `row` of m (rows, width) contiguous, after m *= s when given.
// float or bfloat16 m (s float), float arithmetic; double below.
template <typename T>
MLPMIX_INLINE void row_sums_impl(T* m, const float* s, int64_t rows, int64_t width,
                                 double* sums) {
  constexpr int64_t L = 16;
  for (int64_t row = 0; row < rows; ++row) {
    T* mr = m + row * width;
    const float* sr = s != nullptr ? s + row * width : nullptr;
    simd::Float16 acc = {};
    int64_t k = 0;
    for (; k + L <= width; k += L) {
      auto v = simd::load16(mr + k);
      if (sr != nullptr) {
        v *= simd::load16(sr + k);
        simd::store16(mr + k, v);
      }
      acc += v;
    }
    float total = 0;
    for (; k < width; ++k) {
      if (sr != nullptr) {
        mr[k] = static_cast<T>(static_cast<float>(mr[k]) * sr[k]);
      }
      total += static_cast<float>(mr[k]);
    }
    for (int64_t lane = 0; lane < L; ++lane) {
      total += acc[lane];
    }
    sums[row] += total;
  }
}

MLPMIX_INLINE void row_sums_impl(double* m, const double* s, int64_t rows, int64_t width,
                                 double* sums) {
  for (int64_t row = 0; row < rows; ++row) {
    double* mr = m + row * width;
    const double* sr = s != nullptr ? s + row * width : nullptr;
    double total = 0;
    for (int64_t k = 0; k < width; ++k) {
      if (sr != nullptr) {
        mr[k] *= sr[k];
      }
      total += mr[k];
    }
    sums[row] += total;
  }
}

// ---- the cloned entry points (target_clones takes no templates: one overload per dtype) --

// T: the storage of x and the tiles; S: of the GELU slopes (float for bfloat16 tiles).
#define MLPMIX_RAFT_CLONES(T, S)                                                                  \
  MLPMIX_CLONE_FOR_AVX512 void normalize_tile(const T* x, const TokenGrid& grid, const Dims& d,   \
                                              int64_t line0, int64_t lines, const T* gamma,       \
                                              const T* beta, double eps, T* xt, double* mean,     \
                                              double* rstd) {                                     \
    normalize_tile_impl(x, grid, d, line0, lines, gamma, beta, eps, xt, mean, rstd);              \
  }                                                                                               \
  MLPMIX_CLONE_FOR_AVX512 void write_output(const T* yt, const T* bias, const Dims& d,            \
                                            int64_t line0, int64_t lines, T* out,                 \
                                            const TokenGrid& grid) {                              \
    write_output_impl(yt, bias, d, line0, lines, out, grid);                                      \
  }                                                                                               \
  MLPMIX_CLONE_FOR_AVX512 void gather_tile(const T* g, const TokenGrid& grid, const Dims& d,      \
                                           int64_t line0, int64_t lines, T* gt) {                 \
    gather_tile_impl(g, grid, d, line0, lines, gt);                                               \
  }                                                                                               \
  MLPMIX_CLONE_FOR_AVX512 void normalize_backward_tile(                                           \
      const T* gt, const T* x, const TokenGrid& x_grid, const double* mean,                       \
      const double* rstd, const T* gamma, const Dims& d, int64_t line0, int64_t lines,            \
      T* grad_x, const TokenGrid& grad_grid, double* grad_gamma, double* grad_beta) {             \
    normalize_backward_tile_impl(gt, x, x_grid, mean, rstd, gamma, d, line0, lines, grad_x,       \
                                 grad_grid, grad_gamma, grad_beta);                               \
  }                                                                                               \
  MLPMIX_CLONE_FOR_AVX512 void bias_gelu(T* h, const T* bias, int64_t rows, int64_t lines,        \
                                         int64_t o, T* kept, HiddenLayout kept_layout) {          \
    bias_gelu_impl(h, bias, rows, lines, o, kept, kept_layout);                                   \
  }                                                                                               \
  MLPMIX_CLONE_FOR_AVX512 void gelu_slope(const T* h, HiddenLayout layout, const T* bias,         \
                                          int64_t rows, int64_t lines, int64_t o, T* a,           \
                                          S* s) {                                                 \
    gelu_slope_impl(h, layout, bias, rows, lines, o, a, s);                                       \
  }                                                                                               \
  MLPMIX_CLONE_FOR_AVX512 void row_sums(T* m, const S* s, int64_t rows, int64_t width,            \
                                        double* sums) {                                           \
    row_sums_impl(m, s, rows, width, sums);                                                       \
  }

MLPMIX_RAFT_CLONES(float, float)
MLPMIX_RAFT_CLONES(double, double)
MLPMIX_RAFT_CLONES(at::BFloat16, float)
#undef MLPMIX_RAFT_CLONES

// ---- the weights with their feature axis in (n, i) order -----------------------------------

// fc1_weight (hidden, F) and fc2_weight (F, hidden) with feature i*N + n moved to n*r + i,
// contiguous, and the fc2 bias likewise.
struct Weights {
  at::Tensor w1, w2, b2;

  Weights(const at::Tensor& fc1_weight, const at::Tensor& fc2_weight,
          const at::Tensor& fc2_bias, const Dims& d)
      : w1(fc1_weight.reshape({d.hidden, d.r, d.N}).transpose(1, 2).contiguous().view(
            {d.hidden, d.r * d.N})),
        w2(fc2_weight.reshape({d.r, d.N, d.hidden}).transpose(0, 1).contiguous().view(
            {d.r * d.N, d.hidden})),
        b2(fc2_bias.reshape({d.r, d.N}).t().contiguous().view({d.r * d.N})) {}
};

// Gradients in (n, i) feature order back to i*N + n, along `axis` of (hidden, F) or (F, ...).
at::Tensor features_to_spec_order(const at::Tensor& g, int64_t axis, const Dims& d) {
  auto sizes = g.sizes().vec();
  sizes[axis] = d.N;
  sizes.insert(sizes.begin() + axis + 1, d.r);
  return g.view(sizes).transpose(axis, axis + 1).reshape(g.sizes());
}

// A (rows, cols) matrix over the start of a per-thread buffer.
at::Tensor matrix(const at::Tensor& buffer, int64_t rows, int64_t cols) {
  return at::from_blob(buffer.data_ptr(), {rows, cols}, buffer.options());
}

// ---- forward -----------------------------------------------------------------------------

// out (B, H, W, C) contiguous, and the fc1 pre-activation (B*M, hidden, o) when
// `keep_hidden`: the op's kernel and the internal forward's.
template <bool keep_hidden>
auto raft_token_mixing_cpu(const Dims& d, const at::Tensor& x_any, const at::Tensor& norm_weight,
                           const at::Tensor& norm_bias, const at::Tensor& fc1_weight,
                           const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
                           const at::Tensor& fc2_bias, int64_t raft_size, int64_t dim,
                           double eps) {
  const auto x = contiguous_channels(x_any);
  const int64_t batch = x.size(0);
  const int64_t F = d.r * d.N;
  const auto options = x.options();
  auto out = at::empty({batch, d.H, d.W, d.C}, options);
  auto hidden =
      keep_hidden ? at::empty({batch * d.M, d.hidden, d.o}, options) : at::Tensor();
  const HiddenLayout kept_layout{d.o, d.hidden * d.o};
  const Tiling tiling = make_tiling(batch, d, x.element_size());
  if (tiling.lines == 0) {
    return op_outputs<keep_hidden>(out, hidden);
  }
  const Weights w(fc1_weight, fc2_weight, fc2_bias, d);
  const auto gamma = norm_weight.contiguous(), beta = norm_bias.contiguous();
  const auto b1 = fc1_bias.contiguous();
  const TokenGrid x_grid(x, d), out_grid(out, d);
  MLPMIX_DISPATCH_CPU_FLOATING_AND_BF16(x.scalar_type(), "mlpmix_raft_token_mixing_cpu", [&] {
    const scalar_t* x_data = x.const_data_ptr<scalar_t>();
    scalar_t* out_data = out.mutable_data_ptr<scalar_t>();
    cpu::parallel_for(0, tiling.chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
      const int64_t columns = tiling.tile_lines * d.o;
      const auto x_buffer = at::empty({F * columns}, options);
      const auto a_buffer = at::empty({d.hidden * columns}, options);
      const auto y_buffer = at::empty({F * columns}, options);
      for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
        for (int64_t tile = tiling.first(chunk); tile < tiling.first(chunk + 1); ++tile) {
          const int64_t line0 = tile * tiling.tile_lines;
          const int64_t lines = std::min(tiling.tile_lines, tiling.lines - line0);
          const int64_t R = lines * d.o;
          const auto xt = matrix(x_buffer, F, R);
          auto act = matrix(a_buffer, d.hidden, R);
          auto yt = matrix(y_buffer, F, R);
          phase("raft_token_mixing.layer_norm", [&] {
            normalize_tile(x_data, x_grid, d, line0, lines, gamma.const_data_ptr<scalar_t>(),
                           beta.const_data_ptr<scalar_t>(), eps,
                           xt.mutable_data_ptr<scalar_t>(), nullptr, nullptr);
          });
          phase("raft_token_mixing.fc1", [&] { cpu::gemm_out(act, w.w1, xt); });
          phase("raft_token_mixing.gelu", [&] {
            bias_gelu(act.mutable_data_ptr<scalar_t>(), b1.const_data_ptr<scalar_t>(), d.hidden,
                      lines, d.o,
                      keep_hidden ? hidden.mutable_data_ptr<scalar_t>() + line0 * d.hidden * d.o
                                  : nullptr,
                      kept_layout);
          });
          phase("raft_token_mixing.fc2", [&] {
            cpu::gemm_out(yt, w.w2, act);
            write_output(yt.const_data_ptr<scalar_t>(), w.b2.const_data_ptr<scalar_t>(), d,
                         line0, lines, out_data, out_grid);
          });
        }
      }
    });
  });
  return op_outputs<keep_hidden>(out, hidden);
}

// ---- backward ----------------------------------------------------------------------------

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
raft_token_mixing_backward_cpu(const Dims& d, const at::Tensor& grad_out_any,
                               const at::Tensor& x_any, const at::Tensor& norm_weight,
                               const at::Tensor& norm_bias, const at::Tensor& fc1_weight,
                               const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
                               const at::Tensor& fc2_bias, int64_t raft_size, int64_t dim,
                               double eps, const std::optional<at::Tensor>& hidden_given) {
  const auto x = contiguous_channels(x_any);
  const auto grad_out = contiguous_channels(grad_out_any);
  const int64_t batch = x.size(0);
  const int64_t F = d.r * d.N;
  const auto options = x.options();
  auto grad_x = at::empty({batch, d.H, d.W, d.C}, options);
  const Tiling tiling = make_tiling(batch, d, x.element_size());
  if (tiling.lines == 0) {
    return no_token_gradients(grad_x, norm_weight, norm_bias, fc1_weight, fc1_bias,
                              fc2_weight, fc2_bias);
  }
  const auto hidden = hidden_given.has_value()
                          ? std::optional<at::Tensor>(hidden_given->contiguous())
                          : std::nullopt;
  const Weights w(fc1_weight, fc2_weight, fc2_bias, d);
  const auto w1_t = w.w1.t(), w2_t = w.w2.t();
  const auto gamma = norm_weight.contiguous(), beta = norm_bias.contiguous();
  const auto b1 = fc1_bias.contiguous();
  const TokenGrid x_grid(x, d), grad_out_grid(grad_out, d), grad_x_grid(grad_x, d);
  std::vector<MlpGradients> partials(tiling.chunks);  // weights in (n, i) feature order
  MLPMIX_DISPATCH_CPU_FLOATING_AND_BF16(
      x.scalar_type(), "mlpmix_raft_token_mixing_backward_cpu", [&] {
    using slope_t = at::opmath_type<scalar_t>;
    const auto wide = options.dtype(c10::CppTypeToScalarType<slope_t>::value);
    const scalar_t* x_data = x.const_data_ptr<scalar_t>();
    const scalar_t* grad_out_data = grad_out.const_data_ptr<scalar_t>();
    scalar_t* grad_x_data = grad_x.mutable_data_ptr<scalar_t>();
    const scalar_t* gamma_data = gamma.const_data_ptr<scalar_t>();
    cpu::parallel_for(0, tiling.chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
      const int64_t columns = tiling.tile_lines * d.o;
      const auto x_buffer = at::empty({F * columns}, options);
      const auto g_buffer = at::empty({F * columns}, options);  // grad of fc2 output, then of u
      const auto a_buffer = at::empty({d.hidden * columns}, options);  // h, GELU, its grad
      const auto s_buffer = at::empty({d.hidden * columns}, wide);     // GELU'
      std::vector<double> mean(tiling.tile_lines * d.N), rstd(tiling.tile_lines * d.N);
      for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
        MlpGradients& p = partials[chunk];
        p = MlpGradients(d.hidden, F, d.C, wide);
        for (int64_t tile = tiling.first(chunk); tile < tiling.first(chunk + 1); ++tile) {
          const int64_t line0 = tile * tiling.tile_lines;
          const int64_t lines = std::min(tiling.tile_lines, tiling.lines - line0);
          const int64_t R = lines * d.o;
          const auto xt = matrix(x_buffer, F, R);
          auto gt = matrix(g_buffer, F, R);
          auto act = matrix(a_buffer, d.hidden, R);
          auto st = matrix(s_buffer, d.hidden, R);
          scalar_t* a_data = act.mutable_data_ptr<scalar_t>();
          slope_t* s_data = st.mutable_data_ptr<slope_t>();
          phase("raft_token_mixing_backward.layer_norm", [&] {
            normalize_tile(x_data, x_grid, d, line0, lines, gamma_data,
                           beta.const_data_ptr<scalar_t>(), eps,
                           xt.mutable_data_ptr<scalar_t>(), mean.data(), rstd.data());
          });
          phase("raft_token_mixing_backward.fc2_bias", [&] {
            gather_tile(grad_out_data, grad_out_grid, d, line0, lines,
                        gt.mutable_data_ptr<scalar_t>());
            row_sums(gt.mutable_data_ptr<scalar_t>(), static_cast<const slope_t*>(nullptr), F,
                     R, p.fc2_bias.data());
          });
          phase("raft_token_mixing_backward.gelu", [&] {
            if (hidden.has_value()) {
              gelu_slope(hidden->const_data_ptr<scalar_t>() + line0 * d.hidden * d.o,
                         HiddenLayout{d.o, d.hidden * d.o},
                         static_cast<const scalar_t*>(nullptr), d.hidden, lines, d.o, a_data,
                         s_data);
            } else {
              cpu::gemm_out(act, w.w1, xt);
              gelu_slope(a_data, HiddenLayout{R, d.o}, b1.const_data_ptr<scalar_t>(), d.hidden,
                         lines, d.o, a_data, s_data);
            }
          });
          const bool accumulate = tile != tiling.first(chunk);
          phase("raft_token_mixing_backward.fc2_weight", [&] {
            cpu::gemm_out(p.fc2_weight, gt, act.t(), accumulate);
          });
          phase("raft_token_mixing_backward.fc2_input", [&] {
            cpu::gemm_out(act, w2_t, gt);  // grad of the GELU output
          });
          phase("raft_token_mixing_backward.gelu_backward", [&] {  // grad of h, fc1's bias
            row_sums(a_data, s_data, d.hidden, R, p.fc1_bias.data());
          });
          phase("raft_token_mixing_backward.fc1_weight", [&] {
            cpu::gemm_out(p.fc1_weight, act, xt.t(), accumulate);
          });
          phase("raft_token_mixing_backward.fc1_input", [&] {
            cpu::gemm_out(gt, w1_t, act);  // grad of the LayerNorm output
          });
          phase("raft_token_mixing_backward.layer_norm_backward", [&] {
            normalize_backward_tile(gt.const_data_ptr<scalar_t>(), x_data, x_grid, mean.data(),
                                    rstd.data(), gamma_data, d, line0, lines, grad_x_data,
                                    grad_x_grid, p.norm_weight.data(), p.norm_bias.data());
          });
        }
      }
    });
  });
  auto [grad_norm_weight, grad_norm_bias, grad_fc1_weight, grad_fc1_bias, grad_fc2_weight,
        grad_fc2_bias] = sum_gradients(partials, x.scalar_type());
  return {grad_x,
          grad_norm_weight,
          grad_norm_bias,
          features_to_spec_order(grad_fc1_weight, 1, d),
          grad_fc1_bias,
          features_to_spec_order(grad_fc2_weight, 0, d),
          features_to_spec_order(grad_fc2_bias, 0, d)};
}

}  // namespace

TORCH_LIBRARY_IMPL(mlpmix, CPU, m) {
  m.impl("raft_token_mixing", checked<"raft_token_mixing", check_inputs,
                                      cpu::with_native_bf16<raft_token_mixing_cpu<false>>>);
  m.impl("_raft_token_mixing_forward",
         checked<"_raft_token_mixing_forward", check_inputs,
                 cpu::with_native_bf16<raft_token_mixing_cpu<true>>>);
  m.impl("raft_token_mixing_backward",
         checked<"raft_token_mixing_backward", check_backward,
                 cpu::with_native_bf16<raft_token_mixing_backward_cpu>>);
}

}  // namespace mlpmix::raft_token_mixing_impl
