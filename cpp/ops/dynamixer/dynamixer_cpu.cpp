// mlpmix::dynamixer CPU kernels. The compression and the weight gradients are whole-tensor
// GEMMs (common/gemm_cpu.h). The generation runs per chunk of sequences (one GEMM each, its
// logits kept in the L2 cache), followed by the softmax over input tokens and the per-segment
// mixing, Y = P^T X (backward: their gradients and the chunk's compressed-input gradient),
// one sequence (all its segments) at a time. The backward reads the softmax P that
// `_dynamixer_forward` kept when it is given, and regenerates it otherwise. A sequence's N
// token rows are copied into a contiguous scratch block when they are not already adjacent
// in memory: rows a power-of-two stride apart (mixing along H) share one L1 cache set, and
// reading them in place thrashed it. Inner loops are register-blocked small GEMMs cloned for
// AVX2, on float operands for bfloat16 tensors too: a sequence's bfloat16 rows and each P are
// widened once, so that the inner loops broadcast and multiply straight from memory (widening
// every operand in the loop kept the shuffle port, not the FMA units, busy).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "common/checked.h"
#include "common/dtypes.h"
#include "common/gemm_cpu.h"
#include "common/reduced_precision_cpu.h"
#include "common/op_outputs.h"
#include "common/phase.h"
#include "common/sequences.h"
#include "common/simd.h"
#include "ops/dynamixer/dynamixer.h"

