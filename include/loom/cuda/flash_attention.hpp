#pragma once
// Fused multi-head attention on the GPU, flash-attention-2 structure (flash_attention.cu):
//   O = softmax(scale · Q Kᵀ) V per (batch, head), without materializing the [Sq, Sk] scores.
// Layout: Q [BH, Sq, D], K and V [BH, Sk, D], O [BH, Sq, D], contiguous, on the device;
// lse [BH, Sq] (fp32, natural log) is saved by forward for backward. D in [1, 128], any Sq, Sk >= 1.
// Element types: float, and loom::bf16 (fp32 arithmetic inside, bf16 in memory).
// CPU reference of the same tiling: flash_attention_cpu.hpp. Plain C++ header (no CUDA types).
#include <cstdint>

#include "loom/core/bf16.hpp"
#include "loom/core/error.hpp"

namespace loom::kernels {

struct AttentionDims {
  int64_t batch_heads = 0;
  int64_t seq_q = 0;
  int64_t seq_k = 0;
  int head_dim = 0;
  float scale = 0.0f;  // usually 1/sqrt(head_dim)
};

inline void check_attention_dims(const AttentionDims& d, const char* op) {
  LOOM_CHECK(d.batch_heads >= 1 && d.seq_q >= 1 && d.seq_k >= 1, op,
             ": batch·heads, query and key lengths must be >= 1, got [", d.batch_heads, ", ", d.seq_q, ", ", d.seq_k,
             "]");
  LOOM_CHECK(d.head_dim >= 1 && d.head_dim <= 128, op, ": head dim must be in [1, 128], got ", d.head_dim);
  LOOM_CHECK(d.batch_heads <= 65535, op, ": batch·heads must be <= 65535 (one grid row each), got ", d.batch_heads);
}

// Forward: writes O and lse.
template <class T>
void flash_attention_forward(const AttentionDims& dims, const T* q, const T* k, const T* v, T* o, float* lse);

// Backward from dO: needs forward's O and lse, a workspace delta [BH, Sq] (fp32), writes dQ, dK, dV.
// Deterministic: dK/dV are reduced per key block and dQ per query block, in a fixed order, no atomics.
template <class T>
void flash_attention_backward(const AttentionDims& dims, const T* q, const T* k, const T* v, const T* o,
                              const T* d_o, const float* lse, float* delta, T* dq, T* dk, T* dv);

}  // namespace loom::kernels
