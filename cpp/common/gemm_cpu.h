// The matrix products of the fused CPU kernels. float32 runs through oneDNN when ATen was
// built with it, `torch.backends.mkldnn.enabled` is on, this CPU runs oneDNN's float32
// matmul (AVX-512) and it is not an Intel CPU: on the AMD EPYC machines of
// benchmarks/results, ATen's MKL sgemm takes its AVX2 path and oneDNN ran the models' GEMMs
// 15-45% faster; on Intel's, MKL takes its AVX-512 kernels and was 2-8% faster than oneDNN.
// Everything else (float64, products under about 6 M multiply-adds, where oneDNN's per-call
// setup outweighs its faster kernel, Intel and other CPUs) goes to ATen's CPU BLAS.
// The environment variable MLPMIX_CPU_GEMM (read once) overrides the CPU test: onednn runs
// oneDNN wherever it can (Intel CPUs too), blas never; auto is the default.
// Both are float32 FMAs, so results differ from ATen's only in rounding. Inside a bfloat16 or
// float16 call (common/reduced_precision_cpu.h) the products of float32 tensors run in that
// dtype instead, when large enough to gain from it, and are widened back to float32.
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace mlpmix::cpu {

// out = a @ b, or out += a @ b when `accumulate`. out (M, N) has unit column stride (oneDNN
// takes only a contiguous one; others go to ATen's BLAS); a and b are (M, K) and (K, N).
// bfloat16 operands with a float32 `out`: the bfloat16 product, widened (into float32
// accumulators such as a weight gradient's share, summed over tiles).
// Callable from inside at::parallel_for (it runs on the calling thread there).
void gemm_out(const at::Tensor& out, const at::Tensor& a, const at::Tensor& b,
            bool accumulate = false);

// a @ b into a fresh tensor.
at::Tensor gemm(const at::Tensor& a, const at::Tensor& b);

// x (M, K) @ weight (N, K)^T + bias into a fresh (M, N) tensor. Through oneDNN, its inner
// product adds the bias as it writes the output (no broadcast copy of it first).
at::Tensor linear(const at::Tensor& x, const at::Tensor& weight,
                  const std::optional<at::Tensor>& bias);

// Whether gemm_out would run (M, K) @ (K, N) products of `dtype` through oneDNN.
bool uses_onednn(at::ScalarType dtype, int64_t M, int64_t K, int64_t N);

}  // namespace mlpmix::cpu
