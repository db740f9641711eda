// Binary elementwise ops, scalar forms, operators, comparisons and the in-place helpers, each
// against a naive double reference over broadcasting corner cases and non-contiguous layouts.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
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

template <class T>
struct BinaryCase {
  const char* name;
  std::function<Tensor<T>(const Tensor<T>&, const Tensor<T>&)> op;
  std::function<double(double, double)> ref;
  double lo_a, hi_a, lo_b, hi_b, gap_b;  // input ranges; |b| >= gap_b
};

template <class T>
std::vector<BinaryCase<T>> binary_cases() {
  return {
      {"add", [](auto& a, auto& b) { return add(a, b); }, [](double x, double y) { return x + y; }, -3, 3, -3, 3, 0},
      {"sub", [](auto& a, auto& b) { return sub(a, b); }, [](double x, double y) { return x - y; }, -3, 3, -3, 3, 0},
      {"mul", [](auto& a, auto& b) { return mul(a, b); }, [](double x, double y) { return x * y; }, -3, 3, -3, 3, 0},
      {"div", [](auto& a, auto& b) { return div(a, b); }, [](double x, double y) { return x / y; }, -3, 3, -2, 2, 0.5},
      {"pow", [](auto& a, auto& b) { return pow(a, b); }, [](double x, double y) { return std::pow(x, y); }, 0.5, 2,
       -2, 2, 0},
      {"maximum", [](auto& a, auto& b) { return maximum(a, b); }, [](double x, double y) { return x > y ? x : y; }, -3,
       3, -3, 3, 0},
      {"minimum", [](auto& a, auto& b) { return minimum(a, b); }, [](double x, double y) { return x < y ? x : y; }, -3,
       3, -3, 3, 0},
  };
}

struct ShapePair {
  Shape a, b;
};

// Broadcasting corner cases plus odd plain sizes.
const std::vector<ShapePair> kShapePairs = {
    {{7, 1}, {1, 97}}, {{}, {3, 4}},   {{3, 4}, {}},      {{2, 1, 5}, {4, 1}}, {{4, 1}, {2, 1, 5}},
    {{1}, {7}},        {{97}, {97}},   {{225}, {225}},    {{15, 15}, {15}},    {{5, 7}, {5, 7}},
    {{}, {}},          {{0, 3}, {3}},  {{1, 1}, {1}},
};

template <class T>
void check_binary_forward(const BinaryCase<T>& c, const ShapePair& p, Layout la, Layout lb, uint64_t seed) {
  const Shape out_shape = broadcast_shapes(p.a, p.b, "test");
  const auto va = stored<T>(values(p.a.numel(), c.lo_a, c.hi_a, seed));
  const auto vb = stored<T>(values(p.b.numel(), c.lo_b, c.hi_b, seed + 1, c.gap_b));
  const Tensor<T> a = make_tensor<T>(p.a, va, la), b = make_tensor<T>(p.b, vb, lb);
  INFO(c.name << " " << p.a << " (" << layout_name(la) << ") with " << p.b << " (" << layout_name(lb) << ")");
  const Tensor<T> out = c.op(a, b);
  REQUIRE(out.shape() == out_shape);
  REQUIRE(out.is_contiguous());
  require_close(out, binary_reference(out_shape, p.a, va, p.b, vb, c.ref));
}

}  // namespace

TEMPLATE_TEST_CASE("binary ops match a double reference under broadcasting and any layout", "[elementwise]", float,
                   double, bf16) {
  uint64_t seed = 1;
  for (const auto& c : binary_cases<TestType>())
    for (const auto& p : kShapePairs)
      for (Layout la : {Layout::contiguous, Layout::transposed, Layout::strided})
        for (Layout lb : {Layout::contiguous, Layout::strided}) check_binary_forward(c, p, la, lb, seed++);
}

TEMPLATE_TEST_CASE("binary ops read stride-0 expanded inputs", "[elementwise]", float, double, bf16) {
  for (const auto& c : binary_cases<TestType>()) {
    INFO(c.name);
    const auto va = stored<TestType>(values(7, c.lo_a, c.hi_a, 11));
    const auto vb = stored<TestType>(values(7 * 97, c.lo_b, c.hi_b, 12, c.gap_b));
    // a: [7, 1] expanded to [7, 97] (stride 0 along dim 1); b: [97, 7] transposed.
    const Tensor<TestType> a = make_tensor<TestType>({7, 1}, va).expand({7, 97});
    const Tensor<TestType> b = make_tensor<TestType>({7, 97}, vb, Layout::transposed);
    REQUIRE(a.strides()[1] == 0);
    require_close(c.op(a, b), binary_reference({7, 97}, {7, 1}, va, {7, 97}, vb, c.ref));
    require_close(c.op(b, a), binary_reference({7, 97}, {7, 97}, vb, {7, 1}, va, c.ref));
    // Both expanded from a scalar and from a row.
    const auto vr = stored<TestType>(values(97, c.lo_b, c.hi_b, 13, c.gap_b));
    const Tensor<TestType> s = make_tensor<TestType>({}, {va[0]}).expand({7, 97});
    const Tensor<TestType> r = make_tensor<TestType>({97}, vr).expand({7, 97});
    require_close(c.op(s, r), binary_reference({7, 97}, {}, {va[0]}, {97}, vr, c.ref));
  }
}

