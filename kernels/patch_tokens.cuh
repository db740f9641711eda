#pragma once
// Patch-masking kernels of the MAE (patch_tokens.cu), device pointers, contiguous, fp32 or bf16:
//   patchify_gather     image [B, C, H, W] + ids_keep [B, K] -> visible patch tokens [B, K, p·p·C]
//                       (ids_keep == nullptr: all L patches in grid order, i.e. plain patchify)
//   unshuffle_forward   visible [B, K, D] + mask_token [D] + ids_restore [B, T] -> [B, T, D]
//   unshuffle_backward  grad [B, T, D] -> grad_visible [B, K, D] (each kept row has exactly one
//                       source, a permutation: no atomics) and grad_mask_token [D] (a fixed-order
//                       column reduction, deterministic)
// The CPU operations they reproduce: loom::mask::{patchify_group, gather_tokens, unshuffle_tokens}.
#include <cstdint>

#include "loom/core/bf16.hpp"
#include "patch_index.hpp"

namespace loom::kernels {

template <class T>
void patchify_gather(const T* image, const int64_t* ids_keep, T* tokens, int64_t batch, int64_t kept,
                     const patch::ImageGeometry& geometry);

template <class T>
void unshuffle_forward(const T* visible, const T* mask_token, const int64_t* ids_restore, T* out, int64_t batch,
                       int64_t kept, int64_t tokens, int64_t dim);

template <class T>
void unshuffle_backward(const T* grad_out, const int64_t* ids_restore, T* grad_visible, float* grad_mask_token,
                        int64_t batch, int64_t kept, int64_t tokens, int64_t dim);

}  // namespace loom::kernels
