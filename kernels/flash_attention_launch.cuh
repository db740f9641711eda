#pragma once
// Internal: the bf16 tensor-core attention kernels (flash_attention_bf16.cu), called by the public
// entry points in flash_attention.cu. Device pointers; shapes already checked by the caller.
#include <cuda_bf16.h>

#include "loom/cuda/flash_attention.hpp"

namespace loom::kernels::detail {

void flash_forward_bf16(const AttentionDims& dims, const __nv_bfloat16* q, const __nv_bfloat16* k,
                        const __nv_bfloat16* v, __nv_bfloat16* o, float* lse);
// delta: D = rowsum(dO ∘ O), already computed.
void flash_backward_bf16(const AttentionDims& dims, const __nv_bfloat16* q, const __nv_bfloat16* k,
                         const __nv_bfloat16* v, const __nv_bfloat16* d_o, const float* lse, const float* delta,
                         __nv_bfloat16* dq, __nv_bfloat16* dk, __nv_bfloat16* dv);

}  // namespace loom::kernels::detail
