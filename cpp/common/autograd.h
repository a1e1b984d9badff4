// The autograd kernels of an op and of its backward op, the one save-for-backward pattern of
// every mlpmix op:
//
//   using Autograd = mlpmix::Autograd<"channel_mlp", &channel_mlp, &channel_mlp_backward, 1>;
//   m.impl("channel_mlp", &Autograd::forward);
//   m.impl("channel_mlp_backward", &Autograd::backward);
//
// `op` and `op_backward` are the ops' C++ API functions (dispatcher calls). The forward saves
// the op's tensor arguments (an absent optional as an undefined tensor) and its other
// arguments; its backward calls op_backward(grad_out, the op's arguments, kept...) and
// returns one gradient per tensor argument the autograd asks for. With `kept` > 0 the op
// has an internal forward `_<name>_forward` returning (out, kept...): tensors the backward
// would otherwise recompute. The forward calls it on the devices where a backend registers
// it, and the op itself elsewhere (the backward then gets no kept tensors). A backward whose
// last argument is a bool gets whether the op's first argument needs its gradient. When no
// argument requires grad, the op runs with no autograd Function (and keeps nothing). The
// backward op is not differentiable: its gradient raises double_backward_unsupported.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/TensorOptions.h>
#include <torch/autograd.h>

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/checked.h"

