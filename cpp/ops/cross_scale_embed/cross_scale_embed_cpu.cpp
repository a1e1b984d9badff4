// mlpmix::cross_scale_embed on CPU: the merged-weight convolution of cross_scale_embed.cpp,
// whose convolution ATen runs with its CPU kernels.
#include <torch/library.h>

#include "ops/cross_scale_embed/cross_scale_embed.h"

TORCH_LIBRARY_IMPL(mlpmix, CPU, m) {
  m.impl("cross_scale_embed", &mlpmix::cross_scale_embed_impl::embed);
  m.impl("cross_scale_embed_backward", &mlpmix::cross_scale_embed_impl::embed_backward);
}
