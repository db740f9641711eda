#pragma once
// The MAE reconstruction loss over modality groups (DESIGN §1 "Loss"):
//   per patch     e[b, l] = mean_P (pred_g[b, l] - target_g[b, l])²
//   per group     loss_g = Σ_{b,l} m[b, g·L + l] · e[b, l] / Σ_{b,l} m[b, g·L + l]   (m: 1 = hidden)
//   total         mean of loss_g over the groups that have hidden tokens in the batch
// so that 2 SAR channels are not swamped by 12 optical ones. With norm_pix, each target patch is
// first normalized: (t - mean) / sqrt(var + 1e-6), var unbiased (as the MAE reference).
// Forward and the gradient w.r.t. every pred_g are computed in one pass; the gradient is stored and
// handed to autograd, scaled by the incoming gradient.
//
// CUDA tensors (float, bf16): each group runs the fused kernel of kernels/masked_mse.cu (fp32 sums
// in a fixed order instead of the CPU's double: deterministic, within fp32 rounding of the CPU). The
// mask [B, G·L] is read on the host to count hidden tokens (it decides which groups count), one
// small download per call, and each group's loss is read back. mean_visible_baseline, a no-grad
// diagnostic, runs on host copies.
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "loom/autograd/engine.hpp"
#include "loom/core/device_backend.hpp"
#include "loom/core/parallel.hpp"
#include "loom/core/tensor.hpp"
#include "loom/cuda/mae_tokens.hpp"
#include "loom/ops/elementwise.hpp"

namespace loom::mask {

template <class T, class Dev = CPU>
struct MaskedLoss {
  Tensor<T, Dev> total;            // scalar, differentiable w.r.t. the predictions
  std::vector<double> per_group;   // loss_g (0 for a group without hidden tokens)
  std::vector<int64_t> hidden;     // number of hidden tokens of each group in the batch
};

// A target patch normalized in place to zero mean and unit (unbiased) variance.
template <class C>
void normalize_patch(C* t, int64_t P) {
  double mean = 0;
  for (int64_t i = 0; i < P; ++i) mean += double(t[i]);
  mean /= double(P);
  double var = 0;
  for (int64_t i = 0; i < P; ++i) var += (double(t[i]) - mean) * (double(t[i]) - mean);
  var = P > 1 ? var / double(P - 1) : 0.0;
  const double inv = 1.0 / std::sqrt(var + 1e-6);
  for (int64_t i = 0; i < P; ++i) t[i] = C((double(t[i]) - mean) * inv);
}

// The gradient node shared by both devices: the stored d total / d pred_g, scaled by the incoming
// gradient.
template <class T, class Dev>
void record_masked_loss(MaskedLoss<T, Dev>& out, const std::vector<Tensor<T, Dev>>& preds,
                        std::vector<Tensor<T, Dev>> grads) {
  std::vector<loom::detail::ImplPtr> inputs;
  bool any = false;
  for (const auto& p : preds) {
    inputs.push_back(p.impl());
    any = any || autograd::needs_grad(p.impl());
  }
  if (any && autograd::grad_enabled()) {
    autograd::record(std::string("MaskedGroupLossBackward"), out.total, inputs,
                     [grads = std::move(grads)](const Tensor<T, Dev>& g) {
                       const double scale = double(compute_t<T>(g.item()));
                       std::vector<Tensor<T, Dev>> out;
                       for (const auto& gr : grads) out.push_back(scale == 1.0 ? gr : mul(gr, scale));
                       return out;
                     });
  }
}

// masked_group_loss on CUDA tensors (shapes already checked): kernels/masked_mse.cu per group.
template <class T, class Dev>
MaskedLoss<T, Dev> masked_group_loss_device(const std::vector<Tensor<T, Dev>>& preds,
                                            const std::vector<Tensor<T, Dev>>& targets, const Tensor<float, Dev>& mask,
                                            bool norm_pix) {
  static_assert(loom::detail::cuda_backend_for<T>, "masked_group_loss on CUDA tensors needs LOOM_WITH_CUDA");
  const int G = int(preds.size());
  const int64_t B = preds[0].size(0), L = preds[0].size(1);
  const Tensor<float, Dev> m = mask.contiguous();  // [B, G·L]
  const std::vector<float> host_mask = m.to_vector();
  MaskedLoss<T, Dev> out;
  out.per_group.assign(size_t(G), 0.0);
  out.hidden.assign(size_t(G), 0);
  int active = 0;
  for (int g = 0; g < G; ++g) {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t l = 0; l < L; ++l) out.hidden[size_t(g)] += host_mask[size_t(b * G * L + g * L + l)] != 0.0f;
    active += out.hidden[size_t(g)] > 0;
  }
  std::vector<Tensor<T, Dev>> grads(static_cast<size_t>(G));  // d total / d pred_g
  double total = 0;
  for (int g = 0; g < G; ++g) {
    const Tensor<T, Dev> pred = preds[size_t(g)].contiguous(), tgt = targets[size_t(g)].contiguous();
    if (out.hidden[size_t(g)] == 0) {
      grads[size_t(g)] = Tensor<T, Dev>::zeros(pred.shape());
      continue;
    }
    grads[size_t(g)] = Tensor<T, Dev>::empty(pred.shape());
    const Tensor<float, Dev> mask_g = m.narrow(1, g * L, L).contiguous();  // [B, L]: one weight per patch row
    const float loss = cuda::masked_mse(dtype_traits<T>::tag, pred.data(), tgt.data(), mask_g.data(), B * L,
                                        pred.size(2), norm_pix, float(1.0 / double(active)), grads[size_t(g)].data());
    out.per_group[size_t(g)] = double(loss);
    total += double(loss) / double(active);
  }
  out.total = Tensor<T, Dev>::scalar(T(static_cast<compute_t<T>>(total)));
  record_masked_loss(out, preds, std::move(grads));
  return out;
}

