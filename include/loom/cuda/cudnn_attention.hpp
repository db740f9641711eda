#pragma once
// cuDNN's fused scaled-dot-product attention (kernels/cudnn_attention.cpp, target loom::kernels),
// built through the backend (graph) API: each direction is cuDNN's single SDPA operation (forward
// softmax(scale·Q·Kᵀ)·V with the statistics saved; backward dQ, dK, dV). A comparator for loom's own
// kernels (benchmarks/gpu/bench_attention_gpu.cpp) and a selectable attention backend (docs/cuda.md
// "cuDNN"). Plain C++: contiguous device pointers.
// Built without cuDNN, the functions throw a loom::Error saying so.
#include <cstdint>

namespace loom::cuda {

struct CudnnSdpaDims {
  int64_t batch = 0, heads = 0, seq_q = 0, seq_kv = 0, head_dim = 0;  // [B, H, S, D]; [BH, S, D] is heads = 1
  float scale = 0;  // the score scale, e.g. 1/sqrt(D)
};

// Throws a loom::Error saying why cuDNN's SDPA cannot take these dims (D a multiple of 8, <= 128;
// every extent positive); does not need a device.
void check_cudnn_sdpa_dims(const CudnnSdpaDims& d);

// q [B, H, Sq, D], k, v [B, H, Skv, D], o [B, H, Sq, D]: contiguous bf16 (loom::bf16) on the device;
// stats [B, H, Sq] fp32: the log-sum-exp of each row of the scaled scores (max + log Σ exp), what a
// backward pass needs. The execution plan is built once per shape (per thread) and cached; its
// workspace comes from loom's caching allocator. Runs on the legacy default stream.
void cudnn_sdpa_forward(const CudnnSdpaDims& d, const void* q, const void* k, const void* v, void* o, float* stats);

// dq, dk, dv (bf16, shaped as q, k, v) from d_o [B, H, Sq, D] (bf16) and the forward's q, k, v, o and
// stats. Plan cached per thread and shape like the forward's.
void cudnn_sdpa_backward(const CudnnSdpaDims& d, const void* q, const void* k, const void* v, const void* o,
                         const void* d_o, const float* stats, void* dq, void* dk, void* dv);

// Whether this cuDNN (library, headers and GPU) runs the SDPA backward for d's shape: cuDNN 9.19 has
// no engine for the single backward operation on sm 90 (cudnn-frontend expects one from 9.27 on).
// Probed once per shape and thread by building the plan, which cudnn_sdpa_backward then reuses.
bool cudnn_sdpa_backward_supported(const CudnnSdpaDims& d);

}  // namespace loom::cuda
