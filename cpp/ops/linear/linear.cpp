// mlpmix::linear — schema, C++ API, argument checks, the device-agnostic ATen kernels, Meta
// kernels and autograd. linear_cpu.cpp holds the CPU kernels.
#include "ops/linear/linear.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "common/autograd.h"
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

void check_grad_out(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight) {
  const char* op = "linear_backward";
  checks::same_dtype_device(op, "grad_out", grad_out, "x", x);
  std::vector<c10::SymInt> expected(x.sym_sizes().begin(), x.sym_sizes().end());
  expected.back() = weight.sym_size(0);
  checks::sym_shape(op, "grad_out", grad_out, expected, "(..., out_features) of x's leading sizes");
}

// ---- the device-agnostic kernels (ATen) --------------------------------------------------

int64_t rows_of(const at::Tensor& x) {
  return c10::multiply_integers(x.sizes().begin(), x.sizes().end() - 1);
}

at::Tensor linear_aten(const at::Tensor& x, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias) {
  check_inputs("linear", x, weight, bias);
  return at::linear(x, weight, bias).contiguous();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_backward_with(
    MatrixProduct mm, const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias) {
  check_inputs("linear_backward", x, weight, bias);
  check_grad_out(grad_out, x, weight);
  const int64_t rows = rows_of(x);
  const auto g = grad_out.reshape({rows, weight.size(0)});
  auto grad_x = mm(g, weight).view(x.sizes());
  auto grad_weight = mm(g.t(), x.reshape({rows, weight.size(1)}));
  return {grad_x, grad_weight, bias.has_value() ? g.sum(0) : at::empty({0}, x.options())};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_backward_aten(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias) {
  return linear_backward_with([](const at::Tensor& a, const at::Tensor& b) { return a.mm(b); },
                              grad_out, x, weight, bias);
}

// ---- Meta kernels ------------------------------------------------------------------------

namespace {

std::vector<c10::SymInt> output_sizes(const at::Tensor& x, const at::Tensor& weight) {
  std::vector<c10::SymInt> sizes(x.sym_sizes().begin(), x.sym_sizes().end());
  sizes.back() = weight.sym_size(0);
  return sizes;
}

at::Tensor linear_meta(const at::Tensor& x, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias) {
  check_inputs("linear", x, weight, bias);
  return at::empty_symint(output_sizes(x, weight), x.options());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_backward_meta(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias) {
  check_inputs("linear_backward", x, weight, bias);
  check_grad_out(grad_out, x, weight);
  return {at::empty_symint(x.sym_sizes(), x.options()),
          at::empty_like(weight, at::MemoryFormat::Contiguous),
          bias.has_value() ? at::empty_symint({weight.sym_size(0)}, x.options())
               : at::empty({0}, x.options())};
}

// ---- autograd -------------------------------------------------------------------------

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class LinearBackwardFunction : public torch::autograd::Function<LinearBackwardFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad_out,
                               const at::Tensor& x, const at::Tensor& weight,
                               const std::optional<at::Tensor>& bias) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [grad_x, grad_weight, grad_bias] = mlpmix::linear_backward(grad_out, x, weight, bias);
    return {grad_x, grad_weight, grad_bias};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    double_backward_unsupported("linear");
  }
};

class LinearFunction : public torch::autograd::Function<LinearFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x,
                               const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto out = mlpmix::linear(x, weight, bias);
    ctx->save_for_backward({x, weight, bias.value_or(at::Tensor())});
    return {out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto result = LinearBackwardFunction::apply(grads[0], saved[0], saved[1],
                                                optional_of(saved[2]));
    return {result[0], result[1], saved[2].defined() ? result[2] : at::Tensor()};
  }
};

at::Tensor linear_autograd(const at::Tensor& x, const at::Tensor& weight,
                           const std::optional<at::Tensor>& bias) {
  return LinearFunction::apply(x, weight, bias)[0];
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_backward_autograd(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias) {
  auto r = LinearBackwardFunction::apply(grad_out, x, weight, bias);
  return {r[0], r[1], r[2]};
}

}  // namespace
}  // namespace linear_impl
}  // namespace mlpmix

TORCH_LIBRARY_FRAGMENT(mlpmix, m) {
  m.def("linear(Tensor x, Tensor weight, Tensor? bias) -> Tensor", {at::Tag::pt2_compliant_tag});
  m.def(
      "linear_backward(Tensor grad_out, Tensor x, Tensor weight, Tensor? bias) "
      "-> (Tensor, Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
}

TORCH_LIBRARY_IMPL(mlpmix, Meta, m) {
  m.impl("linear", &mlpmix::linear_impl::linear_meta);
  m.impl("linear_backward", &mlpmix::linear_impl::linear_backward_meta);
}

TORCH_LIBRARY_IMPL(mlpmix, Autograd, m) {
  m.impl("linear", &mlpmix::linear_impl::linear_autograd);
  m.impl("linear_backward", &mlpmix::linear_impl::linear_backward_autograd);
}
