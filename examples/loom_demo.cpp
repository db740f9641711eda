// loom_demo: a short tour of the tensor, autograd, module and optimizer API. It fits a small MLP
// to a noisy 2-d function and prints the loss as it falls — the main job until the MAE trainers
// take over (see README).
#include <cmath>
#include <cstdio>

#include "loom/loom.hpp"

int main() {
  using loom::Tensor;
  loom::Generator gen(42);

  // Data: y = sin(3 x0) · cos(2 x1) + noise, 1024 points in [-1, 1]².
  const int64_t N = 1024;
  const Tensor<float> x = loom::uniform<float>({N, 2}, -1.0, 1.0, gen);  // [N, 2]
  Tensor<float> y = Tensor<float>::empty({N, 1});                        // [N, 1]
  const Tensor<float> noise = loom::randn<float>({N}, gen);
  for (int64_t i = 0; i < N; ++i)
    y.data()[i] = std::sin(3 * x.at({i, 0})) * std::cos(2 * x.at({i, 1})) + 0.05f * noise.data()[i];

  // Model: 2 -> 64 -> GELU -> 64 -> GELU -> 1, built from loom::nn modules.
  loom::nn::Linear<float> fc1(loom::nn::LinearOptions(2, 64), gen), fc2(loom::nn::LinearOptions(64, 64), gen),
      fc3(loom::nn::LinearOptions(64, 1), gen);
  std::vector<std::pair<std::string, Tensor<float>>> params;
  for (auto* layer : {&fc1, &fc2, &fc3})
    for (auto& p : layer->named_parameters()) params.push_back(p);
  loom::optim::AdamW<float> opt(loom::optim::make_param_groups(params, 1e-4), loom::optim::AdamWOptions());
  const loom::optim::WarmupCosine schedule{3e-3, 20, 400};

  std::printf("loom demo: fitting y = sin(3 x0) cos(2 x1) with a 2-64-64-1 GELU MLP (%lld parameters)\n",
              (long long)(fc1.parameter_count() + fc2.parameter_count() + fc3.parameter_count()));
  double first = 0, last = 0;
  for (int step = 0; step <= 400; ++step) {
    const Tensor<float> pred = fc3.forward(loom::gelu(fc2.forward(loom::gelu(fc1.forward(x)))));  // [N, 1]
    const Tensor<float> loss = loom::mean(loom::square(pred - y));
    opt.zero_grad();
    loss.backward();
    opt.step(schedule(step));
    last = loss.item();
    if (step == 0) first = last;
    if (step % 50 == 0) std::printf("  step %3d  loss %.5f  lr %.2e\n", step, last, schedule(step));
  }
  std::printf("loss fell from %.4f to %.4f (noise floor %.4f); peak memory %.1f KiB\n", first, last, 0.05 * 0.05,
              double(loom::memory_stats().peak_bytes) / 1024.0);
  return last < first ? 0 : 1;
}