TEST_CASE("binary ops split large inputs across threads correctly", "[elementwise]") {
  // [300, 333] is large enough for several chunks on both the flat and the strided path.
  const auto va = values(300 * 333, -2, 2, 21), vb = values(333, -2, 2, 22, 0.25);
  const Tensor<float> a = make_tensor<float>({300, 333}, stored<float>(va));
  const Tensor<float> a_t = make_tensor<float>({300, 333}, stored<float>(va), Layout::transposed);
  const Tensor<float> b = make_tensor<float>({333}, stored<float>(vb));
  const auto ref = binary_reference({300, 333}, {300, 333}, stored<float>(va), {333}, stored<float>(vb),
                                    [](double x, double y) { return x / y; });
  require_close(div(a, b), ref);
  require_close(div(a_t, b), ref);
  require_close(mul(a, a), binary_reference({300, 333}, {300, 333}, stored<float>(va), {300, 333},
                                            stored<float>(va), [](double x, double y) { return x * y; }));
}

TEST_CASE("maximum and minimum propagate nan and handle ties", "[elementwise]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Tensor<float> a = make_tensor<float>({4}, {nan, 1, 2, nan});
  const Tensor<float> b = make_tensor<float>({4}, {1, nan, 2, nan});
  require_close(maximum(a, b), {nan, nan, 2, nan});
  require_close(minimum(a, b), {nan, nan, 2, nan});
}

TEST_CASE("integer tensors support add, sub, mul, maximum, minimum and neg", "[elementwise]") {
  const Tensor<int64_t> a = Tensor<int64_t>::from_vector({2, 3}, std::vector<int64_t>{-3, 0, 5, 7, -1, 2});
  const Tensor<int64_t> b = Tensor<int64_t>::from_vector({3}, std::vector<int64_t>{2, -4, 1});
  REQUIRE((a + b).to_vector() == std::vector<int64_t>{-1, -4, 6, 9, -5, 3});
  REQUIRE((a - b).to_vector() == std::vector<int64_t>{-5, 4, 4, 5, 3, 1});
  REQUIRE((a * b).to_vector() == std::vector<int64_t>{-6, 0, 5, 14, 4, 2});
  REQUIRE(maximum(a, b).to_vector() == std::vector<int64_t>{2, 0, 5, 7, -1, 2});
  REQUIRE(minimum(a, b).to_vector() == std::vector<int64_t>{-3, -4, 1, 2, -4, 1});
  REQUIRE((-a).to_vector() == std::vector<int64_t>{3, 0, -5, -7, 1, -2});
  REQUIRE((a * 2 + 1).to_vector() == std::vector<int64_t>{-5, 1, 11, 15, -1, 5});
  const Tensor<int32_t> c = Tensor<int32_t>::from_vector({2}, std::vector<int32_t>{4, -9});
  REQUIRE((c + c).to_vector() == std::vector<int32_t>{8, -18});
}

// ---- scalar forms and operators ---------------------------------------------------------------

