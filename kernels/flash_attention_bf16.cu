// Fused multi-head attention in bf16 on tensor cores (mma.sync m16n8k16, fp32 accumulation), the
// bf16 path of loom/cuda/flash_attention.hpp. Same algorithm as the fp32 kernels (flash_attention.cu), laid
// out for the tensor cores:
//   forward   flash_forward_bf16_kernel<DPAD>    block: 4 warps × 16 query rows; K and Vᵀ tiles of 64
//             keys in shared memory; S = Q Kᵀ and O += P V as warp-level mma; the online softmax runs
//             on the S accumulators in registers, whose layout is P's A-operand layout (no shared-
//             memory round trip for P).
//   backward  attention_delta_kernel (flash_attention.cu) for D = rowsum(dO ∘ O), then
//             flash_backward_kv_bf16_kernel<DPAD>  block: 4 warps × 16 keys; per query tile of 64:
//               Sᵀ = K Qᵀ, Pᵀ from lse, dV += Pᵀ dO, dPᵀ = V dOᵀ, dSᵀ = Pᵀ(dPᵀ - D), dK += dSᵀ Q
//             flash_backward_q_bf16_kernel<DPAD>   block: 4 warps × 16 queries; per key tile of 64:
//               S = Q Kᵀ, P, dP = dO Vᵀ, dS, dQ += dS K.   Deterministic: no atomics.
//   DPAD ∈ {32, 64, 128}. All tiles are row-major in shared memory, rows padded by 8 elements so
//   that the 8 rows of an ldmatrix phase hit 8 different bank quads; operands needed transposed
//   (V in P·V, dO, Q, K in the backward products) are read with ldmatrix.trans, never copied.
// How to run: tests/cuda/test_cuda_kernels.cpp ("[flash]", bf16 cases) and benchmarks/gpu/
// bench_attention_gpu (bf16 rows), from benchmarks/gpu/run.sh. Fragment maps: mma_fragments.hpp
// (tested on the CPU by test_kernel_math); CPU reference: flash_attention_cpu.hpp.
#include <cuda_bf16.h>

#include <cstdint>

#include "attention_tiles.hpp"
#include "cuda_check.cuh"
#include "flash_attention_launch.cuh"
#include "mma_fragments.hpp"

namespace loom::kernels {
namespace {

using attention::kLn2;
using attention::kLog2e;
using bf16_t = __nv_bfloat16;

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kBlockRows = 16 * kWarps;  // rows a block owns (queries or keys)
constexpr int kTile = 64;                // rows of the other operand per shared-memory step
constexpr int kTileNt = kTile / 8;       // n8 accumulator tiles across a 64-wide score tile

template <int DPAD>
constexpr int kRowStride = DPAD + 8;

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const bf16_t* p) {
  const auto addr = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const bf16_t* p) {
  const auto addr = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// A fragment of the 16×16 block at (row0, col0) of a row-major tile.
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const bf16_t* tile, int stride, int row0, int col0,
                                       int lane) {
  ldmatrix_x4(a, tile + (row0 + mma::ldm_row(lane)) * stride + col0 + mma::ldm_col(lane));
}

// B fragments of n-tiles n0 and n0 + 8 (k-block at k0), B(k, n) = tile[n][k]: a tile holding Bᵀ.
__device__ __forceinline__ void load_b_pair_from_transposed(uint32_t (&b)[4], const bf16_t* tile, int stride, int n0,
                                                            int k0, int lane) {
  ldmatrix_x4(b, tile + (n0 + mma::ldm_bt_row(lane)) * stride + k0 + mma::ldm_bt_col(lane));
}

// B fragments of n-tiles n0 and n0 + 8 (k-block at k0), B(k, n) = tile[k][n]: a row-major tile.
__device__ __forceinline__ void load_b_pair(uint32_t (&b)[4], const bf16_t* tile, int stride, int k0, int n0,
                                            int lane) {
  ldmatrix_x4_trans(b, tile + (k0 + mma::ldm_row(lane)) * stride + n0 + mma::ldm_col(lane));
}

// The A fragment of k-block kk of a product whose left operand is the accumulator tiles c[2kk], c[2kk+1].
__device__ __forceinline__ void a_from_accumulators(uint32_t (&a)[4], const float (&c)[kTileNt][4], int kk) {
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const float* tile = c[2 * kk + mma::a_from_c_tile(r)];
    a[r] = pack_bf16(tile[mma::a_from_c_first(r)], tile[mma::a_from_c_first(r) + 1]);
  }
}

