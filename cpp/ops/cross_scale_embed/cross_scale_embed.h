// Internals of the cross_scale_embed operator shared by its kernels.
//
// The unfold + concat + Linear of spec 1.2 equals one strided convolution with the largest
// kernel whose weight is the sum of the per-kernel weights, each zero-padded and centred:
// the kernels build that merged weight and call ATen's convolution (any device), never
// materialising the unfolded patches.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>
#include <vector>

namespace mlpmix::cross_scale_embed_impl {

// Sizes of one call, all validated.
struct Dims {
  int64_t in_channels;
  int64_t out_channels;
  int64_t stride;   // s = min(kernel_sizes), the patch size
  int64_t largest;  // max(kernel_sizes), the merged kernel
  int64_t height;   // H / s, tokens per column
  int64_t width;    // W / s, tokens per row
};

// Validates every argument (rank, dtype, device, shapes, kernel sizes) with messages
// naming it.
Dims check_inputs(const char* op, const at::Tensor& x, const at::Tensor& weight,
                  const std::optional<at::Tensor>& bias, at::IntArrayRef kernel_sizes);

// The backward also checks grad_out, (B, H/s, W/s, Cout).
void check_grad_out(const at::Tensor& grad_out, const at::Tensor& x, const Dims& dims);

// The operator and its backward on ATen's convolution, for any device.
at::Tensor embed(const at::Tensor& x, const at::Tensor& weight,
                 const std::optional<at::Tensor>& bias, at::IntArrayRef kernel_sizes);

std::tuple<at::Tensor, at::Tensor, at::Tensor> embed_backward(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, at::IntArrayRef kernel_sizes, bool x_grad);

}  // namespace mlpmix::cross_scale_embed_impl
