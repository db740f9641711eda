#pragma once
// Index maps of the patch-masking kernels (patch_tokens.cu), shared with CPU tests: where element e
// of a patch-token row comes from in the image, and which visible row feeds a decoder position.
// Patch order and layout follow loom::mask::patchify_group: patches row-major over the h × w grid,
// each flattened in (row, column, channel) order, so a row has p·p·C elements.
#include <cstdint>

#include "loom/core/host_device.hpp"

namespace loom::kernels::patch {

struct ImageGeometry {
  int64_t channels = 0, height = 0, width = 0;  // one modality group of an image [C, H, W]
  int64_t patch = 0;                            // p: patches are p × p pixels
  LOOM_HOST_DEVICE constexpr int64_t grid_w() const { return width / patch; }
  LOOM_HOST_DEVICE constexpr int64_t patches() const { return (height / patch) * (width / patch); }
  LOOM_HOST_DEVICE constexpr int64_t token_size() const { return patch * patch * channels; }
};

// Offset inside one image [C, H, W] of element e of the row of patch number `patch_index`.
LOOM_HOST_DEVICE constexpr int64_t image_offset(const ImageGeometry& g, int64_t patch_index, int64_t e) {
  const int64_t c = e % g.channels, pixel = e / g.channels;  // (row, column, channel) order
  const int64_t r = pixel / g.patch, col = pixel % g.patch;
  const int64_t y = (patch_index / g.grid_w()) * g.patch + r, x = (patch_index % g.grid_w()) * g.patch + col;
  return (c * g.height + y) * g.width + x;
}

// Decoder position t reads visible row ids_restore[t] when it is < K (a kept token), else the mask token.
LOOM_HOST_DEVICE constexpr bool is_visible(int64_t restore, int64_t kept) { return restore < kept; }

}  // namespace loom::kernels::patch