namespace {

template <class T>
struct ScalarCase {
  const char* name;
  std::function<Tensor<T>(const Tensor<T>&)> op;
  std::function<double(double)> ref;
  double lo, hi, gap;  // input range, |x| >= gap
};

template <class T>
std::vector<ScalarCase<T>> scalar_cases() {
  return {
      {"add(t, s)", [](auto& t) { return add(t, 2.5); }, [](double x) { return x + 2.5; }, -3, 3, 0},
      {"add(s, t)", [](auto& t) { return add(2.5, t); }, [](double x) { return 2.5 + x; }, -3, 3, 0},
      {"t + s", [](auto& t) { return t + 0.75; }, [](double x) { return x + 0.75; }, -3, 3, 0},
      {"s + t", [](auto& t) { return 0.75 + t; }, [](double x) { return 0.75 + x; }, -3, 3, 0},
      {"sub(t, s)", [](auto& t) { return sub(t, 1.5); }, [](double x) { return x - 1.5; }, -3, 3, 0},
      {"sub(s, t)", [](auto& t) { return sub(1.5, t); }, [](double x) { return 1.5 - x; }, -3, 3, 0},
      {"t - s", [](auto& t) { return t - 2; }, [](double x) { return x - 2; }, -3, 3, 0},
      {"s - t", [](auto& t) { return 2 - t; }, [](double x) { return 2 - x; }, -3, 3, 0},
      {"-t", [](auto& t) { return -t; }, [](double x) { return -x; }, -3, 3, 0},
      {"neg", [](auto& t) { return neg(t); }, [](double x) { return -x; }, -3, 3, 0},
      {"mul(t, s)", [](auto& t) { return mul(t, -1.25); }, [](double x) { return x * -1.25; }, -3, 3, 0},
      {"mul(s, t)", [](auto& t) { return mul(-1.25, t); }, [](double x) { return -1.25 * x; }, -3, 3, 0},
      {"t * s", [](auto& t) { return t * 3; }, [](double x) { return x * 3; }, -3, 3, 0},
      {"s * t", [](auto& t) { return 3 * t; }, [](double x) { return 3 * x; }, -3, 3, 0},
      {"div(t, s)", [](auto& t) { return div(t, 4.0); }, [](double x) { return x / 4.0; }, -3, 3, 0},
      {"div(s, t)", [](auto& t) { return div(4.0, t); }, [](double x) { return 4.0 / x; }, -3, 3, 0.25},
      {"t / s", [](auto& t) { return t / 0.5; }, [](double x) { return x / 0.5; }, -3, 3, 0},
      {"s / t", [](auto& t) { return 0.5 / t; }, [](double x) { return 0.5 / x; }, -3, 3, 0.25},
      {"pow(t, 2)", [](auto& t) { return pow(t, 2.0); }, [](double x) { return x * x; }, -3, 3, 0},
      {"pow(t, 3)", [](auto& t) { return pow(t, 3.0); }, [](double x) { return x * x * x; }, -3, 3, 0},
      {"pow(t, 0.5)", [](auto& t) { return pow(t, 0.5); }, [](double x) { return std::sqrt(x); }, 0.1, 4, 0},
      {"pow(t, -1.5)", [](auto& t) { return pow(t, -1.5); }, [](double x) { return 1 / (x * std::sqrt(x)); }, 0.25,
       4, 0},
      {"pow(t, 0)", [](auto& t) { return pow(t, 0.0); }, [](double) { return 1.0; }, -3, 3, 0},
  };
}

}  // namespace

TEMPLATE_TEST_CASE("scalar forms and operators match a double reference", "[elementwise]", float, double, bf16) {
  uint64_t seed = 100;
  for (const auto& c : scalar_cases<TestType>())
    for (const Shape& s : {Shape{}, Shape{1}, Shape{7}, Shape{97}, Shape{15, 15}, Shape{3, 0}})
      for (Layout l : {Layout::contiguous, Layout::transposed, Layout::strided}) {
        INFO(c.name << " on " << s << " (" << layout_name(l) << ")");
        const auto v = stored<TestType>(values(s.numel(), c.lo, c.hi, seed++, c.gap));
        std::vector<double> ref;
        for (double x : v) ref.push_back(c.ref(x));
        const Tensor<TestType> out = c.op(make_tensor<TestType>(s, v, l));
        REQUIRE(out.shape() == s);
        require_close(out, ref);
      }
}

TEST_CASE("tensor operators on two tensors follow add, sub, mul, div", "[elementwise]") {
  const auto va = values(12, -2, 2, 31), vb = values(4, 0.5, 2, 32);
  const Tensor<double> a = make_tensor<double>({3, 4}, va), b = make_tensor<double>({4}, vb);
  const Shape o{3, 4};
  require_close(a + b, binary_reference(o, {3, 4}, va, {4}, vb, [](double x, double y) { return x + y; }));
  require_close(a - b, binary_reference(o, {3, 4}, va, {4}, vb, [](double x, double y) { return x - y; }));
  require_close(a * b, binary_reference(o, {3, 4}, va, {4}, vb, [](double x, double y) { return x * y; }));
  require_close(a / b, binary_reference(o, {3, 4}, va, {4}, vb, [](double x, double y) { return x / y; }));
  require_close(b / a, binary_reference(o, {4}, vb, {3, 4}, va, [](double x, double y) { return x / y; }));
}

