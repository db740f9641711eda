// The whole MAE training step on the GPU: ten steps of pre-training (forward, masked loss,
// backward, global-norm clipping, AdamW) on CUDA tensors follow the CPU's loss trajectory, from
// the same weights (nn::copy_state), batches and mask plans. SKIPs without a usable GPU.
//
// Tolerance: fp32 on both sides, TF32 off; the device sums in other orders (cuBLAS tiles, tree
// reductions) than the CPU, so gradients differ by float rounding (~1e-6 relative) from the first
// step on. AdamW's step for a weight is lr·m/(sqrt(v)+eps): a relative change e of the gradient
// changes it by about lr·e (gradients far below eps = 1e-8 move nothing). Ten steps at lr = 1e-4
// thus keep every weight within ~1e-9 of the CPU's unless the rounding is amplified; the
// assertions leave four orders of magnitude for that (weights 1e-5 + 1e-3 relative, losses 1e-4
// relative) and would still catch any real error (a wrong gradient moves weights by ~lr per step).
#include <catch2/catch.hpp>

#include <cmath>

#include "loom/loom.hpp"
#include "support/check.hpp"
#include "support/gpu.hpp"

using loom::CPU;
using loom::CUDA;
using loom::Tensor;

namespace {

loom::models::MaeConfig small_mae() {
  loom::models::MaeConfig cfg;
  cfg.encoder.groups = {{"s1", 2}, {"s2", 5}};
  cfg.encoder.img_size = 24;
  cfg.encoder.patch = 4;  // L = 36 locations, T = 72 tokens
  cfg.encoder.dim = 48;
  cfg.encoder.depth = 2;
  cfg.encoder.heads = 3;  // head dim 16
  cfg.decoder_dim = 32;
  cfg.decoder_depth = 1;
  cfg.decoder_heads = 2;
  return cfg;
}

// One training run of `steps` steps on device Dev; returns the loss of each step.
template <class Dev>
std::vector<double> train(loom::models::MaskedAutoencoder<float, Dev>& model, int steps) {
  using namespace loom;
  const mask::Strategy strategy = mask::parse_strategy("disjoint(0.75)");
  optim::AdamW<float, Dev> opt(optim::make_param_groups(model.named_parameters(), 0.05),
                               optim::AdamWOptions().with_lr(1e-4).betas(0.9, 0.95));
  const auto params = model.parameters();
  const int64_t B = 5, S = model.config.img_size, L = model.config.locations();
  std::vector<double> losses;
  // One batch and mask throughout: the loss of a fixed objective must fall step by step.
  Generator data(1000);
  const auto s1 = uniform<float, CPU>({B, 2, S, S}, -1.0, 1.0, data).template to_device<Dev>();  // [B, 2, S, S]
  const auto s2 = uniform<float, CPU>({B, 5, S, S}, -1.0, 1.0, data).template to_device<Dev>();  // [B, 5, S, S]
  const auto plan = mask::make_mask_plan(strategy, B, 2, L, 7, 0).template to_device<Dev>();
  for (int step = 0; step < steps; ++step) {
    opt.zero_grad();
    const auto out = model.forward({s1, s2}, plan);
    losses.push_back(double(out.loss.total.item()));
    out.loss.total.backward();
    optim::clip_grad_norm(params, 1.0);
    opt.step(1e-4);
  }
  return losses;
}

}  // namespace

TEST_CASE("ten MAE pre-training steps on CUDA follow the CPU's loss trajectory", "[cuda][mae]") {
  REQUIRE_GPU();
  loom::Generator g_cpu(42), g_dev(43);
  loom::models::MaskedAutoencoder<float, CPU> cpu(small_mae(), g_cpu);
  loom::models::MaskedAutoencoder<float, CUDA> dev(small_mae(), g_dev);
  loom::nn::copy_state(cpu, dev);
  const auto initial = cpu.state_dict();
  const std::vector<double> want = train(cpu, 10);
  const std::vector<double> got = train(dev, 10);
  loom::test::require_close(got, want, {0, 1e-4});
  for (size_t i = 1; i < want.size(); ++i) REQUIRE(want[i] < want[i - 1]);  // it trains: not a flat line

  // The trained device weights come back equal to the CPU's. One exception: the key third of each
  // attention's qkv bias adds q·b_k to every score of a query alike, which softmax cancels, so its
  // exact gradient is zero and both devices see only their own rounding noise (~1e-9). AdamW
  // normalizes that noise into steps of up to lr, so those weights are checked against that bound
  // on both devices instead of against each other.
  loom::models::MaskedAutoencoder<float, CPU> back(small_mae(), g_dev);
  loom::nn::copy_state(dev, back);
  const auto a = back.state_dict(), b = cpu.state_dict();
  // Per step |m_hat| / sqrt(v_hat) <= sqrt(sum_k w1_k^2 / w2_k) (Cauchy-Schwarz over the two moving
  // averages' weights), at most 1.0115 in ten steps with betas (0.9, 0.95); biases have no decay.
  const double max_drift = 10 * 1e-4 * 1.0115;
  for (size_t i = 0; i < a.size(); ++i) {
    INFO(a[i].first);
    std::vector<double> ours = loom::test::to_double(a[i].second), ref = loom::test::to_double(b[i].second);
    if (a[i].first.ends_with("attn.qkv.bias")) {
      const size_t dim = ours.size() / 3;  // [q | k | v]
      const std::vector<double> start = loom::test::to_double(initial[i].second);
      for (size_t j = dim; j < 2 * dim; ++j) {
        INFO("key bias " << j - dim);
        REQUIRE(std::abs(ours[j] - start[j]) <= max_drift);
        REQUIRE(std::abs(ref[j] - start[j]) <= max_drift);
      }
      ours.erase(ours.begin() + dim, ours.begin() + 2 * dim);
      ref.erase(ref.begin() + dim, ref.begin() + 2 * dim);
    }
    loom::test::require_close(ours, ref, {1e-5, 1e-3});
  }
}

TEST_CASE("BCE with logits on CUDA tensors: the CPU's value and gradient", "[cuda][loss]") {
  REQUIRE_GPU();
  loom::Generator gen(5);
  const Tensor<float> x = loom::uniform<float, CPU>({7, 19}, -4.0, 4.0, gen);                      // [7, 19]
  const Tensor<float> y = loom::bernoulli<CPU>({7, 19}, 0.3, gen).to<float>();                     // [7, 19]
  const Tensor<float> w = loom::uniform<float, CPU>({19}, 0.5, 3.0, gen);                          // [19]
  Tensor<float> xc = x.detach().requires_grad_();
  Tensor<float, CUDA> xd = x.to_device<CUDA>().detach().requires_grad_();
  const Tensor<float> lc = loom::binary_cross_entropy_with_logits(xc, y, w);
  const Tensor<float, CUDA> ld =
      loom::binary_cross_entropy_with_logits(xd, y.to_device<CUDA>(), w.to_device<CUDA>());
  lc.backward();
  ld.backward();
  REQUIRE(ld.item() == lc.item());  // the same host computation
  loom::test::require_close(xd.grad(), loom::test::to_double(xc.grad()), {0, 0});
}
