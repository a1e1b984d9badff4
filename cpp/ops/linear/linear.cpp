// mlpmix::linear — schema, C++ API, argument checks, the ATen composition (every device but
// the CPU, whose kernels are in linear_cpu.cpp), Meta kernels and autograd.
#include "ops/linear/linear.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#include "common/autocast.h"
#include "common/autograd.h"
#include "common/checked.h"
#include "common/checks.h"
#include "mlpmix/mlpmix.h"

namespace mlpmix {

// ---- C++ API (through the dispatcher) ------------------------------------------------

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight,
                  const std::optional<at::Tensor>& bias) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mlpmix::linear", "")
                       .typed<decltype(linear)>();
  return op.call(x, weight, bias);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_backward(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mlpmix::linear_backward", "")
                       .typed<decltype(linear_backward)>();
  return op.call(grad_out, x, weight, bias);
}

namespace linear_impl {

// ---- checks --------------------------------------------------------------------------

void check_inputs(const char* op, const at::Tensor& x, const at::Tensor& weight,
                  const std::optional<at::Tensor>& bias) {
  checks::rank(op, "x", x, 1, /*at_least=*/true);
  checks::floating(op, "x", x);
  checks::same_dtype_device(op, "weight", weight, "x", x);
  checks::rank(op, "weight", weight, 2);
  const auto out_features = weight.sym_size(0);
  checks::sym_shape(op, "weight", weight, {out_features, x.sym_size(-1)},
                    "(out_features, in_features), in_features = x.shape[-1]");
  checks::optional_vector(op, "bias", bias, out_features.guard_int(__FILE__, __LINE__),
                          "(out_features,)", "x", x);
}

namespace {

// (..., out_features) with x's leading sizes: the output's shape.
std::vector<c10::SymInt> output_sizes(const at::Tensor& x, const at::Tensor& weight) {
  std::vector<c10::SymInt> sizes(x.sym_sizes().begin(), x.sym_sizes().end());
  sizes.back() = weight.sym_size(0);
  return sizes;
}

}  // namespace

void check_backward(const char* op, const at::Tensor& grad_out, const at::Tensor& x,
                    const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  check_inputs(op, x, weight, bias);
  checks::tensor(op, "grad_out", grad_out, output_sizes(x, weight),
                 "(..., out_features) of x's leading sizes", "x", x);
}

int64_t rows_of(const at::Tensor& x) {
  return c10::multiply_integers(x.sizes().begin(), x.sizes().end() - 1);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_backward_with(
    MatrixProduct mm, const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias) {
  const int64_t rows = rows_of(x);
  const auto g = grad_out.reshape({rows, weight.size(0)});
  auto grad_x = mm(g, weight).view(x.sizes());
  auto grad_weight = mm(g.t(), x.reshape({rows, weight.size(1)}));
  return {grad_x, grad_weight, bias.has_value() ? g.sum(0) : at::empty({0}, x.options())};
}

namespace {

// ---- the ATen composition (any device) -----------------------------------------------

at::Tensor linear_aten(const at::Tensor& x, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias) {
  return at::linear(x, weight, bias).contiguous();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_backward_aten(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias) {
  return linear_backward_with([](const at::Tensor& a, const at::Tensor& b) { return a.mm(b); },
                              grad_out, x, weight, bias);
}

// ---- Meta kernels ------------------------------------------------------------------------

at::Tensor linear_meta(const at::Tensor& x, const at::Tensor& weight) {
  return at::empty_symint(output_sizes(x, weight), x.options());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_backward_meta(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias) {
  return {at::empty_symint(x.sym_sizes(), x.options()),
          at::empty_like(weight, at::MemoryFormat::Contiguous),
          bias.has_value() ? at::empty_symint({weight.sym_size(0)}, x.options())
                           : at::empty({0}, x.options())};
}

}  // namespace

// ---- registration ------------------------------------------------------------------------

TORCH_LIBRARY_FRAGMENT(mlpmix, m) {
  m.def("linear(Tensor x, Tensor weight, Tensor? bias) -> Tensor", {at::Tag::pt2_compliant_tag});
  m.def(
      "linear_backward(Tensor grad_out, Tensor x, Tensor weight, Tensor? bias) "
      "-> (Tensor, Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
}

TORCH_LIBRARY_IMPL(mlpmix, CompositeExplicitAutograd, m) {
  m.impl("linear", checked<"linear", check_inputs, linear_aten>);
  m.impl("linear_backward", checked<"linear_backward", check_backward, linear_backward_aten>);
}

TORCH_LIBRARY_IMPL(mlpmix, Meta, m) {
  m.impl("linear", checked<"linear", check_inputs, linear_meta>);
  m.impl("linear_backward", checked<"linear_backward", check_backward, linear_backward_meta>);
}

TORCH_LIBRARY_IMPL(mlpmix, Autograd, m) {
  using Autograd = mlpmix::Autograd<"linear", &linear, &linear_backward>;
  m.impl("linear", &Autograd::forward);
  m.impl("linear_backward", &Autograd::backward);
}

MLPMIX_AUTOCAST(linear)

}  // namespace linear_impl
}  // namespace mlpmix
