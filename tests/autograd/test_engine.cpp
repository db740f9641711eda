// The autograd engine's semantics, exercised with custom functions whose math is written out here
// (so these tests depend on nothing but the engine): accumulation, retain_graph, freed graphs,
// no-grad, detach, version checks, diamonds, error messages.
#include <catch2/catch.hpp>

#include "loom/autograd/function.hpp"
#include "loom/autograd/gradcheck.hpp"
#include "support/check.hpp"

using loom::Tensor;
using loom::autograd::Function;
using loom::autograd::FunctionContext;

namespace {

// y = a * b elementwise (same shapes); saves both inputs.
struct Mul {
  static constexpr const char* name = "TestMul";
  template <class T>
  static Tensor<T> forward(FunctionContext& ctx, const Tensor<T>& a, const Tensor<T>& b) {
    ctx.save_for_backward(a, b);
    const auto va = a.to_vector(), vb = b.to_vector();
    std::vector<T> out(va.size());
    for (size_t i = 0; i < va.size(); ++i) out[i] = va[i] * vb[i];
    return Tensor<T>::from_vector(a.shape(), out);
  }
  template <class T>
  static std::vector<Tensor<T>> backward(FunctionContext& ctx, const Tensor<T>& g) {
    return {forward_plain(g, ctx.saved<T>(1)), forward_plain(g, ctx.saved<T>(0))};
  }
  template <class T>
  static Tensor<T> forward_plain(const Tensor<T>& a, const Tensor<T>& b) {
    FunctionContext scratch;
    return forward(scratch, a, b);
  }
};

// s = sum(x) -> scalar.
struct Sum {
  template <class T>
  static Tensor<T> forward(FunctionContext& ctx, const Tensor<T>& x) {
    ctx.set("shape", x.shape());
    T s = 0;
    for (T v : x.to_vector()) s += v;
    return Tensor<T>::scalar(s);
  }
  template <class T>
  static std::vector<Tensor<T>> backward(FunctionContext& ctx, const Tensor<T>& g) {
    return {Tensor<T>::full(ctx.get<loom::Shape>("shape"), g.item())};
  }
};

// Returns a gradient of the wrong shape, to exercise the engine's check.
struct BadShape {
  static Tensor<float> forward(FunctionContext&, const Tensor<float>& x) { return x.clone(); }
  static std::vector<Tensor<float>> backward(FunctionContext&, const Tensor<float>&) {
    return {Tensor<float>::zeros({1})};
  }
};

template <class T>
Tensor<T> mul(const Tensor<T>& a, const Tensor<T>& b) { return Function<Mul>::apply(a, b); }
template <class T>
Tensor<T> sum(const Tensor<T>& x) { return Function<Sum>::apply(x); }

}  // namespace

TEST_CASE("leaf gradients accumulate across backward calls until zeroed", "[autograd]") {
  auto x = Tensor<double>::from_vector({3}, {1, 2, 3}).requires_grad_();
  auto y = Tensor<double>::from_vector({3}, {4, 5, 6}).requires_grad_();
  sum(mul(x, y)).backward();
  loom::test::require_close(x.grad(), {4, 5, 6});
  loom::test::require_close(y.grad(), {1, 2, 3});
  sum(mul(x, y)).backward();
  loom::test::require_close(x.grad(), {8, 10, 12});
  x.zero_grad();
  loom::test::require_close(x.grad(), {0, 0, 0});
  sum(mul(x, x)).backward();  // the same leaf on both inputs: 2x
  loom::test::require_close(x.grad(), {2, 4, 6});
}

TEST_CASE("a diamond graph sums the gradients of both paths", "[autograd]") {
  auto x = Tensor<double>::from_vector({2, 2}, {1, -2, 3, 0.5}).requires_grad_();
  auto a = mul(x, x);                                 // x^2
  auto b = mul(a, x.transpose(0, 1).transpose(0, 1));  // x^3 through views
  auto loss = sum(mul(a, b));                          // x^5
  loss.backward();
  std::vector<double> ref;
  for (double v : {1.0, -2.0, 3.0, 0.5}) ref.push_back(5 * v * v * v * v);
  loom::test::require_close(x.grad(), ref);
}

TEST_CASE("backward needs an explicit gradient for non-scalars", "[autograd]") {
  auto x = Tensor<float>::ones({2, 3}).requires_grad_();
  auto y = mul(x, x);
  REQUIRE_THROWS_WITH(y.backward(), Catch::Contains("not a scalar") && Catch::Contains("[2, 3]"));
  REQUIRE_THROWS_WITH(y.backward(Tensor<float>::ones({3, 2})), Catch::Contains("[3, 2]") && Catch::Contains("[2, 3]"));
  y.backward(Tensor<float>::full({2, 3}, 0.5f));
  loom::test::require_close(x.grad(), std::vector<double>(6, 1.0));
}

TEST_CASE("the graph is freed by backward unless retained", "[autograd]") {
  auto x = Tensor<double>::from_vector({2}, {1, 2}).requires_grad_();
  auto loss = sum(mul(x, x));
  loss.backward(Tensor<double>(), /*retain_graph=*/true);
  loss.backward();  // second pass allowed because the first retained the graph
  loom::test::require_close(x.grad(), {4, 8});
  REQUIRE_THROWS_WITH(loss.backward(), Catch::Contains("already freed") && Catch::Contains("retain_graph"));
}

