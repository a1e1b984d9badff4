// mlpmix::raft_token_mixing CPU kernels: the whole branch fused per tile of rows.
//
// A tile is a run of consecutive lines (b, m) of N tokens along the mixed axis; line l gives
// the o MLP rows (l, j), row l*o + j, with feature i*N + n = channel c = i*o + j of token n.
// Per tile, in cache: the LayerNorm of x straight into the rows, fc1 (ATen GEMM), bias and
// exact GELU in one vectorised pass, fc2 (ATen GEMM), bias and ungrouping into the output;
// the backward likewise, with the weight gradients accumulated per thread by GEMMs with
// beta = 1. No whole-tensor intermediate exists except the fc1 pre-activation that the
// forward keeps for the backward when autograd asks for it (raft_token_mixing_forward).
//
// Precision: the LayerNorm statistics, normalisation and backward run in double for float
// input (a token with small variance makes them ill-conditioned: float rounding of x - mean
// is amplified by 1/std), then round once; GELU in float uses the erf approximation of
// ATen's vectorised kernels (Abramowitz-Stegun 7.1.26, |error| < 1.5e-7).
// The vector helpers are always inlined: no vector crosses a call boundary.
#pragma GCC diagnostic ignored "-Wpsabi"

#include <ATen/ATen.h>
#include <ATen/CPUFunctions.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <type_traits>
#include <vector>

#include "common/sequences.h"
#include "common/simd.h"
#include "ops/raft_token_mixing/raft_token_mixing.h"

namespace mlpmix::raft_token_mixing_impl {
namespace {

// ---- geometry ------------------------------------------------------------------------

// Element offsets into a (B, H, W, C) tensor with unit channel stride of token n of line
// (b, m) along the mixed axis.
struct TokenGrid {
  int64_t batch_stride, token_stride, line_stride;

  TokenGrid(const at::Tensor& t, const Dims& d)
      : batch_stride(t.stride(0)), token_stride(t.stride(d.axis)), line_stride(t.stride(3 - d.axis)) {}

  int64_t offset(int64_t line, int64_t M, int64_t n) const {
    return (line / M) * batch_stride + (line % M) * line_stride + n * token_stride;
  }
};

// One call's tiling: `lines` = B*M lines of `o` rows each, `tile_lines` lines per tile.
struct Tiling {
  int64_t lines, tile_lines, tiles, chunks;

