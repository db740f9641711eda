#pragma once
// Tile bookkeeping of the fused attention kernels (flash_attention.cu), shared with their CPU
// reference (flash_attention_cpu.hpp) so that the CPU test suite checks the same arithmetic:
//   - which head dimensions a thread owns (threads_per_row lanes share one query or key row),
//   - how many tiles cover a sequence of any length,
//   - the recomputation of probabilities in backward (the online softmax itself, in base 2, is
//     loom/ops/attention_tiles.hpp's, shared with the CPU attention op).
// Derivation: docs/attention.md. Everything here is plain C++ usable from host and device code.
#include <cmath>
#include <cstdint>

#include "loom/core/host_device.hpp"
#include "loom/ops/attention_tiles.hpp"

namespace loom::kernels::attention {

inline constexpr int kMaxHeadDim = 128;
inline constexpr int kDimsPerLane = 32;  // head dimensions held in registers by one thread
using attention_tiles::kLn2;
using attention_tiles::kLog2e;

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

// The online softmax of one query row over key tiles is loom/ops/attention_tiles.hpp's, in base 2:
// scores come pre-multiplied by scale·log2(e), m = row.max, l = row.sum; log_sum_exp(row) gives
// the natural-log LSE that backward and the CPU op use.
using OnlineSoftmax = attention_tiles::OnlineSoftmax<float, attention_tiles::Base2>;
using attention_tiles::accumulate_weight;
using attention_tiles::log_sum_exp;
using attention_tiles::rescale_for_tile;

// Backward recomputes P_ij = exp(scale·q_i·k_j - lse_i) = 2^(score2 - lse_i·log2 e).
LOOM_HOST_DEVICE inline float probability(float score2, float lse2) { return exp2f(score2 - lse2); }
// dS_ij = P_ij (dP_ij - D_i) with dP = dO·Vᵀ and D_i = Σ_d dO_id O_id (softmax backward).
LOOM_HOST_DEVICE inline float score_gradient(float p, float dp, float delta) { return p * (dp - delta); }

}  // namespace loom::kernels::attention
