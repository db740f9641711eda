// Unary elementwise math, clamp, where and masked_fill, each against a naive double reference in
// every layout (contiguous, transposed, strided, stride-0 expanded), with gradchecks in double and
// float / bf16 backward checked against the exact derivative.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <numbers>
#include <string>
#include <type_traits>
#include <vector>

#include "loom/autograd/gradcheck.hpp"
#include "loom/ops/elementwise.hpp"
#include "ops/elementwise_testing.hpp"
#include "support/check.hpp"
#include "support/gradcheck.hpp"

using namespace loom;
using namespace loom::test;
using Catch::Contains;

namespace {

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

template <class T>
struct UnaryCase {
  const char* name;
  std::function<Tensor<T>(const Tensor<T>&)> op;
  std::function<double(double)> ref, derivative;
  double lo, hi, gap;  // input range, |x| >= gap (keeps kinks at 0 out of finite differences)
  // bf16 backward of tanh, sigmoid and rsqrt uses the bf16-rounded output (1 - y^2, y (1 - y), y^3),
  // whose relative error exceeds bf16's tolerance by construction; float and double cover them.
  bool bf16_backward_checked;
};

double sigmoid_ref(double x) { return 1 / (1 + std::exp(-x)); }

template <class T>
std::vector<UnaryCase<T>> unary_cases() {
  return {
      {"exp", [](auto& x) { return exp(x); }, [](double x) { return std::exp(x); },
       [](double x) { return std::exp(x); }, -3, 3, 0, true},
      {"log", [](auto& x) { return log(x); }, [](double x) { return std::log(x); }, [](double x) { return 1 / x; },
       0.1, 10, 0, true},
      {"sqrt", [](auto& x) { return sqrt(x); }, [](double x) { return std::sqrt(x); },
       [](double x) { return 0.5 / std::sqrt(x); }, 0.05, 9, 0, true},
      {"rsqrt", [](auto& x) { return rsqrt(x); }, [](double x) { return 1 / std::sqrt(x); },
       [](double x) { return -0.5 / (x * std::sqrt(x)); }, 0.1, 9, 0, false},
      {"tanh", [](auto& x) { return tanh(x); }, [](double x) { return std::tanh(x); },
       [](double x) { return 1 - std::tanh(x) * std::tanh(x); }, -2, 2, 0, false},
      {"erf", [](auto& x) { return erf(x); }, [](double x) { return std::erf(x); },
       [](double x) { return 2 / std::sqrt(std::numbers::pi) * std::exp(-x * x); }, -2.5, 2.5, 0, true},
      {"abs", [](auto& x) { return abs(x); }, [](double x) { return x < 0 ? -x : x; },
       [](double x) { return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0); }, -3, 3, 0.01, true},
      {"sigmoid", [](auto& x) { return sigmoid(x); }, sigmoid_ref,
       [](double x) { return sigmoid_ref(x) * (1 - sigmoid_ref(x)); }, -6, 6, 0, false},
      {"relu", [](auto& x) { return relu(x); }, [](double x) { return x > 0 ? x : 0.0; },
       [](double x) { return x > 0 ? 1.0 : 0.0; }, -3, 3, 0.01, true},
      {"square", [](auto& x) { return square(x); }, [](double x) { return x * x; }, [](double x) { return 2 * x; }, -3,
       3, 0, true},
      {"clamp(-1, 1.5)", [](auto& x) { return clamp(x, -1.0, 1.5); },
       [](double x) { return x < -1 ? -1.0 : (x > 1.5 ? 1.5 : x); },
       [](double x) { return x >= -1 && x <= 1.5 ? 1.0 : 0.0; }, -3, 3, 0, true},
      {"clamp_min(0.5)", [](auto& x) { return clamp_min(x, 0.5); }, [](double x) { return x < 0.5 ? 0.5 : x; },
       [](double x) { return x >= 0.5 ? 1.0 : 0.0; }, -3, 3, 0, true},
      {"clamp_max(-0.5)", [](auto& x) { return clamp_max(x, -0.5); }, [](double x) { return x > -0.5 ? -0.5 : x; },
       [](double x) { return x <= -0.5 ? 1.0 : 0.0; }, -3, 3, 0, true},
  };
}

std::vector<double> map_ref(const std::vector<double>& v, const std::function<double(double)>& f) {
  std::vector<double> out;
  for (double x : v) out.push_back(f(x));
  return out;
}

}  // namespace