// ---- gradients -----------------------------------------------------------------------------------

namespace {

}  // namespace

TEST_CASE("binary ops pass gradcheck with broadcasting and non-contiguous leaves", "[elementwise][grad]") {
  struct GradShapes {
    Shape a, b;
    Layout la, lb;
  };
  const std::vector<GradShapes> cases = {
      {{7, 1}, {1, 13}, Layout::contiguous, Layout::contiguous},
      {{}, {3, 4}, Layout::contiguous, Layout::transposed},
      {{3, 4}, {}, Layout::strided, Layout::contiguous},
      {{2, 1, 5}, {4, 1}, Layout::transposed, Layout::strided},
      {{4, 5}, {4, 5}, Layout::transposed, Layout::transposed},
      {{5}, {3, 5}, Layout::strided, Layout::transposed},
  };
  uint64_t seed = 200;
  for (const auto& c : binary_cases<double>())
    for (const auto& g : cases) {
      INFO(c.name << " " << g.a << " (" << layout_name(g.la) << ") with " << g.b << " (" << layout_name(g.lb) << ")");
      const Tensor<double> a = leaf(g.a, values(g.a.numel(), c.lo_a, c.hi_a, seed++), g.la);
      const Tensor<double> b = leaf(g.b, values(g.b.numel(), c.lo_b, c.hi_b, seed++, c.gap_b), g.lb);
      require_gradcheck([&](const std::vector<Tensor<double>>& in) { return c.op(in[0], in[1]); }, {a, b});
    }
}

TEST_CASE("binary ops give gradients only to the inputs that need them", "[elementwise][grad]") {
  for (const auto& c : binary_cases<double>()) {
    INFO(c.name);
    const Tensor<double> a = leaf({2, 3}, values(6, c.lo_a, c.hi_a, 250));
    const Tensor<double> b = make_tensor<double>({3}, values(3, c.lo_b, c.hi_b, 251, c.gap_b));
    require_gradcheck([&](const std::vector<Tensor<double>>& in) { return c.op(in[0], in[1]); }, {a, b});
    REQUIRE(!b.grad().defined());
    const Tensor<double> a_const = make_tensor<double>({3}, values(3, c.lo_a, c.hi_a, 252));
    const Tensor<double> b_leaf = leaf({2, 3}, values(6, c.lo_b, c.hi_b, 253, c.gap_b));
    require_gradcheck([&](const std::vector<Tensor<double>>& in) { return c.op(in[0], in[1]); }, {a_const, b_leaf});
    REQUIRE(!a_const.grad().defined());
  }
}

TEST_CASE("broadcast gradients are sums over the broadcast dimensions", "[elementwise][grad]") {
  // out = a * b with a [7, 1] and b [1, 97]: dL/da[i] = sum_j g[i, j] b[j], dL/db[j] = sum_i g[i, j] a[i].
  const auto va = values(7, -1, 1, 300), vb = values(97, -1, 1, 301), vg = values(7 * 97, -1, 1, 302);
  const Tensor<double> a = leaf({7, 1}, va), b = leaf({1, 97}, vb);
  mul(a, b).backward(make_tensor<double>({7, 97}, vg));
  require_close(a.grad(), reduce_to({7, 97}, {7, 1}, [&](int64_t i) { return vg[size_t(i)] * vb[size_t(i % 97)]; }));
  require_close(b.grad(), reduce_to({7, 97}, {1, 97}, [&](int64_t i) { return vg[size_t(i)] * va[size_t(i / 97)]; }));
  // A 0-d input added to [3, 4] receives the sum of all 12 gradients.
  const Tensor<double> s = leaf({}, {0.5}), t = leaf({3, 4}, values(12, -1, 1, 303));
  const auto vg2 = values(12, -1, 1, 304);
  sub(t, s).backward(make_tensor<double>({3, 4}, vg2));
  double total = 0;
  for (double x : vg2) total -= x;
  require_close(s.grad(), {total});
  require_close(t.grad(), vg2);
}

