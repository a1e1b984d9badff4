// Runs mlpmix's CUDA kernels on the CPU, so that their indexing, synchronisation and
// arithmetic are tested on machines without a GPU. Include this before a kernel header
// (cpp/ops/*/*_kernels.cuh).
//
// A launch runs its blocks one after another, each on `threads` std::threads: __syncthreads
// is a barrier of the block, a warp shuffle exchanges through a per-warp buffer between two
// barriers of the warp, and __shared__ variables are statics, which the one block running
// at a time owns. This checks what a kernel computes under any interleaving the barriers
// allow; it does not model timing, memory coalescing or shared-memory limits.
#pragma once

#include <barrier>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) alignas(n)

struct dim3 {
  unsigned int x = 1, y = 1, z = 1;
};

namespace cuda_emulation {

constexpr int kWarpSize = 32;
constexpr int kMaxThreads = 1024;

inline thread_local dim3 thread_index;
inline dim3 block_index, block_dim, grid_dim;
inline std::barrier<>* block_barrier = nullptr;
inline std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
inline double warp_buffer[kMaxThreads];
alignas(16) inline unsigned char dynamic_shared[1 << 20];

// Runs `kernel` (a callable that calls the __global__ function with its arguments) as a
// grid of `blocks` blocks of `threads` threads (a multiple of the warp size).
inline void launch(unsigned int blocks, unsigned int threads, const std::function<void()>& kernel) {
  grid_dim = {blocks, 1, 1};
  block_dim = {threads, 1, 1};
  for (unsigned int b = 0; b < blocks; ++b) {
    block_index = {b, 1, 1};
    std::barrier<> block(threads);
    block_barrier = &block;
    warp_barriers.clear();
    for (unsigned int w = 0; w < threads / kWarpSize; ++w) {
      warp_barriers.push_back(std::make_unique<std::barrier<>>(kWarpSize));
    }
    std::vector<std::jthread> pool;
    for (unsigned int t = 0; t < threads; ++t) {
      pool.emplace_back([&kernel, t] {
        thread_index = {t, 1, 1};
        kernel();
      });
    }
  }
}

}  // namespace cuda_emulation

#define threadIdx (::cuda_emulation::thread_index)
#define blockIdx (::cuda_emulation::block_index)
#define blockDim (::cuda_emulation::block_dim)
#define gridDim (::cuda_emulation::grid_dim)

inline void __syncthreads() { cuda_emulation::block_barrier->arrive_and_wait(); }

template <typename T>
T __shfl_xor_sync(unsigned int /*mask*/, T value, int lane_mask) {
  using namespace cuda_emulation;
  const unsigned int t = thread_index.x, warp = t / kWarpSize;
  warp_buffer[t] = static_cast<double>(value);
  warp_barriers[warp]->arrive_and_wait();
  const unsigned int partner = t - t % kWarpSize + ((t % kWarpSize) ^ lane_mask);
  const T other = static_cast<T>(warp_buffer[partner]);
  warp_barriers[warp]->arrive_and_wait();
  return other;
}

#define MLPMIX_DYNAMIC_SHARED_MEMORY(T, name) \
  T* name = reinterpret_cast<T*>(::cuda_emulation::dynamic_shared)
