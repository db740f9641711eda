// Fused multi-head attention, forward and backward (flash-attention-2 structure): the public entry
// points for both element types, and the fp32 kernels (CUDA cores, fp32 end to end). bf16 runs on
// tensor cores in flash_attention_bf16.cu; the D = rowsum(dO ∘ O) pre-pass here serves both.
//
// Versions of the fp32 kernels (DPAD ∈ {32, 64, 128} chosen from the head dim, padding zero):
//   forward          flash_forward_kernel<T, DPAD>      block: 64 query rows × DPAD/32 lanes each;
//                    K/V tiles of 32 rows staged in shared memory, online softmax in registers,
//                    O and lse (log-sum-exp, natural log) written once.
//   backward pre     attention_delta_kernel<T>          D_i = Σ_d dO_id·O_id, one warp per row.
//   backward dK, dV  flash_backward_kv_kernel<T, DPAD>  block: 64 key rows; loops over query tiles
//                    of 32, recomputing P from lse; dK, dV accumulate in fp32 registers.
//   backward dQ      flash_backward_q_kernel<T, DPAD>   block: 64 query rows; loops over key tiles,
//                    dQ accumulates in fp32 registers. Deterministic: no atomics anywhere.
// How to run: tests/cuda/test_cuda_kernels.cpp ("[flash]") against the CPU; benchmarks/gpu/
// bench_attention_gpu (TFLOP/s vs cuBLAS+softmax and PyTorch); both from benchmarks/gpu/run.sh.
// CPU reference of this exact tiling: flash_attention_cpu.hpp. Tile math: attention_tiles.hpp.
// Math and design: docs/attention.md.
#include <type_traits>

#include "attention_tiles.hpp"
#include "cuda_check.cuh"
#include "device_types.cuh"
#include "flash_attention_launch.cuh"
#include "loom/cuda/flash_attention.hpp"

namespace loom::kernels {
namespace {

using namespace attention;
using detail::dev;
using detail::load;
using detail::store;

constexpr int kRowsPerBlock = 64;  // rows a block owns: queries (forward, dQ) or keys (dK, dV)
constexpr int kTile = 32;          // rows of the other operand staged in shared memory per step
constexpr int kVec = kDimsPerLane / 4;  // float4 words per lane

// A lane's slice of one row (the dims owned_dim(lane, ...)) from global memory into registers.
template <int LANES, class T>
__device__ __forceinline__ void load_slice(float (&r)[kDimsPerLane], const T* row, int d, int lane, bool valid) {
#pragma unroll
  for (int v = 0; v < kVec; ++v)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int c = owned_dim(lane, LANES, v, e);
      r[v * 4 + e] = valid && c < d ? load(row + c) : 0.0f;
    }
}

template <int LANES, class T>
__device__ __forceinline__ void store_slice(T* row, const float (&r)[kDimsPerLane], float mul, int d, int lane) {
#pragma unroll
  for (int v = 0; v < kVec; ++v)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int c = owned_dim(lane, LANES, v, e);
      if (c < d) store(row + c, r[v * 4 + e] * mul);
    }
}

// This lane's part of the dot product of its slice with a staged shared-memory row.
template <int LANES>
__device__ __forceinline__ float dot_slice(const float (&r)[kDimsPerLane], const float* srow, int lane) {
  const float4* s4 = reinterpret_cast<const float4*>(srow);
  float acc = 0.0f;
#pragma unroll
  for (int v = 0; v < kVec; ++v) {
    const float4 w = s4[v * LANES + lane];
    acc = fmaf(r[v * 4 + 0], w.x, acc);
    acc = fmaf(r[v * 4 + 1], w.y, acc);
    acc = fmaf(r[v * 4 + 2], w.z, acc);
    acc = fmaf(r[v * 4 + 3], w.w, acc);
  }
  return acc;
}

// acc += a · (this lane's slice of a staged shared-memory row).
template <int LANES>
__device__ __forceinline__ void axpy_slice(float (&acc)[kDimsPerLane], float a, const float* srow, int lane) {
  const float4* s4 = reinterpret_cast<const float4*>(srow);
#pragma unroll
  for (int v = 0; v < kVec; ++v) {
    const float4 w = s4[v * LANES + lane];
    acc[v * 4 + 0] = fmaf(a, w.x, acc[v * 4 + 0]);
    acc[v * 4 + 1] = fmaf(a, w.y, acc[v * 4 + 1]);
    acc[v * 4 + 2] = fmaf(a, w.z, acc[v * 4 + 2]);
    acc[v * 4 + 3] = fmaf(a, w.w, acc[v * 4 + 3]);
  }
}

