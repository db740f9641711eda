// The functors of loom/ops/elementwise_functors.hpp — the per-element math that the CPU ops and the
// CUDA kernels share — called on the host in float and double at a few points each, against the
// formulas evaluated independently in double (derivatives written out by hand). The CPU ops'
// own tests (test_elementwise*.cpp) pin the tensor-level behaviour; this file pins each functor,
// including the element-at-a-time GELU forms that only the device runs. Also checks at compile
// time that every listed functor is device-capable and that a lambda is refused.
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "loom/cuda/elementwise.hpp"
#include "loom/ops/elementwise_functors.hpp"
#include "loom/ops/elementwise_map.hpp"
#include "support/check.hpp"

namespace fn = loom::fn;
using loom::test::require_close;
using loom::test::tol_for;

namespace {

const std::vector<double> kPoints = {-7.5, -3.0, -1.25, -0.75, -0.3, 0.0, 0.2, 0.7, 1.0, 2.5, 4.2, 9.0};
const std::vector<double> kPositive = {1e-3, 0.05, 0.3, 0.7, 1.0, 1.6, 3.0, 12.0};

// f(x) in float and in double against ref(x) at the float-rounded points.
template <class F>
void check_unary(const char* name, F f, const std::function<double(double)>& ref, const std::vector<double>& xs) {
  std::vector<double> ours_f, ours_d, want;
  for (double x0 : xs) {
    const double x = double(float(x0));
    ours_f.push_back(double(f(float(x))));
    ours_d.push_back(double(f(x)));
    want.push_back(ref(x));
  }
  INFO(name);
  require_close(ours_f, want, tol_for<float>());
  require_close(ours_d, want, tol_for<double>());
}

// f(x, y) over all pairs of points.
template <class F>
void check_binary(const char* name, F f, const std::function<double(double, double)>& ref,
                  const std::vector<double>& xs, const std::vector<double>& ys) {
  std::vector<double> ours_f, ours_d, want;
  for (double x0 : xs) {
    for (double y0 : ys) {
      const double x = double(float(x0)), y = double(float(y0));
      ours_f.push_back(double(f(float(x), float(y))));
      ours_d.push_back(double(f(x, y)));
      want.push_back(ref(x, y));
    }
  }
  INFO(name);
  require_close(ours_f, want, tol_for<float>());
  require_close(ours_d, want, tol_for<double>());
}

// f(g, x, y) with g = 0.75 over all pairs.
template <class F>
void check_ternary(const char* name, F f, const std::function<double(double, double, double)>& ref,
                   const std::vector<double>& xs, const std::vector<double>& ys) {
  check_binary(
      name, [f](auto x, auto y) { return f(decltype(x)(0.75), x, y); },
      [ref](double x, double y) { return ref(0.75, x, y); }, xs, ys);
}

double gelu_erf(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }
double gelu_erf_grad(double x) {
  return 0.5 * (1 + std::erf(x / std::sqrt(2.0))) + x * std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI);
}
double gelu_tanh(double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }
double gelu_tanh_grad(double x) {
  const double t = std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * std::sqrt(2 / M_PI) * (1 + 3 * 0.044715 * x * x);
}

}  // namespace