namespace mlpmix::dynamixer_impl {
namespace {

// A (rows, columns) matrix with unit column stride: row i starts at data + i * stride.
template <typename T>
struct Rows {
  T* data;
  int64_t stride;
  MLPMIX_INLINE T* row(int64_t i) const { return data + i * stride; }
};

// Coefficients c(k, m) = data[k * sum_stride + m * out_stride] of a linear combination of
// rows: either stride may be the unit one, so a matrix serves transposed or not.
template <typename T>
struct Coefficients {
  const T* data;
  int64_t sum_stride, out_stride;
  MLPMIX_INLINE T operator()(int64_t k, int64_t m) const {
    return data[k * sum_stride + m * out_stride];
  }
};

// The register tiles of the small GEMMs per instruction set: output rows and vectors of
// columns computed together, rows*vectors accumulators that stay in registers and share
// each load of `in` and each broadcast coefficient. AVX2 has 16 registers of 32 bytes,
// AVX-512 32 of 64.
struct Avx2 {
  static constexpr int64_t rows = 4, vectors = 3, bytes = 32;
};
struct Avx512 {
  static constexpr int64_t rows = 8, vectors = 2, bytes = 64;
};

// out[m0 + r, c0 : c0 + NV*lanes] = sum_k a(k, m0 + r) * in[k, c0 : ...], r < R, in vectors
// V. T: the arithmetic type of the coefficients and `in`, O: the storage of `out`.
template <int64_t R, int64_t NV, typename V, typename T, typename O>
MLPMIX_INLINE void combine_tile(Coefficients<T> a, Rows<const T> in, Rows<O> out, int64_t m0,
                                int64_t K, int64_t c0) {
  typename V::type acc[R][NV] = {};
  for (int64_t k = 0; k < K; ++k) {
    typename V::type in_block[NV];
#pragma GCC unroll 4
    for (int64_t v = 0; v < NV; ++v) {
      in_block[v] = V::load(in.row(k) + c0 + v * V::lanes);
    }
#pragma GCC unroll 8
    for (int64_t r = 0; r < R; ++r) {
      const auto coefficient = V::broadcast(a(k, m0 + r));
#pragma GCC unroll 4
      for (int64_t v = 0; v < NV; ++v) {
        acc[r][v] += coefficient * in_block[v];
      }
    }
  }
#pragma GCC unroll 8
  for (int64_t r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int64_t v = 0; v < NV; ++v) {
      simd::store_as(out.row(m0 + r) + c0 + v * V::lanes, acc[r][v]);
    }
  }
}

// Rows m0 .. m0+R-1 of out over all `width` columns: the ISA's widest vectors, then a
// 32-byte one, then single columns.
template <typename Isa, int64_t R, typename T, typename O>
MLPMIX_INLINE void combine_row_block(Coefficients<T> a, Rows<const T> in, Rows<O> out,
                                     int64_t m0, int64_t K, int64_t width) {
  using Wide = simd::Vec<T, Isa::bytes>;
  using Narrow = simd::Vec<T>;
  constexpr int64_t L = Wide::lanes, NV = Isa::vectors;
  int64_t c0 = 0;
  for (; c0 + NV * L <= width; c0 += NV * L) {
    combine_tile<R, NV, Wide>(a, in, out, m0, K, c0);
  }
  if constexpr (NV > 2) {
    if (c0 + 2 * L <= width) {
      combine_tile<R, 2, Wide>(a, in, out, m0, K, c0);
      c0 += 2 * L;
    }
  }
  if (c0 + L <= width) {
    combine_tile<R, 1, Wide>(a, in, out, m0, K, c0);
    c0 += L;
  }
  if constexpr (Narrow::lanes < L) {
    if (c0 + Narrow::lanes <= width) {
      combine_tile<R, 1, Narrow>(a, in, out, m0, K, c0);
      c0 += Narrow::lanes;
    }
  }
  for (; c0 < width; ++c0) {
    for (int64_t r = 0; r < R; ++r) {
      T acc = 0;
      for (int64_t k = 0; k < K; ++k) {
        acc += a(k, m0 + r) * in.row(k)[c0];
      }
      out.row(m0 + r)[c0] = static_cast<O>(acc);
    }
  }
}

// out (M, width) from in (K, width): out[m, :] = sum_k a(k, m) in[k, :], a small GEMM.
template <typename Isa, typename T, typename O>
MLPMIX_INLINE void combine_rows_impl(Coefficients<T> a, Rows<const T> in, Rows<O> out,
                                     int64_t M, int64_t K, int64_t width) {
  int64_t m0 = 0;
  for (; m0 + Isa::rows <= M; m0 += Isa::rows) {
    combine_row_block<Isa, Isa::rows>(a, in, out, m0, K, width);
  }
  for (; m0 < M; ++m0) {
    combine_row_block<Isa, 1>(a, in, out, m0, K, width);
  }
}

// p[i*N + j] = softmax over i of logits[i*N + j] + bias[i*N + j] (bias may be null): each
// output token j's weights over the input tokens i sum to one. A vector V of output tokens
// at a time, its maximum and sum held in registers: three passes over its N inputs, the
// first two through `work` (N*N of T's arithmetic type; it may be p when that is T itself).
template <typename V, typename T, typename W>
MLPMIX_INLINE int64_t softmax_vectors(const T* __restrict logits, const T* __restrict bias,
                                      T* p, W* work, int64_t N, int64_t j0) {
  using simd::load_as;
  using Lanes = typename V::type;
  for (; j0 + V::lanes <= N; j0 += V::lanes) {
    auto biased = [&](int64_t i) MLPMIX_VISIT {
      const auto v = load_as<Lanes>(logits + i * N + j0);
      return bias != nullptr ? v + load_as<Lanes>(bias + i * N + j0) : v;
    };
    auto maximum = biased(0);
    V::store(work + j0, maximum);
    for (int64_t i = 1; i < N; ++i) {
      const auto v = biased(i);
      V::store(work + i * N + j0, v);
      maximum = v > maximum ? v : maximum;
    }
    Lanes sum = {};
    for (int64_t i = 0; i < N; ++i) {
      auto e = V::load(work + i * N + j0) - maximum;
      simd::exp_nonpositive(e);
      V::store(work + i * N + j0, e);
      sum += e;
    }
    const auto inverse = V::broadcast(W(1)) / sum;
    for (int64_t i = 0; i < N; ++i) {
      simd::store_as(p + i * N + j0, V::load(work + i * N + j0) * inverse);
    }
  }
  return j0;
}

template <typename Isa, typename T, typename W>
MLPMIX_INLINE void softmax_over_inputs_impl(const T* __restrict logits, const T* __restrict bias,
                                            T* p, W* work, int64_t N) {
  int64_t j0 = softmax_vectors<simd::Vec<W, Isa::bytes>>(logits, bias, p, work, N, 0);
  if constexpr (Isa::bytes > 32) {
    j0 = softmax_vectors<simd::Vec<W>>(logits, bias, p, work, N, j0);
  }
  for (int64_t j = j0; j < N; ++j) {
    auto biased = [&](int64_t i) MLPMIX_VISIT {
      return static_cast<W>(logits[i * N + j]) +
             (bias != nullptr ? static_cast<W>(bias[i * N + j]) : W(0));
    };
    W maximum = biased(0);
    for (int64_t i = 1; i < N; ++i) {
      maximum = std::max(maximum, biased(i));
    }
    W sum = 0;
    for (int64_t i = 0; i < N; ++i) {
      work[i * N + j] = std::exp(biased(i) - maximum);
      sum += work[i * N + j];
    }
    for (int64_t i = 0; i < N; ++i) {
      p[i * N + j] = static_cast<T>(work[i * N + j] / sum);
    }
  }
}

// grad_logits[i*N + j] = p[i, j] * (grad_p[i, j] - sum_i' p[i', j] grad_p[i', j]), a vector
// V of output tokens j at a time; grad_p in T's arithmetic type.
template <typename V, typename T, typename W>
MLPMIX_INLINE int64_t softmax_backward_vectors(const T* __restrict p, const W* __restrict grad_p,
                                               int64_t N, T* __restrict grad_logits,
                                               int64_t j0) {
  using Lanes = typename V::type;
  using simd::load_as;
  for (; j0 + V::lanes <= N; j0 += V::lanes) {
    Lanes dot = {};
    for (int64_t i = 0; i < N; ++i) {
      dot += load_as<Lanes>(p + i * N + j0) * V::load(grad_p + i * N + j0);
    }
    for (int64_t i = 0; i < N; ++i) {
      simd::store_as(grad_logits + i * N + j0,
                     load_as<Lanes>(p + i * N + j0) * (V::load(grad_p + i * N + j0) - dot));
    }
  }
  return j0;
}

template <typename Isa, typename T, typename W>
MLPMIX_INLINE void softmax_over_inputs_backward_impl(const T* __restrict p,
                                                     const W* __restrict grad_p, int64_t N,
                                                     T* __restrict grad_logits) {
  int64_t j0 = softmax_backward_vectors<simd::Vec<W, Isa::bytes>>(p, grad_p, N, grad_logits, 0);
  if constexpr (Isa::bytes > 32) {
    j0 = softmax_backward_vectors<simd::Vec<W>>(p, grad_p, N, grad_logits, j0);
  }
  for (int64_t j = j0; j < N; ++j) {
    W dot = 0;
    for (int64_t i = 0; i < N; ++i) {
      dot += static_cast<W>(p[i * N + j]) * grad_p[i * N + j];
    }
    for (int64_t i = 0; i < N; ++i) {
      grad_logits[i * N + j] =
          static_cast<T>(static_cast<W>(p[i * N + j]) * (grad_p[i * N + j] - dot));
    }
  }
}

// Each kernel built for AVX-512 (its own tiles) and cloned for AVX2 (target_clones takes no
// templates: one overload per dtype), the entry point picking the CPU's.
#define MLPMIX_ISA_KERNEL(NAME, PARAMS, ARGS)                                                     \
  MLPMIX_TARGET_AVX512 void NAME##_avx512 PARAMS { NAME##_impl<Avx512> ARGS; }                     \
  MLPMIX_CLONE_FOR_AVX2 void NAME##_avx2 PARAMS { NAME##_impl<Avx2> ARGS; }                        \
  void NAME PARAMS {                                                                              \
    if (simd::cpu_has_avx512()) {                                                                 \
      NAME##_avx512 ARGS;                                                                         \
    } else {                                                                                      \
      NAME##_avx2 ARGS;                                                                           \
    }                                                                                             \
  }
#define MLPMIX_COMBINE_ROWS(T, O)                                                                 \
  MLPMIX_ISA_KERNEL(combine_rows,                                                                 \
                    (Coefficients<T> a, Rows<const T> in, Rows<O> out, int64_t M, int64_t K,       \
                     int64_t width),                                                              \
                    (a, in, out, M, K, width))
MLPMIX_COMBINE_ROWS(float, float)
MLPMIX_COMBINE_ROWS(double, double)
MLPMIX_COMBINE_ROWS(float, at::BFloat16)
#undef MLPMIX_COMBINE_ROWS

#define MLPMIX_SOFTMAX(T, W)                                                                      \
  MLPMIX_ISA_KERNEL(softmax_over_inputs,                                                          \
                    (const T* logits, const T* bias, T* p, W* work, int64_t N),                   \
                    (logits, bias, p, work, N))                                                   \
  MLPMIX_ISA_KERNEL(softmax_over_inputs_backward,                                                 \
                    (const T* p, const W* grad_p, int64_t N, T* grad_logits),                     \
                    (p, grad_p, N, grad_logits))
MLPMIX_SOFTMAX(float, float)
MLPMIX_SOFTMAX(double, double)
MLPMIX_SOFTMAX(at::BFloat16, float)
#undef MLPMIX_SOFTMAX
#undef MLPMIX_ISA_KERNEL

// dst (width, rows) = src (rows, width) transposed.
template <typename T>
void transpose_into(Rows<const T> src, int64_t rows, int64_t width, T* dst) {
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t c = 0; c < width; ++c) {
      dst[c * rows + i] = src.row(i)[c];
    }
  }
}

