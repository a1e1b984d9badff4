// mlpmix::linear on CPU: the matrix products of common/gemm_cpu.h (float32 through oneDNN
// where it runs, see there), with the bias added inside oneDNN's inner product instead of a
// broadcast copy into the output first (what ATen's addmm does). A linear is all matrix
// product: bfloat16 and float16 run as they are (oneDNN's or ATen's kernels of that dtype,
// accumulating in float32), without the float32 copies of cpu::in_float32.
#include <torch/library.h>

#include "common/checked.h"
#include "common/gemm_cpu.h"
#include "ops/linear/linear.h"

namespace mlpmix::linear_impl {
namespace {

at::Tensor linear_cpu(const at::Tensor& x, const at::Tensor& weight,
                      const std::optional<at::Tensor>& bias) {
  const int64_t in_features = weight.size(1), out_features = weight.size(0);
  auto sizes = x.sizes().vec();
  sizes.back() = out_features;
  return cpu::linear(x.reshape({rows_of(x), in_features}), weight, bias).view(sizes);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias) {
  return linear_backward_with(&cpu::gemm, grad_out, x, weight, bias);
}

}  // namespace

TORCH_LIBRARY_IMPL(mlpmix, CPU, m) {
  m.impl("linear", checked<"linear", check_inputs, linear_cpu>);
  m.impl("linear_backward",
         checked<"linear_backward", check_backward, linear_backward_cpu>);
}

}  // namespace mlpmix::linear_impl
