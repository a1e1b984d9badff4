// mlpmix_example: load a model that uses mlpmix operators, run it on an input tensor, and
// print (and optionally save) the result.
//
//   mlpmix_example MODEL INPUT [OUTPUT]
//
// MODEL is a TorchScript file (.pt, from torch.jit.save) or an AOTInductor package (.pt2,
// from mlpmix.export.aoti). INPUT is a tensor saved by Python's torch.save(tensor, path);
// OUTPUT, if given, receives the output the same way (torch.load reads it).
//
// This file does not include any mlpmix header: linking the mlpmix::mlpmix CMake target
// alone registers the operators.
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/script.h>

#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

namespace {

std::vector<char> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::runtime_error("cannot open " + path);
  }
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

at::Tensor run(const std::string& model_path, const at::Tensor& input) {
  c10::InferenceMode inference;
  if (ends_with(model_path, ".pt2")) {
    torch::inductor::AOTIModelPackageLoader loader(model_path);
    return loader.run({input}).at(0);
  }
  auto module = torch::jit::load(model_path);
  module.eval();
  return module.forward({input}).toTensor();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::cerr << "usage: " << argv[0] << " MODEL(.pt|.pt2) INPUT.pt [OUTPUT.pt]\n";
    return 2;
  }
  try {
    const auto input = torch::jit::pickle_load(read_file(argv[2])).toTensor();
    const auto output = run(argv[1], input);
    std::cout << "input " << input.sizes() << " -> output " << output.sizes() << "\n"
              << output << "\n";
    if (argc == 4) {
      const auto bytes = torch::jit::pickle_save(output);
      std::ofstream(argv[3], std::ios::binary).write(bytes.data(), bytes.size());
    }
  } catch (const std::exception& e) {  // torch::jit::ErrorReport is not a c10::Error
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