// The N token rows (D channels, unit stride) of one sequence of a tensor of T, as rows of
// R: either read in place (rows already D apart, R is T) or through a contiguous scratch
// copy (bfloat16 widened to float for the inner loops).
template <typename T, typename R = T>
class SequenceRows {
  static constexpr bool kSameType = std::is_same_v<std::remove_const_t<T>, std::remove_const_t<R>>;

 public:
  SequenceRows(T* base, const SequenceLayout& layout, int64_t N, int64_t D)
      : base_(base), layout_(layout), N_(N), D_(D),
        in_place_(kSameType && layout.token_stride == D) {
    if (!in_place_) {
      scratch_.resize(N * D);
    }
  }

  // Rows of `sequence`, copied into the scratch block first when `read`.
  Rows<R> load(int64_t sequence, bool read) {
    T* first = base_ + layout_.offsets[sequence];
    if constexpr (kSameType) {
      if (in_place_) {
        return {first, D_};
      }
    }
    current_ = first;
    if (read) {
      if constexpr (kSameType) {
        for (int64_t n = 0; n < N_; ++n) {
          std::memcpy(scratch_.data() + n * D_, first + n * layout_.token_stride,
                      D_ * sizeof(T));
        }
      } else {
        cpu::widen_rows(first, layout_.token_stride, scratch_.data(), D_, N_, D_);
      }
    }
    return {scratch_.data(), D_};
  }

