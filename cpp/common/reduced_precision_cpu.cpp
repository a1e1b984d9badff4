#include "common/reduced_precision_cpu.h"

#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <cstdlib>
#include <string>

#include "common/simd.h"

namespace mlpmix::cpu {
namespace {

thread_local const ReducedPrecision* current = nullptr;

// dst[i * dst_stride + j] (+)= src[i * src_stride + j], converted: rows of unit-stride
// columns, in plain loops that the AVX2 clones vectorise. Worker threads call them, where
// dispatcher ops cost more than the conversion (and may not write inference tensors).
template <typename From, typename To>
MLPMIX_INLINE void convert_rows_impl(const From* src, int64_t src_stride, To* dst,
                                     int64_t dst_stride, int64_t rows, int64_t columns,
                                     bool accumulate) {
  for (int64_t i = 0; i < rows; ++i) {
    const From* in = src + i * src_stride;
    To* out = dst + i * dst_stride;
    if (accumulate) {
      for (int64_t j = 0; j < columns; ++j) {
        out[j] += static_cast<To>(in[j]);
      }
    } else {
      for (int64_t j = 0; j < columns; ++j) {
        out[j] = static_cast<To>(in[j]);
      }
    }
  }
}

#define MLPMIX_CONVERT_ROWS(FROM, TO)                                                        \
  MLPMIX_CLONE_FOR_AVX2 void convert_rows(const FROM* src, int64_t src_stride, TO* dst,       \
                                          int64_t dst_stride, int64_t rows, int64_t columns,  \
                                          bool accumulate) {                                  \
    convert_rows_impl(src, src_stride, dst, dst_stride, rows, columns, accumulate);          \
  }
MLPMIX_CONVERT_ROWS(float, at::BFloat16)
MLPMIX_CONVERT_ROWS(float, at::Half)
MLPMIX_CONVERT_ROWS(at::BFloat16, float)
MLPMIX_CONVERT_ROWS(at::Half, float)
#undef MLPMIX_CONVERT_ROWS

}  // namespace

void widen_rows(const at::BFloat16* src, int64_t src_stride, float* dst, int64_t dst_stride,
                int64_t rows, int64_t columns) {
  convert_rows(src, src_stride, dst, dst_stride, rows, columns, /*accumulate=*/false);
}

namespace {

// Whether a 2-D `t` is column-major: its rows, not its columns, are the unit-stride axis.
bool column_major(const at::Tensor& t) {
  return t.stride(1) != 1 && t.stride(0) == 1;
}

// dst (+)= src for 2-D tensors of one shape, walking them along dst's unit-stride axis.
template <typename From, typename To>
void convert(const at::Tensor& src_any, const at::Tensor& dst_any, bool accumulate) {
  const bool flip = column_major(dst_any);
  const auto src = flip ? src_any.t() : src_any, dst = flip ? dst_any.t() : dst_any;
  const From* in = src.const_data_ptr<From>();
  To* out = dst.mutable_data_ptr<To>();
  if ((src.stride(1) == 1 || src.size(1) <= 1) && (dst.stride(1) == 1 || dst.size(1) <= 1)) {
    convert_rows(in, src.stride(0), out, dst.stride(0), src.size(0), src.size(1), accumulate);
    return;
  }
  for (int64_t i = 0; i < src.size(0); ++i) {
    for (int64_t j = 0; j < src.size(1); ++j) {
      To& value = out[i * dst.stride(0) + j * dst.stride(1)];
      const To converted = static_cast<To>(in[i * src.stride(0) + j * src.stride(1)]);
      value = accumulate ? value + converted : converted;
    }
  }
}

}  // namespace

at::Tensor empty_matrix_like(const at::Tensor& t, at::ScalarType dtype) {
  const auto options = t.options().dtype(dtype);
  return column_major(t) ? at::empty({t.size(1), t.size(0)}, options).t()
                         : at::empty(t.sizes(), options);
}

at::Tensor ReducedPrecision::to_float32(const at::Tensor& t) {
  if (!t.defined() || t.scalar_type() != dtype_) {
    return t;
  }
  const auto argument = t.detach();
  auto copy = argument.to(at::kFloat);
  // The copy keeps the argument's strides when they are dense (to() preserves them), so an
  // element's offset in the copy is its offset in the argument's storage less the argument's
  // storage offset: lowered() maps views of the copy back onto the argument.
  if (copy.strides() == argument.strides()) {
    originals_.push_back({copy.storage().unsafeGetStorageImpl(), argument});
  }
  return copy;
}

at::Tensor ReducedPrecision::lowered(const at::Tensor& t) const {
  if (t.scalar_type() == dtype_) {
    return t;
  }
  const auto* storage = t.storage().unsafeGetStorageImpl();
  for (const auto& original : originals_) {
    if (original.copy == storage) {
      return original.argument.as_strided(
          t.sizes(), t.strides(), original.argument.storage_offset() + t.storage_offset());
    }
  }
  if (t.dim() != 2) {
    return t.to(dtype_);
  }
  auto low = empty_matrix_like(t, dtype_);
  if (dtype_ == at::kBFloat16) {
    convert<float, at::BFloat16>(t, low, /*accumulate=*/false);
  } else {
    convert<float, at::Half>(t, low, /*accumulate=*/false);
  }
  return low;
}

void widen_into(const at::Tensor& out, const at::Tensor& product, bool accumulate) {
  if (product.scalar_type() == at::kBFloat16) {
    convert<at::BFloat16, float>(product, out, accumulate);
  } else {
    convert<at::Half, float>(product, out, accumulate);
  }
}

bool native_bf16() {
  static const bool native = [] {
    const char* value = std::getenv("MLPMIX_CPU_BF16");
    const std::string choice = value == nullptr ? "auto" : value;
    TORCH_CHECK(choice == "auto" || choice.empty() || choice == "float32",
                "mlpmix: MLPMIX_CPU_BF16 must be auto or float32, got '", choice, "'");
#if defined(__x86_64__) && defined(__GNUC__)
    return choice != "float32" && __builtin_cpu_supports("avx512bf16");
#else
    return false;
#endif
  }();
  return native;
}

const ReducedPrecision* reduced_precision() { return current; }

ReducedPrecisionGuard::ReducedPrecisionGuard(const ReducedPrecision* state)
    : previous_(current) {
  current = state;
}

ReducedPrecisionGuard::~ReducedPrecisionGuard() { current = previous_; }

}  // namespace mlpmix::cpu
