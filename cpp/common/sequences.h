// Addressing a channels-last tensor (..., N, ..., C) as a batch of token sequences without
// copying it: every axis except the token axis and the channel axis is a "sequence" axis.
// Kernels gather a sequence through these offsets and strides, so any input strides
// (permuted, sliced, expanded views) are read in place.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace mlpmix {

struct SequenceLayout {
  // Element offset (from data_ptr) of token 0, channel 0 of each sequence, in the
  // row-major order of the sequence axes.
  std::vector<int64_t> offsets;
  int64_t token_stride = 0;
  int64_t channel_stride = 0;
};

SequenceLayout sequence_layout(const at::Tensor& t, int64_t token_dim);

// Sizes of `t` with `token_dim` moved next to the channel axis: (sequence axes..., N, C).
std::vector<int64_t> sequence_major_sizes(at::IntArrayRef sizes, int64_t token_dim);

// `t` itself when its channels (last axis) are unit-stride, else a contiguous copy: the
// kernels' vector loops read channels contiguously and take any other strides as they are.
at::Tensor contiguous_channels(const at::Tensor& t);

}  // namespace mlpmix
