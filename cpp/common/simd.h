// Portable short vectors for the hot loops (GCC/Clang vector extensions) and their AVX2
// clones: a function marked MLPMIX_CLONE_FOR_AVX2 is built for the baseline x86-64 and for
// x86-64-v3 (AVX2 + FMA), and the loader picks what the CPU supports; the library itself
// keeps the baseline ISA. Accumulators held in Vec variables stay in registers, which
// arrays indexed in loops often do not.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MLPMIX_CLONE_FOR_AVX2 __attribute__((target_clones("arch=x86-64-v3", "default")))
#define MLPMIX_CLONE_FOR_AVX512 \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
// A function built for AVX-512 alone, called only where cpu_has_avx512(): for kernels whose
// register tiles differ between AVX-512 and AVX2 (a clone cannot pick its own tile sizes).
#define MLPMIX_TARGET_AVX512 __attribute__((target("arch=x86-64-v4")))
#else
#define MLPMIX_CLONE_FOR_AVX2
#define MLPMIX_CLONE_FOR_AVX512
#define MLPMIX_TARGET_AVX512
#endif

// For the helpers of a cloned function (MLPMIX_INLINE) and the lambdas in one (MLPMIX_VISIT):
// they must be inlined into each clone to be built for its instruction set. An out-of-line
// copy would be baseline code; one taking or returning a vector is then called across ABIs
// (at -O0, which inlines only what is forced: a crash).
#if defined(__GNUC__)
#define MLPMIX_INLINE inline __attribute__((always_inline))
#define MLPMIX_VISIT __attribute__((always_inline))
#else
#define MLPMIX_INLINE inline
#define MLPMIX_VISIT
#endif

namespace mlpmix::simd {

// Whether MLPMIX_TARGET_AVX512 functions run here: the CPU has x86-64-v4 (AVX-512 F/BW/CD/DQ/VL,
// and the OS saves its registers), unless the environment variable MLPMIX_CPU_ISA (read once;
// auto by default) is avx2, which runs their AVX2 builds instead (so that tests reach those on
// AVX-512 machines too).
inline bool cpu_has_avx512() {
  static const bool has = [] {
    const char* value = std::getenv("MLPMIX_CPU_ISA");
    const std::string choice = value == nullptr ? "auto" : value;
    TORCH_CHECK(choice == "auto" || choice == "avx2" || choice.empty(),
                "mlpmix: MLPMIX_CPU_ISA must be auto or avx2, got '", choice, "'");
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    return choice != "avx2" && __builtin_cpu_supports("x86-64-v4") != 0;
#else
    return false;
#endif
  }();
  return has;
}

// Bytes (32 unless given) of T: one AVX2 register (two SSE registers in the baseline build);
// 64 bytes: one AVX-512 register.
template <typename T, int Bytes = 32>
struct Vec {
  typedef T type __attribute__((vector_size(Bytes)));
  static constexpr int64_t lanes = Bytes / sizeof(T);

