#pragma once
// Learning-rate schedule per step: linear warm-up from 0, then half-cosine down to min_lr (MAE).
#include <cmath>
#include <cstdint>

namespace loom::optim {

struct WarmupCosine {
  double base_lr;
  int64_t warmup_steps;
  int64_t total_steps;
  double min_lr = 0.0;

  double operator()(int64_t step) const {
    if (warmup_steps > 0 && step < warmup_steps) return base_lr * double(step) / double(warmup_steps);
    const double span = double(std::max<int64_t>(total_steps - warmup_steps, 1));
    const double progress = std::min(1.0, double(step - warmup_steps) / span);
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress));
  }
};

}  // namespace loom::optim