TEMPLATE_TEST_CASE("binary backward in float and bf16 matches the double derivative", "[elementwise][grad]", float,
                   bf16) {
  // d/da and d/db of each op, evaluated in double at the stored inputs. Same shapes, so each
  // gradient element is one product rounded once; the broadcast reductions are checked in double.
  struct Derivative {
    const char* name;
    std::function<double(double, double)> da, db;
  };
  auto tie_split = [](double x, double y, bool x_wins) { return x == y ? 0.5 : (x_wins ? 1.0 : 0.0); };
  const std::vector<Derivative> derivatives = {
      {"add", [](double, double) { return 1.0; }, [](double, double) { return 1.0; }},
      {"sub", [](double, double) { return 1.0; }, [](double, double) { return -1.0; }},
      {"mul", [](double, double y) { return y; }, [](double x, double) { return x; }},
      {"div", [](double, double y) { return 1 / y; }, [](double x, double y) { return -x / (y * y); }},
      {"pow", [](double x, double y) { return y * std::pow(x, y - 1); },
       [](double x, double y) { return std::pow(x, y) * std::log(x); }},
      {"maximum", [&](double x, double y) { return tie_split(x, y, x > y); },
       [&](double x, double y) { return tie_split(x, y, y > x); }},
      {"minimum", [&](double x, double y) { return tie_split(x, y, x < y); },
       [&](double x, double y) { return tie_split(x, y, y < x); }},
  };
  const auto cases = binary_cases<TestType>();
  REQUIRE(cases.size() == derivatives.size());
  for (size_t k = 0; k < cases.size(); ++k) {
    const auto& c = cases[k];
    INFO(c.name);
    REQUIRE(std::string(c.name) == derivatives[k].name);
    const Shape s{5, 6};
    const auto va = stored<TestType>(values(30, c.lo_a, c.hi_a, 400 + k));
    const auto vb = stored<TestType>(values(30, c.lo_b, c.hi_b, 410 + k, c.gap_b));
    const auto vg = stored<TestType>(values(30, -1, 1, 420 + k));
    Tensor<TestType> a = make_tensor<TestType>(s, va, Layout::transposed).detach();
    Tensor<TestType> b = make_tensor<TestType>(s, vb, Layout::strided).detach();
    a.requires_grad_();
    b.requires_grad_();
    c.op(a, b).backward(make_tensor<TestType>(s, vg));
    std::vector<double> ref_a, ref_b;
    for (size_t i = 0; i < 30; ++i) {
      ref_a.push_back(vg[i] * derivatives[k].da(va[i], vb[i]));
      ref_b.push_back(vg[i] * derivatives[k].db(va[i], vb[i]));
    }
    require_close(a.grad(), ref_a);
    require_close(b.grad(), ref_b);
  }
}

TEST_CASE("maximum and minimum split the gradient half and half on ties", "[elementwise][grad]") {
  const Tensor<double> a = leaf({4}, {1, 2, 3, 4}), b = leaf({4}, {1, 0, 3, 5});
  maximum(a, b).backward(Tensor<double>::ones({4}));
  require_close(a.grad(), {0.5, 1, 0.5, 0});
  require_close(b.grad(), {0.5, 0, 0.5, 1});
  a.zero_grad();
  b.zero_grad();
  minimum(a, b).backward(Tensor<double>::ones({4}));
  require_close(a.grad(), {0.5, 0, 0.5, 1});
  require_close(b.grad(), {0.5, 1, 0.5, 0});
  // maximum(x, x) = x: the two halves add up to 1.
  const Tensor<double> x = leaf({3}, {-1, 0, 2});
  maximum(x, x).backward(Tensor<double>::ones({3}));
  require_close(x.grad(), {1, 1, 1});
}

TEST_CASE("pow gradients at zero follow PyTorch", "[elementwise][grad]") {
  // d/db a^b at a == 0, b >= 0 is 0 (not 0 * log 0); d/da a^b with b == 0 is 0.
  const Tensor<double> a = leaf({3}, {0, 0, 2}), b = leaf({3}, {2, 0, 0});
  pow(a, b).backward(Tensor<double>::ones({3}));
  require_close(b.grad(), {0, 0, std::log(2.0)});
  require_close(a.grad(), {0, 0, 0});
  const Tensor<double> x = leaf({2}, {0, 3});
  pow(x, 0.0).backward(Tensor<double>::ones({2}));
  require_close(x.grad(), {0, 0});
}

TEST_CASE("scalar forms pass gradcheck on non-contiguous and expanded leaves", "[elementwise][grad]") {
  uint64_t seed = 500;
  for (const auto& c : scalar_cases<double>()) {
    INFO(c.name);
    const Tensor<double> x = leaf({4, 3}, values(12, c.lo, c.hi, seed++, c.gap), Layout::transposed);
    require_gradcheck([&](const std::vector<Tensor<double>>& in) { return c.op(in[0]); }, {x});
    const Tensor<double> r = leaf({3}, values(3, c.lo, c.hi, seed++, c.gap), Layout::strided);
    require_gradcheck([&](const std::vector<Tensor<double>>& in) { return c.op(in[0].expand({4, 3})); }, {r});
  }
}