  int64_t tile_rows(const Dims& d) const { return tile_lines * d.o; }
  // Tiles [first(k), first(k + 1)) belong to chunk k (one chunk per thread).
  int64_t first(int64_t chunk) const { return chunk * tiles / chunks; }
};

// About `budget` bytes of per-tile buffers (rows of the widest set: the backward's two F-wide
// and two hidden-wide buffers), at least one line.
Tiling make_tiling(int64_t batch, const Dims& d, int64_t element_size) {
  constexpr int64_t budget = 512 * 1024;
  const int64_t row_bytes = 2 * (d.r * d.N + d.hidden) * element_size;
  Tiling t;
  t.lines = batch * d.M;
  t.tile_lines = std::clamp<int64_t>(budget / (row_bytes * d.o), 1, std::max<int64_t>(t.lines, 1));
  t.tiles = (t.lines + t.tile_lines - 1) / t.tile_lines;
  t.chunks = std::min<int64_t>(at::get_num_threads(), t.tiles);
  return t;
}

// ---- vector helpers (inlined into each clone) ----------------------------------------

// Four doubles: one AVX2 register (wider GCC vectors end up spilled to the stack).
typedef double Double4 __attribute__((vector_size(32)));
typedef float Float4 __attribute__((vector_size(16)));

MLPMIX_INLINE Double4 load4(const float* p) {
  Float4 v;
  std::memcpy(&v, p, sizeof(v));
  return __builtin_convertvector(v, Double4);
}
MLPMIX_INLINE Double4 load4(const double* p) {
  Double4 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
MLPMIX_INLINE void store4(float* p, Double4 v) {
  const Float4 f = __builtin_convertvector(v, Float4);
  std::memcpy(p, &f, sizeof(f));
}
MLPMIX_INLINE void store4(double* p, Double4 v) { std::memcpy(p, &v, sizeof(v)); }
MLPMIX_INLINE double sum4(Double4 v) { return (v[0] + v[2]) + (v[1] + v[3]); }

// ---- block transposes between tokens and rows --------------------------------------------

// Tokens are handled in blocks of 8 (one 8x8 float transpose per 8 channels of a raft row).
constexpr int64_t kBlock = 8;

typedef float Float8 __attribute__((vector_size(32)));

MLPMIX_INLINE void transpose8x8(const float* src, int64_t src_stride, float* dst,
                                int64_t dst_stride) {
  Float8 r[8], t[8];
  for (int k = 0; k < 8; ++k) {
    std::memcpy(&r[k], src + k * src_stride, sizeof(Float8));
  }
  for (int k = 0; k < 8; k += 2) {  // unpacklo / unpackhi
    t[k] = __builtin_shufflevector(r[k], r[k + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[k + 1] = __builtin_shufflevector(r[k], r[k + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int k = 0; k < 8; k += 4) {  // shuffle_ps
    r[k] = __builtin_shufflevector(t[k], t[k + 2], 0, 1, 8, 9, 4, 5, 12, 13);
    r[k + 1] = __builtin_shufflevector(t[k], t[k + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    r[k + 2] = __builtin_shufflevector(t[k + 1], t[k + 3], 0, 1, 8, 9, 4, 5, 12, 13);
    r[k + 3] = __builtin_shufflevector(t[k + 1], t[k + 3], 2, 3, 10, 11, 6, 7, 14, 15);
  }
  for (int k = 0; k < 4; ++k) {  // permute2f128
    t[k] = __builtin_shufflevector(r[k], r[k + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    t[k + 4] = __builtin_shufflevector(r[k], r[k + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
  for (int k = 0; k < 8; ++k) {
    std::memcpy(dst + k * dst_stride, &t[k], sizeof(Float8));
  }
}

// dst[k * dst_stride + m] = src[m * src_stride + k] for m < rows, k < cols (both <= 8).
template <typename T>
MLPMIX_INLINE void transpose_block(const T* src, int64_t src_stride, int64_t rows,
                                   int64_t cols, T* dst, int64_t dst_stride) {
  if constexpr (std::is_same_v<T, float>) {
    if (rows == kBlock && cols == kBlock) {
      transpose8x8(src, src_stride, dst, dst_stride);
      return;
    }
  }
  for (int64_t m = 0; m < rows; ++m) {
    for (int64_t k = 0; k < cols; ++k) {
      dst[k * dst_stride + m] = src[m * src_stride + k];
    }
  }
}

// Channels (i*o + j) of `tokens` tokens (n0 + t, t < tokens) at `token_stride` apart into the
// o rows of one line (row j, feature i*N + n0 + t), or back (`to_rows` false).
template <typename T>
MLPMIX_INLINE void move_tokens(T* token0, int64_t token_stride, T* rows, int64_t n0,
                               int64_t tokens, const Dims& d, bool to_rows) {
  const int64_t F = d.r * d.N;
  for (int64_t i = 0; i < d.r; ++i) {
    for (int64_t j0 = 0; j0 < d.o; j0 += kBlock) {
      const int64_t js = std::min(kBlock, d.o - j0);
      T* channels = token0 + i * d.o + j0;
      T* features = rows + j0 * F + i * d.N + n0;
      if (to_rows) {
        transpose_block(channels, token_stride, tokens, js, features, F);
      } else {
        transpose_block(features, F, js, tokens, channels, token_stride);
      }
    }
  }
}

// Prefetches the C channels of a token.
template <typename T>
MLPMIX_INLINE void prefetch_token(const T* token, int64_t C) {
  for (int64_t c = 0; c < C; c += 64 / sizeof(T)) {
    __builtin_prefetch(token + c);
  }
}

// ---- LayerNorm into the rows of a tile -------------------------------------------------

// Mean and 1/std of the C unit-stride channels of one token, in double (two passes).
template <typename T>
MLPMIX_INLINE void token_moments(const T* token, int64_t C, double eps, double* mean,
                                 double* rstd) {
  Double4 acc0{}, acc1{};
  int64_t c = 0;
  for (; c + 8 <= C; c += 8) {
    acc0 += load4(token + c);
    acc1 += load4(token + c + 4);
  }
  for (; c + 4 <= C; c += 4) {
    acc0 += load4(token + c);
  }
  double total = sum4(acc0 + acc1);
  for (; c < C; ++c) {
    total += token[c];
  }
  const double mu = total / C;
  acc0 = Double4{};
  acc1 = Double4{};
  for (c = 0; c + 8 <= C; c += 8) {
    const Double4 centred0 = load4(token + c) - mu, centred1 = load4(token + c + 4) - mu;
    acc0 += centred0 * centred0;
    acc1 += centred1 * centred1;
  }
  for (; c + 4 <= C; c += 4) {
    const Double4 centred = load4(token + c) - mu;
    acc0 += centred * centred;
  }
  double variance = sum4(acc0 + acc1);
  for (; c < C; ++c) {
    variance += (token[c] - mu) * (token[c] - mu);
  }
  *mean = mu;
  *rstd = 1.0 / std::sqrt(variance / C + eps);
}

// The LayerNorm (affine applied) of lines [line0, line0 + lines) of x into the tile's rows
// `u` (lines*o, F); the statistics per token into mean/rstd (lines*N) when given. `scratch`
// holds kBlock tokens.
template <typename T>
MLPMIX_INLINE void normalize_tile_impl(const T* x, const TokenGrid& grid, const Dims& d,
                                       int64_t line0, int64_t lines, const T* gamma,
                                       const T* beta, double eps, T* u, double* mean_out,
                                       double* rstd_out, T* scratch) {
  const int64_t F = d.r * d.N;
  // Token-major over the tile: along H, the tile's lines are adjacent in memory.
  for (int64_t n0 = 0; n0 < d.N; n0 += kBlock) {
    const int64_t tokens = std::min(kBlock, d.N - n0);
    for (int64_t l = 0; l < lines; ++l) {
      for (int64_t t = 0; t < tokens; ++t) {
        const int64_t n = n0 + t;
        const T* token = x + grid.offset(line0 + l, d.M, n);
        if (n + kBlock < d.N) {
          prefetch_token(token + kBlock * grid.token_stride, d.C);
        }
        double mean, rstd;
        token_moments(token, d.C, eps, &mean, &rstd);
        if (mean_out != nullptr) {
          mean_out[l * d.N + n] = mean;
          rstd_out[l * d.N + n] = rstd;
        }
        T* normed = scratch + t * d.C;
        int64_t c = 0;
        for (; c + 4 <= d.C; c += 4) {
          store4(normed + c,
                 (load4(token + c) - mean) * rstd * load4(gamma + c) + load4(beta + c));
        }
        for (; c < d.C; ++c) {
          normed[c] = static_cast<T>((token[c] - mean) * rstd * gamma[c] + beta[c]);
        }
      }
      move_tokens(scratch, d.C, u + l * d.o * F, n0, tokens, d, true);
    }
  }
}

// ---- GELU ------------------------------------------------------------------------------

// Exact GELU x*Phi(x) and its derivative Phi(x) + x*phi(x), Phi(x) = (1 + erf(x/sqrt2))/2.
// float: erf by Abramowitz-Stegun 7.1.26 as in ATen's vectorised kernels; exp(-x^2/2)
// serves erf and phi alike.
MLPMIX_INLINE void gelu_and_slope(simd::Vec<float>::type x, simd::Vec<float>::type* value,
                                  simd::Vec<float>::type* slope) {
  using V = simd::Vec<float>::type;
  const V z = x * 0.70710678118654752f;
  const V az = z < 0.0f ? -z : z;
  const V t = 1.0f / (az * 0.3275911f + 1.0f);
  V poly = t * 1.061405429f - 1.453152027f;
  poly = poly * t + 1.421413741f;
  poly = poly * t - 0.284496736f;
  poly = poly * t + 0.254829592f;
  V e = -(z * z);
  simd::exp_nonpositive(e);
  const V half_erfc = poly * t * e * 0.5f;  // (1 - erf|z|) / 2
  const V cdf = x < 0.0f ? half_erfc : 1.0f - half_erfc;
  *value = x * cdf;
  *slope = cdf + x * e * 0.39894228040143268f;
}

MLPMIX_INLINE void gelu_and_slope(double x, double* value, double* slope) {
  const double cdf = 0.5 * (1.0 + std::erf(x * M_SQRT1_2));
  *value = x * cdf;
  *slope = cdf + x * std::exp(-0.5 * x * x) * (0.5 * M_2_SQRTPI * M_SQRT1_2);
}

MLPMIX_INLINE float gelu_scalar(float x) {
  return x * 0.5f * (1.0f + std::erf(x * static_cast<float>(M_SQRT1_2)));
}
MLPMIX_INLINE double gelu_scalar(double x) { return x * 0.5 * (1.0 + std::erf(x * M_SQRT1_2)); }

// h += bias (written back when `keep`), a = GELU(h) (a may be h), over rows x width.
MLPMIX_INLINE void bias_gelu_impl(float* h, const float* bias, int64_t rows, int64_t width,
                                  float* a, bool keep) {
  using V = simd::Vec<float>;
  for (int64_t row = 0; row < rows; ++row) {
    float* hr = h + row * width;
    float* ar = a + row * width;
    int64_t k = 0;
    for (; k + 2 * V::lanes <= width; k += 2 * V::lanes) {  // two independent chains
      const auto v0 = V::load(hr + k) + V::load(bias + k);
      const auto v1 = V::load(hr + k + V::lanes) + V::load(bias + k + V::lanes);
      if (keep) {
        V::store(hr + k, v0);
        V::store(hr + k + V::lanes, v1);
      }
      V::type value0, slope0, value1, slope1;
      gelu_and_slope(v0, &value0, &slope0);
      gelu_and_slope(v1, &value1, &slope1);
      V::store(ar + k, value0);
      V::store(ar + k + V::lanes, value1);
    }
    for (; k + V::lanes <= width; k += V::lanes) {
      const auto v = V::load(hr + k) + V::load(bias + k);
      if (keep) {
        V::store(hr + k, v);
      }
      V::type value, slope;
      gelu_and_slope(v, &value, &slope);
      V::store(ar + k, value);
    }
    for (; k < width; ++k) {
      const float v = hr[k] + bias[k];
      if (keep) {
        hr[k] = v;
      }
      ar[k] = gelu_scalar(v);
    }
  }
}

MLPMIX_INLINE void bias_gelu_impl(double* h, const double* bias, int64_t rows, int64_t width,
                                  double* a, bool keep) {
  for (int64_t row = 0; row < rows; ++row) {
    for (int64_t k = 0; k < width; ++k) {
      const double v = h[row * width + k] + bias[k];
      if (keep) {
        h[row * width + k] = v;
      }
      a[row * width + k] = gelu_scalar(v);
    }
  }
}

// From the pre-activation h (+ bias when given): a = GELU, slope = GELU' (slope may be h).
MLPMIX_INLINE void gelu_slope_impl(const float* h, const float* bias, int64_t rows,
                                   int64_t width, float* a, float* slope) {
  using V = simd::Vec<float>;
  for (int64_t row = 0; row < rows; ++row) {
    const float* hr = h + row * width;
    float* ar = a + row * width;
    float* sr = slope + row * width;
    int64_t k = 0;
    for (; k + 2 * V::lanes <= width; k += 2 * V::lanes) {  // two independent chains
      auto v0 = V::load(hr + k), v1 = V::load(hr + k + V::lanes);
      if (bias != nullptr) {
        v0 += V::load(bias + k);
        v1 += V::load(bias + k + V::lanes);
      }
      V::type value0, derivative0, value1, derivative1;
      gelu_and_slope(v0, &value0, &derivative0);
      gelu_and_slope(v1, &value1, &derivative1);
      V::store(ar + k, value0);
      V::store(ar + k + V::lanes, value1);
      V::store(sr + k, derivative0);
      V::store(sr + k + V::lanes, derivative1);
    }
    for (; k + V::lanes <= width; k += V::lanes) {
      auto v = V::load(hr + k);
      if (bias != nullptr) {
        v += V::load(bias + k);
      }
      V::type value, derivative;
      gelu_and_slope(v, &value, &derivative);
      V::store(ar + k, value);
      V::store(sr + k, derivative);
    }
    for (; k < width; ++k) {
      const double v = hr[k] + (bias != nullptr ? bias[k] : 0.0f);
      double value, derivative;
      gelu_and_slope(v, &value, &derivative);
      ar[k] = static_cast<float>(value);
      sr[k] = static_cast<float>(derivative);
    }
  }
}

MLPMIX_INLINE void gelu_slope_impl(const double* h, const double* bias, int64_t rows,
                                   int64_t width, double* a, double* slope) {
  for (int64_t e = 0; e < rows * width; ++e) {
    const double v = h[e] + (bias != nullptr ? bias[e % width] : 0.0);
    gelu_and_slope(v, &a[e], &slope[e]);
  }
}

// g *= slope, and the column sums of the result added to `sums` (width).
template <typename T>
MLPMIX_INLINE void scale_and_sum_impl(T* g, const T* slope, int64_t rows, int64_t width,
                                      T* sums) {
  for (int64_t row = 0; row < rows; ++row) {
    T* gr = g + row * width;
    const T* sr = slope + row * width;
    for (int64_t k = 0; k < width; ++k) {
      gr[k] *= sr[k];
      sums[k] += gr[k];
    }
  }
}

template <typename T>
MLPMIX_INLINE void column_sums_impl(const T* m, int64_t rows, int64_t width, T* sums) {
  for (int64_t row = 0; row < rows; ++row) {
    for (int64_t k = 0; k < width; ++k) {
      sums[k] += m[row * width + k];
    }
  }
}

// ---- ungrouping and regrouping -------------------------------------------------------

// out(token n of line l, channel i*o + j) = y(row l*o + j, feature i*N + n) + bias(i*N + n);
// y gets the bias added in place.
template <typename T>
MLPMIX_INLINE void rows_to_grid_impl(T* y, const T* bias, const Dims& d, int64_t line0,
                                     int64_t lines, T* out, const TokenGrid& grid) {
  const int64_t F = d.r * d.N;
  for (int64_t row = 0; row < lines * d.o; ++row) {
    for (int64_t k = 0; k < F; ++k) {
      y[row * F + k] += bias[k];
    }
  }
  for (int64_t n0 = 0; n0 < d.N; n0 += kBlock) {
    const int64_t tokens = std::min(kBlock, d.N - n0);
    for (int64_t l = 0; l < lines; ++l) {
      move_tokens(out + grid.offset(line0 + l, d.M, n0), grid.token_stride, y + l * d.o * F,
                  n0, tokens, d, false);
    }
  }
}

// rows(l*o + j, i*N + n) = g(token n of line l, channel i*o + j).
template <typename T>
MLPMIX_INLINE void grid_to_rows_impl(const T* g, const TokenGrid& grid, const Dims& d,
                                     int64_t line0, int64_t lines, T* rows) {
  const int64_t F = d.r * d.N;
  for (int64_t n0 = 0; n0 < d.N; n0 += kBlock) {
    const int64_t tokens = std::min(kBlock, d.N - n0);
    for (int64_t l = 0; l < lines; ++l) {
      T* token0 = const_cast<T*>(g + grid.offset(line0 + l, d.M, n0));
      if (n0 + kBlock < d.N) {
        for (int64_t t = 0; t < tokens; ++t) {
          prefetch_token(token0 + (kBlock + t) * grid.token_stride, d.C);
        }
      }
      move_tokens(token0, grid.token_stride, rows + l * d.o * F, n0, tokens, d, true);
    }
  }
}

// ---- LayerNorm backward from the rows of a tile -----------------------------------------

// From grad_u (the gradient of the LayerNorm output in the tile's rows) and x: grad_x of
// the tile's tokens (ATen's formulation from x, mean and 1/std, in double), and the
// affine's gradients added to grad_gamma/grad_beta (C, double).
template <typename T>
MLPMIX_INLINE void normalize_backward_tile_impl(const T* grad_u, const T* x,
                                                const TokenGrid& x_grid, const double* mean,
                                                const double* rstd, const T* gamma,
                                                const Dims& d, int64_t line0, int64_t lines,
                                                T* grad_x, const TokenGrid& grad_grid,
                                                double* grad_gamma, double* grad_beta,
                                                T* scratch) {
  const int64_t F = d.r * d.N;
  const double scale = 1.0 / d.C;
  for (int64_t n0 = 0; n0 < d.N; n0 += kBlock) {
    const int64_t tokens = std::min(kBlock, d.N - n0);
    for (int64_t l = 0; l < lines; ++l) {
      move_tokens(scratch, d.C, const_cast<T*>(grad_u) + l * d.o * F, n0, tokens, d, false);
    for (int64_t t = 0; t < tokens; ++t) {
      const int64_t n = n0 + t;
      const T* token_buffer = scratch + t * d.C;
      const T* token = x + x_grid.offset(line0 + l, d.M, n);
      if (n + kBlock < d.N) {
        prefetch_token(token + kBlock * x_grid.token_stride, d.C);
      }
      const double mu = mean[l * d.N + n], inv_std = rstd[l * d.N + n];
      Double4 ds_acc{}, db_acc{};
      int64_t c = 0;
      for (; c + 4 <= d.C; c += 4) {
        const Double4 g = load4(token_buffer + c), xv = load4(token + c);
        const Double4 dy = g * load4(gamma + c);
        ds_acc += dy * xv;
        db_acc += dy;
        store4(grad_gamma + c, load4(grad_gamma + c) + g * ((xv - mu) * inv_std));
        store4(grad_beta + c, load4(grad_beta + c) + g);
      }
      double ds = sum4(ds_acc), db = sum4(db_acc);
      for (; c < d.C; ++c) {
        const double g = token_buffer[c], xv = token[c];
        const double dy = g * gamma[c];
        ds += dy * xv;
        db += dy;
        grad_gamma[c] += g * ((xv - mu) * inv_std);
        grad_beta[c] += g;
      }
      const double a = inv_std;
      const double b = (db * mu - ds) * inv_std * inv_std * inv_std * scale;
      const double bias = -b * mu - db * inv_std * scale;
      T* out = grad_x + grad_grid.offset(line0 + l, d.M, n);
      for (c = 0; c + 4 <= d.C; c += 4) {
        const Double4 dy = load4(token_buffer + c) * load4(gamma + c);
        store4(out + c, a * dy + b * load4(token + c) + bias);
      }
      for (; c < d.C; ++c) {
        out[c] = static_cast<T>(a * (token_buffer[c] * static_cast<double>(gamma[c])) +
                                b * token[c] + bias);
      }
    }
  }
  }
}

// ---- the cloned entry points (target_clones takes no templates: one overload per dtype) --

#define MLPMIX_RAFT_CLONES(T)                                                                 \
  MLPMIX_CLONE_FOR_AVX2 void normalize_tile(                                                  \
      const T* x, const TokenGrid& grid, const Dims& d, int64_t line0, int64_t lines,        \
      const T* gamma, const T* beta, double eps, T* u, double* mean, double* rstd,            \
      T* scratch) {                                                                           \
    normalize_tile_impl(x, grid, d, line0, lines, gamma, beta, eps, u, mean, rstd, scratch); \
  }                                                                                           \
  MLPMIX_CLONE_FOR_AVX2 void bias_gelu(T* h, const T* bias, int64_t rows, int64_t width,     \
                                       T* a, bool keep) {                                     \
    bias_gelu_impl(h, bias, rows, width, a, keep);                                            \
  }                                                                                           \
  MLPMIX_CLONE_FOR_AVX2 void gelu_slope(const T* h, const T* bias, int64_t rows,              \
                                        int64_t width, T* a, T* slope) {                      \
    gelu_slope_impl(h, bias, rows, width, a, slope);                                          \
  }                                                                                           \
  MLPMIX_CLONE_FOR_AVX2 void scale_and_sum(T* g, const T* slope, int64_t rows, int64_t width, \
                                           T* sums) {                                         \
    scale_and_sum_impl(g, slope, rows, width, sums);                                          \
  }                                                                                           \
  MLPMIX_CLONE_FOR_AVX2 void column_sums(const T* m, int64_t rows, int64_t width, T* sums) {  \
    column_sums_impl(m, rows, width, sums);                                                   \
  }                                                                                           \
  MLPMIX_CLONE_FOR_AVX2 void rows_to_grid(T* y, const T* bias, const Dims& d,           \
                                          int64_t line0, int64_t lines, T* out,               \
                                          const TokenGrid& grid) {                            \
    rows_to_grid_impl(y, bias, d, line0, lines, out, grid);                                   \
  }                                                                                           \
  MLPMIX_CLONE_FOR_AVX2 void grid_to_rows(const T* g, const TokenGrid& grid, const Dims& d,   \
                                          int64_t line0, int64_t lines, T* rows) {            \
    grid_to_rows_impl(g, grid, d, line0, lines, rows);                                        \
  }                                                                                           \
  MLPMIX_CLONE_FOR_AVX2 void normalize_backward_tile(                                         \
      const T* grad_u, const T* x, const TokenGrid& x_grid, const double* mean,               \
      const double* rstd, const T* gamma, const Dims& d, int64_t line0, int64_t lines,        \
      T* grad_x, const TokenGrid& grad_grid, double* grad_gamma, double* grad_beta,           \
      T* scratch) {                                                                           \
    normalize_backward_tile_impl(grad_u, x, x_grid, mean, rstd, gamma, d, line0, lines,      \
                                 grad_x, grad_grid, grad_gamma, grad_beta, scratch);          \
  }

MLPMIX_RAFT_CLONES(float)
MLPMIX_RAFT_CLONES(double)
#undef MLPMIX_RAFT_CLONES

// ---- forward -----------------------------------------------------------------------------

// The first `rows` rows of a (rows_max, width) buffer.
at::Tensor first_rows(const at::Tensor& buffer, int64_t rows) {
  return rows == buffer.size(0) ? buffer : buffer.narrow(0, 0, rows);
}

struct Weights {
  at::Tensor w1, w1_t, w2, w2_t;  // fc1 (hidden, F), fc2 (F, hidden) and their transposes
  Weights(const at::Tensor& fc1_weight, const at::Tensor& fc2_weight)
      : w1(fc1_weight.contiguous()), w1_t(w1.t()), w2(fc2_weight.contiguous()), w2_t(w2.t()) {}
};

// out (B, H, W, C) contiguous, and the fc1 pre-activation (B*M*o, hidden) when `keep_hidden`.
std::tuple<at::Tensor, at::Tensor> forward(const at::Tensor& x_any, const at::Tensor& norm_weight,
                                           const at::Tensor& norm_bias,
                                           const at::Tensor& fc1_weight,
                                           const at::Tensor& fc1_bias,
                                           const at::Tensor& fc2_weight,
                                           const at::Tensor& fc2_bias, double eps,
                                           const Dims& d, bool keep_hidden) {
  const auto x = contiguous_channels(x_any);
  const int64_t batch = x.size(0);
  const int64_t F = d.r * d.N;
  auto out = at::empty({batch, d.H, d.W, d.C}, x.options());
  auto hidden = keep_hidden ? at::empty({batch * d.M * d.o, d.hidden}, x.options()) : at::Tensor();
  const Tiling tiling = make_tiling(batch, d, x.element_size());
  if (tiling.lines == 0) {
    return {out, hidden};
  }
  const Weights w(fc1_weight, fc2_weight);
  const auto gamma = norm_weight.contiguous(), beta = norm_bias.contiguous();
  const auto b1 = fc1_bias.contiguous(), b2 = fc2_bias.contiguous();
  const TokenGrid x_grid(x, d), out_grid(out, d);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mlpmix_raft_token_mixing_cpu", [&] {
    const scalar_t* x_data = x.const_data_ptr<scalar_t>();
    scalar_t* out_data = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, tiling.chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
      const int64_t rows_max = tiling.tile_rows(d);
      auto u_buffer = at::empty({rows_max, F}, x.options());
      auto h_buffer = at::empty({rows_max, d.hidden}, x.options());
      auto y_buffer = at::empty({rows_max, F}, x.options());
      std::vector<scalar_t> scratch(kBlock * d.C);
      for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
        for (int64_t tile = tiling.first(chunk); tile < tiling.first(chunk + 1); ++tile) {
          const int64_t line0 = tile * tiling.tile_lines;
          const int64_t lines = std::min(tiling.tile_lines, tiling.lines - line0);
          const int64_t rows = lines * d.o;
          const auto u = first_rows(u_buffer, rows);
          const auto a = first_rows(h_buffer, rows);
          auto y = first_rows(y_buffer, rows);
          normalize_tile(x_data, x_grid, d, line0, lines, gamma.const_data_ptr<scalar_t>(),
                         beta.const_data_ptr<scalar_t>(), eps, u.mutable_data_ptr<scalar_t>(),
                         nullptr, nullptr, scratch.data());
          auto h = keep_hidden ? hidden.narrow(0, line0 * d.o, rows) : a;
          at::cpu::mm_out(h, u, w.w1_t);
          bias_gelu(h.mutable_data_ptr<scalar_t>(), b1.const_data_ptr<scalar_t>(), rows,
                    d.hidden, a.mutable_data_ptr<scalar_t>(), keep_hidden);
          at::cpu::mm_out(y, a, w.w2_t);
          rows_to_grid(y.mutable_data_ptr<scalar_t>(), b2.const_data_ptr<scalar_t>(), d, line0,
                       lines, out_data, out_grid);
        }
      }
    });
  });
  return {out, hidden};
}

at::Tensor raft_token_mixing_cpu(const at::Tensor& x, const at::Tensor& norm_weight,
                                 const at::Tensor& norm_bias, const at::Tensor& fc1_weight,
                                 const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
                                 const at::Tensor& fc2_bias, int64_t raft_size, int64_t dim,
                                 double eps) {
  const auto dims = check_inputs("raft_token_mixing", x, norm_weight, norm_bias, fc1_weight,
                                 fc1_bias, fc2_weight, fc2_bias, raft_size, dim);
  return std::get<0>(forward(x, norm_weight, norm_bias, fc1_weight, fc1_bias, fc2_weight,
                             fc2_bias, eps, dims, false));
}

std::tuple<at::Tensor, at::Tensor> raft_token_mixing_forward_cpu(
    const at::Tensor& x, const at::Tensor& norm_weight, const at::Tensor& norm_bias,
    const at::Tensor& fc1_weight, const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
    const at::Tensor& fc2_bias, int64_t raft_size, int64_t dim, double eps) {
  const auto dims = check_inputs("raft_token_mixing_forward", x, norm_weight, norm_bias,
                                 fc1_weight, fc1_bias, fc2_weight, fc2_bias, raft_size, dim);
  return forward(x, norm_weight, norm_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias, eps,
                 dims, true);
}

// ---- backward ----------------------------------------------------------------------------

// One thread's share of the parameter gradients.
struct Partial {
  at::Tensor fc1_weight, fc2_weight;                           // scalar_t, accumulated by GEMMs
  std::vector<double> fc1_bias, fc2_bias, norm_weight, norm_bias;
  bool empty = true;
};

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
raft_token_mixing_backward_cpu(const at::Tensor& grad_out_any, const at::Tensor& x_any,
                               const at::Tensor& norm_weight, const at::Tensor& norm_bias,
                               const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                               const at::Tensor& fc2_weight, const at::Tensor& fc2_bias,
                               int64_t raft_size, int64_t dim, double eps,
                               const std::optional<at::Tensor>& hidden_given) {
  const auto d = check_inputs("raft_token_mixing_backward", x_any, norm_weight, norm_bias,
                              fc1_weight, fc1_bias, fc2_weight, fc2_bias, raft_size, dim);
  check_grad_out(grad_out_any, x_any);
  check_hidden(hidden_given, x_any, d);
  const auto x = contiguous_channels(x_any);
  const auto grad_out = contiguous_channels(grad_out_any);
  const int64_t batch = x.size(0);
  const int64_t F = d.r * d.N;
  const auto options = x.options();
  auto grad_x = at::empty({batch, d.H, d.W, d.C}, options);
  const Tiling tiling = make_tiling(batch, d, x.element_size());
  if (tiling.lines == 0) {
    return {grad_x, at::zeros_like(norm_weight, at::MemoryFormat::Contiguous),
            at::zeros_like(norm_bias, at::MemoryFormat::Contiguous),
            at::zeros_like(fc1_weight, at::MemoryFormat::Contiguous),
            at::zeros_like(fc1_bias, at::MemoryFormat::Contiguous),
            at::zeros_like(fc2_weight, at::MemoryFormat::Contiguous),
            at::zeros_like(fc2_bias, at::MemoryFormat::Contiguous)};
  }
  const auto hidden = hidden_given.has_value() ? std::optional<at::Tensor>(hidden_given->contiguous())
                                               : std::nullopt;
  const Weights w(fc1_weight, fc2_weight);
  const auto gamma = norm_weight.contiguous(), beta = norm_bias.contiguous();
  const auto b1 = fc1_bias.contiguous();
  const TokenGrid x_grid(x, d), grad_out_grid(grad_out, d), grad_x_grid(grad_x, d);
  std::vector<Partial> partials(tiling.chunks);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mlpmix_raft_token_mixing_backward_cpu", [&] {
    const scalar_t* x_data = x.const_data_ptr<scalar_t>();
    const scalar_t* grad_out_data = grad_out.const_data_ptr<scalar_t>();
    scalar_t* grad_x_data = grad_x.mutable_data_ptr<scalar_t>();
    const scalar_t* gamma_data = gamma.const_data_ptr<scalar_t>();
    at::parallel_for(0, tiling.chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
      const int64_t rows_max = tiling.tile_rows(d);
      auto u_buffer = at::empty({rows_max, F}, options);
      auto g_buffer = at::empty({rows_max, F}, options);  // grad of fc2 output, then of u
      auto a_buffer = at::empty({rows_max, d.hidden}, options);  // GELU output, then its grad
      auto s_buffer = at::empty({rows_max, d.hidden}, options);  // h if recomputed, then GELU'
      std::vector<double> mean(tiling.tile_lines * d.N), rstd(tiling.tile_lines * d.N);
      std::vector<scalar_t> scratch(kBlock * d.C), bias1_sums(d.hidden), bias2_sums(F);
      for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
        Partial& p = partials[chunk];
        p.fc1_weight = at::empty({d.hidden, F}, options);
        p.fc2_weight = at::empty({F, d.hidden}, options);
        p.fc1_bias.assign(d.hidden, 0.0);
        p.fc2_bias.assign(F, 0.0);
        p.norm_weight.assign(d.C, 0.0);
        p.norm_bias.assign(d.C, 0.0);
        for (int64_t tile = tiling.first(chunk); tile < tiling.first(chunk + 1); ++tile) {
          const int64_t line0 = tile * tiling.tile_lines;
          const int64_t lines = std::min(tiling.tile_lines, tiling.lines - line0);
          const int64_t rows = lines * d.o;
          const auto u = first_rows(u_buffer, rows);
          auto g = first_rows(g_buffer, rows);
          auto a = first_rows(a_buffer, rows);
          auto s = first_rows(s_buffer, rows);
          normalize_tile(x_data, x_grid, d, line0, lines, gamma_data,
                         beta.const_data_ptr<scalar_t>(), eps, u.mutable_data_ptr<scalar_t>(),
                         mean.data(), rstd.data(), scratch.data());
          grid_to_rows(grad_out_data, grad_out_grid, d, line0, lines,
                       g.mutable_data_ptr<scalar_t>());
          std::fill(bias2_sums.begin(), bias2_sums.end(), scalar_t(0));
          column_sums(g.const_data_ptr<scalar_t>(), rows, F, bias2_sums.data());
          if (hidden.has_value()) {
            gelu_slope(hidden->const_data_ptr<scalar_t>() + line0 * d.o * d.hidden, nullptr,
                       rows, d.hidden, a.mutable_data_ptr<scalar_t>(),
                       s.mutable_data_ptr<scalar_t>());
          } else {
            at::cpu::mm_out(s, u, w.w1_t);
            gelu_slope(s.const_data_ptr<scalar_t>(), b1.const_data_ptr<scalar_t>(), rows,
                       d.hidden, a.mutable_data_ptr<scalar_t>(), s.mutable_data_ptr<scalar_t>());
          }
          const double beta_gemm = p.empty ? 0.0 : 1.0;
          at::cpu::addmm_(p.fc2_weight, g.t(), a, beta_gemm, 1.0);
          at::cpu::mm_out(a, g, w.w2);  // grad of the GELU output
          std::fill(bias1_sums.begin(), bias1_sums.end(), scalar_t(0));
          scale_and_sum(a.mutable_data_ptr<scalar_t>(), s.const_data_ptr<scalar_t>(), rows,
                        d.hidden, bias1_sums.data());
          at::cpu::addmm_(p.fc1_weight, a.t(), u, beta_gemm, 1.0);
          at::cpu::mm_out(g, a, w.w1);  // grad of u
          p.empty = false;
          for (int64_t k = 0; k < d.hidden; ++k) {
            p.fc1_bias[k] += bias1_sums[k];
          }
          for (int64_t k = 0; k < F; ++k) {
            p.fc2_bias[k] += bias2_sums[k];
          }
          normalize_backward_tile(g.const_data_ptr<scalar_t>(), x_data, x_grid, mean.data(),
                                  rstd.data(), gamma_data, d, line0, lines, grad_x_data,
                                  grad_x_grid, p.norm_weight.data(), p.norm_bias.data(),
                                  scratch.data());
        }
      }
    });
  });
  // Sum the partials in chunk order (deterministic for a given thread count).
  auto grad_fc1_weight = partials[0].fc1_weight;
  auto grad_fc2_weight = partials[0].fc2_weight;
  for (size_t k = 1; k < partials.size(); ++k) {
    grad_fc1_weight.add_(partials[k].fc1_weight);
    grad_fc2_weight.add_(partials[k].fc2_weight);
  }
  auto sum_vectors = [&](std::vector<double> Partial::*member) {
    std::vector<double> total = partials[0].*member;
    for (size_t k = 1; k < partials.size(); ++k) {
      for (size_t e = 0; e < total.size(); ++e) {
        total[e] += (partials[k].*member)[e];
      }
    }
    return at::tensor(total, at::dtype(at::kDouble)).to(options.dtype());
  };
  return {grad_x,
          sum_vectors(&Partial::norm_weight),
          sum_vectors(&Partial::norm_bias),
          grad_fc1_weight,
          sum_vectors(&Partial::fc1_bias),
          grad_fc2_weight,
          sum_vectors(&Partial::fc2_bias)};
}

}  // namespace
}  // namespace mlpmix::raft_token_mixing_impl

TORCH_LIBRARY_IMPL(mlpmix, CPU, m) {
  m.impl("raft_token_mixing", &mlpmix::raft_token_mixing_impl::raft_token_mixing_cpu);
  m.impl("raft_token_mixing_forward",
         &mlpmix::raft_token_mixing_impl::raft_token_mixing_forward_cpu);
  m.impl("raft_token_mixing_backward",
         &mlpmix::raft_token_mixing_impl::raft_token_mixing_backward_cpu);
}
