// train_step MODEL INPUT OUTPUT
//
// Loads a TorchScript model, runs it on INPUT in training mode, backpropagates the sum of
// its output and saves the parameters' gradients (in parameters() order) to OUTPUT as a
// tuple of tensors (torch.load reads it): gradients through the mlpmix ops' C++ autograd
// in a process without Python.
#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/script.h>

#include <fstream>
#include <iostream>
#include <iterator>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: " << argv[0] << " MODEL INPUT OUTPUT\n";
    return 2;
  }
  try {
    std::ifstream in(argv[2], std::ios::binary);
    std::vector<char> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    const auto input = torch::jit::pickle_load(bytes).toTensor();
    auto module = torch::jit::load(argv[1]);
    module.train();
    module.forward({input}).toTensor().sum().backward();
    std::vector<c10::IValue> grads;
    for (const auto& parameter : module.parameters()) {
      grads.emplace_back(parameter.grad());
    }
    const auto out = torch::jit::pickle_save(c10::ivalue::Tuple::create(std::move(grads)));
    std::ofstream(argv[3], std::ios::binary).write(out.data(), out.size());
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