// Sum over the LANES neighbouring lanes of a row. The butterfly adds the same pairs in every lane,
// so all lanes hold the bitwise-identical result (their online-softmax states never diverge).
template <int LANES>
__device__ __forceinline__ float row_sum(float x) {
#pragma unroll
  for (int off = LANES / 2; off > 0; off /= 2) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

// Rows [r0, r0 + kTile) of a [n, d] matrix into shared memory [kTile, DPAD] as fp32, zero padded.
template <int DPAD, class T>
__device__ __forceinline__ void stage_tile(float* smem, const T* src, int64_t r0, int64_t n, int d) {
  for (int idx = threadIdx.x; idx < kTile * DPAD; idx += blockDim.x) {
    const int r = idx / DPAD, c = idx % DPAD;
    smem[idx] = r0 + r < n && c < d ? load(src + (r0 + r) * d + c) : 0.0f;
  }
}

// The row a thread works on, of the kRowsPerBlock rows of head blockIdx.y its block owns (queries
// or keys), and its lane in that row. Rows past n are not valid: their threads still help stage
// the shared tiles and leave only at the end.
struct ThreadRow {
  int64_t bh;
  int64_t row;
  int lane;
  bool valid;
};
template <int LANES>
__device__ __forceinline__ ThreadRow thread_row(int64_t n) {
  const int64_t bh = blockIdx.y;
  const int lane = lane_of_thread(threadIdx.x, LANES);
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + row_of_thread(threadIdx.x, LANES);
  return {bh, row, lane, row < n};
}

// The K and V tiles of rows [j0, j0 + kTile) into shared memory, once every thread is done with
// the previous ones.
template <int DPAD, class T>
__device__ __forceinline__ void stage_key_value_tiles(float* ks, const T* kh, float* vs, const T* vh, int64_t j0,
                                                      int64_t sk, int d) {
  __syncthreads();  // the previous tiles are no longer read
  stage_tile<DPAD>(ks, kh, j0, sk, d);
  stage_tile<DPAD>(vs, vh, j0, sk, d);
  __syncthreads();
}

template <class T, int DPAD>
__global__ void __launch_bounds__(kRowsPerBlock* DPAD / kDimsPerLane)
    flash_forward_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v, T* __restrict__ o,
                         float* __restrict__ lse, int64_t sq, int64_t sk, int d, float scale2) {
  constexpr int LANES = lanes_per_row(DPAD);
  __shared__ __align__(16) float ks[kTile * DPAD];  // [kTile, DPAD]
  __shared__ __align__(16) float vs[kTile * DPAD];  // [kTile, DPAD]
  const auto [bh, i, lane, valid] = thread_row<LANES>(sq);
  const T* kh = k + bh * sk * d;  // [Sk, D]
  const T* vh = v + bh * sk * d;  // [Sk, D]

  float qr[kDimsPerLane], acc[kDimsPerLane];
  load_slice<LANES>(qr, q + (bh * sq + (valid ? i : 0)) * d, d, lane, valid);
#pragma unroll
  for (int c = 0; c < kDimsPerLane; ++c) {
    qr[c] *= scale2;  // scores come out in base-2 units
    acc[c] = 0.0f;
  }
  OnlineSoftmax row;
  for (int64_t j0 = 0; j0 < sk; j0 += kTile) {
    stage_key_value_tiles<DPAD>(ks, kh, vs, vh, j0, sk, d);
    float s[kTile];
    float tile_max = -INFINITY;
#pragma unroll
    for (int jj = 0; jj < kTile; ++jj) {
      const float dot = row_sum<LANES>(dot_slice<LANES>(qr, ks + jj * DPAD, lane));
      s[jj] = j0 + jj < sk ? dot : -INFINITY;  // keys past the end weigh exp(-inf) = 0
      tile_max = fmaxf(tile_max, s[jj]);
    }
    const float alpha = rescale_for_tile(row, tile_max);
#pragma unroll
    for (int c = 0; c < kDimsPerLane; ++c) acc[c] *= alpha;
#pragma unroll
    for (int jj = 0; jj < kTile; ++jj) axpy_slice<LANES>(acc, accumulate_weight(row, s[jj]), vs + jj * DPAD, lane);
  }
  if (!valid) return;
  store_slice<LANES>(o + (bh * sq + i) * d, acc, 1.0f / row.sum, d, lane);
  if (lane == 0) lse[bh * sq + i] = log_sum_exp(row);
}

template <class T>
__global__ void attention_delta_kernel(const T* __restrict__ o, const T* __restrict__ d_o, float* __restrict__ delta,
                                       int64_t rows, int d) {
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;  // the whole warp leaves together
  float acc = 0.0f;
  for (int c = lane; c < d; c += 32) acc = fmaf(load(o + row * d + c), load(d_o + row * d + c), acc);
#pragma unroll
  for (int off = 16; off > 0; off /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, off);
  if (lane == 0) delta[row] = acc;
}

