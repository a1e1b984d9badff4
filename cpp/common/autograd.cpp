#include "common/autograd.h"

#include <c10/util/Exception.h>

namespace mlpmix {

std::optional<at::Tensor> optional_of(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

void double_backward_unsupported(const char* op) {
  TORCH_CHECK(false, "mlpmix.", op,
              ": double backward (the gradient of its gradient) is not supported; do not use "
              "create_graph=True through this op");
}

}  // namespace mlpmix