TEST_CASE("elementwise functors: arithmetic and scalar forms match double formulas", "[elementwise][functors]") {
  check_binary(
      "Add", fn::Add{}, [](double x, double y) { return x + y; }, kPoints, kPoints);
  check_binary(
      "Sub", fn::Sub{}, [](double x, double y) { return x - y; }, kPoints, kPoints);
  check_binary(
      "Mul", fn::Mul{}, [](double x, double y) { return x * y; }, kPoints, kPoints);
  check_binary(
      "Div", fn::Div{}, [](double x, double y) { return x / y; }, kPoints, kPositive);
  check_binary(
      "Pow", fn::Pow{}, [](double x, double y) { return std::pow(x, y); }, kPositive, kPoints);
  check_unary(
      "Neg", fn::Neg{}, [](double x) { return -x; }, kPoints);
  check_unary(
      "Square", fn::Square{}, [](double x) { return x * x; }, kPoints);
  // Scalar functors hold the scalar in the compute type: one instance per type.
  auto scalar = [](const char* name, auto make, const std::function<double(double)>& ref,
                   const std::vector<double>& xs) {
    std::vector<double> ours_f, ours_d, want;
    for (double x0 : xs) {
      const double x = double(float(x0));
      ours_f.push_back(double(make(float{})(float(x))));
      ours_d.push_back(double(make(double{})(x)));
      want.push_back(ref(x));
    }
    INFO(name);
    require_close(ours_f, want, tol_for<float>());
    require_close(ours_d, want, tol_for<double>());
  };
  scalar(
      "AddScalar", [](auto c) { return fn::AddScalar<decltype(c)>{decltype(c)(0.375)}; },
      [](double x) { return x + 0.375; }, kPoints);
  scalar(
      "SubScalar", [](auto c) { return fn::SubScalar<decltype(c)>{decltype(c)(0.375)}; },
      [](double x) { return x - 0.375; }, kPoints);
  scalar(
      "RsubScalar", [](auto c) { return fn::RsubScalar<decltype(c)>{decltype(c)(0.375)}; },
      [](double x) { return 0.375 - x; }, kPoints);
  scalar(
      "MulScalar", [](auto c) { return fn::MulScalar<decltype(c)>{decltype(c)(-2.5)}; },
      [](double x) { return x * -2.5; }, kPoints);
  scalar(
      "DivScalar", [](auto c) { return fn::DivScalar<decltype(c)>{decltype(c)(-2.5)}; },
      [](double x) { return x / -2.5; }, kPoints);
  scalar(
      "RdivScalar", [](auto c) { return fn::RdivScalar<decltype(c)>{decltype(c)(-2.5)}; },
      [](double x) { return -2.5 / x; }, kPositive);
  scalar(
      "PowScalar", [](auto c) { return fn::PowScalar<decltype(c)>{decltype(c)(1.5)}; },
      [](double x) { return std::pow(x, 1.5); }, kPositive);
  scalar(
      "Clamp",
      [](auto c) {
        return fn::Clamp<decltype(c)>{decltype(c)(-1), decltype(c)(2)};
      },
      [](double x) { return x < -1 ? -1 : (x > 2 ? 2 : x); }, kPoints);
  scalar(
      "AddScaled",
      [](auto c) {
        return [f = fn::AddScaled<decltype(c)>{decltype(c)(0.5)}](auto x) { return f(x, decltype(x)(3)); };
      },
      [](double x) { return x + 0.5 * 3; }, kPoints);
  scalar(
      "MaskedFill on",
      [](auto c) { return [f = fn::MaskedFill<decltype(c)>{decltype(c)(-4)}](auto x) { return f(x, uint8_t(1)); }; },
      [](double) { return -4.0; }, kPoints);
  scalar(
      "MaskedFill off",
      [](auto c) { return [f = fn::MaskedFill<decltype(c)>{decltype(c)(-4)}](auto x) { return f(x, uint8_t(0)); }; },
      [](double x) { return x; }, kPoints);
}

TEST_CASE("elementwise functors: unary math and GELU forms match double formulas", "[elementwise][functors]") {
  check_unary(
      "Exp", fn::Exp{}, [](double x) { return std::exp(x); }, kPoints);
  check_unary(
      "Log", fn::Log{}, [](double x) { return std::log(x); }, kPositive);
  check_unary(
      "Sqrt", fn::Sqrt{}, [](double x) { return std::sqrt(x); }, kPositive);
  check_unary(
      "Rsqrt", fn::Rsqrt{}, [](double x) { return 1 / std::sqrt(x); }, kPositive);
  check_unary(
      "Tanh", fn::Tanh{}, [](double x) { return std::tanh(x); }, kPoints);
  check_unary(
      "Erf", fn::Erf{}, [](double x) { return std::erf(x); }, kPoints);
  check_unary(
      "Abs", fn::Abs{}, [](double x) { return std::abs(x); }, kPoints);
  check_unary(
      "Sigmoid", fn::Sigmoid{}, [](double x) { return 1 / (1 + std::exp(-x)); }, kPoints);
  check_unary(
      "Relu", fn::Relu{}, [](double x) { return x > 0 ? x : 0; }, kPoints);
  check_unary("GeluErf", fn::GeluErf{}, gelu_erf, kPoints);
  check_unary("GeluTanh", fn::GeluTanh{}, gelu_tanh, kPoints);
  // Saturation: beyond the clamps gelu is x or 0, and nan stays nan.
  for (float x : {-1e30f, -200.f, 200.f, 1e30f}) {
    CHECK(fn::GeluTanh{}(x) == (x > 0 ? x : 0.f));
    CHECK(fn::GeluTanhGrad{}(1.f, x) == (x > 0 ? 1.f : 0.f));
  }
  CHECK(std::isnan(fn::GeluTanh{}(std::numeric_limits<float>::quiet_NaN())));
  CHECK(std::isnan(fn::GeluErf{}(std::numeric_limits<float>::quiet_NaN())));
  CHECK(std::isnan(fn::Relu{}(std::numeric_limits<float>::quiet_NaN())));
}