TEMPLATE_TEST_CASE("unary ops match a double reference in every layout", "[elementwise][unary]", float, double,
                   bf16) {
  uint64_t seed = 1;
  for (const auto& c : unary_cases<TestType>()) {
    // [2, 301]: runs longer than one block of the vectorized float path (256 elements).
    for (const Shape& s : {Shape{}, Shape{1}, Shape{7}, Shape{97}, Shape{225}, Shape{15, 15}, Shape{2, 3, 5},
                           Shape{2, 301}, Shape{0}, Shape{4, 0}})
      for (Layout l : {Layout::contiguous, Layout::transposed, Layout::strided}) {
        INFO(c.name << " on " << s << " (" << layout_name(l) << ")");
        const auto v = stored<TestType>(values(s.numel(), c.lo, c.hi, seed++, c.gap));
        const Tensor<TestType> out = c.op(make_tensor<TestType>(s, v, l));
        REQUIRE(out.shape() == s);
        require_close(out, map_ref(v, c.ref));
      }
    INFO(c.name << " on a stride-0 expanded input");
    const auto column = stored<TestType>(values(7, c.lo, c.hi, seed++, c.gap));
    std::vector<double> ref;
    for (double x : column)
      for (int j = 0; j < 97; ++j) ref.push_back(c.ref(x));
    require_close(c.op(make_tensor<TestType>({7, 1}, column).expand({7, 97})), ref);
  }
}

TEST_CASE("unary ops split large inputs across threads correctly", "[elementwise][unary]") {
  uint64_t seed = 50;
  for (const auto& c : unary_cases<float>())
    for (Layout l : {Layout::contiguous, Layout::transposed}) {
      INFO(c.name << " (" << layout_name(l) << ")");
      const auto v = stored<float>(values(400 * 300, c.lo, c.hi, seed++, c.gap));
      require_close(c.op(make_tensor<float>({400, 300}, v, l)), map_ref(v, c.ref));
    }
}

TEST_CASE("unary ops pass gradcheck on non-contiguous, expanded and 0-d leaves", "[elementwise][unary][grad]") {
  uint64_t seed = 100;
  for (const auto& c : unary_cases<double>()) {
    INFO(c.name);
    const Tensor<double> x = leaf({4, 3}, values(12, c.lo, c.hi, seed++, c.gap), Layout::transposed);
    require_gradcheck([&](const std::vector<Tensor<double>>& in) { return c.op(in[0]); }, {x});
    const Tensor<double> r = leaf({3}, values(3, c.lo, c.hi, seed++, c.gap), Layout::strided);
    require_gradcheck([&](const std::vector<Tensor<double>>& in) { return c.op(in[0].expand({4, 3})); }, {r});
    const Tensor<double> s = leaf({}, values(1, c.lo, c.hi, seed++, c.gap));
    require_gradcheck([&](const std::vector<Tensor<double>>& in) { return c.op(in[0]); }, {s});
    // Composed with itself through a binary op: the gradient of a reused input accumulates.
    const Tensor<double> y = leaf({5}, values(5, c.lo, c.hi, seed++, c.gap), Layout::strided);
    require_gradcheck([&](const std::vector<Tensor<double>>& in) { return c.op(in[0]) * in[0]; }, {y});
  }
}

TEMPLATE_TEST_CASE("unary backward in float and bf16 matches the exact derivative", "[elementwise][unary][grad]",
                   float, bf16) {
  uint64_t seed = 200;
  for (const auto& c : unary_cases<TestType>()) {
    if (std::is_same_v<TestType, bf16> && !c.bf16_backward_checked) continue;
    INFO(c.name);
    const Shape s{6, 7};
    const auto v = stored<TestType>(values(42, c.lo, c.hi, seed++, c.gap));
    const auto g = stored<TestType>(values(42, -1, 1, seed++));
    Tensor<TestType> x = make_tensor<TestType>(s, v, Layout::transposed).detach();
    x.requires_grad_();
    c.op(x).backward(make_tensor<TestType>(s, g, Layout::strided));
    std::vector<double> ref;
    for (size_t i = 0; i < v.size(); ++i) ref.push_back(g[i] * c.derivative(v[i]));
    require_close(x.grad(), ref);
  }
}

