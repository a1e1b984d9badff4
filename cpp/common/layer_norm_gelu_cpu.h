// LayerNorm and exact-GELU arithmetic shared by the fused CPU kernels (raft_token_mixing,
// channel_mlp). Every helper is always inlined, so it is built for the instruction set of the
// cloned kernel that calls it (common/simd.h).
//
// Precision: the LayerNorm statistics, normalisation and backward run in double for float
// input (a token with small variance makes them ill-conditioned: float rounding of x - mean
// is amplified by 1/std), then round once; GELU in float uses the erf approximation of
// ATen's vectorised kernels (Abramowitz-Stegun 7.1.26, |error| < 1.5e-7) where the slope
// is wanted too, a rational erf without exp where only the value is (gelu_value).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/simd.h"

namespace mlpmix::cpu_math {

using FloatVec = simd::Vec<float>;

using simd::Double4;
using simd::Float4;
using simd::load4;
using simd::store4;
using simd::sum4;

// ---- LayerNorm ---------------------------------------------------------------------------

// Mean and 1/std of the C unit-stride channels of one token, in double (two passes). The
// mean is taken relative to the first channel, mu = x0 + sum(x - x0) / C, so a token whose
// channels are all equal has exactly that mean and normalises to exactly 0 (sum(x) / C can
// be off by an ulp, which 1/sqrt(eps) would amplify).
template <typename T>
MLPMIX_INLINE void token_moments(const T* token, int64_t C, double eps, double* mean,
                                 double* rstd) {
  const double first = token[0];
  Double4 acc0{}, acc1{};
  int64_t c = 0;
  for (; c + 8 <= C; c += 8) {
    acc0 += load4(token + c) - first;
    acc1 += load4(token + c + 4) - first;
  }
  for (; c + 4 <= C; c += 4) {
    acc0 += load4(token + c) - first;
  }
  double total = sum4(acc0 + acc1);
  for (; c < C; ++c) {
    total += token[c] - first;
  }
  const double mu = first + total / C;
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

// bfloat16 tokens: the same two passes in float, 16 lanes at a time. A bfloat16 value has 8
// significant bits, so float sums over a token resolve its statistics far beyond what the
// bfloat16 output keeps, at half the cost of double.
MLPMIX_INLINE void token_moments(const c10::BFloat16* token, int64_t C, double eps,
                                 double* mean, double* rstd) {
  using simd::Float16;
  using simd::load16;
  const float first = token[0];
  Float16 acc = {};
  int64_t c = 0;
  for (; c + 16 <= C; c += 16) {
    acc += load16(token + c) - first;
  }
  float total = 0;
  for (; c < C; ++c) {
    total += static_cast<float>(token[c]) - first;
  }
  for (int64_t lane = 0; lane < 16; ++lane) {
    total += acc[lane];
  }
  const float mu = first + total / C;
  acc = Float16{};
  for (c = 0; c + 16 <= C; c += 16) {
    const auto centred = load16(token + c) - mu;
    acc += centred * centred;
  }
  float variance = 0;
  for (; c < C; ++c) {
    const float centred = static_cast<float>(token[c]) - mu;
    variance += centred * centred;
  }
  for (int64_t lane = 0; lane < 16; ++lane) {
    variance += acc[lane];
  }
  *mean = mu;
  *rstd = 1.0 / std::sqrt(static_cast<double>(variance) / C + eps);
}

// out = (in - mean) * rstd * gamma + beta over `count` channels. float: x - mean as
// (x - mean_hi) - mean_lo with mean = mean_hi + mean_lo in floats (the first difference is
// exact where it matters, x close to the mean: Sterbenz), so that the normalised value is
// accurate to a few ulp however small the token's variance; bfloat16 likewise, in float;
// double: plain.
template <typename T>  // float or bfloat16 storage, float arithmetic
MLPMIX_INLINE void normalize_run(const T* in, const T* gamma, const T* beta, int64_t count,
                                 double mean, double rstd, T* out) {
  using simd::load_vec;
  const float mean_hi = static_cast<float>(mean);
  const float mean_lo = static_cast<float>(mean - mean_hi);
  const float scale = static_cast<float>(rstd);
  int64_t j = 0;
  for (; j + 16 <= count; j += 16) {
    const auto centred = (simd::load16(in + j) - mean_hi) - mean_lo;
    simd::store16(out + j,
                  centred * scale * simd::load16(gamma + j) + simd::load16(beta + j));
  }
  for (; j + FloatVec::lanes <= count; j += FloatVec::lanes) {
    const auto centred = (load_vec(in + j) - mean_hi) - mean_lo;
    simd::store_vec(out + j, centred * scale * load_vec(gamma + j) + load_vec(beta + j));
  }
  for (; j < count; ++j) {
    out[j] = ((static_cast<float>(in[j]) - mean_hi) - mean_lo) * scale *
                 static_cast<float>(gamma[j]) + static_cast<float>(beta[j]);
  }
}

MLPMIX_INLINE void normalize_run(const double* in, const double* gamma, const double* beta,
                                 int64_t count, double mean, double rstd, double* out) {
  for (int64_t j = 0; j < count; ++j) {
    out[j] = (in[j] - mean) * rstd * gamma[j] + beta[j];
  }
}

// LayerNorm backward of one token of C = runs*width unit-stride channels `token`, given the
// gradient of its output (affine applied) for channels [i*width, (i+1)*width) at
// grad_run(i): grad_x into `out` (unit stride) and the affine's gradients added to
// grad_gamma/grad_beta (C, double). ATen's formulation from x, mean and 1/std, in double.
// `grad_run` must be an always-inline lambda (MLPMIX_VISIT).
template <typename T, typename GradRun>
MLPMIX_INLINE void token_norm_backward(const T* token, int64_t runs, int64_t width,
                                       GradRun&& grad_run, double mu, double inv_std,
                                       const T* gamma, T* out, double* grad_gamma,
                                       double* grad_beta) {
  Double4 ds_acc{}, db_acc{};
  double ds = 0, db = 0;
  for (int64_t i = 0; i < runs; ++i) {
    const T* g = grad_run(i);
    const int64_t c0 = i * width;
    int64_t j = 0;
    for (; j + 4 <= width; j += 4) {
      const int64_t c = c0 + j;
      const Double4 gv = load4(g + j), xv = load4(token + c);
      const Double4 dy = gv * load4(gamma + c);
      ds_acc += dy * xv;
      db_acc += dy;
      store4(grad_gamma + c, load4(grad_gamma + c) + gv * ((xv - mu) * inv_std));
      store4(grad_beta + c, load4(grad_beta + c) + gv);
    }
    for (; j < width; ++j) {
      const int64_t c = c0 + j;
      const double gv = g[j], xv = token[c];
      const double dy = gv * gamma[c];
      ds += dy * xv;
      db += dy;
      grad_gamma[c] += gv * ((xv - mu) * inv_std);
      grad_beta[c] += gv;
    }
  }
  ds += sum4(ds_acc);
  db += sum4(db_acc);
  const double scale = 1.0 / (runs * width);
  const double a = inv_std;
  const double b = (db * mu - ds) * inv_std * inv_std * inv_std * scale;
  const double bias = -b * mu - db * inv_std * scale;
  for (int64_t i = 0; i < runs; ++i) {
    const T* g = grad_run(i);
    const int64_t c0 = i * width;
    int64_t j = 0;
    for (; j + 4 <= width; j += 4) {
      const int64_t c = c0 + j;
      store4(out + c, a * (load4(g + j) * load4(gamma + c)) + b * load4(token + c) + bias);
    }
    for (; j < width; ++j) {
      const int64_t c = c0 + j;
      out[c] = static_cast<T>(a * (g[j] * static_cast<double>(gamma[c])) + b * token[c] + bias);
    }
  }
}

// dst[0:16] += v, in double (two vectors of 8 lanes).
MLPMIX_INLINE void add_to_doubles(double* dst, simd::Float16 v) {
  using Double8 = simd::Vec<double, 64>::type;
  using Float8 = simd::Vec<float>::type;
  const Float8 low = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7);
  const Float8 high = __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  simd::store_as(dst, simd::load_as<Double8>(dst) + __builtin_convertvector(low, Double8));
  simd::store_as(dst + 8,
                 simd::load_as<Double8>(dst + 8) + __builtin_convertvector(high, Double8));
}

// The same for bfloat16 tokens, in float (see token_moments), 16 lanes at a time; the
// affine's gradients still accumulate in double, per token.
template <typename GradRun>
MLPMIX_INLINE void token_norm_backward(const c10::BFloat16* token, int64_t runs, int64_t width,
                                       GradRun&& grad_run, double mu, double inv_std,
                                       const c10::BFloat16* gamma, c10::BFloat16* out,
                                       double* grad_gamma, double* grad_beta) {
  using simd::Float16;
  using simd::load16;
  const float mean = static_cast<float>(mu), rstd = static_cast<float>(inv_std);
  Float16 ds_acc = {}, db_acc = {};
  float ds = 0, db = 0;
  for (int64_t i = 0; i < runs; ++i) {
    const c10::BFloat16* g = grad_run(i);
    const int64_t c0 = i * width;
    int64_t j = 0;
    for (; j + 16 <= width; j += 16) {
      const int64_t c = c0 + j;
      const auto gv = load16(g + j), xv = load16(token + c);
      const auto dy = gv * load16(gamma + c);
      ds_acc += dy * xv;
      db_acc += dy;
      add_to_doubles(grad_gamma + c, gv * ((xv - mean) * rstd));
      add_to_doubles(grad_beta + c, gv);
    }
    for (; j < width; ++j) {
      const int64_t c = c0 + j;
      const float gv = g[j], xv = token[c];
      const float dy = gv * static_cast<float>(gamma[c]);
      ds += dy * xv;
      db += dy;
      grad_gamma[c] += gv * ((xv - mean) * rstd);
      grad_beta[c] += gv;
    }
  }
  for (int64_t lane = 0; lane < 16; ++lane) {
    ds += ds_acc[lane];
    db += db_acc[lane];
  }
  const float scale = 1.0f / (runs * width);
  const float a = rstd;
  const float b = (db * mean - ds) * rstd * rstd * rstd * scale;
  const float bias = -b * mean - db * rstd * scale;
  for (int64_t i = 0; i < runs; ++i) {
    const c10::BFloat16* g = grad_run(i);
    const int64_t c0 = i * width;
    int64_t j = 0;
    for (; j + 16 <= width; j += 16) {
      const int64_t c = c0 + j;
      simd::store16(out + c,
                    a * (load16(g + j) * load16(gamma + c)) + b * load16(token + c) + bias);
    }
    for (; j < width; ++j) {
      const int64_t c = c0 + j;
      out[c] = a * (static_cast<float>(g[j]) * static_cast<float>(gamma[c])) +
               b * static_cast<float>(token[c]) + bias;
    }
  }
}

// ---- GELU ------------------------------------------------------------------------------

// Exact GELU x*Phi(x) and its derivative Phi(x) + x*phi(x), Phi(x) = (1 + erf(x/sqrt2))/2.
// float: erf by Abramowitz-Stegun 7.1.26 as in ATen's vectorised kernels; exp(-x^2/2)
// serves erf and phi alike.
template <typename V>  // a vector of floats, 8 or 16 lanes
MLPMIX_INLINE void gelu_and_slope(V x, V* value, V* slope) {
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

// GELU alone (the forward passes, which need no slope), float: erf as an odd rational
// function of z = x/sqrt2 clamped to [-4, 4] (Eigen's fast erf, |error| < 1e-6 of GELU;
// erf(4) is 1 in float), no exp: 0.33 instead of 0.51 ns per element on AVX-512.
template <typename V>  // a vector of floats, 8 or 16 lanes
MLPMIX_INLINE V gelu_value(V x) {
  const V scaled = x * 0.70710678118654752f;
  const V z = scaled > 4.0f ? V{} + 4.0f : (scaled < -4.0f ? V{} - 4.0f : scaled);
  const V z2 = z * z;
  V p = z2 * -2.72614225801306e-10f + 2.77068142495902e-08f;
  p = p * z2 - 2.10102402082508e-06f;
  p = p * z2 - 5.69250639462346e-05f;
  p = p * z2 - 7.34990630326855e-04f;
  p = p * z2 - 2.95459980854025e-03f;
  p = p * z2 - 1.60960333262415e-02f;
  V q = z2 * -1.45660718464996e-05f - 2.13374055278905e-04f;
  q = q * z2 - 1.68282697438203e-03f;
  q = q * z2 - 7.37332916720468e-03f;
  q = q * z2 - 1.42647390514189e-02f;
  return x * ((z * p / q) * 0.5f + 0.5f);
}

MLPMIX_INLINE double gelu_value(double x) { return x * (0.5 * (1.0 + std::erf(x * M_SQRT1_2))); }

MLPMIX_INLINE void gelu_and_slope(double x, double* value, double* slope) {
  const double cdf = 0.5 * (1.0 + std::erf(x * M_SQRT1_2));
  *value = x * cdf;
  *slope = cdf + x * std::exp(-0.5 * x * x) * (0.5 * M_2_SQRTPI * M_SQRT1_2);
}

// Up to 8 values of float or bfloat16 storage as one float vector (the rest zero), and back.
template <typename T>
MLPMIX_INLINE FloatVec::type load_partial(const T* p, int64_t count) {
  T lanes[FloatVec::lanes] = {};
  std::memcpy(lanes, p, count * sizeof(T));
  return simd::load_vec(lanes);
}
template <typename T>
MLPMIX_INLINE void store_partial(T* p, FloatVec::type v, int64_t count) {
  T lanes[FloatVec::lanes];
  simd::store_vec(lanes, v);
  std::memcpy(p, lanes, count * sizeof(T));
}

}  // namespace mlpmix::cpu_math
