#pragma once
// CPU reference of flash_attention.cu: the same tiles, the same online-softmax and recomputation
// arithmetic (attention_tiles.hpp), in float, sequentially. The CPU tests check it against a naive
// double-precision attention, which validates the algorithm the kernels run without a GPU.
#include <algorithm>
#include <vector>

#include "attention_tiles.hpp"
#include "loom/cuda/flash_attention.hpp"

namespace loom::kernels {

inline constexpr int64_t kFlashKeyTile = 32;  // keys per shared-memory tile in the forward kernel

inline void flash_attention_forward_cpu(const AttentionDims& dims, const float* q, const float* k, const float* v,
                                        float* o, float* lse) {
  using namespace attention;
  check_attention_dims(dims, "flash_attention_forward_cpu");
  const int64_t sq = dims.seq_q, sk = dims.seq_k, d = dims.head_dim;
  const float scale2 = dims.scale * kLog2e;
  std::vector<float> acc(d), score(kFlashKeyTile);
  for (int64_t bh = 0; bh < dims.batch_heads; ++bh) {
    const float* qh = q + bh * sq * d;  // [Sq, D]
    const float* kh = k + bh * sk * d;  // [Sk, D]
    const float* vh = v + bh * sk * d;  // [Sk, D]
    for (int64_t i = 0; i < sq; ++i) {
      OnlineSoftmax row;
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t t = 0; t < tile_count(sk, kFlashKeyTile); ++t) {
        const int64_t j0 = t * kFlashKeyTile, n = std::min(kFlashKeyTile, sk - j0);
        float tile_max = -INFINITY;
        for (int64_t jj = 0; jj < n; ++jj) {
          float dot = 0;
          for (int64_t c = 0; c < d; ++c) dot += qh[i * d + c] * kh[(j0 + jj) * d + c];
          score[jj] = dot * scale2;
          tile_max = std::max(tile_max, score[jj]);
        }
        const float alpha = rescale_for_tile(row, tile_max);
        for (int64_t c = 0; c < d; ++c) acc[c] *= alpha;
        for (int64_t jj = 0; jj < n; ++jj) {
          const float p = accumulate_weight(row, score[jj]);
          for (int64_t c = 0; c < d; ++c) acc[c] += p * vh[(j0 + jj) * d + c];
        }
      }
      for (int64_t c = 0; c < d; ++c) o[(bh * sq + i) * d + c] = acc[c] / row.sum;
      lse[bh * sq + i] = log_sum_exp(row);
    }
  }
}

inline void flash_attention_backward_cpu(const AttentionDims& dims, const float* q, const float* k, const float* v,
                                         const float* o, const float* d_o, const float* lse, float* dq, float* dk,
                                         float* dv) {
  using namespace attention;
  check_attention_dims(dims, "flash_attention_backward_cpu");
  const int64_t sq = dims.seq_q, sk = dims.seq_k, d = dims.head_dim;
  const float scale2 = dims.scale * kLog2e;
  std::fill(dq, dq + dims.batch_heads * sq * d, 0.0f);
  std::fill(dk, dk + dims.batch_heads * sk * d, 0.0f);
  std::fill(dv, dv + dims.batch_heads * sk * d, 0.0f);
  for (int64_t bh = 0; bh < dims.batch_heads; ++bh) {
    const int64_t qo = bh * sq * d, ko = bh * sk * d;
    for (int64_t i = 0; i < sq; ++i) {
      float delta = 0;  // the pre-pass: D_i = Σ_c dO_ic O_ic
      for (int64_t c = 0; c < d; ++c) delta += d_o[qo + i * d + c] * o[qo + i * d + c];
      const float lse2 = lse[bh * sq + i] * kLog2e;
      for (int64_t j = 0; j < sk; ++j) {
        float dot = 0, dp = 0;
        for (int64_t c = 0; c < d; ++c) {
          dot += q[qo + i * d + c] * k[ko + j * d + c];
          dp += d_o[qo + i * d + c] * v[ko + j * d + c];
        }
        const float p = probability(dot * scale2, lse2);
        const float ds = score_gradient(p, dp, delta) * dims.scale;
        for (int64_t c = 0; c < d; ++c) {
          dv[ko + j * d + c] += p * d_o[qo + i * d + c];
          dk[ko + j * d + c] += ds * q[qo + i * d + c];
          dq[qo + i * d + c] += ds * k[ko + j * d + c];
        }
      }
    }
  }
}

}  // namespace loom::kernels
