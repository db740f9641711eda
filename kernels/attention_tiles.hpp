#pragma once
// Tile bookkeeping of the fused attention kernels (flash_attention.cu), shared with their CPU
// reference (flash_attention_cpu.hpp) so that the CPU test suite checks the same arithmetic:
//   - which head dimensions a thread owns (threads_per_row lanes share one query or key row),
//   - how many tiles cover a sequence of any length,
//   - the online-softmax update in base 2 and the recomputation of probabilities in backward.
// Derivation: docs/attention.md. Everything here is plain C++ usable from host and device code.
#include <cmath>
#include <cstdint>

#include "loom/core/host_device.hpp"

namespace loom::kernels::attention {

inline constexpr int kMaxHeadDim = 128;
inline constexpr int kDimsPerLane = 32;  // head dimensions held in registers by one thread
inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr float kLn2 = 0.6931471805599453f;

// Head dims are padded to 32, 64 or 128 (the padding is zeros and changes no dot product).
LOOM_HOST_DEVICE constexpr int padded_head_dim(int d) { return d <= 32 ? 32 : d <= 64 ? 64 : 128; }
// Threads that share one row: each owns kDimsPerLane of the padded head dims.
LOOM_HOST_DEVICE constexpr int lanes_per_row(int padded_dim) { return padded_dim / kDimsPerLane; }
LOOM_HOST_DEVICE constexpr int64_t tile_count(int64_t n, int64_t tile) { return (n + tile - 1) / tile; }

// Thread t of a block works on row t / lanes of the tile, as lane t % lanes of that row.
LOOM_HOST_DEVICE constexpr int row_of_thread(int thread, int lanes) { return thread / lanes; }
LOOM_HOST_DEVICE constexpr int lane_of_thread(int thread, int lanes) { return thread % lanes; }

// The head dimension held in element e (0..3) of float4 number v (0..7) by a lane. Lanes interleave
// by float4 so that the lanes of a row read neighbouring 16-byte words of a shared-memory row:
// no bank conflicts, and each row of 32·lanes dims is covered exactly once.
LOOM_HOST_DEVICE constexpr int owned_dim(int lane, int lanes, int v, int e) { return (v * lanes + lane) * 4 + e; }

// Online softmax of one query row over key tiles, in base 2 (scores pre-multiplied by
// scale·log2(e)): m is the running maximum, l the running sum of 2^(s - m).
struct OnlineSoftmax {
  float m = -INFINITY;
  float l = 0.0f;
};

// Starts a key tile whose largest score is tile_max. Returns the factor by which the row's output
// accumulator (and l, done here) must be multiplied so that earlier terms are relative to the new max.
LOOM_HOST_DEVICE inline float rescale_for_tile(OnlineSoftmax& s, float tile_max) {
  const float m_new = fmaxf(s.m, tile_max);
  const float alpha = s.m == -INFINITY ? 0.0f : exp2f(s.m - m_new);
  s.m = m_new;
  s.l *= alpha;
  return alpha;
}

// The weight of a score once its tile has been started; adds it to the running sum.
LOOM_HOST_DEVICE inline float accumulate_weight(OnlineSoftmax& s, float score2) {
  const float p = exp2f(score2 - s.m);
  s.l += p;
  return p;
}

// log Σ_j exp(scale · q·k_j), in natural-log units (what backward and the CPU op use).
LOOM_HOST_DEVICE inline float log_sum_exp(const OnlineSoftmax& s) { return (s.m + log2f(s.l)) * kLn2; }

// Backward recomputes P_ij = exp(scale·q_i·k_j - lse_i) = 2^(score2 - lse_i·log2 e).
LOOM_HOST_DEVICE inline float probability(float score2, float lse2) { return exp2f(score2 - lse2); }
// dS_ij = P_ij (dP_ij - D_i) with dP = dO·Vᵀ and D_i = Σ_d dO_id O_id (softmax backward).
LOOM_HOST_DEVICE inline float score_gradient(float p, float dp, float delta) { return p * (dp - delta); }

}  // namespace loom::kernels::attention
