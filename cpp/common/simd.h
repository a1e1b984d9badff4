// Portable short vectors for the hot loops (GCC/Clang vector extensions) and their AVX2
// clones: a function marked MLPMIX_CLONE_FOR_AVX2 is built for the baseline x86-64 and for
// x86-64-v3 (AVX2 + FMA), and the loader picks what the CPU supports; the library itself
// keeps the baseline ISA. Accumulators held in Vec variables stay in registers, which
// arrays indexed in loops often do not.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MLPMIX_CLONE_FOR_AVX2 __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define MLPMIX_CLONE_FOR_AVX2
#endif

namespace mlpmix::simd {

// 32 bytes of T: one AVX2 register (two SSE registers in the baseline build).
template <typename T>
struct Vec {
  typedef T type __attribute__((vector_size(32)));
  static constexpr int64_t lanes = 32 / sizeof(T);

  static type load(const T* p) {
    type v;
    std::memcpy(&v, p, sizeof(v));
    return v;
  }
  static void store(T* p, type v) { std::memcpy(p, &v, sizeof(v)); }
  static type broadcast(T x) { return type{} + x; }
};

}  // namespace mlpmix::simd