// c += a · b, with b the registers b0, b1 of one n-tile.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// c[nt] (16 × 64 accumulators) += rows [row0, row0+16) of `left` (row-major, DPAD wide) times the
// Bᵀ tile `right` (64 rows of DPAD): a score tile such as Q Kᵀ.
template <int DPAD>
__device__ __forceinline__ void score_tile(float (&c)[kTileNt][4], const bf16_t* left, int row0, const bf16_t* right,
                                           int lane) {
#pragma unroll
  for (int kk = 0; kk < DPAD / 16; ++kk) {
    uint32_t a[4];
    load_a(a, left, kRowStride<DPAD>, row0, kk * 16, lane);
#pragma unroll
    for (int nt = 0; nt < kTileNt; nt += 2) {
      uint32_t b[4];
      load_b_pair_from_transposed(b, right, kRowStride<DPAD>, nt * 8, kk * 16, lane);
      mma_bf16(c[nt], a, b[0], b[1]);
      mma_bf16(c[nt + 1], a, b[2], b[3]);
    }
  }
}

// acc (16 × DPAD) += P (the 16 × 64 accumulators, as bf16) times `rows` (64 rows of DPAD, row-major).
template <int DPAD>
__device__ __forceinline__ void accumulate_product(float (&acc)[DPAD / 8][4], const float (&p)[kTileNt][4],
                                                   const bf16_t* rows, int lane) {
#pragma unroll
  for (int kk = 0; kk < kTile / 16; ++kk) {
    uint32_t a[4];
    a_from_accumulators(a, p, kk);
#pragma unroll
    for (int nd = 0; nd < DPAD / 8; nd += 2) {
      uint32_t b[4];
      load_b_pair(b, rows, kRowStride<DPAD>, kk * 16, nd * 8, lane);
      mma_bf16(acc[nd], a, b[0], b[1]);
      mma_bf16(acc[nd + 1], a, b[2], b[3]);
    }
  }
}

// The output positions of this lane's part of its warp's 16 × DPAD accumulator tile, the rows
// row0 + [0, 16) of head bh of a [BH, n, d] tensor: calls store(index, nd, i) for acc[nd][i],
// skipping rows past n and the padding columns past d.
template <int DPAD, class Store>
__device__ __forceinline__ void for_each_stored_accumulator(int64_t bh, int64_t row0, int64_t n, int d, int lane,
                                                            Store store) {
#pragma unroll
  for (int nd = 0; nd < DPAD / 8; ++nd)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t r = row0 + mma::c_row(lane, i);
      const int c = nd * 8 + mma::c_col(lane, i);
      if (r < n && c < d) store((bh * n + r) * d + c, nd, i);
    }
}

// Rows [r0, r0 + kTile) of a [n, d] matrix into a row-major shared tile [kTile][DPAD + 8], zeros
// past n and d; 16-byte loads when rows are 16-byte aligned (d a multiple of 8).
template <int DPAD>
__device__ __forceinline__ void stage(bf16_t* tile, const bf16_t* src, int64_t r0, int64_t n, int d) {
  if (d % 8 == 0 && (reinterpret_cast<uintptr_t>(src) & 15) == 0) {
    constexpr int kChunks = DPAD / 8;
    for (int idx = threadIdx.x; idx < kTile * kChunks; idx += kThreads) {
      const int r = idx / kChunks, c = (idx % kChunks) * 8;
      uint4 x = make_uint4(0, 0, 0, 0);
      if (r0 + r < n && c < d) x = *reinterpret_cast<const uint4*>(src + (r0 + r) * d + c);
      *reinterpret_cast<uint4*>(tile + r * kRowStride<DPAD> + c) = x;
    }
  } else {
    for (int idx = threadIdx.x; idx < kTile * DPAD; idx += kThreads) {
      const int r = idx / DPAD, c = idx % DPAD;
      tile[r * kRowStride<DPAD> + c] = r0 + r < n && c < d ? src[(r0 + r) * d + c] : __float2bfloat16(0.0f);
    }
  }
}

template <int DPAD>
constexpr size_t forward_smem() {
  return 3 * kTile * kRowStride<DPAD> * sizeof(bf16_t);
}
template <int DPAD>
constexpr size_t backward_kv_smem() {
  return 4 * kTile * kRowStride<DPAD> * sizeof(bf16_t) + 2 * kTile * sizeof(float);
}
template <int DPAD>
constexpr size_t backward_q_smem() {
  return 4 * kTile * kRowStride<DPAD> * sizeof(bf16_t);
}

