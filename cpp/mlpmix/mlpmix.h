// mlpmix public C++ API: one function per operator, each calling through the PyTorch
// dispatcher (so autograd, CPU/CUDA/Meta dispatch and tracing all apply).
//
// Linking libmlpmix_ops registers the operators torch.ops.mlpmix.* in the process
// (TorchScript and AOTInductor models that use them then load). Including this header
// also keeps the library linked under --as-needed through the anchor below.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <tuple>

namespace mlpmix {

// Returns the number of operators the library registers. Referencing it keeps the
// library (and so its registrations) linked into an application.
int64_t registration_anchor();

// DynaMixer operation (spec section 2.1, steps 1-4): mixes the tokens of `x` along `dim`.
at::Tensor dynamixer(const at::Tensor& x, const at::Tensor& compress_weight,
                     const std::optional<at::Tensor>& compress_bias,
                     const at::Tensor& generate_weight,
                     const std::optional<at::Tensor>& generate_bias,
                     int64_t num_segments, int64_t dim = -2);

// Gradients of dynamixer: (grad_x, grad_compress_weight, grad_compress_bias,
// grad_generate_weight, grad_generate_bias). Bias gradients are returned even when the
// bias is absent.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> dynamixer_backward(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& compress_weight,
    const std::optional<at::Tensor>& compress_bias, const at::Tensor& generate_weight,
    const std::optional<at::Tensor>& generate_bias, int64_t num_segments, int64_t dim);

}  // namespace mlpmix

// Every translation unit that includes this header references the anchor, so the linker
// cannot drop libmlpmix_ops (torchvision's pattern). Weak: one definition per program.
extern "C" __attribute__((weak)) int64_t (*const mlpmix_keep_registered)() =
    &mlpmix::registration_anchor;
