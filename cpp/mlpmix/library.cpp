// The mlpmix operator namespace. Each operator adds its schemas with
// TORCH_LIBRARY_FRAGMENT in its own folder under cpp/ops/.
#include <torch/library.h>

#include <string_view>

#include "mlpmix/mlpmix.h"

TORCH_LIBRARY(mlpmix, m) {}

namespace mlpmix {

int64_t registration_anchor() {
  int64_t count = 0;
  for (const auto& op : c10::Dispatcher::singleton().getAllOpNames()) {
    if (std::string_view(op.name).starts_with("mlpmix::")) {
      ++count;
    }
  }
  return count;
}

}  // namespace mlpmix