TEST_CASE("unary gradients at kinks and boundaries follow PyTorch", "[elementwise][unary][grad]") {
  const Tensor<double> x = leaf({5}, {-1, 0, 1, 1.5, 2});
  abs(x).backward(Tensor<double>::ones({5}));
  require_close(x.grad(), {-1, 0, 1, 1, 1});  // sign(x), 0 at 0
  x.zero_grad();
  relu(x).backward(Tensor<double>::ones({5}));
  require_close(x.grad(), {0, 0, 1, 1, 1});  // 0 at 0
  x.zero_grad();
  clamp(x, -1.0, 1.5).backward(Tensor<double>::ones({5}));
  require_close(x.grad(), {1, 1, 1, 1, 0});  // boundaries included
  x.zero_grad();
  clamp(x, 0.0, 0.0).backward(Tensor<double>::ones({5}));
  require_close(x.grad(), {0, 1, 0, 0, 0});
}

TEMPLATE_TEST_CASE("unary ops keep nan and follow IEEE at the domain edges", "[elementwise][unary]", float, double,
                   bf16) {
  const Tensor<TestType> x = make_tensor<TestType>({5}, {kNan, -1, 0, kInf, -kInf});
  require_close(relu(x), {kNan, 0, 0, kInf, 0});
  require_close(clamp(x, -0.5, 0.5), {kNan, -0.5, 0, 0.5, -0.5});
  require_close(abs(x), {kNan, 1, 0, kInf, kInf});
  require_close(exp(x), {kNan, std::exp(-1.0), 1, kInf, 0});
  require_close(log(x), {kNan, kNan, -kInf, kInf, kNan});
  require_close(sqrt(x), {kNan, kNan, 0, kInf, kNan});
  require_close(rsqrt(x), {kNan, kNan, kInf, 0, kNan});
  require_close(tanh(x), {kNan, std::tanh(-1.0), 0, 1, -1});
  require_close(sigmoid(x), {kNan, sigmoid_ref(-1), 0.5, 1, 0});
  require_close(erf(x), {kNan, std::erf(-1.0), 0, 1, -1});
  // No overflow to nan; far out the result is exp(x) or below float's normal range.
  require_close(sigmoid(make_tensor<TestType>({4}, {-100, -87.5, -30, 100})),
                {std::exp(-100.0), sigmoid_ref(-87.5), sigmoid_ref(-30), 1}, {1e-38, tol_for<TestType>().rtol});
}

TEST_CASE("unary ops check their arguments", "[elementwise][unary][errors]") {
  const Tensor<float> x = Tensor<float>::ones({2, 3});
  REQUIRE_THROWS_AS(clamp(x, 2.0, 1.0), loom::Error);
  REQUIRE_THROWS_WITH(clamp(x, 2.0, 1.0), Contains("clamp") && Contains("min 2") && Contains("max 1") &&
                                              Contains("[2, 3]"));
  REQUIRE_THROWS_WITH(clamp(x, kNan, 1.0), Contains("clamp"));
  REQUIRE_THROWS_WITH(exp(Tensor<float>()), Contains("exp") && Contains("undefined"));
  REQUIRE_THROWS_WITH(relu(Tensor<double>()), Contains("relu") && Contains("undefined"));
}

TEST_CASE("unary backward refuses a saved output modified in place", "[elementwise][unary][grad]") {
  const Tensor<double> x = leaf({3}, {0.5, 1, 2});
  const Tensor<double> y = exp(x);
  REQUIRE(y.grad_fn_name() == "ExpBackward");
  REQUIRE_THROWS_WITH(mul_(y, 2.0), Contains("autograd graph"));
  {
    NoGradGuard no_grad;
    mul_(y, 2.0);
  }
  REQUIRE_THROWS_WITH(y.backward(Tensor<double>::ones({3})), Contains("exp backward") && Contains("modified in place"));
}

// ---- where ----------------------------------------------------------------------------------------

namespace {

struct WhereShapes {
  Shape cond, a, b;
};

const std::vector<WhereShapes> kWhereShapes = {
    {{7, 1}, {1, 97}, {}},   {{}, {3, 4}, {3, 4}},   {{2, 1, 5}, {4, 1}, {5}}, {{97}, {97}, {97}},
    {{3, 4}, {}, {}},        {{1}, {1}, {7}},        {{15, 15}, {15, 1}, {1, 15}}, {{0, 3}, {3}, {1}},
};

std::vector<double> bits(int64_t n, uint64_t seed) {
  std::vector<double> v = values(n, 0, 1, seed);
  for (double& x : v) x = x < 0.5 ? 0 : (x < 0.75 ? 1 : 7);  // any nonzero counts as true
  return v;
}

std::vector<double> where_reference(const WhereShapes& s, const std::vector<double>& c, const std::vector<double>& a,
                                    const std::vector<double>& b) {
  const Shape out = broadcast_shapes(broadcast_shapes(s.cond, s.a, "t"), s.b, "t");
  std::vector<double> r;
  for (int64_t i = 0; i < out.numel(); ++i)
    r.push_back(c[size_t(broadcast_source(out, s.cond, i))] != 0 ? a[size_t(broadcast_source(out, s.a, i))]
                                                                  : b[size_t(broadcast_source(out, s.b, i))]);
  return r;
}

}  // namespace