template <class T, int DPAD>
__global__ void __launch_bounds__(kRowsPerBlock* DPAD / kDimsPerLane)
    flash_backward_kv_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                             const T* __restrict__ d_o, const float* __restrict__ lse,
                             const float* __restrict__ delta, T* __restrict__ dk, T* __restrict__ dv, int64_t sq,
                             int64_t sk, int d, float scale, float scale2) {
  constexpr int LANES = lanes_per_row(DPAD);
  __shared__ __align__(16) float qs[kTile * DPAD];   // [kTile, DPAD]
  __shared__ __align__(16) float dos[kTile * DPAD];  // [kTile, DPAD]
  __shared__ float lse2s[kTile], deltas[kTile];
  const auto [bh, j, lane, valid] = thread_row<LANES>(sk);
  const T* qh = q + bh * sq * d;     // [Sq, D]
  const T* doh = d_o + bh * sq * d;  // [Sq, D]

  float kr[kDimsPerLane], vr[kDimsPerLane], dkr[kDimsPerLane] = {}, dvr[kDimsPerLane] = {};
  load_slice<LANES>(kr, k + (bh * sk + (valid ? j : 0)) * d, d, lane, valid);
  load_slice<LANES>(vr, v + (bh * sk + (valid ? j : 0)) * d, d, lane, valid);
  for (int64_t i0 = 0; i0 < sq; i0 += kTile) {
    __syncthreads();
    stage_tile<DPAD>(qs, qh, i0, sq, d);
    stage_tile<DPAD>(dos, doh, i0, sq, d);
    for (int t = threadIdx.x; t < kTile; t += blockDim.x) {
      const bool row_ok = i0 + t < sq;
      lse2s[t] = row_ok ? lse[bh * sq + i0 + t] * kLog2e : INFINITY;  // padding rows: P = 0
      deltas[t] = row_ok ? delta[bh * sq + i0 + t] : 0.0f;
    }
    __syncthreads();
#pragma unroll 2
    for (int ii = 0; ii < kTile; ++ii) {
      const float s2 = row_sum<LANES>(dot_slice<LANES>(kr, qs + ii * DPAD, lane)) * scale2;
      const float p = probability(s2, lse2s[ii]);
      axpy_slice<LANES>(dvr, p, dos + ii * DPAD, lane);
      const float dp = row_sum<LANES>(dot_slice<LANES>(vr, dos + ii * DPAD, lane));
      axpy_slice<LANES>(dkr, score_gradient(p, dp, deltas[ii]), qs + ii * DPAD, lane);
    }
  }
  if (!valid) return;
  store_slice<LANES>(dk + (bh * sk + j) * d, dkr, scale, d, lane);
  store_slice<LANES>(dv + (bh * sk + j) * d, dvr, 1.0f, d, lane);
}

template <class T, int DPAD>
__global__ void __launch_bounds__(kRowsPerBlock* DPAD / kDimsPerLane)
    flash_backward_q_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                            const T* __restrict__ d_o, const float* __restrict__ lse, const float* __restrict__ delta,
                            T* __restrict__ dq, int64_t sq, int64_t sk, int d, float scale, float scale2) {
  constexpr int LANES = lanes_per_row(DPAD);
  __shared__ __align__(16) float ks[kTile * DPAD];  // [kTile, DPAD]
  __shared__ __align__(16) float vs[kTile * DPAD];  // [kTile, DPAD]
  const auto [bh, i, lane, valid] = thread_row<LANES>(sq);
  const T* kh = k + bh * sk * d;  // [Sk, D]
  const T* vh = v + bh * sk * d;  // [Sk, D]

  float qr[kDimsPerLane], dor[kDimsPerLane], dqr[kDimsPerLane] = {};
  const int64_t row = bh * sq + (valid ? i : 0);
  load_slice<LANES>(qr, q + row * d, d, lane, valid);
  load_slice<LANES>(dor, d_o + row * d, d, lane, valid);
  const float lse2 = valid ? lse[row] * kLog2e : INFINITY;
  const float delta_i = valid ? delta[row] : 0.0f;
  for (int64_t j0 = 0; j0 < sk; j0 += kTile) {
    stage_key_value_tiles<DPAD>(ks, kh, vs, vh, j0, sk, d);
#pragma unroll 2
    for (int jj = 0; jj < kTile; ++jj) {
      const float s2 = row_sum<LANES>(dot_slice<LANES>(qr, ks + jj * DPAD, lane)) * scale2;
      const float p = j0 + jj < sk ? probability(s2, lse2) : 0.0f;
      const float dp = row_sum<LANES>(dot_slice<LANES>(dor, vs + jj * DPAD, lane));
      axpy_slice<LANES>(dqr, score_gradient(p, dp, delta_i), ks + jj * DPAD, lane);
    }
  }
  if (valid) store_slice<LANES>(dq + (bh * sq + i) * d, dqr, scale, d, lane);
}

