// mlpmix::reweight_branches on CPU: two passes over the branches each way, where ATen's
// composition (the model's code before this op) makes nine forward and about twenty
// backward passes, most into fresh full-size tensors.
//   forward:  token sums of h + w + c (3 reads); out = sum_k branch_k * a_k (3 reads, 1 write)
//   backward: token sums and sum_t grad_out * branch_k (4 reads);
//             grad_k = grad_out * a_k + grad_mean / T (1 read, 3 writes)
// The sums accumulate in double (float for bfloat16). Both passes are vectorised
// (common/simd.h) and parallel: the sums over samples x blocks of channels, the weighted sums
// over token rows.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "common/checked.h"
#include "common/dtypes.h"
#include "common/phase.h"
#include "common/reduced_precision_cpu.h"
#include "common/simd.h"
#include "ops/reweight_branches/reweight_branches.h"

namespace mlpmix::reweight_branches_impl {
namespace {

using simd::Double4;
using simd::load4;
using simd::store4;

constexpr int64_t kChannelBlock = 64;

// The branches and the output gradient of one sample: `tokens` rows of `channels`.
template <typename T>
struct Sample {
  const T* h;
  const T* w;
  const T* c;
  const T* g;  // null in the forward
  int64_t channels;
};

// Over the channels [j0, j0 + width) of a sample's rows: sums[j] = sum_t h + w + c and, with
// g, q[k][j] = sum_t g * branch_k (q: 3 rows of kChannelBlock).
template <typename T>
MLPMIX_INLINE void token_sums_impl(const Sample<T>& s, int64_t tokens, int64_t j0,
                                   int64_t width, double* sums, double* q) {
  std::fill(sums, sums + width, 0.0);
  if (s.g != nullptr) {
    std::fill(q, q + 3 * kChannelBlock, 0.0);
  }
  for (int64_t t = 0; t < tokens; ++t) {
    const int64_t row = t * s.channels + j0;
    const T *h = s.h + row, *w = s.w + row, *c = s.c + row;
    int64_t j = 0;
    if (s.g == nullptr) {
      for (; j + 4 <= width; j += 4) {
        store4(sums + j, load4(sums + j) + load4(h + j) + load4(w + j) + load4(c + j));
      }
      for (; j < width; ++j) {
        sums[j] += static_cast<double>(h[j]) + w[j] + c[j];
      }
      continue;
    }
    const T* g = s.g + row;
    for (; j + 4 <= width; j += 4) {
      const Double4 gj = load4(g + j), hj = load4(h + j), wj = load4(w + j), cj = load4(c + j);
      store4(sums + j, load4(sums + j) + hj + wj + cj);
      store4(q + j, load4(q + j) + gj * hj);
      store4(q + kChannelBlock + j, load4(q + kChannelBlock + j) + gj * wj);
      store4(q + 2 * kChannelBlock + j, load4(q + 2 * kChannelBlock + j) + gj * cj);
    }
    for (; j < width; ++j) {
      const double gj = g[j];
      sums[j] += static_cast<double>(h[j]) + w[j] + c[j];
      q[j] += gj * h[j];
      q[kChannelBlock + j] += gj * w[j];
      q[2 * kChannelBlock + j] += gj * c[j];
    }
  }
}

// bfloat16: the same sums in float, 16 lanes at a time (a bfloat16 value has 8 significant
// bits: float sums over a sample's tokens resolve them far beyond what a bfloat16 result
// keeps, at a quarter of the double passes' cost), handed out in double.
MLPMIX_INLINE void token_sums_impl(const Sample<at::BFloat16>& s, int64_t tokens, int64_t j0,
                                   int64_t width, double* sums, double* q) {
  using simd::load16;
  using simd::store16;
  float sum[kChannelBlock] = {}, qf[3][kChannelBlock] = {};
  for (int64_t t = 0; t < tokens; ++t) {
    const int64_t row = t * s.channels + j0;
    const at::BFloat16 *h = s.h + row, *w = s.w + row, *c = s.c + row;
    int64_t j = 0;
    if (s.g == nullptr) {
      for (; j + 16 <= width; j += 16) {
        store16(sum + j, load16(sum + j) + load16(h + j) + load16(w + j) + load16(c + j));
      }
      for (; j < width; ++j) {
        sum[j] += static_cast<float>(h[j]) + static_cast<float>(w[j]) + static_cast<float>(c[j]);
      }
      continue;
    }
    const at::BFloat16* g = s.g + row;
    for (; j + 16 <= width; j += 16) {
      const auto gj = load16(g + j), hj = load16(h + j), wj = load16(w + j), cj = load16(c + j);
      store16(sum + j, load16(sum + j) + hj + wj + cj);
      store16(qf[0] + j, load16(qf[0] + j) + gj * hj);
      store16(qf[1] + j, load16(qf[1] + j) + gj * wj);
      store16(qf[2] + j, load16(qf[2] + j) + gj * cj);
    }
    for (; j < width; ++j) {
      const float gj = g[j], hj = h[j], wj = w[j], cj = c[j];
      sum[j] += hj + wj + cj;
      qf[0][j] += gj * hj;
      qf[1][j] += gj * wj;
      qf[2][j] += gj * cj;
    }
  }
  for (int64_t j = 0; j < width; ++j) {
    sums[j] = sum[j];
    if (s.g != nullptr) {
      for (int64_t k = 0; k < 3; ++k) {
        q[k * kChannelBlock + j] = qf[k][j];
      }
    }
  }
}

// The passes below run in T's arithmetic type (float for bfloat16 storage), rounding once.
using simd::load_vec;
using simd::store_vec;
template <typename T>
using MathOf = typename simd::Math<T>::type;

// One row: out = x0 * a0 + x1 * a1 + x2 * a2.
template <typename T>
MLPMIX_INLINE void weighted_sum_row_impl(const T* x0, const T* x1, const T* x2, const T* a0,
                                         const T* a1, const T* a2, int64_t width, T* out) {
  using V = simd::MathVec<T>;
  using M = MathOf<T>;
  int64_t j = 0;
  for (; j + V::lanes <= width; j += V::lanes) {
    auto v = load_vec(x0 + j) * load_vec(a0 + j) + load_vec(x1 + j) * load_vec(a1 + j) +
             load_vec(x2 + j) * load_vec(a2 + j);
    store_vec(out + j, v);
  }
  for (; j < width; ++j) {
    out[j] = static_cast<T>(M(x0[j]) * M(a0[j]) + M(x1[j]) * M(a1[j]) + M(x2[j]) * M(a2[j]));
  }
}

// One row of the input gradients: grad_k = g * a_k + per_token.
template <typename T>
MLPMIX_INLINE void branch_gradients_row_impl(const T* g, const T* a0, const T* a1, const T* a2,
                                             const T* per_token, int64_t width, T* grad_h,
                                             T* grad_w, T* grad_c) {
  using V = simd::MathVec<T>;
  using M = MathOf<T>;
  int64_t j = 0;
  for (; j + V::lanes <= width; j += V::lanes) {
    const auto gj = load_vec(g + j), pj = load_vec(per_token + j);
    store_vec(grad_h + j, gj * load_vec(a0 + j) + pj);
    store_vec(grad_w + j, gj * load_vec(a1 + j) + pj);
    store_vec(grad_c + j, gj * load_vec(a2 + j) + pj);
  }
  for (; j < width; ++j) {
    const M gj = g[j], pj = per_token[j];
    grad_h[j] = static_cast<T>(gj * M(a0[j]) + pj);
    grad_w[j] = static_cast<T>(gj * M(a1[j]) + pj);
    grad_c[j] = static_cast<T>(gj * M(a2[j]) + pj);
  }
}

// In place over n (sample, channel) pairs: x_k = softmax over k of (x0, x1, x2).
template <typename T>
MLPMIX_INLINE void softmax3_impl(T* x0, T* x1, T* x2, int64_t n) {
  using V = simd::MathVec<T>;
  using M = MathOf<T>;
  int64_t i = 0;
  for (; i + V::lanes <= n; i += V::lanes) {
    auto e0 = load_vec(x0 + i), e1 = load_vec(x1 + i), e2 = load_vec(x2 + i);
    auto top = e0 > e1 ? e0 : e1;
    top = top > e2 ? top : e2;
    e0 -= top, e1 -= top, e2 -= top;
    simd::exp_nonpositive(e0), simd::exp_nonpositive(e1), simd::exp_nonpositive(e2);
    const auto total = e0 + e1 + e2;
    store_vec(x0 + i, e0 / total), store_vec(x1 + i, e1 / total), store_vec(x2 + i, e2 / total);
  }
  for (; i < n; ++i) {
    const M v0 = x0[i], v1 = x1[i], v2 = x2[i];
    const M top = std::max({v0, v1, v2});
    const M e0 = std::exp(v0 - top), e1 = std::exp(v1 - top), e2 = std::exp(v2 - top);
    const M total = e0 + e1 + e2;
    x0[i] = static_cast<T>(e0 / total), x1[i] = static_cast<T>(e1 / total);
    x2[i] = static_cast<T>(e2 / total);
  }
}

// target_clones takes no templates: one overload per dtype.
#define MLPMIX_REWEIGHT_BRANCHES_CLONES(T)                                                        \
  MLPMIX_CLONE_FOR_AVX512 void token_sums(const Sample<T>& s, int64_t tokens, int64_t j0,         \
                                          int64_t width, double* sums, double* q) {               \
    token_sums_impl(s, tokens, j0, width, sums, q);                                               \
  }                                                                                               \
  MLPMIX_CLONE_FOR_AVX2 void weighted_sum_row(const T* x0, const T* x1, const T* x2,              \
                                              const T* a0, const T* a1, const T* a2,              \
                                              int64_t width, T* out) {                            \
    weighted_sum_row_impl(x0, x1, x2, a0, a1, a2, width, out);                                    \
  }                                                                                               \
  MLPMIX_CLONE_FOR_AVX2 void branch_gradients_row(const T* g, const T* a0, const T* a1,           \
                                                  const T* a2, const T* per_token,                \
                                                  int64_t width, T* grad_h, T* grad_w,            \
                                                  T* grad_c) {                                    \
    branch_gradients_row_impl(g, a0, a1, a2, per_token, width, grad_h, grad_w, grad_c);           \
  }                                                                                               \
  MLPMIX_CLONE_FOR_AVX2 void softmax3(T* x0, T* x1, T* x2, int64_t n) {                           \
    softmax3_impl(x0, x1, x2, n);                                                                 \
  }
MLPMIX_REWEIGHT_BRANCHES_CLONES(float)
MLPMIX_REWEIGHT_BRANCHES_CLONES(double)
MLPMIX_REWEIGHT_BRANCHES_CLONES(at::BFloat16)
#undef MLPMIX_REWEIGHT_BRANCHES_CLONES

// Pass 1 over every sample and channel block: the token sums (B, D) and, with grad_out, the
// gradient of the branch weights (3, B, D), both double.
template <typename T>
void token_sums_pass(const at::Tensor& h, const at::Tensor& w, const at::Tensor& c,
                     const at::Tensor* grad_out, at::Tensor& sums, at::Tensor* grad_weights) {
  const int64_t batch = h.size(0), channels = h.size(-1), tokens = tokens_of(h);
  const int64_t blocks = (channels + kChannelBlock - 1) / kChannelBlock;
  const int64_t sample_size = tokens * channels;
  double* sums_data = sums.data_ptr<double>();
  double* q_data = grad_weights != nullptr ? grad_weights->data_ptr<double>() : nullptr;
  cpu::parallel_for(0, batch * blocks, 1, [&](int64_t begin, int64_t end) {
    double q[3 * kChannelBlock];
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / blocks, j0 = (item % blocks) * kChannelBlock;
      const int64_t width = std::min(kChannelBlock, channels - j0);
      const int64_t offset = b * sample_size;
      const Sample<T> s{h.const_data_ptr<T>() + offset, w.const_data_ptr<T>() + offset,
                        c.const_data_ptr<T>() + offset,
                        grad_out != nullptr ? grad_out->const_data_ptr<T>() + offset : nullptr,
                        channels};
      double* out_sums = sums_data + b * channels + j0;
      token_sums(s, tokens, j0, width, out_sums, q);
      if (q_data != nullptr) {
        for (int64_t k = 0; k < 3; ++k) {
          std::copy(q + k * kChannelBlock, q + k * kChannelBlock + width,
                    q_data + (k * batch + b) * channels + j0);
        }
      }
    }
  });
}

// The branch weights (3, B, D) from the logits (B, 3D) (ATen's softmax over a last dimension
// of 3 took 0.1-0.2 ms at DynaMixer-S stage B, a sixth of the forward).
template <typename T>
at::Tensor branch_weights(const at::Tensor& logits) {
  auto weights =
      logits.view({logits.size(0), logits.size(1) / 3, 3}).permute({2, 0, 1}).contiguous();
  const int64_t n = weights.size(1) * weights.size(2);
  T* a = weights.data_ptr<T>();
  softmax3(a, a + n, a + 2 * n, n);
  return weights;
}

// The logits' gradient (B, 3D) from the branch weights (3, B, D) and grad_weights (3, B, D,
// double): a_k * (q_k - sum_j a_j q_j), in double.
template <typename T>
at::Tensor branch_weights_backward(const at::Tensor& weights, const at::Tensor& grad_weights) {
  const int64_t batch = weights.size(1), channels = weights.size(2), n = batch * channels;
  auto grad_logits = at::empty({batch, 3 * channels}, weights.options());
  const T* a = weights.const_data_ptr<T>();
  const double* q = grad_weights.const_data_ptr<double>();
  T* out = grad_logits.data_ptr<T>();
  for (int64_t i = 0; i < n; ++i) {
    const double a0 = a[i], a1 = a[n + i], a2 = a[2 * n + i];
    const double q0 = q[i], q1 = q[n + i], q2 = q[2 * n + i];
    const double mean = a0 * q0 + a1 * q1 + a2 * q2;
    out[3 * i] = static_cast<T>(a0 * (q0 - mean));
    out[3 * i + 1] = static_cast<T>(a1 * (q1 - mean));
    out[3 * i + 2] = static_cast<T>(a2 * (q2 - mean));
  }
  return grad_logits;
}

// Pass 2 over every token row; `row(b, r)` handles row r of sample b.
template <typename RowFn>
void rows_pass(int64_t batch, int64_t tokens, int64_t channels, const RowFn& row) {
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(channels, 1));
  cpu::parallel_for(0, batch * tokens, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      row(r / tokens, r);
    }
  });
}

