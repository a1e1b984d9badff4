// mlpmix::cross_scale_embed — schema, C++ API, argument checks, the kernels of every
// device, Meta kernels and autograd.
//
// The unfold + concat + Linear of spec 1.2 equals one strided convolution with the largest
// kernel whose weight is the sum of the per-kernel weights, each zero-padded and centred:
// the kernels build that merged weight and call ATen's convolution (oneDNN on CPU, cuDNN on
// CUDA, with deterministic algorithms when torch.use_deterministic_algorithms(True) is set,
// as for any convolution), never materialising the unfolded patches.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <tuple>
#include <vector>

#include "common/autocast.h"
#include "common/autograd.h"
#include "common/checked.h"
#include "common/checks.h"
#include "mlpmix/mlpmix.h"

namespace mlpmix {

// ---- C++ API (through the dispatcher) ------------------------------------------------

at::Tensor cross_scale_embed(const at::Tensor& x, const at::Tensor& weight,
                             const std::optional<at::Tensor>& bias,
                             at::IntArrayRef kernel_sizes) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mlpmix::cross_scale_embed", "")
                       .typed<decltype(cross_scale_embed)>();
  return op.call(x, weight, bias, kernel_sizes);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> cross_scale_embed_backward(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, at::IntArrayRef kernel_sizes, bool x_grad) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mlpmix::cross_scale_embed_backward", "")
                       .typed<decltype(cross_scale_embed_backward)>();
  return op.call(grad_out, x, weight, bias, kernel_sizes, x_grad);
}