template <int DPAD>
__global__ void __launch_bounds__(kThreads)
    flash_forward_bf16_kernel(const bf16_t* __restrict__ q, const bf16_t* __restrict__ k, const bf16_t* __restrict__ v,
                              bf16_t* __restrict__ o, float* __restrict__ lse, int64_t sq, int64_t sk, int d,
                              float scale2) {
  extern __shared__ __align__(16) unsigned char smem[];
  bf16_t* qs = reinterpret_cast<bf16_t*>(smem);  // [64][DPAD + 8]
  bf16_t* ks = qs + kTile * kRowStride<DPAD>;   // [64][DPAD + 8]
  bf16_t* vs = ks + kTile * kRowStride<DPAD>;   // [64][DPAD + 8]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, wrow = warp * 16;
  const int64_t bh = blockIdx.y, q0 = int64_t(blockIdx.x) * kBlockRows;
  stage<DPAD>(qs, q + bh * sq * d, q0, sq, d);

  float acc[DPAD / 8][4] = {};
  attention::OnlineSoftmax row[2];  // this lane's rows: group and group + 8
  for (int64_t j0 = 0; j0 < sk; j0 += kTile) {
    __syncthreads();
    stage<DPAD>(ks, k + bh * sk * d, j0, sk, d);
    stage<DPAD>(vs, v + bh * sk * d, j0, sk, d);
    __syncthreads();
    float s[kTileNt][4] = {};
    score_tile<DPAD>(s, qs, wrow, ks, lane);
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < kTileNt; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        s[nt][i] = j0 + nt * 8 + mma::c_col(lane, i) < sk ? s[nt][i] * scale2 : -INFINITY;
        tile_max[i >> 1] = fmaxf(tile_max[i >> 1], s[nt][i]);
      }
    float alpha[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {  // the 4 lanes of a group share the row: reduce the max over them
      tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 1));
      tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 2));
      alpha[h] = attention::rescale_for_tile(row[h], tile_max[h]);
    }
#pragma unroll
    for (int nt = 0; nt < kTileNt; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) s[nt][i] = attention::accumulate_weight(row[i >> 1], s[nt][i]);  // l: lane part
#pragma unroll
    for (int nd = 0; nd < DPAD / 8; ++nd)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[nd][i] *= alpha[i >> 1];
    accumulate_product<DPAD>(acc, s, vs, lane);
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {  // each lane summed its own columns: complete l over the group
    row[h].sum += __shfl_xor_sync(0xffffffffu, row[h].sum, 1);
    row[h].sum += __shfl_xor_sync(0xffffffffu, row[h].sum, 2);
  }
  for_each_stored_accumulator<DPAD>(bh, q0 + wrow, sq, d, lane, [&](int64_t at, int nd, int i) {
    o[at] = __float2bfloat16(acc[nd][i] / row[i >> 1].sum);
  });
  if (mma::thread_in_group(lane) == 0)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t r = q0 + wrow + mma::group(lane) + 8 * h;
      if (r < sq) lse[bh * sq + r] = attention::log_sum_exp(row[h]);
    }
}

