#include "common/autograd.h"

namespace mlpmix {

void double_backward_unsupported(const char* op) {
  TORCH_CHECK(false, "mlpmix.", op,
              ": double backward (the gradient of its gradient) is not supported; do not use "
              "create_graph=True through this op");
}

}  // namespace mlpmix
