// concurrent_inference MODEL INPUT THREADS ITERATIONS
//
// Loads one model (TorchScript .pt or AOTInductor .pt2), computes the output on INPUT once
// on the main thread, then runs the same model from THREADS threads at once, ITERATIONS
// times each, and checks that every output is bitwise equal to the first one.
// Exit code 0 and "ok ..." when all are equal; 1 with the first mismatch otherwise.
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/script.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

at::Tensor load_tensor(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  return torch::jit::pickle_load(bytes).toTensor();
}

std::function<at::Tensor(const at::Tensor&)> load_model(const std::string& path, size_t threads) {
  if (path.size() > 4 && path.substr(path.size() - 4) == ".pt2") {
    auto loader = std::make_shared<torch::inductor::AOTIModelPackageLoader>(
        path, "model", /*run_single_threaded=*/false, /*num_runners=*/threads);
    return [loader](const at::Tensor& x) { return loader->run({x}).at(0); };
  }
  auto module = std::make_shared<torch::jit::Module>(torch::jit::load(path));
  module->eval();
  return [module](const at::Tensor& x) { return module->forward({x}).toTensor(); };
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: " << argv[0] << " MODEL INPUT THREADS ITERATIONS\n";
    return 2;
  }
  try {
    const auto threads = static_cast<size_t>(std::stoul(argv[3]));
    const int iterations = std::stoi(argv[4]);
    const auto input = load_tensor(argv[2]);
    const auto model = load_model(argv[1], threads);
    c10::InferenceMode guard;
    const auto expected = model(input);

    std::atomic<int> mismatches{0};
    std::atomic<int> runs{0};
    std::vector<std::thread> pool;
    for (size_t t = 0; t < threads; ++t) {
      pool.emplace_back([&] {
        c10::InferenceMode thread_guard;
        for (int i = 0; i < iterations; ++i) {
          if (!torch::equal(model(input), expected)) {
            ++mismatches;
          }
          ++runs;
        }
      });
    }
    for (auto& thread : pool) {
      thread.join();
    }
    if (mismatches > 0) {
      std::cout << "mismatch: " << mismatches << " of " << runs << " outputs differ\n";
      return 1;
    }
    std::cout << "ok " << runs << " runs on " << threads << " threads\n";
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
