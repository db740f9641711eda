// Composite expressions against PyTorch (tests/golden/make_autograd_goldens.py, float64): outputs
// and the gradients of sum(out * R) for every input; plus determinism and graph-memory checks.
#include <catch2/catch.hpp>

#include "loom/autograd/gradcheck.hpp"
#include "loom/core/random.hpp"
#include "loom/io/safetensors.hpp"
#include "loom/ops/concat.hpp"
#include "loom/ops/elementwise.hpp"
#include "loom/ops/gelu.hpp"
#include "loom/ops/layer_norm.hpp"
#include "loom/ops/linalg.hpp"
#include "loom/ops/loss.hpp"
#include "loom/ops/reduce.hpp"
#include "loom/ops/softmax.hpp"
#include "support/check.hpp"

using loom::Tensor;
using T64 = Tensor<double>;

namespace {

const loom::io::SafetensorsFile& goldens() {
  static const auto f = loom::io::SafetensorsFile::open(std::string(LOOM_SOURCE_DIR) + "/tests/golden/autograd_goldens.safetensors");
  return f;
}
T64 input(const std::string& c, const std::string& n) {
  return goldens().load<double>(c + ".input." + n).clone().requires_grad_();
}
std::vector<double> golden_values(const std::string& name) { return goldens().load<double>(name).to_vector(); }

constexpr loom::test::Tol kTol{1e-12, 1e-9};

// Runs backward of sum(out * R) and compares output and every input gradient with the goldens.
void check_case(const std::string& c, const T64& out, const std::vector<std::pair<std::string, T64>>& inputs) {
  INFO("case " << c);
  loom::test::require_close(out, golden_values(c + ".output"), kTol);
  loom::sum(out * goldens().load<double>(c + ".R")).backward();
  for (const auto& [n, x] : inputs) {
    INFO("gradient of " << n);
    loom::test::require_close(x.grad(), golden_values(c + ".grad." + n), kTol);
  }
}

T64 mlp(const std::string& c, loom::GeluApprox approx, std::vector<std::pair<std::string, T64>>& in) {
  for (const char* n : {"x", "ln_w", "ln_b", "w1", "b1", "w2", "b2"}) in.emplace_back(n, input(c, n));
  auto get = [&](int i) { return in[size_t(i)].second; };
  const T64 h = loom::layer_norm(get(0), loom::Shape{13}, get(1), get(2), 1e-6);  // [7, 13]
  return loom::linear(loom::gelu(loom::linear(h, get(3), get(4)), approx), get(5), get(6));  // [7, 5]
}

}  // namespace

TEST_CASE("a 2-layer GELU MLP with layer norm matches PyTorch", "[autograd][golden]") {
  for (auto [c, approx] : {std::pair{"mlp", loom::GeluApprox::none}, std::pair{"mlp_tanh", loom::GeluApprox::tanh}}) {
    std::vector<std::pair<std::string, T64>> in;
    const T64 out = mlp(c, approx, in);
    check_case(c, out, in);
  }
}

TEST_CASE("softmax attention with scale matches PyTorch", "[autograd][golden]") {
  const T64 q = input("attention", "q"), k = input("attention", "k"), v = input("attention", "v");
  const T64 out = loom::matmul(loom::softmax(loom::matmul(q, k.transpose(-2, -1)) * 0.37, -1), v);  // [2, 9, 4]
  check_case("attention", out, {{"q", q}, {"k", k}, {"v", v}});
}

TEST_CASE("BCE with logits on multilabel targets matches PyTorch", "[autograd][golden]") {
  const T64 targets = goldens().load<double>("bce.targets");  // [11, 19]
  const T64 a = input("bce", "logits");
  check_case("bce", loom::binary_cross_entropy_with_logits(a, targets).reshape({1}), {{"logits", a}});
  const T64 b = input("bce_pw", "logits");
  const T64 pw = goldens().load<double>("bce_pw.pos_weight");
  check_case("bce_pw", loom::binary_cross_entropy_with_logits(b, targets, pw).reshape({1}), {{"logits", b}});
}

TEST_CASE("a chain of views and reductions matches PyTorch", "[autograd][golden]") {
  const T64 x = input("chain", "x");                                   // [4, 6, 5]
  const T64 y = x.permute({2, 0, 1}).slice(0, 1, 4).reshape({3, -1});  // [3, 24]
  const T64 z = y.transpose(0, 1).unsqueeze(0).expand({2, 24, 3});     // [2, 24, 3]
  const T64 a = loom::sum(z, {1}, true) * loom::mean(z, {0, 2}).unsqueeze(1);  // [2, 24, 3]
  const T64 m = loom::max(x, 0).values.reshape({2, -1}).slice(1, 0, 24);
  const T64 out = loom::concat<double, loom::CPU>({loom::var(a, {-1}, true), loom::amax(z, {2}), m}, 1);
  check_case("chain", out, {{"x", x}});
}

