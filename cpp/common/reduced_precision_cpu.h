// bfloat16 and float16 on CPU. The fused CPU kernels compute in float32 (and float64); a
// call in a reduced-precision dtype runs through in_float32<impl>:
//
//   m.impl("dynamixer", checked<"dynamixer", check_inputs, in_float32<dynamixer_cpu<false>>>);
//
// which runs impl on float32 copies of its reduced-precision tensors, so that LayerNorm
// statistics, softmax, GELU and reductions run in float32, while the matrix products of
// common/gemm_cpu.h run in the call's dtype (operands rounded to it, float32 accumulation in
// oneDNN or ATen's CPU BLAS, the product rounded to it, as a PyTorch matmul in that dtype
// rounds it; products too small to gain from it stay float32), then rounds the outputs back
// to the call's dtype. Calls in float32 and float64 go straight to impl. Kernels that also
// store bfloat16 themselves register with_native_bf16<impl> instead: bfloat16 calls go to
// impl itself on CPUs with native bf16 products, everything else as above.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/core/StorageImpl.h>

#include <optional>
#include <tuple>
#include <utility>
#include <vector>

namespace mlpmix::cpu {

// The reduced-precision state of one op call.
class ReducedPrecision {
 public:
  explicit ReducedPrecision(at::ScalarType dtype) : dtype_(dtype) {}

  at::ScalarType dtype() const { return dtype_; }

  // `t` in float32 when it is in this call's dtype, remembering it: the matrix products
  // then read its values from `t` itself instead of rounding the float32 copy again.
  at::Tensor to_float32(const at::Tensor& t);

  // `t` (float32) in this call's dtype: a view of the argument it was copied from where `t`
  // lies in such a copy, else `t` rounded.
  at::Tensor lowered(const at::Tensor& t) const;

 private:
  struct Original {
    const c10::StorageImpl* copy;
    at::Tensor argument;
  };
  at::ScalarType dtype_;
  std::vector<Original> originals_;
};

// out (float32, 2-D) = product (bfloat16 or float16, same shape), or += when `accumulate`.
void widen_into(const at::Tensor& out, const at::Tensor& product, bool accumulate);

// dst[i * dst_stride + j] = src[i * src_stride + j] in float, for `rows` rows of `columns`
// unit-stride values: kernels that widen their bfloat16 operands once for float inner loops.
void widen_rows(const at::BFloat16* src, int64_t src_stride, float* dst, int64_t dst_stride,
                int64_t rows, int64_t columns);

// A fresh (rows, columns) matrix of `dtype` in the orientation of the 2-D `t` (column-major
// when t's rows are its unit-stride axis, else row-major).
at::Tensor empty_matrix_like(const at::Tensor& t, at::ScalarType dtype);

// The state of the op call running on this thread, or null outside a reduced-precision call.
const ReducedPrecision* reduced_precision();

// Makes `state` this thread's reduced-precision state while it lives.
class ReducedPrecisionGuard {
 public:
  explicit ReducedPrecisionGuard(const ReducedPrecision* state);
  ~ReducedPrecisionGuard();
  ReducedPrecisionGuard(const ReducedPrecisionGuard&) = delete;
  ReducedPrecisionGuard& operator=(const ReducedPrecisionGuard&) = delete;

 private:
  const ReducedPrecision* previous_;
};

// at::parallel_for whose workers run the matrix products in the caller's precision.
template <typename Body>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const Body& body) {
  const ReducedPrecision* state = reduced_precision();
  at::parallel_for(begin, end, grain, [&](int64_t first, int64_t last) {
    ReducedPrecisionGuard guard(state);
    body(first, last);
  });
}

namespace detail {

inline bool is_reduced(at::ScalarType dtype) {
  return dtype == at::kBFloat16 || dtype == at::kHalf;
}

inline std::optional<at::ScalarType> reduced_dtype_of(const at::Tensor& t) {
  return t.defined() && is_reduced(t.scalar_type()) ? std::optional(t.scalar_type())
                                                    : std::nullopt;
}
inline std::optional<at::ScalarType> reduced_dtype_of(const std::optional<at::Tensor>& t) {
  return t.has_value() ? reduced_dtype_of(*t) : std::nullopt;
}
template <typename T>
std::optional<at::ScalarType> reduced_dtype_of(const T&) {
  return std::nullopt;
}

inline at::Tensor in_float32(ReducedPrecision& state, const at::Tensor& t) {
  return state.to_float32(t);
}
inline std::optional<at::Tensor> in_float32(ReducedPrecision& state,
                                            const std::optional<at::Tensor>& t) {
  return t.has_value() ? std::optional(state.to_float32(*t)) : std::nullopt;
}
template <typename T>
const T& in_float32(ReducedPrecision&, const T& value) {
  return value;
}

inline at::Tensor rounded(at::ScalarType dtype, const at::Tensor& t) {
  return t.defined() ? t.to(dtype) : t;
}
template <typename... Tensors>
std::tuple<Tensors...> rounded(at::ScalarType dtype, const std::tuple<Tensors...>& outputs) {
  return std::apply([&](const auto&... t) { return std::tuple<Tensors...>{rounded(dtype, t)...}; },
                    outputs);
}

}  // namespace detail

template <auto impl, typename Signature = decltype(impl)>
struct InFloat32;

template <auto impl, typename Ret, typename... Args>
struct InFloat32<impl, Ret (*)(Args...)> {
  static Ret call(Args... args) {
    std::optional<at::ScalarType> dtype;
    ((dtype = dtype ? dtype : detail::reduced_dtype_of(args)), ...);
    if (!dtype) {
      return impl(args...);
    }
    ReducedPrecision state(*dtype);
    ReducedPrecisionGuard guard(&state);
    return detail::rounded(*dtype, impl(detail::in_float32(state, args)...));
  }
};

// The CPU kernel `impl` (a function), taking bfloat16 and float16 calls as above.
template <auto impl>
inline constexpr auto in_float32 = &InFloat32<impl>::call;

// Whether bfloat16 calls run kernels written for bfloat16 storage (tiles in bfloat16,
// arithmetic in float32 registers, products in oneDNN's bfloat16 kernels): on CPUs with
// native bfloat16 products (AVX512-BF16 or AMX), where they beat float32 copies. Elsewhere,
// or with the environment variable MLPMIX_CPU_BF16=float32 (read once), bfloat16 calls go
// through in_float32 like float16 ones.
bool native_bf16();

template <auto impl, typename Signature = decltype(impl)>
struct WithNativeBf16;

template <auto impl, typename Ret, typename... Args>
struct WithNativeBf16<impl, Ret (*)(Args...)> {
  static Ret call(Args... args) {
    std::optional<at::ScalarType> dtype;
    ((dtype = dtype ? dtype : detail::reduced_dtype_of(args)), ...);
    if (dtype == at::kBFloat16 && native_bf16()) {
      return impl(args...);
    }
    return InFloat32<impl>::call(args...);
  }
};

// The CPU kernel `impl`, which also computes in bfloat16 itself: bfloat16 calls go to it
// where native_bf16(), float16 ones (and bfloat16 elsewhere) through in_float32.
template <auto impl>
inline constexpr auto with_native_bf16 = &WithNativeBf16<impl>::call;

}  // namespace mlpmix::cpu
