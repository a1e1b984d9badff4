// Profiler labels for the phases of a kernel: torch.profiler (and anything else that records
// RecordFunctions) shows the time of each phase under its name, e.g.
//
//   phase("channel_mlp.fc1", [&] { cpu::gemm_out(a, u, w1_t); });
//
// When no profiler runs, a phase costs one check of a thread-local flag.
#pragma once

#include <ATen/record_function.h>

#include <utility>

namespace mlpmix {

template <typename Body>
inline decltype(auto) phase(const char* name, Body&& body) {
  at::RecordFunction guard(at::RecordScope::USER_SCOPE);
  if (guard.isActive()) {
    guard.before(name);
  }
  return std::forward<Body>(body)();
}

}  // namespace mlpmix
