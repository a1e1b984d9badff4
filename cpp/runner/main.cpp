// mlpmix-run: run a TorchScript (.pt) or AOTInductor (.pt2) model that uses mlpmix
// operators on a batch of inputs, from C++ (no Python).
//
// Inputs and outputs are tensor files: a tensor saved by Python's torch.save(tensor, path),
// read here with torch::jit::pickle_load and written with torch::jit::pickle_save
// (torch.load reads them back). Models exported by mlpmix carry their expected input shape
// in the metadata entry "mlpmix.json" (TorchScript: an extra file; AOTI: package metadata);
// the runner checks inputs against it before running.
#include <mlpmix/mlpmix.h>  // keeps libmlpmix_ops (the operator registrations) linked

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/script.h>

#include <ATen/Parallel.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <memory>
#include <optional>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr const char* kMetadataKey = "mlpmix.json";

constexpr const char* kUsage = R"(usage: mlpmix-run MODEL INPUT [--output FILE] [--topk K] [--threads N] [--batch N]

Runs MODEL (TorchScript .pt or AOTInductor .pt2, exported with mlpmix.export) on INPUT,
a tensor file written by Python's torch.save(tensor, path), e.g. images (N, C, H, W).

options:
  --output FILE   save the logits (N, classes) as a tensor file (torch.load reads it)
  --topk K        print the K best classes and scores of every input (default 1 when
                  no --output is given)
  --threads N     intra-op threads (at::set_num_threads)
  --batch N       run the input in chunks of N along its first dimension
  -h, --help      show this text

exit status: 0 on success, 1 on a failed run (unreadable file, wrong input shape),
2 on bad arguments.
)";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Options {
  std::string model;
  std::string input;
  std::optional<std::string> output;
  std::optional<int64_t> topk;
  std::optional<int64_t> threads;
  std::optional<int64_t> batch;
};

int64_t positive_int(const std::string& flag, const std::string& value) {
  size_t used = 0;
  int64_t n = 0;
  try {
    n = std::stoll(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != value.size() || n < 1) {
    throw UsageError(flag + " needs a positive integer, got '" + value + "'");
  }
  return n;
}

Options parse_args(int argc, char** argv) {
  Options options;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        throw UsageError(arg + " needs a value");
      }
      return argv[++i];
    };
    if (arg == "--output") {
      options.output = value();
    } else if (arg == "--topk") {
      options.topk = positive_int(arg, value());
    } else if (arg == "--threads") {
      options.threads = positive_int(arg, value());
    } else if (arg == "--batch") {
      options.batch = positive_int(arg, value());
    } else if (arg.size() > 1 && arg[0] == '-') {
      throw UsageError("unknown option " + arg);
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() != 2) {
    throw UsageError("expected MODEL and INPUT, got " + std::to_string(positional.size()) +
                     " positional arguments");
  }
  options.model = positional[0];
  options.input = positional[1];
  return options;
}

std::ifstream open_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::runtime_error("cannot read " + what + " file '" + path + "'");
  }
  return in;
}

std::vector<char> read_file(const std::string& path, const std::string& what) {
  auto in = open_file(path, what);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// "input_shape": [-1, 1, 8, 8] from the model's metadata JSON; -1 is a free dimension.
std::optional<std::vector<int64_t>> expected_input_shape(const std::string& metadata) {
  std::smatch match;
  if (!std::regex_search(metadata, match, std::regex(R"("input_shape"\s*:\s*\[([-0-9,\s]*)\])"))) {
    return std::nullopt;
  }
  std::vector<int64_t> shape;
  std::stringstream items(match[1].str());
  for (std::string item; std::getline(items, item, ',');) {
    shape.push_back(std::stoll(item));
  }
  return shape;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    s += (i ? ", " : "") + (shape[i] < 0 ? std::string("N") : std::to_string(shape[i]));
  }
  return s + (shape.size() == 1 ? ",)" : ")");
}

// A loaded model: a function from a batch to logits, and the metadata it was exported with.
struct Model {
  std::function<at::Tensor(const at::Tensor&)> forward;
  std::string metadata;
};

