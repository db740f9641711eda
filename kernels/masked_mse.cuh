#pragma once
// The MAE reconstruction loss of one modality group on the GPU (masked_mse.cu), forward and
// backward in one pass over pred and target:
//   t̂ = norm_pix ? (t - mean) / sqrt(var_unbiased + 1e-6) : t             per patch row
//   loss = Σ_r m_r · mean_P (pred_r - t̂_r)² / Σ_r m_r                     (m: 1 = hidden)
//   grad_pred_r = grad_scale · m_r · 2 (pred_r - t̂_r) / (P · Σ_r m_r)
// pred, target, grad_pred [R, P] with R = B·L rows; mask [R] fp32; row_loss [R] workspace;
// result [2] on the device receives {loss, Σ m}. No hidden row: loss 0 and a zero gradient.
// CPU reference: loom::mask::masked_group_loss (include/loom/mask/masked_loss.hpp).
#include <cstdint>

#include "loom/core/bf16.hpp"

namespace loom::kernels {

template <class T>
void masked_mse_forward_backward(const T* pred, const T* target, const float* mask, int64_t rows, int64_t patch_size,
                                 bool norm_pix, float grad_scale, T* grad_pred, float* row_loss, float* result);

}  // namespace loom::kernels