  // Writes the scratch block back into the rows of the last `load` (no-op in place).
  void store() {
    static_assert(kSameType, "only rows read in their own type are written back");
    if (in_place_) {
      return;
    }
    for (int64_t n = 0; n < N_; ++n) {
      std::memcpy(current_ + n * layout_.token_stride, scratch_.data() + n * D_,
                  D_ * sizeof(T));
    }
  }

 private:
  T* base_;
  const SequenceLayout& layout_;
  int64_t N_, D_;
  bool in_place_;
  T* current_ = nullptr;
  std::vector<std::remove_const_t<R>> scratch_;
};

// The n values at p in their arithmetic type: p itself, or bfloat16 widened into `work`.
template <typename T>
const typename simd::Math<T>::type* in_math_type(const T* p, typename simd::Math<T>::type* work,
                                                 int64_t n) {
  if constexpr (std::is_same_v<T, typename simd::Math<T>::type>) {
    return p;
  } else {
    cpu::widen_rows(p, n, work, n, 1, n);
    return work;
  }
}

const MatrixProducts kCpuProducts{
    &cpu::linear,
    &cpu::gemm,
    [](const at::Tensor& out, const at::Tensor& a, const at::Tensor& b) {
      cpu::gemm_out(out, a, b, /*accumulate=*/true);
    },
};