template <int DPAD>
__global__ void __launch_bounds__(kThreads)
    flash_backward_kv_bf16_kernel(const bf16_t* __restrict__ q, const bf16_t* __restrict__ k,
                                  const bf16_t* __restrict__ v, const bf16_t* __restrict__ d_o,
                                  const float* __restrict__ lse, const float* __restrict__ delta,
                                  bf16_t* __restrict__ dk, bf16_t* __restrict__ dv, int64_t sq, int64_t sk, int d,
                                  float scale, float scale2) {
  extern __shared__ __align__(16) unsigned char smem[];
  constexpr int RS = kRowStride<DPAD>;
  bf16_t* ks = reinterpret_cast<bf16_t*>(smem);  // [64][DPAD + 8] this block's keys
  bf16_t* vs = ks + kTile * RS;                   // [64][DPAD + 8]
  bf16_t* qs = vs + kTile * RS;                   // [64][DPAD + 8] query tile
  bf16_t* dos = qs + kTile * RS;                  // [64][DPAD + 8]
  float* lse2s = reinterpret_cast<float*>(dos + kTile * RS);  // [64]
  float* deltas = lse2s + kTile;                                              // [64]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, wrow = warp * 16;
  const int64_t bh = blockIdx.y, key0 = int64_t(blockIdx.x) * kBlockRows;
  stage<DPAD>(ks, k + bh * sk * d, key0, sk, d);
  stage<DPAD>(vs, v + bh * sk * d, key0, sk, d);

  float dk_acc[DPAD / 8][4] = {}, dv_acc[DPAD / 8][4] = {};
  for (int64_t i0 = 0; i0 < sq; i0 += kTile) {
    __syncthreads();
    stage<DPAD>(qs, q + bh * sq * d, i0, sq, d);
    stage<DPAD>(dos, d_o + bh * sq * d, i0, sq, d);
    for (int t = threadIdx.x; t < kTile; t += kThreads) {
      const bool ok = i0 + t < sq;
      lse2s[t] = ok ? lse[bh * sq + i0 + t] * kLog2e : INFINITY;  // padding queries get P = 0
      deltas[t] = ok ? delta[bh * sq + i0 + t] : 0.0f;
    }
    __syncthreads();
    float p[kTileNt][4] = {};  // Pᵀ: rows are this warp's 16 keys, columns the 64 queries
    score_tile<DPAD>(p, ks, wrow, qs, lane);
#pragma unroll
    for (int nt = 0; nt < kTileNt; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i)
        p[nt][i] = attention::probability(p[nt][i] * scale2, lse2s[nt * 8 + mma::c_col(lane, i)]);
    accumulate_product<DPAD>(dv_acc, p, dos, lane);  // dV += Pᵀ dO
    float dp[kTileNt][4] = {};
    score_tile<DPAD>(dp, vs, wrow, dos, lane);  // dPᵀ = V dOᵀ
#pragma unroll
    for (int nt = 0; nt < kTileNt; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i)
        p[nt][i] = attention::score_gradient(p[nt][i], dp[nt][i], deltas[nt * 8 + mma::c_col(lane, i)]);
    accumulate_product<DPAD>(dk_acc, p, qs, lane);  // dK += dSᵀ Q
  }
  for_each_stored_accumulator<DPAD>(bh, key0 + wrow, sk, d, lane, [&](int64_t at, int nd, int i) {
    dk[at] = __float2bfloat16(dk_acc[nd][i] * scale);
    dv[at] = __float2bfloat16(dv_acc[nd][i]);
  });
}

template <int DPAD>
__global__ void __launch_bounds__(kThreads)
    flash_backward_q_bf16_kernel(const bf16_t* __restrict__ q, const bf16_t* __restrict__ k,
                                 const bf16_t* __restrict__ v, const bf16_t* __restrict__ d_o,
                                 const float* __restrict__ lse, const float* __restrict__ delta,
                                 bf16_t* __restrict__ dq, int64_t sq, int64_t sk, int d, float scale, float scale2) {
  extern __shared__ __align__(16) unsigned char smem[];
  constexpr int RS = kRowStride<DPAD>;
  bf16_t* qs = reinterpret_cast<bf16_t*>(smem);  // [64][DPAD + 8] this block's queries
  bf16_t* dos = qs + kTile * RS;                  // [64][DPAD + 8]
  bf16_t* ks = dos + kTile * RS;                  // [64][DPAD + 8] key tile
  bf16_t* vs = ks + kTile * RS;                   // [64][DPAD + 8]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, wrow = warp * 16;
  const int64_t bh = blockIdx.y, q0 = int64_t(blockIdx.x) * kBlockRows;
  stage<DPAD>(qs, q + bh * sq * d, q0, sq, d);
  stage<DPAD>(dos, d_o + bh * sq * d, q0, sq, d);
  float lse2[2], delta_row[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t r = q0 + wrow + mma::group(lane) + 8 * h;
    lse2[h] = r < sq ? lse[bh * sq + r] * kLog2e : INFINITY;
    delta_row[h] = r < sq ? delta[bh * sq + r] : 0.0f;
  }

  float dq_acc[DPAD / 8][4] = {};
  for (int64_t j0 = 0; j0 < sk; j0 += kTile) {
    __syncthreads();
    stage<DPAD>(ks, k + bh * sk * d, j0, sk, d);
    stage<DPAD>(vs, v + bh * sk * d, j0, sk, d);
    __syncthreads();
    float p[kTileNt][4] = {}, dp[kTileNt][4] = {};
    score_tile<DPAD>(p, qs, wrow, ks, lane);   // S = Q Kᵀ
    score_tile<DPAD>(dp, dos, wrow, vs, lane);  // dP = dO Vᵀ
#pragma unroll
    for (int nt = 0; nt < kTileNt; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const bool key_ok = j0 + nt * 8 + mma::c_col(lane, i) < sk;
        const float prob = key_ok ? attention::probability(p[nt][i] * scale2, lse2[i >> 1]) : 0.0f;
        p[nt][i] = attention::score_gradient(prob, dp[nt][i], delta_row[i >> 1]);  // dS
      }
    accumulate_product<DPAD>(dq_acc, p, ks, lane);  // dQ += dS K
  }
  for_each_stored_accumulator<DPAD>(bh, q0 + wrow, sq, d, lane, [&](int64_t at, int nd, int i) {
    dq[at] = __float2bfloat16(dq_acc[nd][i] * scale);
  });
}