namespace mlpmix {

// Raises the error of an op whose backward is not itself differentiable.
[[noreturn]] void double_backward_unsupported(const char* op);

namespace autograd_detail {

template <typename T>
constexpr bool is_tensor = std::is_same_v<std::decay_t<T>, at::Tensor> ||
                           std::is_same_v<std::decay_t<T>, std::optional<at::Tensor>>;

// The tensor of a tensor argument: itself, or an optional's value (undefined when absent).
inline const at::Tensor& tensor_of(const at::Tensor& t) { return t; }
inline at::Tensor tensor_of(const std::optional<at::Tensor>& t) {
  return t.value_or(at::Tensor());
}

// How an argument is held between the forward and the backward: an int[] as a vector, not
// as a view of the caller's list.
template <typename T>
using Stored = std::conditional_t<std::is_same_v<T, at::IntArrayRef>, std::vector<int64_t>,
                                  std::decay_t<T>>;

// Whether a call records a graph: grad mode is on and a tensor argument requires grad.
template <typename... Args>
bool records_graph(const Args&... args) {
  const auto requires_grad = [](const auto& arg) {
    if constexpr (is_tensor<decltype(arg)>) {
      const at::Tensor& t = tensor_of(arg);
      return t.defined() && t.requires_grad();
    } else {
      return false;
    }
  };
  return at::GradMode::is_enabled() && (requires_grad(args) || ...);
}

template <typename... T>
torch::autograd::variable_list to_list(const std::tuple<T...>& tensors) {
  return std::apply([](const auto&... t) { return torch::autograd::variable_list{t...}; },
                    tensors);
}

template <typename Tuple>
Tuple to_tuple(const torch::autograd::variable_list& tensors) {
  return [&]<std::size_t... I>(std::index_sequence<I...>) {
    return Tuple{tensors[I]...};
  }(std::make_index_sequence<std::tuple_size_v<Tuple>>{});
}

}  // namespace autograd_detail

template <OpName name, auto op, auto op_backward, std::size_t kept = 0,
          typename Op = decltype(op), typename Backward = decltype(op_backward)>
struct Autograd;

template <OpName name, auto op, auto op_backward, std::size_t kept, typename... Args,
          typename Gradients, typename... BackwardArgs>
struct Autograd<name, op, op_backward, kept, at::Tensor (*)(Args...),
                Gradients (*)(BackwardArgs...)> {
  static at::Tensor forward(Args... args) {
    if (!autograd_detail::records_graph(args...)) {
      at::AutoDispatchBelowADInplaceOrView guard;
      return op(args...);
    }
    return Function::apply(args...);
  }

  static Gradients backward(BackwardArgs... args) {
    if (!autograd_detail::records_graph(args...)) {
      at::AutoDispatchBelowADInplaceOrView guard;
      return op_backward(args...);
    }
    return autograd_detail::to_tuple<Gradients>(BackwardFunction::apply(args...));
  }

 private:
  using AutogradContext = torch::autograd::AutogradContext;
  using variable_list = torch::autograd::variable_list;
  static constexpr std::array<bool, sizeof...(Args)> kIsTensor{
      autograd_detail::is_tensor<Args>...};
  static constexpr std::size_t kTensors = (autograd_detail::is_tensor<Args> + ... + 0);
  static constexpr bool kFirstNeedsGradArgument =
      sizeof...(BackwardArgs) == 1 + sizeof...(Args) + kept + 1;

  // The internal forward returning (out, kept...), through the dispatcher.
  static auto& kept_forward() {
    using Result =
        decltype(std::tuple_cat(std::tuple<at::Tensor>(), std::array<at::Tensor, kept>()));
    static const auto handle =
        c10::Dispatcher::singleton()
            .findSchemaOrThrow(("mlpmix::_" + std::string(name.text) + "_forward").c_str(), "")
            .template typed<Result(Args...)>();
    return handle;
  }

  struct Function : torch::autograd::Function<Function> {
    static at::Tensor forward(AutogradContext* ctx, Args... args) {
      at::AutoDispatchBelowADInplaceOrView guard;
      std::vector<at::Tensor> saved;
      [&]<std::size_t... I>(std::index_sequence<I...>) {
        (save<I>(ctx, saved, args), ...);
      }(std::index_sequence_for<Args...>{});
      at::Tensor out;
      if constexpr (kept > 0) {
        const at::Tensor& x = saved.front();
        const auto key = c10::computeDispatchKey(std::nullopt, x.layout(), x.device());
        if (kept_forward().hasComputedKernelForDispatchKey(key)) {
          std::apply(
              [&](at::Tensor result, auto... kept_tensors) {
                out = std::move(result);
                (saved.push_back(std::move(kept_tensors)), ...);
              },
              kept_forward().call(args...));
        } else {
          out = op(args...);
          saved.resize(saved.size() + kept);
        }
      } else {
        out = op(args...);
      }
      ctx->save_for_backward(saved);
      return out;
    }

    static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
      const auto saved = ctx->get_saved_variables();
      std::size_t next_tensor = 0;  // the braced list below restores left to right
      const auto arguments = [&]<std::size_t... I>(std::index_sequence<I...>) {
        return std::tuple<autograd_detail::Stored<Args>...>{
            restore<I, Args>(ctx, saved, next_tensor)...};
      }(std::index_sequence_for<Args...>{});
      const auto extras = [&]<std::size_t... K>(std::index_sequence<K...>) {
        if constexpr (kFirstNeedsGradArgument) {
          return std::tuple{as_optional(saved[kTensors + K])..., ctx->needs_input_grad(0)};
        } else {
          return std::tuple{as_optional(saved[kTensors + K])...};
        }
      }(std::make_index_sequence<kept>{});
      const auto gradients = autograd_detail::to_list(std::apply(
          [&](const auto&... a) { return op_backward(grad_outputs[0], a...); },
          std::tuple_cat(arguments, extras)));
      // One output per argument: the gradient of each tensor the autograd asks for.
      variable_list result(sizeof...(Args));
      std::size_t tensor = 0, edge = 0;
      for (std::size_t i = 0; i < sizeof...(Args); ++i) {
        if (!kIsTensor[i]) {
          continue;
        }
        if (saved[tensor].defined() && ctx->needs_input_grad(edge++)) {
          result[i] = gradients[tensor];
        }
        ++tensor;
      }
      return result;
    }

   private:
    template <std::size_t I, typename T>
    static void save(AutogradContext* ctx, std::vector<at::Tensor>& saved, const T& arg) {
      if constexpr (autograd_detail::is_tensor<T>) {
        saved.push_back(autograd_detail::tensor_of(arg));
      } else {
        ctx->saved_data[std::to_string(I)] = c10::IValue(arg);
      }
    }

    template <std::size_t I, typename T>
    static autograd_detail::Stored<T> restore(AutogradContext* ctx, const variable_list& saved,
                                              std::size_t& next_tensor) {
      if constexpr (std::is_same_v<std::decay_t<T>, at::Tensor>) {
        return saved[next_tensor++];
      } else if constexpr (autograd_detail::is_tensor<T>) {
        return as_optional(saved[next_tensor++]);
      } else {
        return ctx->saved_data[std::to_string(I)].template to<autograd_detail::Stored<T>>();
      }
    }

    static std::optional<at::Tensor> as_optional(const at::Tensor& t) {
      return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
    }
  };

  struct BackwardFunction : torch::autograd::Function<BackwardFunction> {
    static variable_list forward(AutogradContext* ctx, BackwardArgs... args) {
      at::AutoDispatchBelowADInplaceOrView guard;
      return autograd_detail::to_list(op_backward(args...));
    }

    static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
      double_backward_unsupported(name.text);
    }
  };
};

}  // namespace mlpmix
