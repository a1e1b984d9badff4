#include "common/reduced_precision_cpu.h"

namespace mlpmix::cpu {
namespace {

thread_local const ReducedPrecision* current = nullptr;

}  // namespace

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
  return t.to(dtype_);
}

const ReducedPrecision* reduced_precision() { return current; }

ReducedPrecisionGuard::ReducedPrecisionGuard(const ReducedPrecision* state)
    : previous_(current) {
  current = state;
}

ReducedPrecisionGuard::~ReducedPrecisionGuard() { current = previous_; }

}  // namespace mlpmix::cpu