at::Tensor contiguous_or_undefined(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->contiguous() : at::Tensor();
}

// Sequences whose logits are generated by one GEMM: >= 128 rows, while the chunk's logits
// (<= 512 KiB) stay in the L2 cache for the softmax that reads them. Set by the sizes alone,
// so that the results do not depend on the thread count.
int64_t sequences_per_chunk(const Dims& dims, int64_t element_size) {
  const int64_t sequence_bytes = dims.S * dims.N * dims.N * element_size;
  const int64_t for_rows = (128 + dims.S - 1) / dims.S;
  const int64_t for_cache = (int64_t{512} << 10) / sequence_bytes;
  return std::max<int64_t>(1, std::min(for_rows, for_cache));
}

// Runs body(first, count, logits) for each chunk of sequences in parallel (labelled
// "<op>.generate" and "<op>.softmax_mixing" for the profiler), where `logits`
// (count*S, N*N) holds the chunk's generated logits Z Wg^T without the bias (which joins in
// the softmax: no broadcast copy of it); undefined, and not generated, unless `generate`.
template <typename Body>
void for_each_chunk(const char* op, const at::Tensor& compressed,
                    const at::Tensor& generate_weight, const Dims& dims, bool generate,
                    const Body& body) {
  const std::string generate_phase = std::string(op) + ".generate";
  const std::string mixing_phase = std::string(op) + ".softmax_mixing";
  const int64_t sequences = compressed.size(0);
  const int64_t chunk = sequences_per_chunk(dims, compressed.element_size());
  const auto z = compressed.view({sequences * dims.S, dims.N * dims.d});
  const auto generate_t = generate_weight.detach().t();
  cpu::parallel_for(0, (sequences + chunk - 1) / chunk, 1, [&](int64_t begin, int64_t end) {
    auto logits = generate ? at::empty({chunk * dims.S, dims.N * dims.N}, compressed.options())
                           : at::Tensor();
    for (int64_t c = begin; c < end; ++c) {
      const int64_t first = c * chunk, count = std::min(chunk, sequences - first);
      at::Tensor chunk_logits;
      if (generate) {
        chunk_logits = logits.narrow(0, 0, count * dims.S);
        phase(generate_phase.c_str(), [&] {
          cpu::gemm_out(chunk_logits, z.narrow(0, first * dims.S, count * dims.S), generate_t);
        });
      }
      phase(mixing_phase.c_str(), [&] { body(first, count, chunk_logits); });
    }
  });
}

// Steps 2-4 given x (unit channel stride) and its compressed input Z. The mixing weights P
// are written into `weights` (B', S, N*N) when it is defined.
at::Tensor mix(const at::Tensor& x, const at::Tensor& compressed,
               const at::Tensor& generate_weight,
               const std::optional<at::Tensor>& generate_bias, const Dims& dims,
               const at::Tensor& weights) {
  const auto bias = contiguous_or_undefined(generate_bias);
  auto out = at::empty(x.sizes(), x.options());
  const auto x_layout = sequence_layout(x, dims.token_dim);
  const auto out_layout = sequence_layout(out, dims.token_dim);
  const int64_t N = dims.N, D = dims.D, S = dims.S, width = D / S;

  MLPMIX_DISPATCH_CPU_FLOATING_AND_BF16(x.scalar_type(), "mlpmix_dynamixer_cpu", [&] {
    using math_t = typename simd::Math<scalar_t>::type;
    const scalar_t* bias_data = bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* weights_data = weights.defined() ? weights.mutable_data_ptr<scalar_t>() : nullptr;
    for_each_chunk("dynamixer", compressed, generate_weight, dims, /*generate=*/true,
                   [&](int64_t first, int64_t count, const at::Tensor& logits) {
      SequenceRows<const scalar_t, const math_t> x_rows(x.const_data_ptr<scalar_t>(), x_layout,
                                                        N, D);
      SequenceRows<scalar_t> out_rows(out.mutable_data_ptr<scalar_t>(), out_layout, N, D);
      std::vector<scalar_t> scratch(weights_data != nullptr ? 0 : N * N);
      std::vector<math_t> work(N * N);
      const scalar_t* logits_data = logits.const_data_ptr<scalar_t>();
      for (int64_t k = 0; k < count; ++k) {
        const auto xs = x_rows.load(first + k, /*read=*/true);
        const auto ys = out_rows.load(first + k, /*read=*/false);
        for (int64_t segment = 0; segment < S; ++segment) {
          const int64_t item = (first + k) * S + segment;
          scalar_t* p = weights_data != nullptr ? weights_data + item * N * N : scratch.data();
          softmax_over_inputs(logits_data + (k * S + segment) * N * N, bias_data, p,
                              work.data(), N);
          const int64_t c0 = segment * width;
          // y[j, :] = sum_i P[i, j] x[i, :]
          combine_rows(Coefficients<math_t>{in_math_type(p, work.data(), N * N), N, 1},
                       Rows<const math_t>{xs.data + c0, D}, Rows<scalar_t>{ys.data + c0, D},
                       N, N, width);
        }
        out_rows.store();
      }
    });
  });
  return out;
}

