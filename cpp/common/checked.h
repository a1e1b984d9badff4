// The kernel of an op that validates its arguments once, whatever the backend:
//
//   m.impl("channel_mlp", checked<"channel_mlp", check_inputs, channel_mlp_cpu>);
//
// `check` takes the op's name (for its messages) and every argument of the op's schema, and
// returns the op's validated sizes (its Dims), or nothing. The kernel runs it, then
// impl(dims, args...) without checking again. `impl` declares only the leading arguments it
// uses: a backend that ignores the trailing kept tensors of a backward does not take them.
#pragma once

#include <algorithm>
#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

namespace mlpmix {

// An op's name as a template argument.
template <std::size_t N>
struct OpName {
  char text[N];
  constexpr OpName(const char (&name)[N]) { std::copy_n(name, N, text); }
};

// Deduced from the signatures of check and impl (nvcc does not deduce them in a partial
// specialization that also has an OpName parameter).
template <typename Check, typename Impl>
struct Checked;

template <typename Dims, typename... Args, typename Ret, typename... Used>
struct Checked<Dims (*)(const char*, Args...), Ret (*)(Used...)> {
  template <OpName op, auto check, auto impl>
  static Ret call(Args... args) {
    constexpr bool has_dims = !std::is_void_v<Dims>;
    const auto all = std::forward_as_tuple(args...);
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      if constexpr (has_dims) {
        const Dims dims = check(op.text, args...);
        return impl(dims, std::get<I>(all)...);
      } else {
        check(op.text, args...);
        return impl(std::get<I>(all)...);
      }
    }(std::make_index_sequence<sizeof...(Used) - has_dims>{});
  }
};

template <OpName op, auto check, auto impl>
inline constexpr auto checked =
    &Checked<decltype(check), decltype(impl)>::template call<op, check, impl>;

}  // namespace mlpmix