TEST_CASE("binary ops record named nodes only when a gradient is needed", "[elementwise][grad]") {
  const Tensor<double> a = leaf({2}, {1, 2});
  const Tensor<double> b = make_tensor<double>({2}, {3, 4});
  REQUIRE((a * b).grad_fn_name() == "MulBackward");
  REQUIRE((a + b).grad_fn_name() == "AddBackward");
  REQUIRE(div(1.0, a).grad_fn_name() == "RdivBackward");
  REQUIRE(maximum(a, b).grad_fn_name() == "MaximumBackward");
  REQUIRE(!(b * b).requires_grad());
  NoGradGuard no_grad;
  REQUIRE(!(a * b).requires_grad());
}

TEST_CASE("backward refuses a saved input modified in place", "[elementwise][grad]") {
  const Tensor<double> a = leaf({3}, {1, 2, 3});
  const Tensor<double> b = make_tensor<double>({3}, {4, 5, 6});
  const Tensor<double> y = mul(a, b);
  add_(b, make_tensor<double>({3}, {1, 1, 1}));
  REQUIRE_THROWS_WITH(y.backward(Tensor<double>::ones({3})), Contains("mul backward") && Contains("modified in place"));
}

// ---- errors ---------------------------------------------------------------------------------------

TEST_CASE("binary ops reject shapes that do not broadcast, naming both", "[elementwise][errors]") {
  const Tensor<float> a = Tensor<float>::ones({2, 3}), b = Tensor<float>::ones({4});
  for (const auto& c : binary_cases<float>()) {
    INFO(c.name);
    REQUIRE_THROWS_AS(c.op(a, b), loom::Error);
    REQUIRE_THROWS_WITH(c.op(a, b), Contains(c.name) && Contains("[2, 3]") && Contains("[4]"));
  }
  REQUIRE_THROWS_WITH(a + b, Contains("add") && Contains("[2, 3]") && Contains("[4]"));
  REQUIRE_THROWS_WITH(eq(a, b), Contains("eq") && Contains("[2, 3]") && Contains("[4]"));
  REQUIRE_THROWS_WITH(ge(Tensor<float>::ones({2, 1, 5}), Tensor<float>::ones({3, 4})),
                      Contains("ge") && Contains("[2, 1, 5]") && Contains("[3, 4]"));
  REQUIRE_THROWS_WITH(add(Tensor<float>(), a), Contains("add") && Contains("undefined"));
  REQUIRE_THROWS_WITH(mul(Tensor<float>(), 2.0), Contains("mul") && Contains("undefined"));
}

// ---- comparisons ------------------------------------------------------------------------------

namespace {

struct CompareCase {
  const char* name;
  std::function<Tensor<uint8_t>(const Tensor<float>&, const Tensor<float>&)> op;
  std::function<Tensor<uint8_t>(const Tensor<float>&, double)> op_scalar;
  std::function<bool(double, double)> ref;
};

std::vector<CompareCase> compare_cases() {
  return {
      {"eq", [](auto& a, auto& b) { return eq(a, b); }, [](auto& a, double s) { return eq(a, s); },
       [](double x, double y) { return x == y; }},
      {"ne", [](auto& a, auto& b) { return ne(a, b); }, [](auto& a, double s) { return ne(a, s); },
       [](double x, double y) { return x != y; }},
      {"lt", [](auto& a, auto& b) { return lt(a, b); }, [](auto& a, double s) { return lt(a, s); },
       [](double x, double y) { return x < y; }},
      {"le", [](auto& a, auto& b) { return le(a, b); }, [](auto& a, double s) { return le(a, s); },
       [](double x, double y) { return x <= y; }},
      {"gt", [](auto& a, auto& b) { return gt(a, b); }, [](auto& a, double s) { return gt(a, s); },
       [](double x, double y) { return x > y; }},
      {"ge", [](auto& a, auto& b) { return ge(a, b); }, [](auto& a, double s) { return ge(a, s); },
       [](double x, double y) { return x >= y; }},
  };
}

// Small integers (with nan) so that ties are frequent.
std::vector<double> tie_rich(int64_t n, uint64_t seed) {
  std::vector<double> v = values(n, -2.5, 2.5, seed);
  for (size_t i = 0; i < v.size(); ++i) v[i] = i % 11 == 5 ? std::numeric_limits<double>::quiet_NaN() : std::round(v[i]);
  return v;
}

}  // namespace