TEST_CASE("no-grad and inference mode record nothing, detach cuts the graph", "[autograd]") {
  auto x = Tensor<float>::ones({4}).requires_grad_();
  {
    loom::NoGradGuard guard;
    auto y = mul(x, x);
    REQUIRE_FALSE(y.requires_grad());
    REQUIRE(y.grad_fn_name().empty());
  }
  {
    loom::InferenceMode guard;
    REQUIRE_FALSE(mul(x, x).requires_grad());
  }
  auto y = mul(x, x);
  REQUIRE(y.requires_grad());
  REQUIRE(y.grad_fn_name() == "TestMul");
  auto d = y.detach();
  REQUIRE_FALSE(d.requires_grad());
  REQUIRE(d.data() == y.data());  // shares storage
  REQUIRE_THROWS_WITH(sum(d).backward(), Catch::Contains("does not require grad"));
}

TEST_CASE("modifying a saved tensor in place is detected at backward", "[autograd]") {
  auto x = Tensor<double>::from_vector({3}, {1, 2, 3}).requires_grad_();
  auto c = Tensor<double>::from_vector({3}, {2, 2, 2});  // no grad, saved by Mul
  auto loss = sum(mul(x, c));
  c.fill_(5.0);  // bumps the version counter of c's storage
  REQUIRE_THROWS_WITH(loss.backward(), Catch::Contains("TestMul") && Catch::Contains("modified in place"));
}

TEST_CASE("in-place changes of graph tensors are refused while recording", "[autograd]") {
  auto x = Tensor<float>::ones({3}).requires_grad_();
  REQUIRE_THROWS_WITH(x.fill_(2.0f), Catch::Contains("fill_") && Catch::Contains("NoGradGuard"));
  {
    loom::NoGradGuard guard;
    x.fill_(2.0f);  // what optimizers do
  }
  REQUIRE(x.at({0}) == 2.0f);
}

TEST_CASE("requires_grad only on floating-point leaves", "[autograd]") {
  auto idx = Tensor<int64_t>::zeros({3});
  REQUIRE_THROWS_WITH(idx.requires_grad_(), Catch::Contains("int64"));
  auto x = Tensor<float>::ones({3}).requires_grad_();
  auto y = mul(x, x);
  REQUIRE_THROWS_WITH(y.requires_grad_(false), Catch::Contains("leaf") && Catch::Contains("TestMul"));
}

TEST_CASE("a gradient of the wrong shape is reported naming the node", "[autograd]") {
  auto x = Tensor<float>::ones({2, 2}).requires_grad_();
  auto y = Function<BadShape>::apply(x);
  REQUIRE_THROWS_WITH(y.backward(Tensor<float>::ones({2, 2})),
                      Catch::Contains("CustomFunction") && Catch::Contains("[1]") && Catch::Contains("[2, 2]"));
}

TEST_CASE("dtype conversion is differentiable and type-checked", "[autograd]") {
  auto x = Tensor<float>::from_vector({2}, {1.5f, -2.0f}).requires_grad_();
  auto xd = x.to<double>();
  sum(mul(xd, xd)).backward();
  REQUIRE(x.grad().defined());
  loom::test::require_close(x.grad(), {3.0, -4.0});
  // An untyped handle cannot be re-typed to the wrong element type.
  REQUIRE_THROWS_WITH(Tensor<double>(x.impl()), Catch::Contains("float32"));
}

TEST_CASE("gradcheck accepts correct gradients and catches wrong ones", "[autograd][gradcheck]") {
  auto a = Tensor<double>::from_vector({2, 3}, {0.1, -0.4, 2.0, 1.1, 0.3, -1.7}).requires_grad_();
  // Non-contiguous leaf: a transposed base.
  auto b = Tensor<double>::from_vector({3, 2}, {0.5, 1.5, -2.5, 0.25, 1.0, -1.0}).transpose(0, 1).detach().requires_grad_();
  REQUIRE_FALSE(b.is_contiguous());
  auto good = loom::autograd::gradcheck([](const auto& in) { return mul(mul(in[0], in[1]), in[0]); }, {a, b});
  INFO(good.message);
  REQUIRE(good.ok);

  struct WrongScale {  // claims d(2x)/dx = 3
    static Tensor<double> forward(FunctionContext&, const Tensor<double>& x) {
      auto v = x.to_vector();
      for (double& e : v) e *= 2;
      return Tensor<double>::from_vector(x.shape(), v);
    }
    static std::vector<Tensor<double>> backward(FunctionContext&, const Tensor<double>& g) {
      auto v = g.to_vector();
      for (double& e : v) e *= 3;
      return {Tensor<double>::from_vector(g.shape(), v)};
    }
  };
  auto bad = loom::autograd::gradcheck([](const auto& in) { return Function<WrongScale>::apply(in[0]); }, {a});
  REQUIRE_FALSE(bad.ok);
  REQUIRE(bad.worst_input == 0);
  // The loss weights each output by w in [0.5, 1.5): numeric = 2w, analytic = 3w.
  REQUIRE(bad.analytic / bad.numeric == Approx(1.5).epsilon(1e-6));
}

TEST_CASE("views propagate gradients back to the base shape", "[autograd][views]") {
  auto x = Tensor<double>::from_vector({2, 3}, {1, 2, 3, 4, 5, 6}).requires_grad_();
  auto r = loom::autograd::gradcheck(
      [](const auto& in) {
        auto v = in[0].permute({1, 0}).slice(0, 0, 3, 2).reshape({-1}).unsqueeze(0).expand({3, 4});
        return mul(v, v);
      },
      {x});
  INFO(r.message);
  REQUIRE(r.ok);
}
