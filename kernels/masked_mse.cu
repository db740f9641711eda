// Masked, per-patch-normalized MSE of the MAE, forward and backward fused (masked_mse.cuh).
//
// Versions (T ∈ {float, bf16}):
//   hidden_count_kernel   one block: Σ mask in a fixed order (needed to scale the gradient).
//   masked_mse_row_kernel one warp per patch row: mean and unbiased variance of the target row, the
//                         row's squared error, and its gradient written in the same pass.
//   finish_loss_kernel    one block: Σ row losses in a fixed order / Σ mask. Deterministic.
// How to run: tests/cuda/test_cuda_kernels.cpp ("[loss]") against a double-precision loop;
// benchmarks/gpu/bench_patch_gpu (GB/s vs a device-to-device copy); both from benchmarks/gpu/run.sh.
#include "cuda_check.cuh"
#include "device_types.cuh"
#include "masked_mse.cuh"

namespace loom::kernels {
namespace {

using detail::dev;
using detail::load;
using detail::store;

constexpr int kReduceThreads = 256;

// Σ x[0..n) by one block, in an order fixed by n alone.
__device__ float block_sum(const float* x, int64_t n) {
  __shared__ float partial[kReduceThreads];
  float acc = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += kReduceThreads) acc += x[i];
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int width = kReduceThreads / 2; width > 0; width /= 2) {
    if (threadIdx.x < width) partial[threadIdx.x] += partial[threadIdx.x + width];
    __syncthreads();
  }
  return partial[0];
}

__global__ void hidden_count_kernel(const float* __restrict__ mask, int64_t rows, float* __restrict__ result) {
  const float count = block_sum(mask, rows);
  if (threadIdx.x == 0) result[1] = count;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

template <class T>
__global__ void masked_mse_row_kernel(const T* __restrict__ pred, const T* __restrict__ target,
                                      const float* __restrict__ mask, int64_t rows, int64_t P, bool norm_pix,
                                      float grad_scale, T* __restrict__ grad_pred, float* __restrict__ row_loss,
                                      const float* __restrict__ result) {
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;  // the whole warp leaves together
  const T* p = pred + row * P;
  const T* t = target + row * P;
  T* g = grad_pred + row * P;
  const float m = mask[row], hidden = result[1];
  if (m == 0.0f || hidden == 0.0f) {  // visible patch: no loss, zero gradient
    for (int64_t e = lane; e < P; e += 32) store(g + e, 0.0f);
    if (lane == 0) row_loss[row] = 0.0f;
    return;
  }
  float mean = 0.0f, inv_std = 1.0f;
  if (norm_pix) {
    float s = 0.0f;
    for (int64_t e = lane; e < P; e += 32) s += load(t + e);
    mean = warp_sum(s) / float(P);
    float v = 0.0f;
    for (int64_t e = lane; e < P; e += 32) {
      const float c = load(t + e) - mean;
      v = fmaf(c, c, v);
    }
    const float var = P > 1 ? warp_sum(v) / float(P - 1) : 0.0f;
    inv_std = rsqrtf(var + 1e-6f);
  }
  const float coef = grad_scale * m * 2.0f / (float(P) * hidden);
  float err = 0.0f;
  for (int64_t e = lane; e < P; e += 32) {
    const float diff = load(p + e) - (load(t + e) - mean) * inv_std;
    err = fmaf(diff, diff, err);
    store(g + e, coef * diff);
  }
  err = warp_sum(err);
  if (lane == 0) row_loss[row] = m * err / float(P);
}

__global__ void finish_loss_kernel(const float* __restrict__ row_loss, int64_t rows, float* __restrict__ result) {
  const float total = block_sum(row_loss, rows);
  if (threadIdx.x == 0) result[0] = result[1] > 0.0f ? total / result[1] : 0.0f;
}

}  // namespace

template <class T>
void masked_mse_forward_backward(const T* pred, const T* target, const float* mask, int64_t rows, int64_t patch_size,
                                 bool norm_pix, float grad_scale, T* grad_pred, float* row_loss, float* result) {
  LOOM_CHECK(rows >= 1 && patch_size >= 1, "masked_mse_forward_backward: need rows >= 1 and patch size >= 1, got [",
             rows, ", ", patch_size, "]");
  LOOM_CHECK(pred && target && mask && grad_pred && row_loss && result,
             "masked_mse_forward_backward: null device pointer");
  hidden_count_kernel<<<1, kReduceThreads>>>(mask, rows, result);
  LOOM_CUDA_CHECK_LAUNCH();
  masked_mse_row_kernel<<<unsigned((rows + 7) / 8), 256>>>(dev(pred), dev(target), mask, rows, patch_size, norm_pix,
                                                           grad_scale, dev(grad_pred), row_loss, result);
  LOOM_CUDA_CHECK_LAUNCH();
  finish_loss_kernel<<<1, kReduceThreads>>>(row_loss, rows, result);
  LOOM_CUDA_CHECK_LAUNCH();
}

template void masked_mse_forward_backward<float>(const float*, const float*, const float*, int64_t, int64_t, bool,
                                                 float, float*, float*, float*);
template void masked_mse_forward_backward<loom::bf16>(const loom::bf16*, const loom::bf16*, const float*, int64_t,
                                                      int64_t, bool, float, loom::bf16*, float*, float*);

}  // namespace loom::kernels
