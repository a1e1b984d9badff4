// Device-side helpers shared by the CUDA kernels. Kernel headers include only this (no CUDA
// runtime headers), so the CPU test build can compile them with an emulation of the CUDA
// built-ins (tests/cpp/cuda_emulation.h).
#pragma once

#include <cstdint>

namespace mlpmix::cuda {

constexpr int kThreads = 256;  // threads per block of every mlpmix kernel
constexpr int kWarpSize = 32;

// Sum over the 32 lanes of a warp, the same tree for every call: deterministic. Every lane
// must call it; every lane gets the sum.
template <typename T>
__device__ inline T warp_sum(T value) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  }
  return value;
}

}  // namespace mlpmix::cuda

// `T* name`: the block's dynamic shared memory (the launch's third argument), aligned for
// any accumulation type.
#ifndef MLPMIX_DYNAMIC_SHARED_MEMORY
#define MLPMIX_DYNAMIC_SHARED_MEMORY(T, name)                         \
  extern __shared__ __align__(16) unsigned char name##_bytes_[];      \
  T* name = reinterpret_cast<T*>(name##_bytes_)
#endif
