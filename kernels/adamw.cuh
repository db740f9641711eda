#pragma once
// The fused AdamW step on the device (adamw.cu): one pass over parameters, gradients and moments,
// the update of loom::optim::AdamW (PyTorch's torch.optim.AdamW):
//   m = β1 m + (1-β1) g;  v = β2 v + (1-β2) g²;  p = p·(1 - lr·wd) - (lr/bc1) · m / (sqrt(v)/sqrt(bc2) + eps)
// with bc1 = 1 - β1^t, bc2 = 1 - β2^t. Two forms:
//   adamw_step            fp32 parameters, fp32 gradients, fp32 moments
//   adamw_step_mixed      mixed precision: fp32 master weights and moments, bf16 gradients, and the
//                         bf16 working copy of the weights rewritten from the master
#include <cstdint>

#include "loom/core/bf16.hpp"

namespace loom::kernels {

struct AdamWStep {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  int64_t step = 1;  // t, counted from 1
};

void adamw_step(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWStep& s);
void adamw_step_mixed(float* master, loom::bf16* weights, const loom::bf16* grad, float* m, float* v, int64_t n,
                      const AdamWStep& s);

}  // namespace loom::kernels
