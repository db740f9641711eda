// Overhead of the autograd tape: forward + backward of a 12-block MLP (batch 3200, widths
// 192 -> 768 -> 192, GELU) through autograd, against the same kernels called by hand without
// autograd (a hand-written backward). Alternating A/B repeats, medians, ratio = autograd / manual
// (target <= 1.10). Usage: bench_autograd [--reps N] [--batch B] [--csv FILE]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "loom/loom.hpp"

using loom::Tensor;
using Clock = std::chrono::steady_clock;

struct Mlp {
  std::vector<Tensor<float>> w1, b1, w2, b2;  // [768, 192], [768], [192, 768], [192]
};

static Mlp make_mlp(int depth, int64_t d, int64_t h) {
  loom::Generator gen(1);
  Mlp m;
  for (int i = 0; i < depth; ++i) {
    m.w1.push_back((loom::randn<float>({h, d}, gen) * (1 / std::sqrt(double(d)))).detach().requires_grad_());
    m.b1.push_back(Tensor<float>::zeros({h}).requires_grad_());
    m.w2.push_back((loom::randn<float>({d, h}, gen) * (1 / std::sqrt(double(h)))).detach().requires_grad_());
    m.b2.push_back(Tensor<float>::zeros({d}).requires_grad_());
  }
  return m;
}

// Autograd: the graph records every op; backward() walks it.
static void step_autograd(Mlp& m, const Tensor<float>& x0) {
  Tensor<float> x = x0;
  for (size_t i = 0; i < m.w1.size(); ++i) x = loom::linear(loom::gelu(loom::linear(x, m.w1[i], m.b1[i])), m.w2[i], m.b2[i]);
  loom::mean(loom::square(x)).backward();
}

// Manual: the same kernels under NoGradGuard, activations kept by hand, backward written out.
static void step_manual(Mlp& m, const Tensor<float>& x0, std::vector<Tensor<float>>& grads) {
  loom::NoGradGuard no_grad;
  const size_t depth = m.w1.size();
  std::vector<Tensor<float>> xs{x0}, hs, as;  // block inputs, pre-activations, activations
  for (size_t i = 0; i < depth; ++i) {
    hs.push_back(loom::linear(xs.back(), m.w1[i], m.b1[i]));  // [B, 768]
    as.push_back(loom::gelu(hs.back()));                      // [B, 768]
    xs.push_back(loom::linear(as.back(), m.w2[i], m.b2[i]));  // [B, 192]
  }
  const double n = double(xs.back().numel());
  Tensor<float> dy = xs.back() * (2.0 / n);  // d mean(y²) / dy
  grads.clear();
  for (size_t k = depth; k-- > 0;) {
    grads.push_back(loom::matmul(dy.transpose(0, 1), as[k]));  // dW2 [192, 768]
    grads.push_back(loom::sum(dy, {0}));                        // db2
    Tensor<float> da = loom::matmul(dy, m.w2[k]);              // [B, 768]
    // GELU backward with the very kernel autograd's GeluBackward runs, so only the tape differs.
    const float* h = hs[k].data();
    Tensor<float> dh = Tensor<float>::empty(da.shape());  // [B, 768]
    const float* g = da.data();
    float* out = dh.data();
    loom::parallel_for(0, da.numel(), 1 << 14, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; i += loom::detail::kGeluBlock) {
        const int64_t n = std::min<int64_t>(loom::detail::kGeluBlock, i1 - i);
        loom::detail::gelu_grad_block(h + i, g + i, out + i, n, loom::GeluApprox::none);
      }
    });
    da = dh;
    grads.push_back(loom::matmul(da.transpose(0, 1), xs[k]));  // dW1 [768, 192]
    grads.push_back(loom::sum(da, {0}));                        // db1
    dy = loom::matmul(da, m.w1[k]);                            // [B, 192]
  }
}

int main(int argc, char** argv) {
  int reps = 7;
  int64_t batch = 3200;
  std::string csv = "bench_autograd.csv";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--batch")) batch = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--csv")) csv = argv[i + 1];
  }
  Mlp m = make_mlp(12, 192, 768);
  loom::Generator gen(2);
  const Tensor<float> x = loom::randn<float>({batch, 192}, gen);  // [B, 192]
  std::vector<Tensor<float>> grads;
  auto time = [](auto&& fn) {
    const auto t0 = Clock::now();
    fn();
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  step_autograd(m, x);  // warm-up (allocator cache, pages)
  step_manual(m, x, grads);
  std::vector<double> ta, tm, ratio;
  for (int r = 0; r < reps; ++r) {
    for (auto* p : {&m.w1, &m.b1, &m.w2, &m.b2})
      for (auto& t : *p) t.zero_grad();
    ta.push_back(time([&] { step_autograd(m, x); }));
    tm.push_back(time([&] { step_manual(m, x, grads); }));
    ratio.push_back(ta.back() / tm.back());
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const double flops = 12.0 * 3 * 2 * 2 * double(batch) * 192 * 768;  // 2 GEMMs/block, fwd + 2 bwd, 2 flop/FMA
  std::printf("autograd tape overhead: 12 blocks, batch %lld, 192->768->192, %d threads\n", (long long)batch,
              loom::num_threads());
  std::printf("  autograd  median %.1f ms  (%.0f GFLOP/s)\n", median(ta) * 1e3, flops / median(ta) / 1e9);
  std::printf("  manual    median %.1f ms  (%.0f GFLOP/s)\n", median(tm) * 1e3, flops / median(tm) / 1e9);
  std::printf("ratio autograd/manual: %.3f (median of per-pair ratios; target <= 1.10)\n", median(ratio));
  if (FILE* f = std::fopen(csv.c_str(), "w")) {
    std::fprintf(f, "rep,autograd_s,manual_s,ratio\n");
    for (int r = 0; r < reps; ++r) std::fprintf(f, "%d,%.6f,%.6f,%.4f\n", r, ta[size_t(r)], tm[size_t(r)], ratio[size_t(r)]);
    std::fclose(f);
  }
  return 0;
}
