// AdamW's mixed precision: bf16 parameters keep fp32 master weights. The reference is the AdamW
// recurrence in double (PyTorch's torch.optim.AdamW formula), run independently here; the bf16
// weights must always be the rounding of the master copy, and steps far below half a bf16 ulp must
// accumulate (without a master copy the weights would never move).
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "loom/optim/adamw.hpp"
#include "support/check.hpp"

using loom::bf16;
using loom::Tensor;

namespace {

// AdamW in double: n steps with constant gradients g, from weights w.
std::vector<double> adamw_reference(std::vector<double> w, const std::vector<double>& g, int steps, double lr,
                                    double wd, double b1, double b2, double eps) {
  std::vector<double> m(w.size(), 0.0), v(w.size(), 0.0);
  for (int t = 1; t <= steps; ++t)
    for (size_t i = 0; i < w.size(); ++i) {
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      const double mh = m[i] / (1 - std::pow(b1, t)), vh = v[i] / (1 - std::pow(b2, t));
      w[i] = w[i] * (1 - lr * wd) - lr * mh / (std::sqrt(vh) + eps);
    }
  return w;
}

struct Run {
  Tensor<bf16> p;
  loom::optim::AdamW<bf16> opt;
};

}  // namespace

TEST_CASE("AdamW on bf16 parameters: fp32 master weights accumulate sub-ulp steps", "[optim][adamw][bf16]") {
  const std::vector<double> w0 = {1.0, -2.0, 0.5, 3.0, -0.25};
  const std::vector<double> g = {0.3, -1.0, 2.0, 1e-3, -0.7};
  std::vector<bf16> init;
  for (double x : w0) init.push_back(bf16(float(x)));  // all exactly representable
  Tensor<bf16> p = Tensor<bf16>::from_vector({5}, init);
  p.requires_grad_();
  std::vector<bf16> grad;
  for (double x : g) grad.push_back(bf16(float(x)));
  const double lr = 1e-4, wd = 0.05;  // each step moves a weight by ~1e-4: 1/80 of a bf16 ulp at 1.0
  loom::optim::AdamW<bf16> opt({{{{"w", p}}, wd, 1.0}}, loom::optim::AdamWOptions().betas(0.9, 0.95));
  const int steps = 200;
  for (int s = 0; s < steps; ++s) {
    p.set_grad(Tensor<bf16>::from_vector({5}, grad));
    opt.step(lr);
  }
  std::vector<double> g_used;  // the gradients as the optimizer saw them (bf16-rounded)
  for (bf16 x : grad) g_used.push_back(double(float(x)));
  const std::vector<double> want = adamw_reference(w0, g_used, steps, lr, wd, 0.9, 0.95, 1e-8);
  const auto state = opt.named_state();
  REQUIRE(state.size() == 3);
  REQUIRE(state[2].first == "w.master");
  const Tensor<float> master = state[2].second;
  // fp32 master: 200 fp32 updates of size ~1e-4 on O(1) weights; rounding ~200 * 2^-24 relative.
  loom::test::require_close(master, want, {1e-6, 2e-5});
  // The weights are the master's rounding, and they moved (by ~0.02, two bf16 ulps at 1.0).
  const std::vector<bf16> now = p.to_vector();
  const std::vector<float> m = master.to_vector();
  for (size_t i = 0; i < now.size(); ++i) {
    REQUIRE(now[i].bits == bf16(m[i]).bits);
    if (std::abs(want[i] - w0[i]) > std::abs(w0[i]) / 64) REQUIRE(now[i].bits != init[i].bits);
  }
}

TEST_CASE("AdamW on bf16 parameters: an outside write re-seeds the master copy, a loaded master is kept",
          "[optim][adamw][bf16]") {
  Tensor<bf16> p = Tensor<bf16>::from_vector({2}, std::vector<bf16>{bf16(1.0f), bf16(2.0f)});
  p.requires_grad_();
  loom::optim::AdamW<bf16> opt({{{{"w", p}}, 0.0, 1.0}}, loom::optim::AdamWOptions());
  const auto grad = Tensor<bf16>::from_vector({2}, std::vector<bf16>{bf16(1.0f), bf16(-1.0f)});
  p.set_grad(grad);
  opt.step(1e-3);
  {  // a module load or copy_state writes the weights: the next step starts from them
    loom::NoGradGuard guard;
    p.copy_(Tensor<bf16>::from_vector({2}, std::vector<bf16>{bf16(5.0f), bf16(-3.0f)}));
  }
  opt.step(1e-3);
  const std::vector<float> master = opt.named_state()[2].second.to_vector();
  REQUIRE(std::abs(master[0] - 5.0f) < 2e-3f);  // one step of ~1e-3 from the new weights
  REQUIRE(std::abs(master[1] + 3.0f) < 2e-3f);
  {  // a checkpoint load writes the master copy (and the weights): the master is kept exactly
    loom::NoGradGuard guard;
    Tensor<float>(opt.named_state()[2].second).copy_(Tensor<float>::from_vector({2}, std::vector<float>{0.123f, 4.5f}));
    p.copy_(Tensor<bf16>::from_vector({2}, std::vector<bf16>{bf16(0.123f), bf16(4.5f)}));
  }
  p.set_grad(Tensor<bf16>::zeros({2}));
  opt.step(0.0);  // lr 0: the master must still be the loaded values, not the bf16 rounding
  const std::vector<float> kept = opt.named_state()[2].second.to_vector();
  REQUIRE(kept[0] == 0.123f);
  REQUIRE(kept[1] == 4.5f);
}