// preds[g], targets[g]: [B, L, P_g]; mask: [B, G·L] (1 = hidden).
template <class T, class Dev>
MaskedLoss<T, Dev> masked_group_loss(const std::vector<Tensor<T, Dev>>& preds, const std::vector<Tensor<T, Dev>>& targets,
                                     const Tensor<float, Dev>& mask, bool norm_pix) {
  const int G = int(preds.size());
  LOOM_CHECK(G > 0 && targets.size() == preds.size(), "masked_group_loss: ", preds.size(), " predictions for ",
             targets.size(), " targets");
  const int64_t B = preds[0].size(0), L = preds[0].dim() == 3 ? preds[0].size(1) : 0;
  LOOM_CHECK(mask.dim() == 2 && mask.size(0) == B && mask.size(1) == G * L, "masked_group_loss: mask of shape ",
             mask.shape(), " does not match ", G, " groups of predictions ", preds[0].shape());
  for (int g = 0; g < G; ++g) {
    LOOM_CHECK(preds[size_t(g)].dim() == 3 && preds[size_t(g)].size(0) == B && preds[size_t(g)].size(1) == L,
               "masked_group_loss: prediction of group ", g, " has shape ", preds[size_t(g)].shape(), ", expected [", B,
               ", ", L, ", P]");
    LOOM_CHECK(targets[size_t(g)].shape() == preds[size_t(g)].shape(), "masked_group_loss: target of group ", g,
               " has shape ", targets[size_t(g)].shape(), ", prediction ", preds[size_t(g)].shape());
  }
  if constexpr (Tensor<T, Dev>::kOnDevice) return masked_group_loss_device(preds, targets, mask, norm_pix);
  const Tensor<float, Dev> m = mask.contiguous();
  MaskedLoss<T, Dev> out;
  out.per_group.assign(size_t(G), 0.0);
  out.hidden.assign(size_t(G), 0);
  std::vector<Tensor<T, Dev>> grads(static_cast<size_t>(G));  // d total / d pred_g
  int active = 0;
  for (int g = 0; g < G; ++g) {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t l = 0; l < L; ++l) out.hidden[size_t(g)] += m.data()[b * G * L + g * L + l] != 0.0f;
    active += out.hidden[size_t(g)] > 0;
  }
  double total = 0;
  for (int g = 0; g < G; ++g) {
    const Tensor<T, Dev> pred = preds[size_t(g)].contiguous(), tgt = targets[size_t(g)].contiguous();
    const int64_t P = pred.size(2);
    grads[size_t(g)] = Tensor<T, Dev>::zeros(pred.shape());
    if (out.hidden[size_t(g)] == 0) continue;
    double mask_sum = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t l = 0; l < L; ++l) mask_sum += m.data()[b * G * L + g * L + l];
    // d total / d pred = (1/active) · (m / mask_sum) · 2 (pred - t) / P
    const double coef = 2.0 / (double(active) * mask_sum * double(P));
    std::vector<double> row_loss(static_cast<size_t>(B * L), 0.0);
    const T *pp = pred.data(), *pt = tgt.data();
    T* pgrad = grads[size_t(g)].data();
    parallel_for(0, B * L, 16, [&](int64_t r0, int64_t r1) {
      std::vector<double> t(static_cast<size_t>(P));
      for (int64_t r = r0; r < r1; ++r) {
        const float w = m.data()[(r / L) * G * L + g * L + r % L];
        if (w == 0.0f) continue;
        for (int64_t i = 0; i < P; ++i) t[size_t(i)] = double(compute_t<T>(pt[r * P + i]));
        if (norm_pix) normalize_patch(t.data(), P);
        double se = 0;
        for (int64_t i = 0; i < P; ++i) {
          const double d = double(compute_t<T>(pp[r * P + i])) - t[size_t(i)];
          se += d * d;
          pgrad[r * P + i] = T(static_cast<compute_t<T>>(coef * double(w) * d));
        }
        row_loss[size_t(r)] = double(w) * se / double(P);
      }
    });
    double sum = 0;
    for (double v : row_loss) sum += v;  // fixed order: deterministic
    out.per_group[size_t(g)] = sum / mask_sum;
    total += out.per_group[size_t(g)] / double(active);
  }
  out.total = Tensor<T, Dev>::scalar(T(static_cast<compute_t<T>>(total)));
  record_masked_loss(out, preds, std::move(grads));
  return out;
}

