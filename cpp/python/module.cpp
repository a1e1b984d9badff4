// mlpmix._C: facts about how this mlpmix was built. No tensors cross pybind11; the
// operators live in libmlpmix_ops and are reached through torch.ops.mlpmix.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

namespace {

// MLPMIX_BACKENDS is the comma-joined CMake list, e.g. "cpu,cuda".
std::vector<std::string> split_backends(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t end = list.find(',', start);
    const std::string item = list.substr(start, end == std::string::npos ? end : end - start);
    if (!item.empty()) {
      out.push_back(item);
    }
    if (end == std::string::npos) {
      break;
    }
    start = end + 1;
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "Build facts of the mlpmix extension";
  m.attr("version") = MLPMIX_VERSION;
  m.attr("torch_version") = MLPMIX_TORCH_VERSION;
  m.attr("backends") = pybind11::tuple(pybind11::cast(split_backends(MLPMIX_BACKENDS)));
  m.attr("parallel") = MLPMIX_PARALLEL;
  m.attr("compiler") = MLPMIX_COMPILER;
  m.attr("build_type") = MLPMIX_BUILD_TYPE;
}
