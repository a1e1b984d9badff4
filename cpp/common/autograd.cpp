#include "common/autograd.h"

#include <ATen/core/grad_mode.h>
#include <c10/util/Exception.h>

namespace mlpmix {

std::optional<at::Tensor> optional_of(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

bool records_graph(std::initializer_list<std::optional<at::Tensor>> inputs) {
  if (!at::GradMode::is_enabled()) {
    return false;
  }
  for (const auto& t : inputs) {
    if (t.has_value() && t->requires_grad()) {
      return true;
    }
  }
  return false;
}

void double_backward_unsupported(const char* op) {
  TORCH_CHECK(false, "mlpmix.", op,
              ": double backward (the gradient of its gradient) is not supported; do not use "
              "create_graph=True through this op");
}

}  // namespace mlpmix
