// Arithmetic shared by the CPU and CUDA kernels: plain scalar functions, host and device
// (no ATen, no vector types), so that both backends compute the same formulas. `T` is the
// accumulation type (float or double; float16/bfloat16 kernels accumulate in float).
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define MLPMIX_HOST_DEVICE __host__ __device__
#else
#define MLPMIX_HOST_DEVICE
#endif

namespace mlpmix::math {

MLPMIX_HOST_DEVICE inline float exp(float x) { return ::expf(x); }
MLPMIX_HOST_DEVICE inline double exp(double x) { return ::exp(x); }
MLPMIX_HOST_DEVICE inline float sqrt(float x) { return ::sqrtf(x); }
MLPMIX_HOST_DEVICE inline double sqrt(double x) { return ::sqrt(x); }

// ---- softmax over the input tokens (dynamixer, spec 2.1 step 3) -------------------------

// In place: v[i * stride] for i in [0, n) becomes softmax over i. Subtracts the maximum
// first; a NaN anywhere in the column makes the whole column NaN.
template <typename T>
MLPMIX_HOST_DEVICE inline void softmax_strided(T* v, int64_t n, int64_t stride) {
  T largest = v[0];
  for (int64_t i = 1; i < n; ++i) {
    largest = v[i * stride] > largest ? v[i * stride] : largest;
  }
  T sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const T e = math::exp(v[i * stride] - largest);
    v[i * stride] = e;
    sum += e;
  }
  const T inverse = T(1) / sum;
  for (int64_t i = 0; i < n; ++i) {
    v[i * stride] *= inverse;
  }
}

// Softmax backward for one element: dL/dlogit = p * (dL/dp - sum_i' p_i' dL/dp_i'), where
// `dot` is that sum over the softmax axis.
template <typename T>
MLPMIX_HOST_DEVICE inline T softmax_backward(T p, T grad_p, T dot) {
  return p * (grad_p - dot);
}

// ---- LayerNorm (raft_token_mixing, spec 1.1 step 1) --------------------------------------

// 1 / sqrt(variance + eps) from the sum of squared deviations from the mean over `count`
// values (the biased variance, as LayerNorm uses).
template <typename T>
MLPMIX_HOST_DEVICE inline T inverse_std(T squared_deviations, int64_t count, T eps) {
  return T(1) / math::sqrt(squared_deviations / static_cast<T>(count) + eps);
}

// The normalised value (x - mean) / std.
template <typename T>
MLPMIX_HOST_DEVICE inline T normalize(T x, T mean, T rstd) {
  return (x - mean) * rstd;
}

// Gradient of LayerNorm's input for one channel, given the gradient `grad` of the normalised
// value `normalized` of that channel and, over the token's channels, the mean of the
// gradients (`grad_mean`) and the mean of grad * normalized (`grad_dot_normalized`).
template <typename T>
MLPMIX_HOST_DEVICE inline T layer_norm_input_grad(T rstd, T grad, T grad_mean, T normalized,
                                                  T grad_dot_normalized) {
  return rstd * (grad - grad_mean - normalized * grad_dot_normalized);
}

}  // namespace mlpmix::math
