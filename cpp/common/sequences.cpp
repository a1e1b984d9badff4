#include "common/sequences.h"

namespace mlpmix {

SequenceLayout sequence_layout(const at::Tensor& t, int64_t token_dim) {
  std::vector<int64_t> sizes;
  std::vector<int64_t> strides;
  int64_t count = 1;
  for (int64_t k = 0; k < t.dim() - 1; ++k) {
    if (k != token_dim) {
      sizes.push_back(t.size(k));
      strides.push_back(t.stride(k));
      count *= t.size(k);
    }
  }
  SequenceLayout layout;
  layout.token_stride = t.stride(token_dim);
  layout.channel_stride = t.stride(-1);
  layout.offsets.resize(count);
  std::vector<int64_t> index(sizes.size(), 0);
  int64_t offset = 0;
  for (int64_t n = 0; n < count; ++n) {
    layout.offsets[n] = offset;
    for (auto k = static_cast<int64_t>(sizes.size()) - 1; k >= 0; --k) {
      if (++index[k] < sizes[k]) {
        offset += strides[k];
        break;
      }
      offset -= (sizes[k] - 1) * strides[k];
      index[k] = 0;
    }
  }
  return layout;
}

std::vector<int64_t> sequence_major_sizes(at::IntArrayRef sizes, int64_t token_dim) {
  std::vector<int64_t> out;
  for (int64_t k = 0; k < static_cast<int64_t>(sizes.size()) - 1; ++k) {
    if (k != token_dim) {
      out.push_back(sizes[k]);
    }
  }
  out.push_back(sizes[token_dim]);
  out.push_back(sizes.back());
  return out;
}

at::Tensor contiguous_channels(const at::Tensor& t) {
  return t.stride(-1) == 1 ? t : t.contiguous();
}

}  // namespace mlpmix
