// mlpmix::dynamixer CUDA kernels. The GEMM steps (compress, generate and their backward)
// are the device-agnostic ATen code of dynamixer.cpp (cuBLAS). The softmax over input
// tokens and the per-segment mixing, Y = P^T X, and their backward are one kernel each:
// one block per (sequence, segment) pair holds that pair's N x N softmax P (and, backward,
// its gradient) in shared memory, in float for float16/bfloat16 inputs. x and grad_out are
// read in place through their strides. No atomics: every output element is written by one
// thread, and sums run in a fixed order, so results are bitwise reproducible.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/checked.h"
#include "common/cuda_launch.cuh"
#include "common/phase.h"
#include "common/dtypes.h"
#include "ops/dynamixer/dynamixer.h"
#include "ops/dynamixer/dynamixer_kernels.cuh"

namespace mlpmix::dynamixer_impl {
namespace {

// ---- the kernels registered at CUDA ------------------------------------------------------

at::Tensor dynamixer_cuda(const Dims& dims, const at::Tensor& x,
                          const at::Tensor& compress_weight,
                          const std::optional<at::Tensor>& compress_bias,
                          const at::Tensor& generate_weight,
                          const std::optional<at::Tensor>& generate_bias) {
  const c10::cuda::CUDAGuard guard(x.device());
  const auto logits = phase("dynamixer.compress_generate", [&] {
    return std::get<1>(compress_and_generate(x, compress_weight, compress_bias, generate_weight,
                                             generate_bias, dims))
        .contiguous();
  });
  auto out = at::empty(x.sizes(), x.options());
  const int64_t items = logits.size(0) * dims.S;
  if (items == 0) {
    return out;
  }
  const auto input = index_sequences(x, dims.token_dim);
  const auto out_index = sequence_indexer(out, dims.token_dim).value();  // contiguous
  phase("dynamixer.softmax_mixing", [&] {
  MLPMIX_DISPATCH_CUDA_FLOATING(x.scalar_type(), "mlpmix_dynamixer_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const int64_t shared_bytes = dims.N * dims.N * int64_t{sizeof(acc_t)};
    if (!cuda::fits_shared_memory(mix_kernel<scalar_t>, shared_bytes)) {
      mix_aten(logits, x, out, dims);
      return;
    }
    mix_kernel<scalar_t><<<cuda::blocks_for(items), cuda::kThreads, shared_bytes,
                           at::cuda::getCurrentCUDAStream()>>>(
        logits.const_data_ptr<scalar_t>(), input.tensor.const_data_ptr<scalar_t>(),
        input.index, out.mutable_data_ptr<scalar_t>(), out_index, items, dims.N,
        dims.S, dims.D / dims.S);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  });
  return out;
}

// What the forward may have kept is not taken: recomputed with the logits, as the kernel
// below fuses the softmax.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> dynamixer_backward_cuda(
    const Dims& dims, const at::Tensor& grad_out, const at::Tensor& x,
    const at::Tensor& compress_weight, const std::optional<at::Tensor>& compress_bias,
    const at::Tensor& generate_weight, const std::optional<at::Tensor>& generate_bias) {
  const c10::cuda::CUDAGuard guard(x.device());
  auto [compressed, logits_any] = phase("dynamixer_backward.compress_generate", [&] {
    return compress_and_generate(x, compress_weight, compress_bias, generate_weight,
                                 generate_bias, dims);
  });
  const auto logits = logits_any.contiguous();
  auto grad_logits = at::empty_like(logits);
  auto grad_x = at::empty(x.sizes(), x.options());
  const int64_t items = logits.size(0) * dims.S;
  if (items > 0) {
    const auto input = index_sequences(x, dims.token_dim);
    const auto upstream = index_sequences(grad_out, dims.token_dim);
    const auto grad_x_index = sequence_indexer(grad_x, dims.token_dim).value();  // contiguous
    phase("dynamixer_backward.softmax_mixing", [&] {
    MLPMIX_DISPATCH_CUDA_FLOATING(x.scalar_type(), "mlpmix_dynamixer_backward_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const int64_t shared_bytes = 2 * dims.N * dims.N * int64_t{sizeof(acc_t)};
      if (!cuda::fits_shared_memory(mix_backward_kernel<scalar_t>, shared_bytes)) {
        mix_backward_aten(logits, x, grad_out, grad_x, grad_logits, dims);
        return;
      }
      mix_backward_kernel<scalar_t><<<cuda::blocks_for(items), cuda::kThreads,
                                      shared_bytes, at::cuda::getCurrentCUDAStream()>>>(
          logits.const_data_ptr<scalar_t>(), input.tensor.const_data_ptr<scalar_t>(),
          input.index, upstream.tensor.const_data_ptr<scalar_t>(), upstream.index,
          grad_x.mutable_data_ptr<scalar_t>(), grad_x_index,
          grad_logits.mutable_data_ptr<scalar_t>(), items, dims.N, dims.S,
          dims.D / dims.S);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    });
  }
  auto [gcw, gcb, ggw, ggb] = phase("dynamixer_backward.compress_generate_backward", [&] {
    return compress_and_generate_backward(grad_logits, compressed, x, compress_weight,
                                          generate_weight, dims, grad_x);
  });
  return {grad_x, gcw, gcb, ggw, ggb};
}

}  // namespace

TORCH_LIBRARY_IMPL(mlpmix, CUDA, m) {
  m.impl("dynamixer", checked<"dynamixer", check_inputs, dynamixer_cuda>);
  m.impl("dynamixer_backward",
         checked<"dynamixer_backward", check_backward, dynamixer_backward_cuda>);
}

}  // namespace mlpmix::dynamixer_impl