TEST_CASE("BCE with logits passes gradcheck and is stable for large logits", "[autograd][loss]") {
  const T64 logits = T64::from_vector({2, 3}, {-800.0, -3.0, 0.0, 2.5, 40.0, 900.0});
  const T64 targets = T64::from_vector({2, 3}, {0, 1, 1, 0, 1, 0});
  const double v = loom::binary_cross_entropy_with_logits(logits, targets).item();
  // Reference: per element softplus written out (log1p(exp(-|x|)) + max(-x, 0) etc.).
  double want = 0;
  const auto xs = logits.to_vector(), ys = targets.to_vector();
  for (size_t i = 0; i < xs.size(); ++i) {
    const double x = xs[i], y = ys[i];
    const double log_sig = x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x));
    const double log_one_minus = x >= 0 ? -x - std::log1p(std::exp(-x)) : -std::log1p(std::exp(x));
    want += -(y * log_sig + (1 - y) * log_one_minus);
  }
  REQUIRE(std::isfinite(v));
  REQUIRE(v == Approx(want / 6).epsilon(1e-12));
  const auto pw = T64::from_vector({3}, {0.5, 2.0, 3.0});
  const auto small = T64::from_vector({2, 3}, {-1.5, 0.3, 0.9, 2.0, -0.7, 0.1}).requires_grad_();
  const auto r = loom::autograd::gradcheck([&](const auto& in) { return loom::binary_cross_entropy_with_logits(in[0], targets, pw); },
                                           {small});
  INFO(r.message);
  REQUIRE(r.ok);
}

namespace {
// A residual-free MLP of `depth` Linear+GELU layers; parameters created from a fixed seed.
struct DeepMlp {
  std::vector<Tensor<float>> weights, biases;
  DeepMlp(int depth, int64_t width, uint64_t seed) {
    loom::Generator gen(seed);
    for (int i = 0; i < depth; ++i) {
      weights.push_back((loom::randn<float>({width, width}, gen) * (1.0 / std::sqrt(double(width)))).detach().requires_grad_());
      biases.push_back(Tensor<float>::zeros({width}).requires_grad_());
    }
  }
  Tensor<float> forward(Tensor<float> x) const {
    for (size_t i = 0; i < weights.size(); ++i) x = loom::gelu(loom::linear(x, weights[i], biases[i]));
    return loom::mean(x * x);
  }
  int64_t grad_bytes() const {
    int64_t n = 0;
    for (size_t i = 0; i < weights.size(); ++i) n += (weights[i].numel() + biases[i].numel()) * int64_t(sizeof(float));
    return n;
  }
};
}  // namespace

TEST_CASE("backward frees the graph's saved tensors: memory returns to parameters + gradients", "[autograd][memory]") {
  DeepMlp mlp(20, 64, 3);
  const auto x = loom::randn<float>({32, 64});  // [B, D]
  const int64_t before = loom::memory_stats().current_bytes;
  {
    const auto loss = mlp.forward(x);
    const int64_t during = loom::memory_stats().current_bytes;
    REQUIRE(during - before > 20 * 32 * 64 * int64_t(sizeof(float)));  // activations were saved
    loss.backward();
    const int64_t after = loom::memory_stats().current_bytes;
    // Left: the gradients, plus the scalar loss itself (one 64-byte block).
    INFO("before " << before << " after " << after << " grads " << mlp.grad_bytes());
    REQUIRE(after - before >= mlp.grad_bytes());
    REQUIRE(after - before <= mlp.grad_bytes() + 256);  // + the scalar loss (one 64-byte block)
  }
}

TEST_CASE("the same computation twice gives bit-identical gradients", "[autograd][determinism]") {
  DeepMlp a(6, 96, 9), b(6, 96, 9);
  loom::Generator gen(4);
  const auto x = loom::randn<float>({257, 96}, gen);
  a.forward(x).backward();
  b.forward(x).backward();
  for (size_t i = 0; i < a.weights.size(); ++i) {
    REQUIRE(a.weights[i].grad().to_vector() == b.weights[i].grad().to_vector());
    REQUIRE(a.biases[i].grad().to_vector() == b.biases[i].grad().to_vector());
  }
}
