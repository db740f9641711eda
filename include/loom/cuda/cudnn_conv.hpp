#pragma once
// The patch-embedding convolution through cuDNN (kernels/cudnn_conv.cpp, target loom::kernels):
// legacy cudnnConvolution* calls, NCHW, stride = kernel = p, no padding, cross-correlation (the
// Linear over (channel, row, column)-flattened patches). Plain C++: untyped contiguous device
// pointers, the element type as a DType (f32, or bf16 with fp32 accumulation). fp32 uses FMA math
// only (exact fp32) unless loom::cuda::set_allow_tf32(true). The algorithm for each shape is chosen
// once (cudnnGet*_v7 heuristics) and cached; workspaces come from loom's caching allocator. All work
// runs on the legacy default stream. Built without cuDNN, every function throws a loom::Error
// saying so (loom/cuda/cudnn_support.hpp).
#include "loom/core/dtype.hpp"
#include "loom/cuda/cudnn_layout.hpp"

namespace loom::cuda {

// y [B, D, h, w] = conv(x [B, C, H, W], w [D, C, p, p])   (no bias: the op adds it in its permute)
void cudnn_patch_conv_forward(DType type, const PatchConvDims& d, const void* x, const void* w, void* y);
// dw [D, C, p, p] = ∂/∂w given dy [B, D, h, w]
void cudnn_patch_conv_backward_filter(DType type, const PatchConvDims& d, const void* x, const void* dy, void* dw);
// dx [B, C, H, W] = ∂/∂x given dy [B, D, h, w]
void cudnn_patch_conv_backward_data(DType type, const PatchConvDims& d, const void* w, const void* dy, void* dx);
// db [D] = Σ over (B, h, w) of dy [B, D, h, w]; f32 only (the op sums bf16 gradients itself)
void cudnn_patch_conv_backward_bias(DType type, const PatchConvDims& d, const void* dy, void* db);

}  // namespace loom::cuda
