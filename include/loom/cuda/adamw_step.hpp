#pragma once
// The fused AdamW step behind loom::optim::AdamW on CUDA parameters, untyped entry points over
// kernels/adamw.cuh (defined in kernels/device_ops.cu). The step scalars are computed on the host
// in double from these options exactly as the CPU optimizer computes them.
#include <cstdint>

namespace loom::cuda {

struct AdamWScalars {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  int64_t step = 1;  // t, from 1
};

// fp32 parameters, gradients and moments.
void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWScalars& s);
// bf16 parameters and gradients with fp32 moments: `master` (fp32, n elements) holds the weights
// before the step and receives them after it; `weights` (bf16) is rewritten from it.
void adamw_update_mixed(float* master, void* weights_bf16, const void* grad_bf16, float* m, float* v, int64_t n,
                        const AdamWScalars& s);

}  // namespace loom::cuda