  MLPMIX_INLINE static type load(const T* p) {
    type v;
    std::memcpy(&v, p, sizeof(v));
    return v;
  }
  MLPMIX_INLINE static void store(T* p, type v) { std::memcpy(p, &v, sizeof(v)); }
  // A shuffle of lane 0: GCC makes it one vbroadcastss/sd in the AVX2 clones (filling the
  // lanes by a loop or an initialiser list became chains of inserts, `type{} + x` an add).
  MLPMIX_INLINE static type broadcast(T x) {
    const type first = {x};
    if constexpr (lanes == 16) {
      return __builtin_shufflevector(first, first, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                     0);
    } else if constexpr (lanes == 8) {
      return __builtin_shufflevector(first, first, 0, 0, 0, 0, 0, 0, 0, 0);
    } else {
      static_assert(lanes == 4, "Vec holds 4, 8 or 16 floats or doubles");
      return __builtin_shufflevector(first, first, 0, 0, 0, 0);
    }
  }
};

// Four doubles: one AVX2 register (wider GCC vectors end up spilled to the stack).
typedef double Double4 __attribute__((vector_size(32)));
typedef float Float4 __attribute__((vector_size(16)));
MLPMIX_INLINE Double4 load4(const float* p) {
  Float4 v;
  std::memcpy(&v, p, sizeof(v));
  return __builtin_convertvector(v, Double4);
}
MLPMIX_INLINE Double4 load4(const double* p) {
  Double4 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
MLPMIX_INLINE void store4(float* p, Double4 v) {
  const Float4 f = __builtin_convertvector(v, Float4);
  std::memcpy(p, &f, sizeof(f));
}
MLPMIX_INLINE void store4(double* p, Double4 v) { std::memcpy(p, &v, sizeof(v)); }
MLPMIX_INLINE double sum4(Double4 v) { return (v[0] + v[2]) + (v[1] + v[3]); }

// The arithmetic type of a storage type: float for bfloat16, else the type itself.
template <typename T>
struct Math {
  using type = T;
};
template <>
struct Math<c10::BFloat16> {
  using type = float;
};
template <typename T>
using MathVec = Vec<typename Math<T>::type>;

// A vector of T's arithmetic type loaded from T storage, and stored back.
MLPMIX_INLINE Vec<float>::type load_vec(const float* p) { return Vec<float>::load(p); }
MLPMIX_INLINE void store_vec(float* p, Vec<float>::type v) { Vec<float>::store(p, v); }
MLPMIX_INLINE Vec<double>::type load_vec(const double* p) { return Vec<double>::load(p); }
MLPMIX_INLINE void store_vec(double* p, Vec<double>::type v) { Vec<double>::store(p, v); }

// bfloat16 is the upper half of a float: widening is a shift, narrowing rounds to nearest
// even (NaN stays a quiet NaN), as c10::BFloat16's conversion does, lane by lane. F is a
// vector of N floats; the lanes' bits travel as N uint32 and N uint16.
template <typename F>
struct Bf16Bits {
  static constexpr int lanes = sizeof(F) / sizeof(float);
  typedef uint32_t wide __attribute__((vector_size(4 * lanes)));
  typedef uint16_t narrow __attribute__((vector_size(2 * lanes)));
};

template <typename F>
MLPMIX_INLINE F load_bf16(const c10::BFloat16* p) {
  using B = Bf16Bits<F>;
  typename B::narrow half;
  std::memcpy(&half, p, sizeof(half));
  const typename B::wide bits = __builtin_convertvector(half, typename B::wide) << 16;
  F v;
  std::memcpy(&v, &bits, sizeof(v));
  return v;
}

template <typename F>
MLPMIX_INLINE void store_bf16(c10::BFloat16* p, F v) {
  using B = Bf16Bits<F>;
  typename B::wide bits;
  std::memcpy(&bits, &v, sizeof(bits));
  const typename B::wide rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  const typename B::wide result = v != v ? typename B::wide{} + 0x7fc0u : rounded;
  const typename B::narrow half = __builtin_convertvector(result, typename B::narrow);
  std::memcpy(p, &half, sizeof(half));
}

MLPMIX_INLINE Vec<float>::type load_vec(const c10::BFloat16* p) {
  return load_bf16<Vec<float>::type>(p);
}
MLPMIX_INLINE void store_vec(c10::BFloat16* p, Vec<float>::type v) { store_bf16(p, v); }
MLPMIX_INLINE Double4 load4(const c10::BFloat16* p) {
  return __builtin_convertvector(load_bf16<Float4>(p), Double4);
}
MLPMIX_INLINE void store4(c10::BFloat16* p, Double4 v) {
  store_bf16(p, __builtin_convertvector(v, Float4));
}

// Sixteen floats: one AVX-512 register (two AVX2 ones) for the elementwise passes that are
// cloned for AVX-512 too (MLPMIX_CLONE_FOR_AVX512), loaded from float or bfloat16 storage.
typedef float Float16 __attribute__((vector_size(64)));
MLPMIX_INLINE Float16 load16(const float* p) {
  Float16 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
MLPMIX_INLINE void store16(float* p, Float16 v) { std::memcpy(p, &v, sizeof(v)); }
MLPMIX_INLINE Float16 load16(const c10::BFloat16* p) { return load_bf16<Float16>(p); }
MLPMIX_INLINE void store16(c10::BFloat16* p, Float16 v) { store_bf16(p, v); }

// A vector V (a Vec<float or double, bytes>::type) loaded from storage of T, and stored to
// it: bfloat16 widened and rounded, any vector width.
template <typename V, typename T>
MLPMIX_INLINE V load_as(const T* p) {
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    return load_bf16<V>(p);
  } else {
    V v;
    std::memcpy(&v, p, sizeof(v));
    return v;
  }
}
template <typename T, typename V>
MLPMIX_INLINE void store_as(T* p, V v) {
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    store_bf16(p, v);
  } else {
    std::memcpy(p, &v, sizeof(v));
  }
}

// exp(x) for x <= 0 (softmax after subtracting the maximum), in place on one vector (by
// reference: a vector argument or result would change the ABI).
// float: range reduction x = k ln2 + r, |r| <= ln2/2, and a degree-7 Taylor polynomial
// (relative error < 1e-8, below float's resolution); inputs below -87 give exp(-87).
// double: the C library's exp per lane, exact to the last bit that the tests compare.
template <typename V>  // a vector of floats, 8 or 16 lanes
MLPMIX_INLINE void exp_nonpositive_floats(V& values) {
  typedef int32_t Int __attribute__((vector_size(sizeof(V))));
  const V floor = V{} - 87.0f;
  const V x = values < -87.0f ? floor : values;
  const Int k = __builtin_convertvector(x * 1.44269504088896341f - 0.5f, Int);
  const V kf = __builtin_convertvector(k, V);
  const V r = x - kf * 0.693145751953125f - kf * 1.428606765330187e-06f;
  V poly = r * (1.0f / 5040) + 1.0f / 720;
  poly = poly * r + 1.0f / 120;
  poly = poly * r + 1.0f / 24;
  poly = poly * r + 1.0f / 6;
  poly = poly * r + 0.5f;
  poly = poly * r + 1.0f;
  poly = poly * r + 1.0f;
  const Int bits = (k + 127) << 23;
  V scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  values = poly * scale;
}
MLPMIX_INLINE void exp_nonpositive(Vec<float>::type& values) { exp_nonpositive_floats(values); }
MLPMIX_INLINE void exp_nonpositive(Float16& values) { exp_nonpositive_floats(values); }

template <typename V>  // a vector of doubles, 4 or 8 lanes
MLPMIX_INLINE void exp_nonpositive_doubles(V& values) {
  for (int64_t lane = 0; lane < static_cast<int64_t>(sizeof(V) / sizeof(double)); ++lane) {
    values[lane] = std::exp(values[lane]);
  }
}
MLPMIX_INLINE void exp_nonpositive(Vec<double>::type& values) { exp_nonpositive_doubles(values); }
MLPMIX_INLINE void exp_nonpositive(Vec<double, 64>::type& values) {
  exp_nonpositive_doubles(values);
}

}  // namespace mlpmix::simd
