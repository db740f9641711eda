#pragma once
// Fixed 2-D sin-cos position embedding, MAE reference convention: for a grid of h rows and w
// columns, token l = i·w + j; the first D/2 channels encode the column index j, the last D/2 the
// row index i; each half is [sin(pos·ω_k), cos(pos·ω_k)] with ω_k = 1 / 10000^(k / (D/4)),
// k = 0..D/4-1. With a cls token, row 0 is all zeros.
#include <cmath>

#include "loom/core/tensor.hpp"

namespace loom::nn {

// [h·w (+1 with cls), D], computed in double on the host, rounded to T, then placed on Dev.
template <class T = float, class Dev = CPU>
Tensor<T, Dev> sincos_pos_embed_2d(int64_t dim, int64_t grid_h, int64_t grid_w, bool cls_token = false) {
  LOOM_CHECK(dim > 0 && dim % 4 == 0, "sincos_pos_embed_2d: embedding dim must be a positive multiple of 4, got ", dim);
  LOOM_CHECK(grid_h > 0 && grid_w > 0, "sincos_pos_embed_2d: empty grid ", grid_h, "x", grid_w);
  const int64_t quarter = dim / 4, offset = cls_token ? 1 : 0;
  Tensor<T> out = Tensor<T>::zeros({grid_h * grid_w + offset, dim});  // [L(+1), D]
  T* p = out.data();
  for (int64_t i = 0; i < grid_h; ++i) {
    for (int64_t j = 0; j < grid_w; ++j) {
      T* row = p + (offset + i * grid_w + j) * dim;
      for (int64_t k = 0; k < quarter; ++k) {
        const double omega = 1.0 / std::pow(10000.0, double(k) / double(quarter));
        row[k] = T(std::sin(double(j) * omega));
        row[quarter + k] = T(std::cos(double(j) * omega));
        row[2 * quarter + k] = T(std::sin(double(i) * omega));
        row[3 * quarter + k] = T(std::cos(double(i) * omega));
      }
    }
  }
  return out.template to_device<Dev>();
}

}  // namespace loom::nn
