// Host-side launch helpers shared by the CUDA kernels (compiled only in CUDA builds).
#pragma once

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include <algorithm>
#include <cstdint>

#include "common/cuda_device.cuh"

namespace mlpmix::cuda {

// Blocks for `items` work items of one block each; kernels loop over the rest
// (item += gridDim.x), so any 64-bit count is covered.
inline unsigned int blocks_for(int64_t items) {
  return static_cast<unsigned int>(std::min<int64_t>(items, int64_t{1} << 20));
}

// Whether `kernel` can run with `bytes` of dynamic shared memory per block on the current
// device; raises its limit above the default 48 KiB where the device allows more.
template <typename Kernel>
bool fits_shared_memory(Kernel kernel, int64_t bytes) {
  const auto* properties = at::cuda::getCurrentDeviceProperties();
  if (bytes > static_cast<int64_t>(properties->sharedMemPerBlockOptin)) {
    return false;
  }
  if (bytes > static_cast<int64_t>(properties->sharedMemPerBlock)) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(bytes)));
  }
  return true;
}

}  // namespace mlpmix::cuda
