#include "common/checks.h"

namespace mlpmix::checks {

void floating(const char* op, const char* name, const at::Tensor& t) {
  const auto dtype = t.scalar_type();
  const bool low_precision = dtype == at::kHalf || dtype == at::kBFloat16;
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || low_precision, "mlpmix.", op,
              ": ", name, " must be float32 or float64 (or float16 or bfloat16 on CUDA), got ",
              dtype);
  TORCH_CHECK(!low_precision || t.is_cuda() || t.is_meta(), "mlpmix.", op, ": ", name,
              " is ", dtype, " on ", t.device(), ", but the ",
              c10::DeviceTypeName(t.device().type()),
              " kernels support float32 and float64 only (float16 and bfloat16 run on CUDA)");
}

void rank(const char* op, const char* name, const at::Tensor& t, int64_t ndim,
          bool at_least) {
  TORCH_CHECK(at_least ? t.dim() >= ndim : t.dim() == ndim, "mlpmix.", op, ": ", name,
              " must have ", at_least ? "at least " : "", ndim, " dimensions, got ",
              t.dim(), " (shape ", t.sym_sizes(), ")");
}

void shape(const char* op, const char* name, const at::Tensor& t, at::IntArrayRef expected,
           const char* meaning) {
  bool ok = t.dim() == static_cast<int64_t>(expected.size());
  for (size_t i = 0; ok && i < expected.size(); ++i) {
    ok = t.sym_size(static_cast<int64_t>(i)) == expected[i];
  }
  TORCH_CHECK(ok, "mlpmix.", op, ": ", name, " must have shape ", meaning, " = ", expected,
              ", got ", t.sym_sizes());
}

void sym_shape(const char* op, const char* name, const at::Tensor& t,
               c10::SymIntArrayRef expected, const char* meaning) {
  TORCH_CHECK(t.sym_sizes() == expected, "mlpmix.", op, ": ", name, " must have shape ",
              meaning, " = ", expected, ", got ", t.sym_sizes());
}

void same_dtype_device(const char* op, const char* name, const at::Tensor& t,
                       const char* ref_name, const at::Tensor& ref) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), "mlpmix.", op, ": ", name,
              " must have the dtype of ", ref_name, " (", ref.scalar_type(), "), got ",
              t.scalar_type());
  TORCH_CHECK(t.device() == ref.device(), "mlpmix.", op, ": ", name,
              " must be on the device of ", ref_name, " (", ref.device(), "), got ",
              t.device());
}

void vector(const char* op, const char* name, const at::Tensor& t, int64_t length,
            const char* meaning, const char* ref_name, const at::Tensor& ref) {
  same_dtype_device(op, name, t, ref_name, ref);
  shape(op, name, t, {length}, meaning);
}

void optional_vector(const char* op, const char* name, const std::optional<at::Tensor>& t,
                     int64_t length, const char* meaning, const char* ref_name,
                     const at::Tensor& ref) {
  if (t.has_value() && t->defined()) {
    vector(op, name, *t, length, meaning, ref_name, ref);
  }
}

int64_t wrap_dim(const char* op, const char* name, int64_t dim, int64_t ndim) {
  TORCH_CHECK(dim >= -ndim && dim < ndim, "mlpmix.", op, ": ", name, "=", dim,
              " is out of range for a tensor with ", ndim, " dimensions (expected in [",
              -ndim, ", ", ndim - 1, "])");
  return dim < 0 ? dim + ndim : dim;
}

}  // namespace mlpmix::checks
