#pragma once
// Global-norm gradient clipping (torch.nn.utils.clip_grad_norm_): if the L2 norm of all gradients
// together exceeds max_norm, scale every gradient by max_norm / (norm + 1e-6). Returns the norm
// before clipping (summed in double).
// CUDA gradients: each gradient's sum of squares is a device reduction (fp32, loom/cuda/reduce.hpp)
// into one small device vector, downloaded once and summed in double; the scaling is the device
// mul_ (loom/ops/elementwise_inplace.hpp).
#include <array>
#include <cmath>
#include <vector>

#include "loom/autograd/grad_mode.hpp"
#include "loom/core/device_backend.hpp"
#include "loom/core/tensor.hpp"
#include "loom/cuda/reduce.hpp"
#include "loom/ops/elementwise_inplace.hpp"

namespace loom::optim {

template <class T, class Dev>
double clip_grad_norm(const std::vector<Tensor<T, Dev>>& params, double max_norm) {
  NoGradGuard guard;
  double sq = 0;
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    static_assert(loom::detail::cuda_backend_for<T>, "clip_grad_norm on CUDA tensors needs LOOM_WITH_CUDA");
    std::vector<Tensor<T, Dev>> grads;
    for (const auto& p : params)
      if (p.grad().defined() && p.grad().numel() > 0) grads.push_back(p.grad().dim() ? p.grad() : p.grad().reshape({1}));
    const auto partial = Tensor<float, Dev>::empty({int64_t(grads.size())});  // [n] each gradient's sum of squares
    for (size_t i = 0; i < grads.size(); ++i) {
      std::array<bool, kMaxRank> all{};
      all.fill(true);
      cuda::reduce_tensor(dtype_traits<T>::tag, cuda::ReduceOp::sum_squares, partial.data() + i, grads[i].data(),
                          grads[i].shape(), grads[i].strides(), all);
    }
    for (float v : partial.to_vector()) sq += double(v);
  } else {
    for (const auto& p : params) {
      const auto g = p.grad();
      if (!g.defined()) continue;
      for (const T& v : g.contiguous().to_vector()) sq += double(v) * double(v);
    }
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