TEMPLATE_TEST_CASE("where selects with broadcasting over all three operands", "[elementwise][where]", float, double,
                   bf16, int64_t) {
  uint64_t seed = 300;
  for (const auto& s : kWhereShapes)
    for (Layout l : {Layout::contiguous, Layout::transposed, Layout::strided}) {
      INFO("cond " << s.cond << " a " << s.a << " b " << s.b << " (" << layout_name(l) << ")");
      const auto c = bits(s.cond.numel(), seed++);
      const auto a = stored<TestType>(values(s.a.numel(), -50, 50, seed++));
      const auto b = stored<TestType>(values(s.b.numel(), -50, 50, seed++));
      const Tensor<TestType> out =
          where(make_tensor<uint8_t>(s.cond, c, l), make_tensor<TestType>(s.a, a, l), make_tensor<TestType>(s.b, b));
      REQUIRE(out.shape() == broadcast_shapes(broadcast_shapes(s.cond, s.a, "t"), s.b, "t"));
      require_close(out, where_reference(s, c, a, b));
    }
  // Stride-0 expanded operands.
  const auto c = bits(5, seed++), a = stored<TestType>(values(4, -5, 5, seed++)), b = stored<TestType>(values(1, -5, 5, seed++));
  const Tensor<TestType> out = where(make_tensor<uint8_t>({1, 5}, c).expand({4, 5}),
                                     make_tensor<TestType>({4, 1}, a).expand({4, 5}),
                                     make_tensor<TestType>({}, b).expand({4, 5}));
  require_close(out, where_reference({{1, 5}, {4, 1}, {}}, c, a, b));
}

TEST_CASE("where passes gradcheck and routes gradients by the condition", "[elementwise][where][grad]") {
  uint64_t seed = 400;
  for (const auto& s : kWhereShapes) {
    if (s.a.numel() == 0 || s.a.numel() > 100 || s.b.numel() > 100) continue;
    INFO("cond " << s.cond << " a " << s.a << " b " << s.b);
    const Tensor<uint8_t> cond = make_tensor<uint8_t>(s.cond, bits(s.cond.numel(), seed++), Layout::strided);
    const Tensor<double> a = leaf(s.a, values(s.a.numel(), -2, 2, seed++), Layout::transposed);
    const Tensor<double> b = leaf(s.b, values(s.b.numel(), -2, 2, seed++), Layout::strided);
    require_gradcheck([&](const std::vector<Tensor<double>>& in) { return where(cond, in[0], in[1]); }, {a, b});
  }
  // Exact routing: cond [7, 1], a [1, 9], b [] receive sums of the gradient where cond holds / not.
  const auto c = bits(7, seed++), g = values(63, -1, 1, seed++);
  const Tensor<double> a = leaf({1, 9}, values(9, -1, 1, seed++)), b = leaf({}, {0.25});
  where(make_tensor<uint8_t>({7, 1}, c), a, b).backward(make_tensor<double>({7, 9}, g));
  require_close(a.grad(), reduce_to({7, 9}, {1, 9}, [&](int64_t i) { return c[size_t(i / 9)] != 0 ? g[size_t(i)] : 0.0; }));
  require_close(b.grad(), reduce_to({7, 9}, {}, [&](int64_t i) { return c[size_t(i / 9)] != 0 ? 0.0 : g[size_t(i)]; }));
  REQUIRE(where(make_tensor<uint8_t>({7, 1}, c), a, b).grad_fn_name() == "WhereBackward");
}

TEST_CASE("where names all three shapes when they do not broadcast", "[elementwise][where][errors]") {
  const Tensor<uint8_t> cond = Tensor<uint8_t>::ones({2, 3});
  const Tensor<float> a = Tensor<float>::ones({4}), b = Tensor<float>::ones({3});
  REQUIRE_THROWS_AS(where(cond, a, b), loom::Error);
  REQUIRE_THROWS_WITH(where(cond, a, b), Contains("where") && Contains("[2, 3]") && Contains("[4]") && Contains("[3]"));
  REQUIRE_THROWS_WITH(where(cond, b, a), Contains("where") && Contains("[2, 3]") && Contains("[4]"));
  // a and b clash although each broadcasts with the condition: [2, 1], [1, 3], [2, 4].
  REQUIRE_THROWS_WITH(where(Tensor<uint8_t>::ones({2, 1}), Tensor<float>::ones({1, 3}), Tensor<float>::ones({2, 4})),
                      Contains("where") && Contains("[2, 1]") && Contains("[1, 3]") && Contains("[2, 4]"));
  REQUIRE_THROWS_WITH(where(Tensor<uint8_t>(), a, a), Contains("where") && Contains("undefined"));
}