Model load_model(const std::string& path) {
  open_file(path, "model");  // a clear message for missing/unreadable files
  if (ends_with(path, ".pt2")) {
    auto loader = std::make_shared<torch::inductor::AOTIModelPackageLoader>(path);
    const auto metadata = loader->get_metadata();
    const auto entry = metadata.find(kMetadataKey);
    return {[loader](const at::Tensor& x) { return loader->run({x}).at(0); },
            entry == metadata.end() ? "" : entry->second};
  }
  torch::jit::ExtraFilesMap extra{{kMetadataKey, ""}};
  auto module = std::make_shared<torch::jit::Module>(torch::jit::load(path, std::nullopt, extra));
  module->eval();
  return {[module](const at::Tensor& x) { return module->forward({x}).toTensor(); },
          extra[kMetadataKey]};
}

// The batch (first) dimension is checked per chunk: a fixed-batch model runs in chunks.
void check_input(const at::Tensor& input, const std::vector<int64_t>& expected) {
  bool matches = input.dim() == static_cast<int64_t>(expected.size());
  for (size_t i = 1; matches && i < expected.size(); ++i) {
    matches = expected[i] < 0 || expected[i] == input.size(static_cast<int64_t>(i));
  }
  if (!matches) {
    throw std::runtime_error("wrong input shape: the model expects " + shape_string(expected) +
                             ", got " + shape_string(input.sizes().vec()));
  }
}

void print_topk(const at::Tensor& logits, int64_t k) {
  const auto [scores, classes] = logits.topk(std::min(k, logits.size(1)), /*dim=*/1);
  for (int64_t i = 0; i < logits.size(0); ++i) {
    std::cout << i << ":";
    for (int64_t j = 0; j < classes.size(1); ++j) {
      std::cout << " " << classes[i][j].item<int64_t>() << " (" << scores[i][j].item<float>()
                << ")";
    }
    std::cout << "\n";
  }
}

int run(const Options& options) {
  // AOTI packages check input shapes and dtypes themselves only when this is set; models
  // without mlpmix metadata then still fail with a message rather than misread memory.
  setenv("AOTI_RUNTIME_CHECK_INPUTS", "1", /*overwrite=*/0);
  if (options.threads) {
    at::set_num_threads(static_cast<int>(*options.threads));
  }
  const auto input = torch::jit::pickle_load(read_file(options.input, "input")).toTensor();
  const auto model = load_model(options.model);
  const auto expected = expected_input_shape(model.metadata);
  if (expected) {
    check_input(input, *expected);
  }
  const bool fixed_batch = expected && !expected->empty() && expected->front() > 0;
  const int64_t chunk = options.batch.value_or(fixed_batch ? expected->front() : input.size(0));

  c10::InferenceMode inference;
  std::vector<at::Tensor> outputs;
  for (const auto& part : input.split(std::max<int64_t>(chunk, 1))) {
    if (fixed_batch && part.size(0) != expected->front()) {
      throw std::runtime_error("the model takes batches of exactly " +
                               std::to_string(expected->front()) + "; " +
                               std::to_string(input.size(0)) +
                               " inputs do not split into them (export with a dynamic batch)");
    }
    outputs.push_back(model.forward(part.contiguous()));
  }
  const auto logits = outputs.empty() ? model.forward(input) : at::cat(outputs);

  if (options.output) {
    const auto bytes = torch::jit::pickle_save(logits);
    std::ofstream out(*options.output, std::ios::binary);
    if (!out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()))) {
      throw std::runtime_error("cannot write output file '" + *options.output + "'");
    }
  }
  if (options.topk || !options.output) {
    print_topk(logits, options.topk.value_or(1));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "-h" || std::string(argv[i]) == "--help") {
      std::cout << kUsage;
      return 0;
    }
  }
  Options options;
  try {
    options = parse_args(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "mlpmix-run: " << e.what() << "\n\n" << kUsage;
    return 2;
  }
  try {
    return run(options);
  } catch (const c10::Error& e) {  // what() carries a C++ backtrace; the message is enough
    std::cerr << "mlpmix-run: error: " << e.what_without_backtrace() << "\n";
  } catch (const std::exception& e) {  // torch::jit::ErrorReport is not a c10::Error
    std::cerr << "mlpmix-run: error: " << e.what() << "\n";
  }
  return 1;
}