TEST_CASE("elementwise functors: backward expressions match hand-derived derivatives", "[elementwise][functors]") {
  // (g, saved): g = 0.75 times the derivative, written from the input x.
  auto grad = [](const char* name, auto f, const std::function<double(double)>& saved,
                 const std::function<double(double)>& derivative, const std::vector<double>& xs) {
    std::vector<double> ours_f, ours_d, want;
    for (double x0 : xs) {
      const double x = double(float(x0));
      const double s = saved(x);
      ours_f.push_back(double(f(0.75f, float(s))));
      ours_d.push_back(double(f(0.75, s)));
      want.push_back(0.75 * derivative(x));
    }
    INFO(name);
    // The float result is computed from the saved value rounded to float: allow its rounding.
    require_close(ours_f, want, {1e-6, 4e-6});
    // Functors holding a float scalar compute in float even when called with doubles.
    if (std::is_same_v<decltype(f(0.75, 0.5)), double>) require_close(ours_d, want, tol_for<double>());
  };
  const auto id = [](double x) { return x; };
  grad(
      "SqrtGrad", fn::SqrtGrad{}, [](double x) { return std::sqrt(x); }, [](double x) { return 0.5 / std::sqrt(x); },
      kPositive);
  grad(
      "RsqrtGrad", fn::RsqrtGrad{}, [](double x) { return 1 / std::sqrt(x); },
      [](double x) { return -0.5 * std::pow(x, -1.5); }, kPositive);
  grad(
      "TanhGrad", fn::TanhGrad{}, [](double x) { return std::tanh(x); },
      [](double x) { return 1 / (std::cosh(x) * std::cosh(x)); }, {-2.0, -0.5, 0.0, 0.3, 1.0, 2.0});
  grad(
      "ErfGrad", fn::ErfGrad{}, id, [](double x) { return 2 / std::sqrt(M_PI) * std::exp(-x * x); }, kPoints);
  grad(
      "AbsGrad", fn::AbsGrad{}, id, [](double x) { return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0); }, kPoints);
  grad(
      "SigmoidGrad", fn::SigmoidGrad{}, [](double x) { return 1 / (1 + std::exp(-x)); },
      [](double x) { return std::exp(-x) / ((1 + std::exp(-x)) * (1 + std::exp(-x))); }, kPoints);
  grad(
      "ReluGrad", fn::ReluGrad{}, [](double x) { return x > 0 ? x : 0; }, [](double x) { return x > 0 ? 1.0 : 0.0; },
      kPoints);
  grad(
      "SquareGrad", fn::SquareGrad{}, id, [](double x) { return 2 * x; }, kPoints);
  grad("GeluErfGrad", fn::GeluErfGrad{}, id, gelu_erf_grad, kPoints);
  grad("GeluTanhGrad", fn::GeluTanhGrad{}, id, gelu_tanh_grad, kPoints);
  grad(
      "ClampGrad", fn::ClampGrad<float>{-1, 2}, id, [](double x) { return x >= -1 && x <= 2 ? 1.0 : 0.0; }, kPoints);
  grad(
      "RdivScalarGrad", fn::RdivScalarGrad<float>{-2.5f}, id, [](double x) { return 2.5 / (x * x); }, kPositive);
  grad(
      "PowScalarGrad", fn::PowScalarGrad<float>{1.5f, 0.5f}, id, [](double x) { return 1.5 * std::sqrt(x); },
      kPositive);
  CHECK(fn::PowScalarGrad<float>{0.f, -1.f}(1.f, 0.f) == 0.f);  // d(x^0)/dx = 0, also at 0

  check_ternary(
      "DivGradDenominator", fn::DivGradDenominator{}, [](double g, double x, double y) { return -g * x / (y * y); },
      kPoints, kPositive);
  check_ternary(
      "PowGradBase", fn::PowGradBase{},
      [](double g, double x, double y) { return y == 0 ? 0 : g * y * std::pow(x, y - 1); }, kPositive, kPoints);
  check_ternary(
      "PowGradExponent", fn::PowGradExponent{},
      [](double g, double x, double y) { return g * std::pow(x, y) * std::log(x); }, kPositive, kPoints);
  CHECK(fn::PowGradExponent{}(1.f, 0.f, 2.f) == 0.f);  // 0 * log(0) taken as 0, as PyTorch
  check_ternary(
      "MaximumGrad", fn::MaximumGrad{}, [](double g, double x, double y) { return x == y ? g / 2 : (x > y ? g : 0); },
      kPoints, kPoints);
  check_ternary(
      "MinimumGrad", fn::MinimumGrad{}, [](double g, double x, double y) { return x == y ? g / 2 : (x < y ? g : 0); },
      kPoints, kPoints);
  check_binary(
      "Maximum", fn::Maximum{}, [](double x, double y) { return std::max(x, y); }, kPoints, kPoints);
  check_binary(
      "Minimum", fn::Minimum{}, [](double x, double y) { return std::min(x, y); }, kPoints, kPoints);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  CHECK(std::isnan(fn::Maximum{}(nan, 1.f)));
  CHECK(std::isnan(fn::Maximum{}(1.f, nan)));
  CHECK(std::isnan(fn::Minimum{}(1.f, nan)));
}

