// Fused AdamW (adamw.cuh): one thread per element, everything in registers between one read and
// one write of each array — the optimizer step is purely memory-bound.
// Versions: adamw_step (fp32), adamw_step_mixed (fp32 master + moments, bf16 gradients and weights).
// How to run: tests/cuda/test_cuda_kernels.cpp ("[adamw]") against loom::optim::AdamW on the CPU.
#include <cmath>

#include "adamw.cuh"
#include "cuda_check.cuh"
#include "device_types.cuh"

namespace loom::kernels {
namespace {

using detail::dev;
using detail::load;

struct Coefficients {  // per-step scalars, computed once on the host exactly as the CPU optimizer does
  float b1, b2, eps, step, inv_sqrt_bc2, decay;
};

Coefficients coefficients(const AdamWStep& s) {
  LOOM_CHECK(s.step >= 1, "adamw_step: step counts from 1, got ", s.step);
  LOOM_CHECK(s.lr >= 0 && s.eps > 0 && s.beta1 >= 0 && s.beta1 < 1 && s.beta2 >= 0 && s.beta2 < 1,
             "adamw_step: need lr >= 0, eps > 0, betas in [0, 1), got lr ", s.lr, " eps ", s.eps, " betas ", s.beta1,
             ", ", s.beta2);
  const double bc1 = 1 - std::pow(s.beta1, double(s.step)), bc2 = 1 - std::pow(s.beta2, double(s.step));
  return {float(s.beta1), float(s.beta2), float(s.eps), float(s.lr / bc1), float(1.0 / std::sqrt(bc2)),
          float(1.0 - s.lr * s.weight_decay)};
}

__device__ __forceinline__ float update(float p, float g, float& m, float& v, const Coefficients& c) {
  m = c.b1 * m + (1 - c.b1) * g;
  v = c.b2 * v + (1 - c.b2) * g * g;
  const float denom = sqrtf(v) * c.inv_sqrt_bc2 + c.eps;
  return p * c.decay - c.step * m / denom;
}

__global__ void adamw_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                             float* __restrict__ v, int64_t n, Coefficients c) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float mi = m[i], vi = v[i];
  p[i] = update(p[i], g[i], mi, vi, c);
  m[i] = mi;
  v[i] = vi;
}

__global__ void adamw_mixed_kernel(float* __restrict__ master, __nv_bfloat16* __restrict__ w,
                                   const __nv_bfloat16* __restrict__ g, float* __restrict__ m, float* __restrict__ v,
                                   int64_t n, Coefficients c) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float mi = m[i], vi = v[i];
  const float p = update(master[i], load(g + i), mi, vi, c);
  master[i] = p;
  w[i] = __float2bfloat16(p);
  m[i] = mi;
  v[i] = vi;
}

}  // namespace

void adamw_step(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWStep& s) {
  const Coefficients c = coefficients(s);
  if (n <= 0) return;
  adamw_kernel<<<unsigned((n + 255) / 256), 256>>>(param, grad, m, v, n, c);
  LOOM_CUDA_CHECK_LAUNCH();
}

void adamw_step_mixed(float* master, loom::bf16* weights, const loom::bf16* grad, float* m, float* v, int64_t n,
                      const AdamWStep& s) {
  const Coefficients c = coefficients(s);
  if (n <= 0) return;
  adamw_mixed_kernel<<<unsigned((n + 255) / 256), 256>>>(master, dev(weights), dev(grad), m, v, n, c);
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace loom::kernels
