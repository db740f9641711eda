#pragma once
// Deterministic block-wide folds for the reduction and normalization kernels (reduce.cu, norm.cu):
// fp32 values combined in a fixed order — a shuffle tree within each warp, then warp 0 over the
// warps' results — so the same launch gives bit-identical results every run. No atomics.
#include <cuda_runtime.h>

#include <cmath>

namespace loom::kernels::detail {

struct SumFold {
  __device__ static float identity() { return 0.f; }
  __device__ static float combine(float a, float b) { return a + b; }
};

// Largest (kMax) or smallest value; a NaN wins over any number, so it propagates.
template <bool kMax>
struct ExtremeFold {
  __device__ static float identity() { return kMax ? -INFINITY : INFINITY; }
  __device__ static float combine(float a, float b) {
    const bool b_wins = kMax ? b > a : b < a;
    return (b_wins || (isnan(b) && !isnan(a))) ? b : a;
  }
};

// Folds the values of a whole 1-d block (blockDim.x a power of two in [32, 1024]); every thread
// gets the result. Every thread of the block must call it (it synchronizes).
template <class Fold>
__device__ float block_fold(float v) {
  __shared__ float warp_values[32];
  for (int step = 16; step > 0; step /= 2) v = Fold::combine(v, __shfl_down_sync(0xffffffffu, v, step));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, n_warps = blockDim.x / 32;
  if (lane == 0) warp_values[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < n_warps ? warp_values[lane] : Fold::identity();
    for (int step = 16; step > 0; step /= 2) v = Fold::combine(v, __shfl_down_sync(0xffffffffu, v, step));
    if (lane == 0) warp_values[0] = v;
  }
  __syncthreads();
  v = warp_values[0];
  __syncthreads();  // warp_values is reused by the next fold
  return v;
}

}  // namespace loom::kernels::detail
