#pragma once
// Scaled dot-product attention  o = softmax(q·kᵀ · scale) · v  over [B, H, S, D] tensors.
// attention_reference is the unfused composition (it materializes the [B, H, S, S] scores); it is
// the reference the fused kernel is tested against.
#include <cmath>

#include "loom/ops/linalg.hpp"
#include "loom/ops/softmax.hpp"
#include "loom/ops/elementwise.hpp"

namespace loom {

// q [B, H, Sq, D], k [B, H, Sk, D], v [B, H, Sk, Dv] -> [B, H, Sq, Dv]; scale defaults to 1/sqrt(D).
template <class T, class Dev>
Tensor<T, Dev> attention_reference(const Tensor<T, Dev>& q, const Tensor<T, Dev>& k, const Tensor<T, Dev>& v,
                                   double scale = 0) {
  LOOM_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "attention: q, k, v must be [B, H, S, D], got ", q.shape(),
             ", ", k.shape(), ", ", v.shape());
  if (scale == 0) scale = 1.0 / std::sqrt(double(q.size(-1)));
  const Tensor<T, Dev> scores = matmul(q, k.transpose(-2, -1)) * scale;  // [B, H, Sq, Sk]
  return matmul(softmax(scores, -1), v);
}

template <class T, class Dev>
Tensor<T, Dev> scaled_dot_product_attention(const Tensor<T, Dev>& q, const Tensor<T, Dev>& k, const Tensor<T, Dev>& v,
                                            double scale = 0) {
  return attention_reference(q, k, v, scale);
}

}  // namespace loom
