// An op's kernels and those of its internal forward `_<op>_forward` (which also returns
// tensors its backward would otherwise recompute, see common/autograd.h) are one function
// template on `keep`, returning op_outputs<keep>(out, kept...).
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>
#include <utility>

namespace mlpmix {

template <bool keep, typename... Kept>
auto op_outputs(at::Tensor out, Kept... kept) {
  if constexpr (keep) {
    return std::tuple<at::Tensor, Kept...>{std::move(out), std::move(kept)...};
  } else {
    return out;
  }
}

}  // namespace mlpmix
