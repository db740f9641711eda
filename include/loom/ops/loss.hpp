#pragma once
// Losses with fused, closed-form backward.
//   binary_cross_entropy_with_logits(x, y, pos_weight):
//     l = -(w_p · y · log σ(x) + (1 - y) · log(1 - σ(x)))   per element, mean over all elements
//   computed stably as  l = (1 - y) x + (1 + (w_p - 1) y) · softplus(-x),  softplus(z) = log(1 + e^z)
//   (PyTorch's formulation); d l / d x = (σ(x)(1 + (w_p - 1) y) - w_p y) / N.
//   pos_weight [C] broadcasts over the last dimension (undefined: 1).
#include <cmath>

#include "loom/autograd/engine.hpp"
#include "loom/core/parallel.hpp"
#include "loom/core/tensor.hpp"

namespace loom {

template <class T, class Dev>
Tensor<T, Dev> binary_cross_entropy_with_logits(const Tensor<T, Dev>& logits_in, const Tensor<T, Dev>& targets_in,
                                                const Tensor<T, Dev>& pos_weight_in = {}) {
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    // Logits of a multi-label head are [B, classes], a few KB: the loss runs on host copies and
    // its value comes back through to_device, whose backward uploads the gradient. The trainer
    // reads the loss value every step anyway, so a device kernel would save no synchronization.
    const Tensor<T> pos_weight = pos_weight_in.defined() ? pos_weight_in.template to_device<CPU>() : Tensor<T>();
    return binary_cross_entropy_with_logits(logits_in.template to_device<CPU>(), targets_in.template to_device<CPU>(),
                                            pos_weight)
        .template to_device<Dev>();
  }
  LOOM_CHECK(logits_in.shape() == targets_in.shape(), "binary_cross_entropy_with_logits: logits of shape ",
             logits_in.shape(), " and targets of shape ", targets_in.shape(), " differ");
  const int64_t N = logits_in.numel(), C = logits_in.dim() ? logits_in.size(-1) : 1;
  LOOM_CHECK(!pos_weight_in.defined() || (pos_weight_in.dim() == 1 && pos_weight_in.size(0) == C),
             "binary_cross_entropy_with_logits: pos_weight of shape ", pos_weight_in.shape(), " does not match [", C,
             "] (the last dimension of logits ", logits_in.shape(), ")");
  LOOM_CHECK(N > 0, "binary_cross_entropy_with_logits: empty input of shape ", logits_in.shape());
  using Cm = compute_t<T>;
  const Tensor<T, Dev> x = logits_in.contiguous(), y = targets_in.contiguous();
  const Tensor<T, Dev> pw = pos_weight_in.defined() ? pos_weight_in.contiguous() : Tensor<T, Dev>();
  const T *px = x.data(), *py = y.data(), *pp = pw.defined() ? pw.data() : nullptr;
  // Per-chunk partial sums in double, combined in chunk order: deterministic for any thread count.
  const int64_t chunk = 4096, n_chunks = (N + chunk - 1) / chunk;
  std::vector<double> partial(static_cast<size_t>(n_chunks), 0.0);
  parallel_for(0, n_chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      double s = 0;
      for (int64_t i = c * chunk; i < std::min(N, (c + 1) * chunk); ++i) {
        const double xi = double(Cm(px[i])), yi = double(Cm(py[i])), wp = pp ? double(Cm(pp[i % C])) : 1.0;
        const double softplus_neg = std::max(-xi, 0.0) + std::log1p(std::exp(-std::abs(xi)));  // log(1 + e^-x)
        s += (1 - yi) * xi + (1 + (wp - 1) * yi) * softplus_neg;
      }
      partial[size_t(c)] = s;
    }
  });
  double total = 0;
  for (double s : partial) total += s;
  Tensor<T, Dev> out = Tensor<T, Dev>::scalar(T(Cm(total / double(N))));
  if (autograd::should_record(logits_in.impl())) {
    autograd::record("BinaryCrossEntropyWithLogitsBackward", out, {logits_in.impl(), targets_in.impl(), pos_weight_in.impl()},
                     [sx = autograd::SavedTensor<T, Dev>(x, "binary_cross_entropy_with_logits"),
                      sy = autograd::SavedTensor<T, Dev>(y, "binary_cross_entropy_with_logits"),
                      sw = autograd::SavedTensor<T, Dev>(pw, "binary_cross_entropy_with_logits"), N, C,
                      shape = logits_in.shape()](const Tensor<T, Dev>& g) {
                       const Tensor<T, Dev>& x = sx.get();
                       const Tensor<T, Dev>& y = sy.get();
                       const Tensor<T, Dev>& w = sw.get();
                       const double scale = double(Cm(g.item())) / double(N);
                       Tensor<T, Dev> gx = Tensor<T, Dev>::empty(shape);
                       const T *px = x.data(), *py = y.data(), *pw = w.defined() ? w.data() : nullptr;
                       T* pg = gx.data();
                       parallel_for(0, N, 1 << 14, [&](int64_t i0, int64_t i1) {
                         for (int64_t i = i0; i < i1; ++i) {
                           const double xi = double(Cm(px[i])), yi = double(Cm(py[i])), wp = pw ? double(Cm(pw[i % C])) : 1.0;
                           const double sig = xi >= 0 ? 1 / (1 + std::exp(-xi)) : std::exp(xi) / (1 + std::exp(xi));
                           pg[i] = T(Cm(scale * (sig * (1 + (wp - 1) * yi) - wp * yi)));
                         }
                       });
                       // Targets and positive weights are data here: no gradient.
                       return std::vector<Tensor<T, Dev>>{gx, Tensor<T, Dev>(), Tensor<T, Dev>()};
                     });
  }
  return out;
}

}  // namespace loom