// The op's kernel (keep false) and the internal forward's (true), which also returns the
// compressed input Z and the mixing weights P.
template <bool keep>
auto dynamixer_cpu(const Dims& dims, const at::Tensor& x_any, const at::Tensor& compress_weight,
                   const std::optional<at::Tensor>& compress_bias,
                   const at::Tensor& generate_weight,
                   const std::optional<at::Tensor>& generate_bias) {
  const auto x = contiguous_channels(x_any);
  auto compressed = phase("dynamixer.compress", [&] {
    return compress(x, compress_weight, compress_bias, dims, kCpuProducts);
  });
  auto weights = keep ? at::empty({compressed.size(0), dims.S, dims.N * dims.N}, x.options())
                      : at::Tensor();
  auto out = mix(x, compressed, generate_weight, generate_bias, dims, weights);
  return op_outputs<keep>(out, compressed, weights);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> dynamixer_backward_cpu(
    const Dims& dims, const at::Tensor& grad_out_any, const at::Tensor& x_any,
    const at::Tensor& compress_weight, const std::optional<at::Tensor>& compress_bias,
    const at::Tensor& generate_weight, const std::optional<at::Tensor>& generate_bias,
    int64_t num_segments, int64_t dim, const std::optional<at::Tensor>& kept_compressed,
    const std::optional<at::Tensor>& kept_weights) {
  const auto x = contiguous_channels(x_any);
  const auto grad_out = contiguous_channels(grad_out_any);
  const auto compressed =
      kept_compressed.has_value() ? kept_compressed->contiguous()
                                  : phase("dynamixer_backward.compress", [&] {
                                      return compress(x, compress_weight, compress_bias, dims,
                                                      kCpuProducts);
                                    });
  const auto weights = contiguous_or_undefined(kept_weights);
  const auto bias = contiguous_or_undefined(generate_bias);
  const int64_t N = dims.N, D = dims.D, S = dims.S, width = D / S;
  const int64_t rows = compressed.size(0) * S;
  auto grad_logits = at::empty({rows, N * N}, x.options());
  auto grad_compressed = at::empty({compressed.size(0), S, N * dims.d}, x.options());
  auto grad_x = at::empty(x.sizes(), x.options());
  const auto x_layout = sequence_layout(x, dims.token_dim);
  const auto grad_out_layout = sequence_layout(grad_out, dims.token_dim);
  const auto grad_x_layout = sequence_layout(grad_x, dims.token_dim);
  const auto generate = generate_weight.detach().contiguous();

  MLPMIX_DISPATCH_CPU_FLOATING_AND_BF16(x.scalar_type(), "mlpmix_dynamixer_backward_cpu", [&] {
    using math_t = typename simd::Math<scalar_t>::type;
    const scalar_t* bias_data = bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* weights_data =
        weights.defined() ? weights.const_data_ptr<scalar_t>() : nullptr;
    for_each_chunk("dynamixer_backward", compressed, generate_weight, dims,
                   /*generate=*/weights_data == nullptr,
                   [&](int64_t first, int64_t count, const at::Tensor& logits) {
      SequenceRows<const scalar_t, const math_t> x_rows(x.const_data_ptr<scalar_t>(), x_layout,
                                                        N, D);
      SequenceRows<const scalar_t, const math_t> gy_rows(grad_out.const_data_ptr<scalar_t>(),
                                                         grad_out_layout, N, D);
      SequenceRows<scalar_t> gx_rows(grad_x.mutable_data_ptr<scalar_t>(), grad_x_layout, N,
                                     D);
      std::vector<scalar_t> scratch(weights_data != nullptr ? 0 : N * N);
      std::vector<math_t> work(N * N), grad_p(N * N), gy_t(width * N);
      const scalar_t* logits_data = logits.defined() ? logits.const_data_ptr<scalar_t>() : nullptr;
      scalar_t* grad_logits_data = grad_logits.mutable_data_ptr<scalar_t>() + first * S * N * N;
      for (int64_t k = 0; k < count; ++k) {
        const auto xs = x_rows.load(first + k, /*read=*/true);
        const auto gys = gy_rows.load(first + k, /*read=*/true);
        const auto gxs = gx_rows.load(first + k, /*read=*/false);
        for (int64_t segment = 0; segment < S; ++segment) {
          const int64_t item = k * S + segment, c0 = segment * width;
          const Rows<const math_t> x_segment{xs.data + c0, D}, gy_segment{gys.data + c0, D};
          const scalar_t* p = scratch.data();
          if (weights_data != nullptr) {
            p = weights_data + (first * S + item) * N * N;
          } else {
            softmax_over_inputs(logits_data + item * N * N, bias_data, scratch.data(),
                                work.data(), N);
          }
          // grad_x[i, :] = sum_j P[i, j] gy[j, :]
          combine_rows(Coefficients<math_t>{in_math_type(p, work.data(), N * N), 1, N},
                       gy_segment, Rows<scalar_t>{gxs.data + c0, D}, N, N, width);
          // grad_P[i, :] = sum_c x[i, c] gy^T[c, :]
          transpose_into(gy_segment, N, width, gy_t.data());
          combine_rows(Coefficients<math_t>{x_segment.data, 1, D},
                       Rows<const math_t>{gy_t.data(), N}, Rows<math_t>{grad_p.data(), N}, N,
                       width, N);
          softmax_over_inputs_backward(p, grad_p.data(), N,
                                       grad_logits_data + item * N * N);
        }
        gx_rows.store();
      }
      // grad_Z of the chunk while its logits gradient is in cache.
      phase("dynamixer_backward.compressed_input", [&] {
        auto chunk_grad_compressed = grad_compressed.view({rows, N * dims.d})
                                         .narrow(0, first * S, count * S);
        cpu::gemm_out(chunk_grad_compressed, grad_logits.narrow(0, first * S, count * S),
                      generate);
      });
    });
  });
  // The weight gradients sum over every chunk: whole-tensor GEMMs, in a fixed order.
  auto [grad_generate_weight, grad_generate_bias] =
      phase("dynamixer_backward.generate_weight", [&] {
        return std::tuple(cpu::gemm(grad_logits.t(), compressed.view({rows, N * dims.d})),
                          grad_logits.sum(0));
      });
  auto [gcw, gcb] = phase("dynamixer_backward.compress_backward", [&] {
    return compress_backward(grad_compressed, x, compress_weight, dims, grad_x, kCpuProducts);
  });
  return {grad_x, gcw, gcb, grad_generate_weight, grad_generate_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(mlpmix, CPU, m) {
  m.impl("dynamixer",
         checked<"dynamixer", check_inputs, cpu::with_native_bf16<dynamixer_cpu<false>>>);
  m.impl("_dynamixer_forward",
         checked<"_dynamixer_forward", check_inputs, cpu::with_native_bf16<dynamixer_cpu<true>>>);
  m.impl("dynamixer_backward", checked<"dynamixer_backward", check_backward,
                                       cpu::with_native_bf16<dynamixer_backward_cpu>>);
}

}  // namespace mlpmix::dynamixer_impl
