#pragma once
// AdamW (decoupled weight decay, Loshchilov & Hutter), one fused pass per parameter:
//   m = β1 m + (1-β1) g;  v = β2 v + (1-β2) g²;  p -= lr·scale·( m̂ / (sqrt(v̂) + eps) + wd·p )
// with bias-corrected m̂ = m / (1-β1^t), v̂ = v / (1-β2^t) — PyTorch's torch.optim.AdamW.
// Mixed precision: moments are float whatever T is, and bf16 parameters get fp32 master weights —
// the update runs on the master copy and the bf16 weights are its rounding, so steps smaller than
// half a bf16 ulp accumulate instead of vanishing. A write to a parameter from outside (a loaded
// checkpoint, copy_state) is noticed through its version counter and re-seeds the master copy.
// CUDA parameters step through the fused kernels of kernels/adamw.cu (loom/cuda/adamw_step.hpp),
// the same float arithmetic with the same host-computed scalars (bf16: the mixed-precision kernel
// that updates the master copy and rewrites the bf16 weights in one pass).
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "loom/autograd/grad_mode.hpp"
#include "loom/core/device_backend.hpp"
#include "loom/core/parallel.hpp"
#include "loom/cuda/adamw_step.hpp"
#include "loom/optim/param_groups.hpp"

namespace loom::optim {

struct AdamWOptions {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  AdamWOptions& with_lr(double v) { lr = v; return *this; }
  AdamWOptions& betas(double b1, double b2) { beta1 = b1; beta2 = b2; return *this; }
  AdamWOptions& with_eps(double v) { eps = v; return *this; }
};

template <class T = float, class Dev = CPU>
class AdamW {
 public:
  static constexpr bool kMaster = std::is_same_v<T, bf16>;  // fp32 master weights for bf16 parameters

  struct State {
    Tensor<float, Dev> m, v;     // same shape as the parameter
    Tensor<float, Dev> master;   // bf16 parameters: the fp32 weights (undefined otherwise)
    uint64_t param_version = 0, master_version = 0;  // both as the last step (or construction) left them
  };

  AdamW(std::vector<ParamGroup<T, Dev>> groups, AdamWOptions opt) : options(opt), groups_(std::move(groups)) {
    for (auto& g : groups_)
      for (auto& [name, p] : g.params) {
        LOOM_CHECK(p.is_contiguous(), "AdamW: parameter '", name, "' is not contiguous");
        state_.push_back({Tensor<float, Dev>::zeros(p.shape()), Tensor<float, Dev>::zeros(p.shape()), {}, 0, 0});
        if constexpr (kMaster) seed_master(p, state_.back());
      }
  }

  // One update with learning rate `lr` (schedules set it per step). Parameters without a gradient
  // are skipped, as PyTorch does.
  void step(double lr) {
    NoGradGuard guard;
    ++steps_;
    const double bc1 = 1 - std::pow(options.beta1, double(steps_)), bc2 = 1 - std::pow(options.beta2, double(steps_));
    size_t k = 0;
    for (auto& g : groups_) {
      const double step_lr = lr * g.lr_scale;
      for (auto& [name, p] : g.params) {
        State& s = state_[k++];
        const Tensor<T, Dev> grad = p.grad();
        if (!grad.defined()) continue;
        const Tensor<T, Dev> gc = grad.contiguous();
        if constexpr (kMaster) {
          // The weights were written from outside (copy_state, a module load) and the master copy
          // was not: follow the weights. A checkpoint load writes the master copy too: keep it.
          if (p.version() != s.param_version && s.master.version() == s.master_version) seed_master(p, s);
        }
        if constexpr (Tensor<T, Dev>::kOnDevice)
          update_on_device(p, gc, s, step_lr, g.weight_decay);
        else
          update(p.data(), gc.data(), s.m.data(), s.v.data(), kMaster ? s.master.data() : nullptr, p.numel(), step_lr,
                 g.weight_decay, bc1, bc2);
        p.bump_version();
        if constexpr (kMaster) {
          s.master.bump_version();
          s.param_version = p.version();
          s.master_version = s.master.version();
        }
      }
    }
  }

  void zero_grad() {
    for (auto& g : groups_)
      for (auto& [name, p] : g.params) p.zero_grad();
  }

  int64_t steps() const { return steps_; }
  void set_steps(int64_t s) { steps_ = s; }
  std::vector<ParamGroup<T, Dev>>& groups() { return groups_; }
  // Moments with names "<param>.exp_avg" / "<param>.exp_avg_sq", and for bf16 parameters the
  // master weights "<param>.master" (for checkpoints; a checkpoint restores them exactly).
  std::vector<std::pair<std::string, Tensor<float, Dev>>> named_state() const {
    std::vector<std::pair<std::string, Tensor<float, Dev>>> out;
    size_t k = 0;
    for (auto& g : groups_)
      for (auto& [name, p] : g.params) {
        const State& s = state_[k++];
        out.emplace_back(name + ".exp_avg", s.m);
        out.emplace_back(name + ".exp_avg_sq", s.v);
        if constexpr (kMaster) out.emplace_back(name + ".master", s.master);
      }
    return out;
  }

  AdamWOptions options;

 private:
  // The master copy := the bf16 weights (in place, so checkpoint entries stay valid).
  static void seed_master(const Tensor<T, Dev>& p, State& s) {
    NoGradGuard guard;
    if (!s.master.defined()) s.master = Tensor<float, Dev>::empty(p.shape());
    s.master.copy_(p);
    s.param_version = p.version();
    s.master_version = s.master.version();
  }

  void update_on_device(Tensor<T, Dev>& p, const Tensor<T, Dev>& g, State& s, double lr, double wd) const {
    static_assert(loom::detail::cuda_backend_for<T>, "AdamW on CUDA parameters needs LOOM_WITH_CUDA (link loom::kernels)");
    const cuda::AdamWScalars scalars{lr, options.beta1, options.beta2, options.eps, wd, steps_};
    if constexpr (std::is_same_v<T, float>) {
      cuda::adamw_update(p.data(), g.data(), s.m.data(), s.v.data(), p.numel(), scalars);
    } else if constexpr (std::is_same_v<T, bf16>) {
      cuda::adamw_update_mixed(s.master.data(), p.data(), g.data(), s.m.data(), s.v.data(), p.numel(), scalars);
    } else {
      loom::detail::fail("AdamW: ", dtype_traits<T>::name, " parameters are not supported on CUDA");
    }
  }

  // master: bf16 parameters' fp32 weights (the update runs there; p gets its rounding), else null.
  void update(T* p, const T* g, float* m, float* v, float* master, int64_t n, double lr, double wd, double bc1,
              double bc2) const {
    const float b1 = float(options.beta1), b2 = float(options.beta2), eps = float(options.eps);
    const float step = float(lr / bc1), inv_sqrt_bc2 = float(1.0 / std::sqrt(bc2)), decay = float(1.0 - lr * wd);
    parallel_for(0, n, 1 << 14, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const float gi = float(g[i]);
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        const float denom = std::sqrt(v[i]) * inv_sqrt_bc2 + eps;
        if (master) {
          master[i] = master[i] * decay - step * m[i] / denom;
          p[i] = T(master[i]);
        } else {
          p[i] = T(float(p[i]) * decay - step * m[i] / denom);
        }
      }
    });
  }

  std::vector<ParamGroup<T, Dev>> groups_;
  std::vector<State> state_;
  int64_t steps_ = 0;
};

}  // namespace loom::optim