template <class DT, int DPAD>
void launch_forward(const AttentionDims& a, const DT* q, const DT* k, const DT* v, DT* o, float* lse) {
  const dim3 grid(unsigned(tile_count(a.seq_q, kRowsPerBlock)), unsigned(a.batch_heads));
  flash_forward_kernel<DT, DPAD><<<grid, kRowsPerBlock * lanes_per_row(DPAD)>>>(q, k, v, o, lse, a.seq_q, a.seq_k,
                                                                                a.head_dim, a.scale * kLog2e);
  LOOM_CUDA_CHECK_LAUNCH();
}

template <class DT, int DPAD>
void launch_backward(const AttentionDims& a, const DT* q, const DT* k, const DT* v, const DT* d_o, const float* lse,
                     const float* delta, DT* dq, DT* dk, DT* dv) {
  const int threads = kRowsPerBlock * lanes_per_row(DPAD);
  const float scale2 = a.scale * kLog2e;
  const dim3 kv_grid(unsigned(tile_count(a.seq_k, kRowsPerBlock)), unsigned(a.batch_heads));
  flash_backward_kv_kernel<DT, DPAD><<<kv_grid, threads>>>(q, k, v, d_o, lse, delta, dk, dv, a.seq_q, a.seq_k,
                                                           a.head_dim, a.scale, scale2);
  LOOM_CUDA_CHECK_LAUNCH();
  const dim3 q_grid(unsigned(tile_count(a.seq_q, kRowsPerBlock)), unsigned(a.batch_heads));
  flash_backward_q_kernel<DT, DPAD><<<q_grid, threads>>>(q, k, v, d_o, lse, delta, dq, a.seq_q, a.seq_k,
                                                         a.head_dim, a.scale, scale2);
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace

template <class T>
void flash_attention_forward(const AttentionDims& a, const T* q, const T* k, const T* v, T* o, float* lse) {
  check_attention_dims(a, "flash_attention_forward");
  LOOM_CHECK(q && k && v && o && lse, "flash_attention_forward: null device pointer");
  if constexpr (std::is_same_v<T, loom::bf16>) {
    detail::flash_forward_bf16(a, dev(q), dev(k), dev(v), dev(o), lse);  // tensor cores
  } else {
    switch (padded_head_dim(a.head_dim)) {
      case 32: return launch_forward<T, 32>(a, q, k, v, o, lse);
      case 64: return launch_forward<T, 64>(a, q, k, v, o, lse);
      default: return launch_forward<T, 128>(a, q, k, v, o, lse);
    }
  }
}

template <class T>
void flash_attention_backward(const AttentionDims& a, const T* q, const T* k, const T* v, const T* o, const T* d_o,
                              const float* lse, float* delta, T* dq, T* dk, T* dv) {
  check_attention_dims(a, "flash_attention_backward");
  LOOM_CHECK(q && k && v && o && d_o && lse && delta && dq && dk && dv, "flash_attention_backward: null device pointer");
  const int64_t rows = a.batch_heads * a.seq_q;
  attention_delta_kernel<<<unsigned(tile_count(rows, 8)), 256>>>(dev(o), dev(d_o), delta, rows, a.head_dim);
  LOOM_CUDA_CHECK_LAUNCH();
  if constexpr (std::is_same_v<T, loom::bf16>) {
    detail::flash_backward_bf16(a, dev(q), dev(k), dev(v), dev(d_o), lse, delta, dev(dq), dev(dk), dev(dv));
  } else {
    switch (padded_head_dim(a.head_dim)) {
      case 32: return launch_backward<T, 32>(a, q, k, v, d_o, lse, delta, dq, dk, dv);
      case 64: return launch_backward<T, 64>(a, q, k, v, d_o, lse, delta, dq, dk, dv);
      default: return launch_backward<T, 128>(a, q, k, v, d_o, lse, delta, dq, dk, dv);
    }
  }
}

template void flash_attention_forward<float>(const AttentionDims&, const float*, const float*, const float*, float*,
                                             float*);
template void flash_attention_forward<loom::bf16>(const AttentionDims&, const loom::bf16*, const loom::bf16*,
                                                  const loom::bf16*, loom::bf16*, float*);
template void flash_attention_backward<float>(const AttentionDims&, const float*, const float*, const float*,
                                              const float*, const float*, const float*, float*, float*, float*,
                                              float*);
template void flash_attention_backward<loom::bf16>(const AttentionDims&, const loom::bf16*, const loom::bf16*,
                                                   const loom::bf16*, const loom::bf16*, const loom::bf16*,
                                                   const float*, float*, loom::bf16*, loom::bf16*, loom::bf16*);

}  // namespace loom::kernels
