#pragma once
// The MAE's token and loss ops on CUDA tensors (loom/mask/tokens.hpp, loom/mask/masked_loss.hpp):
// untyped entry points over the handwritten kernels of kernels/patch_tokens.cuh and
// kernels/masked_mse.cuh (defined in kernels/device_ops.cu). Device pointers, contiguous, element
// type f32 or bf16; shapes as in those headers.
#include <cstdint>

#include "loom/core/dtype.hpp"

namespace loom::cuda {

// image [B, C, H, W] -> tokens [B, K, p·p·C] (ids_keep [B, K], or nullptr for all K = L patches in
// grid order). Returns false, touching nothing, when the kernel does not take the shape (a token
// above the kernel's shared-memory size, B > 65535, C·H·W > 2^31 - 1, or an empty tensor): the caller falls back.
bool patchify_tokens(DType type, const void* image, const int64_t* ids_keep, void* tokens, int64_t batch,
                     int64_t kept, int64_t channels, int64_t height, int64_t width, int64_t patch);

// visible [B, K, D] + mask_token [D] + ids_restore [B, T] -> out [B, T, D]; B, T, D >= 1.
void unshuffle_tokens_forward(DType type, const void* visible, const void* mask_token, const int64_t* ids_restore,
                              void* out, int64_t batch, int64_t kept, int64_t tokens, int64_t dim);
// grad_out [B, T, D] -> grad_visible [B, K, D] (written only at rows some position reads: zero it
// first; ids_restore must be a permutation, as the MAE's is) and grad_mask_token [D] (fp32).
void unshuffle_tokens_backward(DType type, const void* grad_out, const int64_t* ids_restore, void* grad_visible,
                               float* grad_mask_token, int64_t batch, int64_t kept, int64_t tokens, int64_t dim);

// The masked, per-patch-normalized MSE of one group over rows x patch_size (kernels/masked_mse.cuh):
// writes grad_pred (scaled by grad_scale) and returns the loss (read back: synchronizes).
float masked_mse(DType type, const void* pred, const void* target, const float* mask, int64_t rows, int64_t patch_size,
                 bool norm_pix, float grad_scale, void* grad_pred);

}  // namespace loom::cuda