// The loss of a trivial predictor: each hidden patch of a group predicted as the mean of the same
// sample's visible patches of that group (zeros where a group has no visible patch, e.g. a dropped
// modality, which is the dataset mean after normalization). A trained MAE must do far better.
template <class T, class Dev>
MaskedLoss<T, Dev> mean_visible_baseline(const std::vector<Tensor<T, Dev>>& targets, const Tensor<float, Dev>& mask,
                                         bool norm_pix) {
  NoGradGuard guard;
  if constexpr (Tensor<T, Dev>::kOnDevice) {  // a diagnostic: computed on host copies
    std::vector<Tensor<T>> host;
    for (const auto& t : targets) host.push_back(t.template to_device<CPU>());
    MaskedLoss<T> r = mean_visible_baseline(host, mask.template to_device<CPU>(), norm_pix);
    return {r.total.template to_device<Dev>(), std::move(r.per_group), std::move(r.hidden)};
  }
  const int G = int(targets.size());
  // Check the shapes before reading the mask (masked_group_loss re-checks everything).
  for (int g = 0; g < G; ++g)
    LOOM_CHECK(targets[size_t(g)].dim() == 3 && mask.dim() == 2 && mask.size(0) == targets[size_t(g)].size(0) &&
                   mask.size(1) == G * targets[size_t(g)].size(1),
               "mean_visible_baseline: mask of shape ", mask.shape(), " does not match ", G, " groups of targets ",
               targets[size_t(g)].shape());
  const Tensor<float, Dev> m = mask.contiguous();  // indexed as dense [B, G·L] below
  std::vector<Tensor<T, Dev>> preds;
  for (int g = 0; g < G; ++g) {
    const Tensor<T, Dev> t = targets[size_t(g)].contiguous();
    const int64_t B = t.size(0), L = t.size(1), P = t.size(2);
    Tensor<T, Dev> pred = Tensor<T, Dev>::zeros(t.shape());
    std::vector<double> patch(static_cast<size_t>(P));
    for (int64_t b = 0; b < B; ++b) {
      std::vector<double> mean(static_cast<size_t>(P), 0.0);
      int64_t n = 0;
      for (int64_t l = 0; l < L; ++l) {
        if (m.data()[b * G * L + g * L + l] != 0.0f) continue;
        for (int64_t i = 0; i < P; ++i) patch[size_t(i)] = double(compute_t<T>(t.data()[(b * L + l) * P + i]));
        if (norm_pix) normalize_patch(patch.data(), P);
        for (int64_t i = 0; i < P; ++i) mean[size_t(i)] += patch[size_t(i)];
        ++n;
      }
      for (int64_t l = 0; l < L; ++l)
        for (int64_t i = 0; i < P; ++i)
          pred.data()[(b * L + l) * P + i] = T(static_cast<compute_t<T>>(n ? mean[size_t(i)] / double(n) : 0.0));
    }
    preds.push_back(pred);
  }
  return masked_group_loss(preds, targets, mask, norm_pix);
}

}  // namespace loom::mask