at::Tensor reweight_branches_cpu(const at::Tensor& h, const at::Tensor& w, const at::Tensor& c,
                                 const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                                 const at::Tensor& fc2_weight, const at::Tensor& fc2_bias) {
  const Mlp mlp{fc1_weight, fc1_bias, fc2_weight, fc2_bias};
  const auto hc = h.contiguous(), wc = w.contiguous(), cc = c.contiguous();
  const int64_t batch = h.size(0), channels = h.size(-1), tokens = tokens_of(h);
  auto sums = at::empty({batch, channels}, h.options().dtype(at::kDouble));
  auto out = at::empty(h.sizes(), h.options());
  MLPMIX_DISPATCH_CPU_FLOATING_AND_BF16(h.scalar_type(), "reweight_branches", [&] {
    phase("reweight_branches.token_sums",
          [&] { token_sums_pass<scalar_t>(hc, wc, cc, nullptr, sums, nullptr); });
    const auto a = phase("reweight_branches.branch_weights", [&] {
      return branch_weights<scalar_t>(mlp_forward(sums.to(h.scalar_type()), tokens, mlp).logits);
    });
    const scalar_t *x0 = hc.const_data_ptr<scalar_t>(), *x1 = wc.const_data_ptr<scalar_t>(),
                   *x2 = cc.const_data_ptr<scalar_t>(), *weights = a.const_data_ptr<scalar_t>();
    scalar_t* y = out.data_ptr<scalar_t>();
    const int64_t plane = batch * channels;
    phase("reweight_branches.weighted_sum", [&] {
      rows_pass(batch, tokens, channels, [&](int64_t b, int64_t r) {
        const scalar_t* a0 = weights + b * channels;
        const int64_t offset = r * channels;
        weighted_sum_row(x0 + offset, x1 + offset, x2 + offset, a0, a0 + plane, a0 + 2 * plane,
                         channels, y + offset);
      });
    });
  });
  return out;
}

