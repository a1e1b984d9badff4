// Addressing a channels-last tensor (..., N, ..., C) as a batch of token sequences (see
// sequences.h) without a table of offsets: the sequence axes' sizes and strides travel by
// value, so a GPU kernel computes the offset of sequence n itself. Any strides (permuted,
// sliced, expanded views) are read in place; index arithmetic is 64-bit.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "common/kernel_math.h"

namespace mlpmix {

struct SequenceIndexer {
  static constexpr int kMaxAxes = 6;
  int axes = 0;  // sequence axes after merging, outermost first
  int64_t sizes[kMaxAxes] = {};
  int64_t strides[kMaxAxes] = {};
  int64_t token_stride = 0;
  int64_t channel_stride = 0;

  // Element offset (from data_ptr) of token 0, channel 0 of sequence `sequence`, sequences
  // numbered in the row-major order of the sequence axes.
  MLPMIX_HOST_DEVICE int64_t offset(int64_t sequence) const {
    int64_t result = 0;
    for (int k = axes - 1; k >= 0; --k) {
      result += (sequence % sizes[k]) * strides[k];
      sequence /= sizes[k];
    }
    return result;
  }
};

// The indexer of `t` with token axis `token_dim` (wrapped, not the last axis), or nullopt
// when `t` has more than kMaxAxes sequence axes after merging those that step over one
// another (the caller then indexes a contiguous copy, which has at most two) and dropping
// size-1 axes.
inline std::optional<SequenceIndexer> sequence_indexer(const at::Tensor& t, int64_t token_dim) {
  SequenceIndexer indexer;
  indexer.token_stride = t.stride(token_dim);
  indexer.channel_stride = t.stride(-1);
  for (int64_t k = 0; k < t.dim() - 1; ++k) {
    if (k == token_dim || t.size(k) == 1) {
      continue;
    }
    const int last = indexer.axes - 1;
    if (last >= 0 && indexer.strides[last] == t.stride(k) * t.size(k)) {
      // index q = i_last * size_k + i_k lands at q * stride_k: one axis
      indexer.sizes[last] *= t.size(k);
      indexer.strides[last] = t.stride(k);
      continue;
    }
    if (indexer.axes == SequenceIndexer::kMaxAxes) {
      return std::nullopt;
    }
    indexer.sizes[indexer.axes] = t.size(k);
    indexer.strides[indexer.axes] = t.stride(k);
    ++indexer.axes;
  }
  return indexer;
}

// `t` with its indexer: `t` itself when it can be indexed in place, else a contiguous copy.
struct IndexedSequences {
  at::Tensor tensor;
  SequenceIndexer index;
};

inline IndexedSequences index_sequences(const at::Tensor& t, int64_t token_dim) {
  if (auto index = sequence_indexer(t, token_dim)) {
    return {t, *index};
  }
  auto copy = t.contiguous();
  return {copy, *sequence_indexer(copy, token_dim)};
}

}  // namespace mlpmix