// ---- masked_fill ----------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("masked_fill writes the value where the broadcast mask is set", "[elementwise][masked_fill]",
                   float, double, bf16) {
  uint64_t seed = 500;
  struct Case {
    Shape t, mask;
  };
  for (const auto& k : std::vector<Case>{{{4, 5}, {1, 5}}, {{4, 5}, {4, 1}}, {{4, 5}, {}}, {{97}, {97}},
                                         {{2, 3, 5}, {3, 1}}, {{15, 15}, {15, 15}}, {{0, 3}, {3}}})
    for (Layout l : {Layout::contiguous, Layout::transposed, Layout::strided})
      for (double value : {-kInf, 0.0, 2.5}) {
        INFO("t " << k.t << " mask " << k.mask << " (" << layout_name(l) << ") value " << value);
        const auto v = stored<TestType>(values(k.t.numel(), -3, 3, seed++));
        const auto m = bits(k.mask.numel(), seed++);
        const Tensor<TestType> out = masked_fill(make_tensor<TestType>(k.t, v, l), make_tensor<uint8_t>(k.mask, m, l), value);
        REQUIRE(out.shape() == k.t);
        std::vector<double> ref;
        for (int64_t i = 0; i < k.t.numel(); ++i)
          ref.push_back(m[size_t(broadcast_source(k.t, k.mask, i))] != 0 ? value : v[size_t(i)]);
        require_close(out, ref);
      }
  // A stride-0 expanded input.
  const auto v = stored<TestType>(values(3, -3, 3, seed++));
  const Tensor<TestType> out = masked_fill(make_tensor<TestType>({3, 1}, v).expand({3, 4}),
                                           make_tensor<uint8_t>({4}, {1, 0, 0, 1}), -1.0);
  require_close(out, {-1, v[0], v[0], -1, -1, v[1], v[1], -1, -1, v[2], v[2], -1});
}

TEST_CASE("masked_fill passes gradcheck and zeroes the gradient where masked", "[elementwise][masked_fill][grad]") {
  const Tensor<uint8_t> mask = make_tensor<uint8_t>({1, 5}, {1, 0, 0, 1, 0}, Layout::strided);
  const Tensor<double> t = leaf({4, 5}, values(20, -2, 2, 600), Layout::transposed);
  require_gradcheck([&](const std::vector<Tensor<double>>& in) { return masked_fill(in[0], mask, 3.0); }, {t});
  const Tensor<double> r = leaf({5}, values(5, -2, 2, 601));
  require_gradcheck([&](const std::vector<Tensor<double>>& in) { return masked_fill(in[0].expand({4, 5}), mask, 3.0); },
                    {r});
  const Tensor<double> x = leaf({2, 5}, values(10, -2, 2, 602));
  masked_fill(x, mask, -kInf).backward(Tensor<double>::ones({2, 5}));
  require_close(x.grad(), {0, 1, 1, 0, 1, 0, 1, 1, 0, 1});
  REQUIRE(masked_fill(x, mask, 0.0).grad_fn_name() == "MaskedFillBackward");
}

TEST_CASE("masked_fill names both shapes when the mask does not fit", "[elementwise][masked_fill][errors]") {
  const Tensor<float> t = Tensor<float>::ones({3});
  REQUIRE_THROWS_AS(masked_fill(t, Tensor<uint8_t>::ones({2, 3}), 0.0), loom::Error);
  // The mask may not enlarge the input, even when the two would broadcast.
  REQUIRE_THROWS_WITH(masked_fill(t, Tensor<uint8_t>::ones({2, 3}), 0.0),
                      Contains("masked_fill") && Contains("[2, 3]") && Contains("[3]"));
  REQUIRE_THROWS_WITH(masked_fill(Tensor<float>::ones({4, 5}), Tensor<uint8_t>::ones({4}), 0.0),
                      Contains("masked_fill") && Contains("[4]") && Contains("[4, 5]"));
  REQUIRE_THROWS_WITH(masked_fill(t, Tensor<uint8_t>(), 0.0), Contains("masked_fill") && Contains("undefined"));
}