TEST_CASE("elementwise functors: selections, comparisons and isfinite", "[elementwise][functors]") {
  CHECK(fn::Where{}(uint8_t(1), 2.f, 3.f) == 2.f);
  CHECK(fn::Where{}(uint8_t(0), 2.f, 3.f) == 3.f);
  CHECK(fn::PassWhere{}(5.f, uint8_t(7)) == 5.f);
  CHECK(fn::PassWhere{}(5.f, uint8_t(0)) == 0.f);
  CHECK(fn::PassWhereNot{}(5.f, uint8_t(7)) == 0.f);
  CHECK(fn::PassWhereNot{}(5.f, uint8_t(0)) == 5.f);
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (float x : {-1.f, 0.f, 0.5f, nan}) {
    for (float y : {-1.f, 0.f, 0.5f, nan}) {
      CHECK(fn::Compare<fn::Eq>{}(x, y) == uint8_t(x == y));
      CHECK(fn::Compare<fn::Ne>{}(x, y) == uint8_t(x != y));
      CHECK(fn::Compare<fn::Lt>{}(x, y) == uint8_t(x < y));
      CHECK(fn::Compare<fn::Le>{}(x, y) == uint8_t(x <= y));
      CHECK(fn::Compare<fn::Gt>{}(x, y) == uint8_t(x > y));
      CHECK(fn::Compare<fn::Ge>{}(x, y) == uint8_t(x >= y));
      CHECK(fn::CompareFloatScalar<fn::Lt>{y}(x) == uint8_t(x < y));
    }
  }
  // Integer tensors compare with the scalar in double: 0 < 0.5.
  CHECK(fn::CompareScalar<fn::Lt, double>{0.5}(int64_t(0)) == 1);
  CHECK(fn::CompareScalar<fn::Le, double>{0.5}(int64_t(1)) == 0);
  for (float x : {0.f, -0.f, 1e-40f, -3.f, 3.4e38f}) CHECK(fn::IsFinite{}(x) == 1);
  for (float x : {inf, -inf, nan}) CHECK(fn::IsFinite{}(x) == 0);
  CHECK(fn::IsFinite{}(1e308) == 1);
  CHECK(fn::IsFinite{}(std::numeric_limits<double>::infinity()) == 0);
}

// The CUDA branch's compile-time checks: every listed functor says it runs on the device, and a
// lambda does not (map_elements on a CUDA tensor with it is a static_assert, not a link error).
#define LOOM_CHECK_LISTED(in_place, F, ...)                                              \
  static_assert(loom::detail::DeviceFunctor<F>, #F " is listed but not marked kDevice"); \
  static_assert(loom::cuda::has_elementwise_kernel<in_place, F, __VA_ARGS__>);
LOOM_CUDA_ELEMENTWISE_KERNELS(LOOM_CHECK_LISTED, float)
LOOM_CUDA_ELEMENTWISE_KERNELS(LOOM_CHECK_LISTED, loom::bf16)
#undef LOOM_CHECK_LISTED
static_assert(!loom::detail::DeviceFunctor<decltype([](float x) { return x; })>);
static_assert(!loom::cuda::has_elementwise_kernel<false, fn::Add, double, double, double>);
static_assert(!loom::cuda::has_elementwise_kernel<false, fn::Add, int64_t, int64_t, int64_t>);
