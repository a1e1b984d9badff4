// Autocast (CUDA) registration for the mlpmix forward ops: under torch.autocast("cuda",
// dtype) they follow the policy of matmuls (lower_precision_fp): every floating tensor
// argument except float64 is cast to the autocast dtype (through autocast's weight cache),
// then the op runs with autocast excluded, so it computes and returns that dtype. Inputs
// that are all float64 stay float64, as with torch.mm.
#pragma once

#include <ATen/autocast_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

namespace mlpmix {

template <auto op, typename Signature = decltype(op)>
struct AutocastCuda;

template <auto op, typename Ret, typename... Args>
struct AutocastCuda<op, Ret (*)(Args...)> {
  static Ret call(Args... args) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCUDA);
    const auto dtype = at::autocast::get_autocast_dtype(c10::DeviceType::CUDA);
    return op(at::autocast::cached_cast(dtype, args, c10::DeviceType::CUDA)...);
  }
};

// The kernel to register at AutocastCUDA for `op`, a function of mlpmix.h.
#define MLPMIX_AUTOCAST_CUDA(op) (&::mlpmix::AutocastCuda<&op>::call)

}  // namespace mlpmix