TEST_CASE("comparisons match a reference with broadcasting, ties and nan", "[elementwise][compare]") {
  uint64_t seed = 600;
  for (const auto& c : compare_cases())
    for (const auto& p : kShapePairs)
      for (Layout la : {Layout::contiguous, Layout::transposed})
        for (Layout lb : {Layout::contiguous, Layout::strided}) {
          INFO(c.name << " " << p.a << " with " << p.b);
          const auto va = tie_rich(p.a.numel(), seed++), vb = tie_rich(p.b.numel(), seed++);
          const Tensor<uint8_t> out = c.op(make_tensor<float>(p.a, va, la), make_tensor<float>(p.b, vb, lb));
          const Shape o = broadcast_shapes(p.a, p.b, "test");
          REQUIRE(out.shape() == o);
          require_close(out, binary_reference(o, p.a, va, p.b, vb, [&](double x, double y) { return double(c.ref(x, y)); }));
        }
  for (const auto& c : compare_cases()) {
    INFO(c.name << " with a scalar");
    const auto v = tie_rich(97, seed++);
    const Tensor<float> t = make_tensor<float>({97}, v, Layout::strided);
    for (double s : {-1.0, 0.0, 0.5, std::numeric_limits<double>::quiet_NaN()}) {
      std::vector<double> ref;
      for (double x : v) ref.push_back(double(c.ref(x, s)));
      require_close(c.op_scalar(t, s), ref);
    }
  }
}

TEST_CASE("comparisons on bf16, double and integer tensors", "[elementwise][compare]") {
  // The scalar is rounded to the tensor's floating type first: bf16(0.1) == 0.1 holds for bf16.
  const Tensor<bf16> h = make_tensor<bf16>({3}, {0.1, 0.2, 1.0});
  require_close(eq(h, 0.1), {1, 0, 0});
  require_close(lt(h, make_tensor<bf16>({1}, {0.15})), {1, 0, 0});
  const Tensor<double> d = make_tensor<double>({2, 2}, {1, 2, 3, 4}, Layout::transposed);
  require_close(ge(d, 2.0), {0, 1, 1, 1});
  // Integer tensors compare against the scalar in double: 0 < 0.5.
  const Tensor<int64_t> i = Tensor<int64_t>::from_vector({3}, std::vector<int64_t>{0, 1, -1});
  require_close(lt(i, 0.5), {1, 0, 1});
  require_close(eq(i, Tensor<int64_t>::from_vector({1}, std::vector<int64_t>{1})), {0, 1, 0});
  // Comparisons never record a graph.
  const Tensor<double> x = leaf({2}, {1, 2});
  REQUIRE(!gt(x, 1.5).requires_grad());
}

TEMPLATE_TEST_CASE("isfinite marks inf and nan in any layout", "[elementwise][compare]", float, double, bf16) {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<double> v = {0, -1, inf, 3e38, -inf, nan, 1e-40, -0.0, 7, nan, 2, -5};
  std::vector<double> ref;
  for (double x : stored<TestType>(v)) ref.push_back(std::isfinite(x) ? 1 : 0);
  for (Layout l : {Layout::contiguous, Layout::transposed, Layout::strided}) {
    INFO(layout_name(l));
    require_close(isfinite(make_tensor<TestType>({3, 4}, v, l)), ref);
  }
  require_close(isfinite(make_tensor<TestType>({}, {inf})), {0});
  require_close(isfinite(make_tensor<TestType>({1}, {1})).expand({5}), {1, 1, 1, 1, 1});
}

TEMPLATE_TEST_CASE("all_finite finds a single bad element anywhere", "[elementwise][compare]", float, double, bf16) {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  const int64_t n = 200003;  // several parallel chunks
  Tensor<TestType> t = Tensor<TestType>::zeros({n});
  REQUIRE(all_finite(t));
  REQUIRE(all_finite(Tensor<TestType>::zeros({0, 3})));
  REQUIRE(all_finite(make_tensor<TestType>({}, {3e38})));
  for (int64_t at : {int64_t(0), int64_t(1), n / 2, n - 1})
    for (double bad : {inf, -inf, nan}) {
      INFO("bad value " << bad << " at " << at);
      Tensor<TestType> u = Tensor<TestType>::zeros({n});
      u.data()[at] = TestType(static_cast<compute_t<TestType>>(bad));
      REQUIRE(!all_finite(u));
      REQUIRE(!all_finite(u.view({n, 1}).expand({n, 2})));  // strided walk
    }
  // A non-contiguous view only sees its own elements: the nan outside it does not count.
  Tensor<TestType> m = make_tensor<TestType>({5, 8}, values(40, -1, 1, 700), Layout::strided);
  REQUIRE(all_finite(m));  // the nan-filled gaps of the strided layout are not part of m
  REQUIRE(all_finite(m.transpose(0, 1)));
  m.at_mut({4, 7}) = TestType(static_cast<compute_t<TestType>>(inf));
  REQUIRE(!all_finite(m.transpose(0, 1)));
  REQUIRE(all_finite(Tensor<int64_t>::zeros({3})));
}

