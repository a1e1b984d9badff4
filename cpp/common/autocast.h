// Autocast registration for the mlpmix forward ops: under torch.autocast("cuda", dtype) and
// torch.autocast("cpu", dtype) they follow PyTorch's policy for matrix products
// (lower_precision_fp): every floating tensor argument except float64 is cast to the
// autocast dtype (through autocast's weight cache), then the op runs with autocast excluded,
// so it computes and returns that dtype. Inputs that are all float64 stay float64, as with
// torch.mm. One line per op registers both devices:
//
//   MLPMIX_AUTOCAST(channel_mlp)
#pragma once

#include <ATen/autocast_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

namespace mlpmix {

template <c10::DeviceType device, auto op, typename Signature = decltype(op)>
struct Autocast;

template <c10::DeviceType device, auto op, typename Ret, typename... Args>
struct Autocast<device, op, Ret (*)(Args...)> {
  static Ret call(Args... args) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(
        at::autocast::get_autocast_dispatch_key_from_device_type(device));
    const auto dtype = at::autocast::get_autocast_dtype(device);
    return op(at::autocast::cached_cast(dtype, args, device)...);
  }
};

}  // namespace mlpmix

// Registers the autocast kernels of `op`, a function of mlpmix.h.
#define MLPMIX_AUTOCAST(op)                                                              \
  TORCH_LIBRARY_IMPL(mlpmix, AutocastCUDA, m) {                                          \
    m.impl(#op, &::mlpmix::Autocast<c10::DeviceType::CUDA, &::mlpmix::op>::call);        \
  }                                                                                      \
  TORCH_LIBRARY_IMPL(mlpmix, AutocastCPU, m) {                                           \
    m.impl(#op, &::mlpmix::Autocast<c10::DeviceType::CPU, &::mlpmix::op>::call);         \
  }