// Kernels needing more than the default 48 KiB of dynamic shared memory must say so once.
template <class Kernel>
void allow_shared_memory(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    LOOM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

template <int DPAD>
void forward_bf16(const AttentionDims& a, const bf16_t* q, const bf16_t* k, const bf16_t* v, bf16_t* o, float* lse) {
  allow_shared_memory(flash_forward_bf16_kernel<DPAD>, forward_smem<DPAD>());
  const dim3 grid{unsigned(attention::tile_count(a.seq_q, kBlockRows)), unsigned(a.batch_heads)};
  flash_forward_bf16_kernel<DPAD><<<grid, kThreads, forward_smem<DPAD>()>>>(q, k, v, o, lse, a.seq_q, a.seq_k,
                                                                            a.head_dim, a.scale * kLog2e);
  LOOM_CUDA_CHECK_LAUNCH();
}

template <int DPAD>
void backward_bf16(const AttentionDims& a, const bf16_t* q, const bf16_t* k, const bf16_t* v, const bf16_t* d_o,
                   const float* lse, const float* delta, bf16_t* dq, bf16_t* dk, bf16_t* dv) {
  const float scale2 = a.scale * kLog2e;
  allow_shared_memory(flash_backward_kv_bf16_kernel<DPAD>, backward_kv_smem<DPAD>());
  const dim3 kv_grid{unsigned(attention::tile_count(a.seq_k, kBlockRows)), unsigned(a.batch_heads)};
  flash_backward_kv_bf16_kernel<DPAD><<<kv_grid, kThreads, backward_kv_smem<DPAD>()>>>(
      q, k, v, d_o, lse, delta, dk, dv, a.seq_q, a.seq_k, a.head_dim, a.scale, scale2);
  LOOM_CUDA_CHECK_LAUNCH();
  allow_shared_memory(flash_backward_q_bf16_kernel<DPAD>, backward_q_smem<DPAD>());
  const dim3 q_grid{unsigned(attention::tile_count(a.seq_q, kBlockRows)), unsigned(a.batch_heads)};
  flash_backward_q_bf16_kernel<DPAD><<<q_grid, kThreads, backward_q_smem<DPAD>()>>>(
      q, k, v, d_o, lse, delta, dq, a.seq_q, a.seq_k, a.head_dim, a.scale, scale2);
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace

namespace detail {

void flash_forward_bf16(const AttentionDims& a, const bf16_t* q, const bf16_t* k, const bf16_t* v, bf16_t* o,
                        float* lse) {
  switch (attention::padded_head_dim(a.head_dim)) {
    case 32: return forward_bf16<32>(a, q, k, v, o, lse);
    case 64: return forward_bf16<64>(a, q, k, v, o, lse);
    default: return forward_bf16<128>(a, q, k, v, o, lse);
  }
}

void flash_backward_bf16(const AttentionDims& a, const bf16_t* q, const bf16_t* k, const bf16_t* v, const bf16_t* d_o,
                         const float* lse, const float* delta, bf16_t* dq, bf16_t* dk, bf16_t* dv) {
  switch (attention::padded_head_dim(a.head_dim)) {
    case 32: return backward_bf16<32>(a, q, k, v, d_o, lse, delta, dq, dk, dv);
    case 64: return backward_bf16<64>(a, q, k, v, d_o, lse, delta, dq, dk, dv);
    default: return backward_bf16<128>(a, q, k, v, d_o, lse, delta, dq, dk, dv);
  }
}

}  // namespace detail
}  // namespace loom::kernels