// ---- in-place helpers -------------------------------------------------------------------------

TEMPLATE_TEST_CASE("add_ and mul_ update in place with broadcasting and any layout", "[elementwise][inplace]", float,
                   double, bf16) {
  uint64_t seed = 800;
  for (const auto& p : std::vector<ShapePair>{{{4, 97}, {97}}, {{7, 5}, {7, 1}}, {{3, 4}, {}}, {{15, 15}, {15, 15}},
                                              {{300, 333}, {300, 333}}, {{0, 3}, {3}}})
    for (Layout lt : {Layout::contiguous, Layout::transposed, Layout::strided})
      for (double alpha : {1.0, -0.5}) {
        INFO(p.a << " += " << alpha << " * " << p.b << " (" << layout_name(lt) << ")");
        const auto vt = stored<TestType>(values(p.a.numel(), -2, 2, seed++));
        const auto vo = stored<TestType>(values(p.b.numel(), -2, 2, seed++));
        Tensor<TestType> t = make_tensor<TestType>(p.a, vt, lt);
        const uint64_t version = t.version();
        const Tensor<TestType> returned = add_(t, make_tensor<TestType>(p.b, vo, Layout::strided), alpha);
        REQUIRE(returned.data() == t.data());
        REQUIRE(t.version() > version);
        require_close(t, binary_reference(p.a, p.a, vt, p.b, vo, [&](double x, double y) { return x + alpha * y; }));
        const auto before = to_double(t);
        mul_(t, -1.5);
        std::vector<double> ref;
        for (double x : stored<TestType>(before)) ref.push_back(x * -1.5);
        require_close(t, ref);
      }
}

TEST_CASE("in-place helpers write through views into the base", "[elementwise][inplace]") {
  Tensor<float> base = make_tensor<float>({2, 3}, {1, 2, 3, 4, 5, 6});
  add_(base.select(1, 1), make_tensor<float>({2}, {10, 20}));
  mul_(base.transpose(0, 1).select(0, 2), 2.0);
  require_close(base, {1, 12, 6, 4, 25, 12});
}

TEST_CASE("in-place helpers refuse tensors in the graph, bad shapes and expanded targets", "[elementwise][inplace][errors]") {
  Tensor<float> w = Tensor<float>::ones({2, 3});
  w.requires_grad_();
  const Tensor<float> g = Tensor<float>::ones({2, 3});
  REQUIRE_THROWS_AS(add_(w, g), loom::Error);
  REQUIRE_THROWS_WITH(add_(w, g), Contains("add_") && Contains("autograd graph"));
  REQUIRE_THROWS_WITH(mul_(w, 0.5), Contains("mul_") && Contains("autograd graph"));
  REQUIRE_THROWS_WITH(mul_(w * 2.0, 0.5), Contains("mul_") && Contains("autograd graph"));  // a non-leaf
  {
    NoGradGuard no_grad;  // how optimizers update parameters
    const uint64_t version = w.version();
    add_(w, g, -0.5);
    mul_(w, 4.0);
    REQUIRE(w.version() == version + 2);
  }
  require_close(w, {2, 2, 2, 2, 2, 2});
  add_(w.detach(), g);  // a detached handle shares the data and may be changed
  require_close(w, {3, 3, 3, 3, 3, 3});

  const Tensor<float> t = Tensor<float>::zeros({3});
  REQUIRE_THROWS_AS(add_(t, Tensor<float>::ones({2, 3})), loom::Error);
  REQUIRE_THROWS_WITH(add_(t, Tensor<float>::ones({2, 3})), Contains("add_") && Contains("[2, 3]") && Contains("[3]"));
  REQUIRE_THROWS_WITH(add_(t, Tensor<float>::ones({4})), Contains("add_") && Contains("[4]") && Contains("[3]"));
  REQUIRE_THROWS_WITH(add_(Tensor<float>::zeros({1}).expand({4}), Tensor<float>::ones({4})),
                      Contains("add_") && Contains("expanded"));
  REQUIRE_THROWS_WITH(add_(Tensor<float>(), t), Contains("add_") && Contains("undefined"));
  REQUIRE_THROWS_WITH(add_(t, Tensor<float>()), Contains("add_") && Contains("undefined"));
}
