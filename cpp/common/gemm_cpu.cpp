#include "common/gemm_cpu.h"

#include <ATen/Config.h>
#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/addmm_cpu_dispatch.h>
#include <ATen/ops/mm_cpu_dispatch.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>
#include <utility>

#include "common/reduced_precision_cpu.h"

#if AT_MKLDNN_ENABLED()
// Exported by libtorch_cpu (TORCH_API in ATen/native/mkldnn/Matmul.h, which the wheels do not
// ship): result = beta * result + alpha * mat1 @ mat2.
namespace at::native {
TORCH_API void mkldnn_matmul(const at::Tensor& mat1, const at::Tensor& mat2,
                             const at::Tensor& result, float beta, float alpha);
}  // namespace at::native
#endif

// MKL's bfloat16 GEMM with a float32 output, C = alpha op(A) op(B) + beta C (row-major
// layout 101, no transpose 111, transpose 112), which the x86 torch wheels' libtorch_cpu
// exports (MKL is linked into it). Weak: null where this torch has no such symbol.
extern "C" void cblas_gemm_bf16bf16f32(int layout, int transa, int transb, int m, int n, int k,
                                       float alpha, const uint16_t* a, int lda,
                                       const uint16_t* b, int ldb, float beta, float* c,
                                       int ldc) __attribute__((weak));

namespace mlpmix::cpu {
namespace {

// Below this many multiply-adds oneDNN's per-call setup (about 12 us a call: primitive-cache
// lookup, memory descriptors, a scratchpad allocated per call) costs more than its faster
// kernel saves. One thread, AMD EPYC Zen 4, 2026-12-04: BLAS took 0.75x oneDNN's time at
// 1.2 M multiply-adds (raft_token_mixing's level-3 tiles), 0.89x at 2.4 M, 0.97x at 4.8 M
// (level 1); oneDNN took 0.90x BLAS's time at 17 M and above, and ran channel_mlp's 8 M
// tiles at RaftMLP level 1 2% faster.
constexpr int64_t kMinOnednnMacs = 6 * 1024 * 1024;

// Inside a bfloat16/float16 call, products under this many multiply-adds stay float32 (more
// accurate, and faster: rounding the operands and widening the product, plus oneDNN's
// per-call setup, cost more than the reduced-precision kernel saves). Intel Xeon with AMX,
// 2 threads, 2026-12-06: RaftMLP-S under bf16 autocast took 144 ms with every product in
// bf16, 131 ms with this bound (its level tiles, 1-5 M, stay float32); DynaMixer-S 282 and
// 270 ms.
constexpr int64_t kMinReducedMacs = 8 * 1024 * 1024;

#if AT_MKLDNN_ENABLED()
// mkldnn_matmul refuses float32 on CPUs without AVX-512 (BW, VL, DQ) or AVX-NE-CONVERT: ask
// it once.
bool onednn_runs_float32() {
  static const bool runs = [] {
    try {
      const auto a = at::ones({2, 2}, at::kFloat);
      const auto out = at::empty({2, 2}, at::kFloat);
      at::native::mkldnn_matmul(a, a, out, 0.0f, 1.0f);
      return out.eq(2).all().item<bool>();
    } catch (const c10::Error&) {
      return false;
    }
  }();
  return runs;
}

// mkldnn::_linear_pointwise, the fused linear that Inductor emits for CPU, where this torch
// registers it.
using OnednnLinear = at::Tensor(const at::Tensor&, const at::Tensor&,
                                const std::optional<at::Tensor>&, std::string_view,
                                c10::List<std::optional<c10::Scalar>>,
                                std::optional<std::string_view>);
const std::optional<c10::TypedOperatorHandle<OnednnLinear>>& onednn_linear() {
  static const auto op = []() -> std::optional<c10::TypedOperatorHandle<OnednnLinear>> {
    const auto handle = c10::Dispatcher::singleton().findSchema({"mkldnn::_linear_pointwise", ""});
    if (!handle.has_value()) {
      return std::nullopt;
    }
    return handle->typed<OnednnLinear>();
  }();
  return op;
}

// MKL, ATen's BLAS, takes its AVX-512 kernels on Intel CPUs only: there it ran the models'
// float32 GEMMs 2-8% faster than oneDNN (Xeon, 2 cores, 2026-12-02), elsewhere 15-45% slower.
bool blas_prefers_this_cpu() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool intel = __builtin_cpu_is("intel");
  return intel;
#else
  return false;
#endif
}

enum class GemmChoice { kAuto, kOnednn, kBlas };

// MLPMIX_CPU_GEMM, read once: auto (default), onednn (wherever it runs float32, Intel CPUs
// included) or blas (ATen's BLAS always).
GemmChoice gemm_choice() {
  static const GemmChoice choice = [] {
    const char* value = std::getenv("MLPMIX_CPU_GEMM");
    const std::string name = value == nullptr ? "auto" : value;
    if (name == "auto" || name.empty()) {
      return GemmChoice::kAuto;
    }
    if (name == "onednn") {
      return GemmChoice::kOnednn;
    }
    TORCH_CHECK(name == "blas", "mlpmix: MLPMIX_CPU_GEMM must be auto, onednn or blas, got '",
                name, "'");
    return GemmChoice::kBlas;
  }();
  return choice;
}
#endif

// A 2-D operand as a row-major BLAS matrix: (transposed, leading dimension), or nothing when
// neither of its axes has unit stride.
std::optional<std::pair<bool, int64_t>> blas_layout(const at::Tensor& t) {
  if (t.stride(1) == 1 && t.stride(0) >= std::max<int64_t>(t.size(1), 1)) {
    return std::pair(false, t.stride(0));
  }
  if (t.stride(0) == 1 && t.stride(1) >= std::max<int64_t>(t.size(0), 1)) {
    return std::pair(true, t.stride(1));
  }
  return std::nullopt;
}

// out (float32, row-major) = [out +] a @ b for bfloat16 a and b, accumulated in float32 by
// MKL without rounding the product, where this torch exports MKL's kernel.
bool mkl_bf16_gemm_out(const at::Tensor& out, const at::Tensor& a, const at::Tensor& b,
                       bool accumulate) {
  if (cblas_gemm_bf16bf16f32 == nullptr || a.scalar_type() != at::kBFloat16 ||
      out.stride(1) != 1) {
    return false;
  }
  const auto a_layout = blas_layout(a), b_layout = blas_layout(b);
  constexpr int64_t kMaxInt = std::numeric_limits<int>::max();
  if (!a_layout || !b_layout || out.stride(0) > kMaxInt || a_layout->second > kMaxInt ||
      b_layout->second > kMaxInt || a.numel() > kMaxInt || b.numel() > kMaxInt) {
    return false;
  }
  const auto blas_int = [](int64_t v) { return static_cast<int>(v); };
  cblas_gemm_bf16bf16f32(101, a_layout->first ? 112 : 111, b_layout->first ? 112 : 111,
                         blas_int(out.size(0)), blas_int(out.size(1)), blas_int(a.size(1)), 1.0f,
                         reinterpret_cast<const uint16_t*>(a.const_data_ptr()),
                         blas_int(a_layout->second),
                         reinterpret_cast<const uint16_t*>(b.const_data_ptr()),
                         blas_int(b_layout->second), accumulate ? 1.0f : 0.0f,
                         out.mutable_data_ptr<float>(), blas_int(out.stride(0)));
  return true;
}

// out (float32) = [out +] the product a @ b of reduced-precision operands: MKL's float32
// accumulation for bfloat16 where it can, else the product in their dtype, widened.
void widened_gemm_out(const at::Tensor& out, const at::Tensor& a, const at::Tensor& b,
                      bool accumulate) {
  if (mkl_bf16_gemm_out(out, a, b, accumulate)) {
    return;
  }
  auto product = empty_matrix_like(out, a.scalar_type());
  at::cpu::mm_out(product, a, b);
  widen_into(out, product, accumulate);
}

}  // namespace