Gradients reweight_branches_backward_cpu(const at::Tensor& grad_out, const at::Tensor& h,
                                         const at::Tensor& w, const at::Tensor& c,
                                         const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                                         const at::Tensor& fc2_weight,
                                         const at::Tensor& fc2_bias) {
  const Mlp mlp{fc1_weight, fc1_bias, fc2_weight, fc2_bias};
  const auto hc = h.contiguous(), wc = w.contiguous(), cc = c.contiguous();
  const auto g = grad_out.contiguous();
  const int64_t batch = h.size(0), channels = h.size(-1), tokens = tokens_of(h);
  const auto doubles = h.options().dtype(at::kDouble);
  auto sums = at::empty({batch, channels}, doubles);
  auto grad_weights = at::empty({3, batch, channels}, doubles);
  auto grad_h = at::empty(h.sizes(), h.options()), grad_w = at::empty(h.sizes(), h.options()),
       grad_c = at::empty(h.sizes(), h.options());
  MlpGradients r;
  MLPMIX_DISPATCH_CPU_FLOATING_AND_BF16(h.scalar_type(), "reweight_branches_backward", [&] {
    phase("reweight_branches_backward.token_sums",
          [&] { token_sums_pass<scalar_t>(hc, wc, cc, &g, sums, &grad_weights); });
    const auto a = phase("reweight_branches_backward.branch_weights", [&] {
      const auto f = mlp_forward(sums.to(h.scalar_type()), tokens, mlp);
      auto weights = branch_weights<scalar_t>(f.logits);
      r = mlp_backward(f, branch_weights_backward<scalar_t>(weights, grad_weights), tokens, mlp);
      return weights;
    });
    const scalar_t *gd = g.const_data_ptr<scalar_t>(), *weights = a.const_data_ptr<scalar_t>(),
                   *per_token = r.grad_per_token.const_data_ptr<scalar_t>();
    scalar_t *gh = grad_h.data_ptr<scalar_t>(), *gw = grad_w.data_ptr<scalar_t>(),
             *gc = grad_c.data_ptr<scalar_t>();
    const int64_t plane = batch * channels;
    phase("reweight_branches_backward.branch_gradients", [&] {
      rows_pass(batch, tokens, channels, [&](int64_t b, int64_t row) {
        const scalar_t* a0 = weights + b * channels;
        const int64_t offset = row * channels;
        branch_gradients_row(gd + offset, a0, a0 + plane, a0 + 2 * plane,
                             per_token + b * channels, channels, gh + offset, gw + offset,
                             gc + offset);
      });
    });
  });
  return {grad_h, grad_w, grad_c, r.grad_fc1_weight, r.grad_fc1_bias, r.grad_fc2_weight,
          r.grad_fc2_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(mlpmix, CPU, m) {
  m.impl("reweight_branches",
         checked<"reweight_branches", check_inputs, cpu::with_native_bf16<reweight_branches_cpu>>);
  m.impl("reweight_branches_backward",
         checked<"reweight_branches_backward", check_backward,
                 cpu::with_native_bf16<reweight_branches_backward_cpu>>);
}

}  // namespace mlpmix::reweight_branches_impl
