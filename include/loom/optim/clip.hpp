#pragma once
// Global-norm gradient clipping (torch.nn.utils.clip_grad_norm_): if the L2 norm of all gradients
// together exceeds max_norm, scale every gradient by max_norm / (norm + 1e-6). Returns the norm
// before clipping (summed in double).
// CUDA gradients: the norm is summed on the host from downloaded gradients (the CPU's sum, bit for
// bit, but one transfer of every gradient per call: to become a device reduction), and the
// scaling is the device mul_ (loom/ops/elementwise_inplace.hpp).
#include <cmath>
#include <vector>

#include "loom/autograd/grad_mode.hpp"
#include "loom/core/tensor.hpp"
#include "loom/ops/elementwise_inplace.hpp"

namespace loom::optim {

template <class T, class Dev>
double clip_grad_norm(const std::vector<Tensor<T, Dev>>& params, double max_norm) {
  NoGradGuard guard;
  double sq = 0;
  for (const auto& p : params) {
    const auto g = p.grad();
    if (!g.defined()) continue;
    for (const T& v : g.contiguous().to_vector()) sq += double(v) * double(v);
  }
  const double norm = std::sqrt(sq);
  if (max_norm > 0 && norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);
    for (const auto& p : params) {
      auto g = p.grad();
      if (!g.defined()) continue;
      if constexpr (Tensor<T, Dev>::kOnDevice) {
        mul_(g, scale);
        continue;
      }
      LOOM_CHECK(g.is_contiguous(), "clip_grad_norm: non-contiguous gradient");
      T* d = g.data();
      for (int64_t i = 0; i < g.numel(); ++i) d[i] = T(double(d[i]) * scale);
      g.bump_version();
    }
  }
  return norm;
}

}  // namespace loom::optim