bool uses_onednn(at::ScalarType dtype, int64_t M, int64_t K, int64_t N) {
#if AT_MKLDNN_ENABLED()
  const auto choice = gemm_choice();
  if (choice == GemmChoice::kBlas ||
      (choice == GemmChoice::kAuto && blas_prefers_this_cpu())) {
    return false;
  }
  return dtype == at::kFloat && M * K * N >= kMinOnednnMacs &&
         at::globalContext().userEnabledMkldnn() && onednn_runs_float32();
#else
  (void)dtype, (void)M, (void)K, (void)N;
  return false;
#endif
}

void gemm_out(const at::Tensor& out, const at::Tensor& a, const at::Tensor& b, bool accumulate) {
  if (a.scalar_type() != out.scalar_type()) {
    widened_gemm_out(out, a, b, accumulate);
    return;
  }
  const auto* state = reduced_precision();
  if (state != nullptr && out.scalar_type() == at::kFloat &&
      a.size(0) * a.size(1) * b.size(1) >= kMinReducedMacs) {
    widened_gemm_out(out, state->lowered(a), state->lowered(b), accumulate);
    return;
  }
#if AT_MKLDNN_ENABLED()
  // A strided `out` would make oneDNN write into a buffer of its own and copy it back,
  // where the accumulation would not see out's values.
  if (out.is_contiguous() && uses_onednn(out.scalar_type(), a.size(0), a.size(1), b.size(1))) {
    at::native::mkldnn_matmul(a, b, out, accumulate ? 1.0f : 0.0f, 1.0f);
    return;
  }
#endif
  // at::cpu:: runs the CPU kernel directly: worker threads do not carry the caller's
  // below-autograd dispatch state.
  if (accumulate) {
    at::cpu::addmm_(const_cast<at::Tensor&>(out), a, b);
  } else {
    at::cpu::mm_out(const_cast<at::Tensor&>(out), a, b);
  }
}

at::Tensor gemm(const at::Tensor& a, const at::Tensor& b) {
  auto out = at::empty({a.size(0), b.size(1)}, a.options());
  gemm_out(out, a, b);
  return out;
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight,
                  const std::optional<at::Tensor>& bias) {
  const int64_t M = x.size(0), K = x.size(1), N = weight.size(0);
#if AT_MKLDNN_ENABLED()
  // bfloat16 on CPUs with native bf16 products: ATen's products of that dtype are oneDNN's
  // already, and its inner product saves the bias's broadcast copy (a linear at DynaMixer-S's
  // stage B, 2048x384x384: 16% faster).
  const bool onednn_bf16 = x.scalar_type() == at::kBFloat16 && native_bf16() &&
                           M * K * N >= kMinOnednnMacs &&
                           at::globalContext().userEnabledMkldnn();
  if (reduced_precision() == nullptr &&
      (onednn_bf16 || uses_onednn(x.scalar_type(), M, K, N)) && onednn_linear().has_value()) {
    const auto b = bias.has_value() ? std::optional<at::Tensor>(bias->contiguous()) : std::nullopt;
    return onednn_linear()->call(x.contiguous(), weight.contiguous(), b, "none",
                                 c10::List<std::optional<c10::Scalar>>(), std::nullopt);
  }
#endif
  auto out = at::empty({M, N}, x.options());
  if (bias.has_value()) {
    out.copy_(bias->expand({M, N}));
  }
  gemm_out(out, x, weight.t(), /*accumulate=*/bias.has_value());
  return out;
}

}  // namespace mlpmix::cpu
