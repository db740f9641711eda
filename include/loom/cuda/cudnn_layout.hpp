#pragma once
// Host-side arithmetic behind the cuDNN backends (kernels/cudnn_conv.cpp, kernels/cudnn_attention.cpp),
// kept in plain functions so CPU tests check it (tests/cuda/test_device_cudnn.cpp):
//   - PatchConvDims: the patch embedding as a convolution: x [B, C, H, W], weight [D, C·p·p] (or
//     [D, C, p, p]) -> y [B, D, H/p, W/p], stride = kernel = p, no padding.
//   - BackendLayout: the 4-d dims and strides of a backend-API tensor descriptor (the SDPA graph's
//     Q, Kᵀ, V, O, the [B, H, S, 1] softmax statistics and the packed virtual score tensors).
#include <array>
#include <cstdint>

#include "loom/core/error.hpp"
#include "loom/core/shape.hpp"

namespace loom::cuda {

struct PatchConvDims {
  int64_t batch = 0, channels = 0, height = 0, width = 0, dim = 0, patch = 0;
  int64_t grid_h() const { return height / patch; }
  int64_t grid_w() const { return width / patch; }
  int64_t tokens() const { return grid_h() * grid_w(); }
  // y [B, D, h, w] as cuDNN writes it (NCHW)
  std::array<int64_t, 4> conv_output() const { return {batch, dim, grid_h(), grid_w()}; }
};

// Validates x [B, C, H, W], weight [D, C·p·p] or [D, C, p, p] and the patch size p (p | H, p | W).
inline PatchConvDims patch_conv_dims(const Shape& x, const Shape& weight, int64_t p) {
  LOOM_CHECK(x.size() == 4, "conv_patch_embed: expected an image batch [B, C, H, W], got shape ", x);
  PatchConvDims d{x[0], x[1], x[2], x[3], 0, p};
  LOOM_CHECK(p > 0 && d.height % p == 0 && d.width % p == 0, "conv_patch_embed: image ", d.height, "x", d.width,
             " is not divisible by patch size ", p);
  const bool flat = weight.size() == 2 && weight[1] == d.channels * p * p;
  const bool conv = weight.size() == 4 && weight[1] == d.channels && weight[2] == p && weight[3] == p;
  LOOM_CHECK(flat || conv, "conv_patch_embed: weight ", weight, " is neither [D, ", d.channels * p * p, "] nor [D, ",
             d.channels, ", ", p, ", ", p, "] for input ", x, " and patch ", p);
  d.dim = weight[0];
  return d;
}

// One backend tensor descriptor's geometry (cuDNN's SDPA graphs are 4-d: [B, H, rows, cols]).
struct BackendLayout {
  std::array<int64_t, 4> dims{}, strides{};
  int64_t offset_of(const std::array<int64_t, 4>& index) const {
    int64_t off = 0;
    for (int i = 0; i < 4; ++i) off += index[i] * strides[i];
    return off;
  }
};

// Row-major packed strides for `dims`.
inline BackendLayout packed_layout(const std::array<int64_t, 4>& dims) {
  BackendLayout l{dims, {}};
  int64_t stride = 1;
  for (int i = 3; i >= 0; --i) {
    l.strides[i] = stride;
    stride *= dims[i];
  }
  return l;
}

// The same memory seen with its last two dims swapped: K [B, H, S, D] -> Kᵀ [B, H, D, S], which is
// how the backend's first matmul takes K (no copy).
inline BackendLayout transpose_last_two(BackendLayout l) {
  std::swap(l.dims[2], l.dims[3]);
  std::swap(l.strides[2], l.strides[3]);
  return l;
}

}  // namespace loom::cuda
