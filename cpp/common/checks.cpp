#include "common/checks.h"

#include <algorithm>
#include <iterator>
#include <string>

#include "common/dtypes.h"

namespace mlpmix::checks {

namespace {

constexpr at::ScalarType kCpuTypes[] = {MLPMIX_CPU_FLOATING_TYPES};
constexpr at::ScalarType kCudaTypes[] = {MLPMIX_CUDA_FLOATING_TYPES};

constexpr bool contains(c10::ArrayRef<at::ScalarType> types, at::ScalarType type) {
  return std::find(types.begin(), types.end(), type) != types.end();
}

static_assert(std::all_of(std::begin(kCpuTypes), std::end(kCpuTypes),
                          [](at::ScalarType type) { return contains(kCudaTypes, type); }),
              "the messages below assume that CUDA runs every CPU dtype");

// "float32 or float64": the dtypes' names, `last` before the final one.
std::string names(c10::ArrayRef<at::ScalarType> types, const char* last) {
  std::string text;
  for (size_t i = 0; i < types.size(); ++i) {
    text += i == 0 ? "" : i + 1 == types.size() ? last : ", ";
    text += c10::getDtypeNames(types[i]).first;
  }
  return text;
}

std::vector<at::ScalarType> cuda_only_types() {
  std::vector<at::ScalarType> types;
  std::copy_if(std::begin(kCudaTypes), std::end(kCudaTypes), std::back_inserter(types),
               [](at::ScalarType type) { return !contains(kCpuTypes, type); });
  return types;
}

}  // namespace

void floating(const char* op, const char* name, const at::Tensor& t) {
  const auto dtype = t.scalar_type();
  static const auto cuda_only = cuda_only_types();
  static const auto cuda_only_note =
      cuda_only.empty() ? "" : " (or " + names(cuda_only, " or ") + " on CUDA)";
  TORCH_CHECK(contains(kCudaTypes, dtype), "mlpmix.", op, ": ", name, " must be ",
              names(kCpuTypes, " or "), cuda_only_note, ", got ", dtype);
  TORCH_CHECK(contains(kCpuTypes, dtype) || t.is_cuda() || t.is_meta(), "mlpmix.", op, ": ",
              name, " is ", dtype, " on ", t.device(), ", but the ",
              c10::DeviceTypeName(t.device().type()), " kernels support ",
              names(kCpuTypes, " and "), " only (", names(cuda_only, " and "), " run on CUDA)");
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

void tensor(const char* op, const char* name, const at::Tensor& t, c10::SymIntArrayRef expected,
            const char* meaning, const char* ref_name, const at::Tensor& ref) {
  same_dtype_device(op, name, t, ref_name, ref);
  sym_shape(op, name, t, expected, meaning);
}

void optional_tensor(const char* op, const char* name, const std::optional<at::Tensor>& t,
                     c10::SymIntArrayRef expected, const char* meaning, const char* ref_name,
                     const at::Tensor& ref) {
  if (t.has_value()) {
    tensor(op, name, *t, expected, meaning, ref_name, ref);
  }
}

int64_t wrap_dim(const char* op, const char* name, int64_t dim, int64_t ndim) {
  TORCH_CHECK(dim >= -ndim && dim < ndim, "mlpmix.", op, ": ", name, "=", dim,
              " is out of range for a tensor with ", ndim, " dimensions (expected in [",
              -ndim, ", ", ndim - 1, "])");
  return dim < 0 ? dim + ndim : dim;
}

}  // namespace mlpmix::checks