namespace cross_scale_embed_impl {
namespace {

// Sizes of one call, all validated.
struct Dims {
  int64_t in_channels;
  int64_t out_channels;
  int64_t stride;   // s = min(kernel_sizes), the patch size
  int64_t largest;  // max(kernel_sizes), the merged kernel
  int64_t height;   // H / s, tokens per column
  int64_t width;    // W / s, tokens per row
};

// ---- checks --------------------------------------------------------------------------

// Validates every argument (rank, dtype, device, shapes, kernel sizes) with messages naming
// it.
Dims check_inputs(const char* op, const at::Tensor& x, const at::Tensor& weight,
                  const std::optional<at::Tensor>& bias, at::IntArrayRef kernel_sizes) {
  checks::rank(op, "x", x, 4);
  checks::floating(op, "x", x);
  TORCH_CHECK(!kernel_sizes.empty(), "mlpmix.", op,
              ": kernel_sizes must list at least one kernel size, got []");
  const int64_t stride = *std::min_element(kernel_sizes.begin(), kernel_sizes.end());
  const int64_t largest = *std::max_element(kernel_sizes.begin(), kernel_sizes.end());
  TORCH_CHECK(stride >= 1, "mlpmix.", op, ": kernel_sizes must be positive, got ",
              kernel_sizes);
  int64_t window_elements = 0;
  for (const int64_t k : kernel_sizes) {
    TORCH_CHECK(k % stride == 0 && (k - stride) % 2 == 0, "mlpmix.", op, ": kernel_sizes=",
                kernel_sizes, " has k=", k, "; every k must be a multiple of the stride s = ",
                "min(kernel_sizes) = ", stride,
                " with k - s even, so that its window is centred on the s x s patch");
    window_elements += k * k;
  }
  const int64_t in_channels = x.sym_size(1).guard_int(__FILE__, __LINE__);
  const int64_t H = x.sym_size(2).guard_int(__FILE__, __LINE__);
  const int64_t W = x.sym_size(3).guard_int(__FILE__, __LINE__);
  TORCH_CHECK(in_channels >= 1 && H >= 1 && W >= 1 && H % stride == 0 && W % stride == 0,
              "mlpmix.", op, ": x (B, Cin, H, W) must have Cin >= 1 and H, W positive "
              "multiples of the stride s = min(kernel_sizes) = ", stride, ", got shape ",
              x.sym_sizes(), " (resize it first, as MultiScalePatchEmbedding does)");
  checks::same_dtype_device(op, "weight", weight, "x", x);
  checks::rank(op, "weight", weight, 2);
  const int64_t out_channels = weight.sym_size(0).guard_int(__FILE__, __LINE__);
  checks::shape(op, "weight", weight, {out_channels, in_channels * window_elements},
                "(Cout, Cin*sum(k*k for k in kernel_sizes))");
  checks::optional_vector(op, "bias", bias, out_channels, "(Cout,)", "x", x);
  return Dims{in_channels, out_channels, stride, largest, H / stride, W / stride};
}

// The backward's checks: the inputs and grad_out, (B, H/s, W/s, Cout).
Dims check_backward(const char* op, const at::Tensor& grad_out, const at::Tensor& x,
                    const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                    at::IntArrayRef kernel_sizes, bool x_grad) {
  const auto dims = check_inputs(op, x, weight, bias, kernel_sizes);
  checks::tensor(op, "grad_out", grad_out,
                 {x.sym_size(0), dims.height, dims.width, dims.out_channels},
                 "(B, H/s, W/s, Cout)", "x", x);
  return dims;
}

// ---- the merged-weight convolution (any device) ----------------------------------------

// The largest-kernel window of the merged weight that kernel k covers.
at::Tensor centred_window(const at::Tensor& merged, int64_t k, const Dims& dims) {
  const int64_t margin = (dims.largest - k) / 2;
  return merged.narrow(2, margin, k).narrow(3, margin, k);
}

// (Cout, Cin, K, K), K the largest kernel: the per-kernel weights summed, each centred.
// Channels-last, so that the convolution computes its output, and takes its output's
// gradient, channels-last: (B, H/s, W/s, Cout) with no permuting copy.
at::Tensor merged_weight(const at::Tensor& weight, at::IntArrayRef kernel_sizes,
                         const Dims& dims) {
  auto merged = at::zeros({dims.out_channels, dims.in_channels, dims.largest, dims.largest},
                          weight.options().memory_format(at::MemoryFormat::ChannelsLast));
  int64_t feature = 0;
  for (const int64_t k : kernel_sizes) {
    const int64_t block = dims.in_channels * k * k;
    centred_window(merged, k, dims)
        .add_(weight.narrow(1, feature, block)
                  .reshape({dims.out_channels, dims.in_channels, k, k}));
    feature += block;
  }
  return merged;
}

// x as the convolution reads it: channels-last, as the previous level's tokens already are,
// so that oneDNN takes it, and gives back its gradient, with no reordering copy.
at::Tensor channels_last(const at::Tensor& x) {
  return x.contiguous(at::MemoryFormat::ChannelsLast);
}

// t with exactly the dense channels-last strides that the Meta kernel promises for x's
// gradient: oneDNN's result can differ from them in the strides of size-1 dimensions.
at::Tensor dense_channels_last(const at::Tensor& t) {
  const auto strides = c10::get_channels_last_strides_2d(t.sizes());
  if (t.strides() == at::IntArrayRef(strides)) {
    return t;
  }
  return at::empty_strided(t.sizes(), strides, t.options()).copy_(t);
}

// Convolution arguments: stride s, padding (K - s) / 2 (the largest kernel's).
struct ConvArgs {
  std::vector<int64_t> stride, padding, dilation{1, 1}, output_padding{0, 0};
  explicit ConvArgs(const Dims& d)
      : stride{d.stride, d.stride},
        padding{(d.largest - d.stride) / 2, (d.largest - d.stride) / 2} {}
};

at::Tensor embed(const Dims& dims, const at::Tensor& x, const at::Tensor& weight,
                 const std::optional<at::Tensor>& bias, at::IntArrayRef kernel_sizes) {
  const ConvArgs conv(dims);
  auto out = at::convolution(channels_last(x), merged_weight(weight, kernel_sizes, dims), bias,
                             conv.stride, conv.padding, conv.dilation, /*transposed=*/false,
                             conv.output_padding, /*groups=*/1);
  return out.permute({0, 2, 3, 1}).contiguous();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> embed_backward(
    const Dims& dims, const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, at::IntArrayRef kernel_sizes, bool x_grad) {
  const ConvArgs conv(dims);
  const std::vector<int64_t> bias_sizes{dims.out_channels};
  auto [grad_x, grad_merged, grad_bias] = at::convolution_backward(
      grad_out.permute({0, 3, 1, 2}), channels_last(x), merged_weight(weight, kernel_sizes, dims),
      bias_sizes, conv.stride, conv.padding, conv.dilation, /*transposed=*/false,
      conv.output_padding, /*groups=*/1, {x_grad, true, true});
  std::vector<at::Tensor> blocks;
  for (const int64_t k : kernel_sizes) {
    blocks.push_back(centred_window(grad_merged, k, dims)
                         .reshape({dims.out_channels, dims.in_channels * k * k}));
  }
  return {x_grad ? dense_channels_last(grad_x) : at::empty({0}, x.options()),
          at::cat(blocks, 1),
          grad_bias};
}

// ---- Meta kernels ------------------------------------------------------------------------

at::Tensor cross_scale_embed_meta(const Dims& dims, const at::Tensor& x) {
  return at::empty_symint({x.sym_size(0), dims.height, dims.width, dims.out_channels},
                          x.options());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> cross_scale_embed_backward_meta(
    const Dims& dims, const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, at::IntArrayRef kernel_sizes, bool x_grad) {
  // Channels-last whatever x's layout (torch.compile's traced strides for x need not be
  // the runtime x's): x is the previous level's (B, H, W, C) tokens seen as (B, C, H, W),
  // so its gradient flows back to those tokens as a contiguous tensor.
  return {x_grad ? at::empty_like(x, at::MemoryFormat::ChannelsLast)
                 : at::empty({0}, x.options()),
          at::empty_like(weight, at::MemoryFormat::Contiguous),
          at::empty({dims.out_channels}, x.options())};
}

}  // namespace

// ---- registration ------------------------------------------------------------------------

TORCH_LIBRARY_FRAGMENT(mlpmix, m) {
  m.def("cross_scale_embed(Tensor x, Tensor weight, Tensor? bias, int[] kernel_sizes) -> Tensor",
        {at::Tag::pt2_compliant_tag});
  m.def(
      "cross_scale_embed_backward(Tensor grad_out, Tensor x, Tensor weight, Tensor? bias, "
      "int[] kernel_sizes, bool x_grad=True) -> (Tensor, Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
}

TORCH_LIBRARY_IMPL(mlpmix, CompositeExplicitAutograd, m) {
  m.impl("cross_scale_embed", checked<"cross_scale_embed", check_inputs, embed>);
  m.impl("cross_scale_embed_backward",
         checked<"cross_scale_embed_backward", check_backward, embed_backward>);
}

TORCH_LIBRARY_IMPL(mlpmix, Meta, m) {
  m.impl("cross_scale_embed", checked<"cross_scale_embed", check_inputs, cross_scale_embed_meta>);
  m.impl("cross_scale_embed_backward",
         checked<"cross_scale_embed_backward", check_backward, cross_scale_embed_backward_meta>);
}

TORCH_LIBRARY_IMPL(mlpmix, Autograd, m) {
  using Autograd =
      mlpmix::Autograd<"cross_scale_embed", &cross_scale_embed, &cross_scale_embed_backward>;
  m.impl("cross_scale_embed", &Autograd::forward);
  m.impl("cross_scale_embed_backward", &Autograd::backward);
}

MLPMIX_AUTOCAST(cross_scale_embed)

}  // namespace cross_scale_embed_impl
}  // namespace mlpmix
