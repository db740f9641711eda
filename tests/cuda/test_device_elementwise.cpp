// Elementwise ops on CUDA tensors — every op ported through the functors of
// loom/ops/elementwise_functors.hpp — against the same op on CPU tensors: float and bf16, sizes
// 1, 7, 97 and 225 (a transposed [15, 15] view among them), a broadcast [1, N] + [M, 1] pair, the
// scalar forms, the in-place updates, and gradients through autograd (same-shape inputs, and the
// broadcast pair through the reduction family's device sum_to). SKIPs without a GPU.
//
// Tolerance: tol_for<T>(). float: the device's expf/erff/tanhf/powf and the CPU's vectorized
// Eigen versions or glibc are each within a few ulps of the exact value, far inside rtol 1e-5;
// bf16: both sides compute in float and round once, so they differ by at most one bf16 rounding
// (2^-8 relative < 1/128). The bf16 gradients of exp, tanh, sigmoid, sqrt and rsqrt are computed
// from the rounded forward output, which may itself differ by that one rounding (and 1 - y^2 near
// y = 1, or y^3, amplifies it): those are compared with the CPU backward formula applied to the
// device's own forward output instead, which pins the device backward kernel just as tightly.
//
// One test case needs no GPU: it runs the kernel's per-element code (Operands::flat / strided of
// kernels/elementwise_operands.cuh, host-and-device functions) on the CPU over host buffers for
// every functor of LOOM_CUDA_ELEMENTWISE_KERNELS, and requires the CPU op's exact result.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "device_types.cuh"
#include "elementwise_operands.cuh"
#include "loom/cuda/device_info.hpp"
#include "loom/loom.hpp"
#include "support/check.hpp"
#include "support/gpu.hpp"

using loom::bf16;
using loom::CPU;
using loom::CUDA;
using loom::Shape;
using loom::Tensor;
namespace fn = loom::fn;
using loom::test::require_close;
using loom::test::to_double;
using loom::test::tol_for;

namespace {

template <class T>
Tensor<T> uniform_values(const Shape& shape, double lo, double hi, uint64_t seed) {
  loom::Generator gen(seed);
  return loom::uniform<T>(shape, lo, hi, gen);
}

template <class T>
Tensor<T, CUDA> on_device(const Tensor<T>& t) {
  return t.template to_device<CUDA>();
}

// The inputs of one case: shape name and a CPU tensor (possibly a transposed view).
struct Layout {
  std::string name;
  Shape shape;         // of the stored tensor
  bool transposed;     // use .transpose(0, 1) of it
};

const std::vector<Layout> kLayouts = {
    {"[1]", {1}, false}, {"[7]", {7}, false}, {"[97]", {97}, false}, {"[15, 15]^T", {15, 15}, true},
    {"[9, 25]", {9, 25}, false}};

template <class T>
Tensor<T> make_input(const Layout& layout, double lo, double hi, uint64_t seed) {
  const Tensor<T> t = uniform_values<T>(layout.shape, lo, hi, seed);
  return layout.transposed ? t.transpose(0, 1) : t;
}

template <class T>
void require_matches(const Tensor<T, CUDA>& dev, const Tensor<T>& cpu, const std::string& what) {
  INFO(what);
  REQUIRE(dev.shape() == cpu.shape());
  require_close(dev, to_double(cpu), tol_for<T>());
}

// ---- the kernel's per-element code, run on the CPU ---------------------------------------------

// Operand k of the emulation, over the output shape [7, 13]: k = 0 a transposed view, k = 1 a
// broadcast row [1, 13], k = 2 a broadcast column [7, 1] (strided path); or all contiguous [7, 13]
// (flat path). uint8 operands are masks of 0 and 1.
template <class T>
Tensor<T> emulation_operand(size_t k, bool flat, uint64_t seed) {
  const Shape shape = flat ? Shape{7, 13} : (k == 0 ? Shape{13, 7} : (k == 1 ? Shape{1, 13} : Shape{7, 1}));
  Tensor<T> t;
  if constexpr (std::is_same_v<T, uint8_t>) {
    const Tensor<float> u = uniform_values<float>(shape, 0, 1, seed);
    t = loom::gt(u, 0.5);
  } else {
    t = uniform_values<T>(shape, -3, 3, seed);
  }
  return !flat && k == 0 ? t.transpose(0, 1) : t;
}

// What ElementwiseKernel<InPlace, F, TOut, Ts...>::launch computes, one element at a time on the
// host, into `out` (also the first argument when in place).
template <bool InPlace, class F, class TOut, class... Ts>
void emulate_kernel(const F& f, const Tensor<TOut>& out, const Tensor<Ts>&... in) {
  namespace ew = loom::cuda::elementwise_detail;
  using loom::kernels::detail::dev;
  using loom::kernels::detail::device_t;
  const Shape shape = out.shape();
  const auto map =
      loom::cuda::make_offset_map<sizeof...(Ts) + 1>(shape, {out.strides(), in.expand_strides_to(shape)...});
  using Ops = ew::Operands<InPlace, F, device_t<TOut>, std::index_sequence_for<Ts...>, device_t<Ts>...>;
  const Ops ops{f, dev(out.data()), {static_cast<const void*>(dev(in.data()))...}, map};
  const bool flat = ew::all_unit_stride(map);
  for (int64_t i = 0; i < shape.numel(); ++i) flat ? ops.flat(i) : ops.strided(i);
}

template <bool InPlace, class F, class TOut, class... Ts, size_t... K>
void emulate_and_compare(const char* name, bool flat, std::index_sequence<K...>) {
  INFO(name << (std::is_same_v<TOut, bf16> || ((std::is_same_v<Ts, bf16>) || ...) ? " bf16" : " float")
            << (flat ? " flat" : " strided") << (InPlace ? " in place" : ""));
  const F f{};  // scalar members 0: the plumbing is under test, the functors' math elsewhere
  const std::tuple<Tensor<Ts>...> in{emulation_operand<Ts>(K, flat, 40 + K)...};
  Tensor<TOut> want, got;
  if constexpr (InPlace) {
    const Tensor<TOut> base = emulation_operand<TOut>(0, flat, 77);
    want = base.clone();
    got = base.clone();
    if (!flat) {  // a transposed destination
      want = want.transpose(0, 1).contiguous().transpose(0, 1);
      got = got.transpose(0, 1).contiguous().transpose(0, 1);
    }
    loom::detail::map_elements_inplace(want, f, std::get<K>(in)...);
  } else {
    want = loom::detail::map_elements<TOut>(Shape{7, 13}, 1, f, std::get<K>(in)...);
    got = Tensor<TOut>::zeros({7, 13});
  }
  emulate_kernel<InPlace>(f, got, std::get<K>(in)...);
  require_close(to_double(got), to_double(want), {0, 0});  // exact (nan where the CPU has nan)
}

template <bool InPlace, class F, class TOut, class... Ts>
void emulate_listed(const char* name) {
  for (bool flat : {true, false})
    emulate_and_compare<InPlace, F, TOut, Ts...>(name, flat, std::index_sequence_for<Ts...>{});
}

}  // namespace

TEST_CASE("CUDA elementwise: the kernel's per-element code, run on the CPU, equals the CPU op for every functor",
          "[cuda][elementwise][emulated]") {
#define LOOM_EMULATE(in_place, F, ...) emulate_listed<in_place, F, __VA_ARGS__>(#F);
  LOOM_CUDA_ELEMENTWISE_KERNELS(LOOM_EMULATE, float)
  LOOM_CUDA_ELEMENTWISE_KERNELS(LOOM_EMULATE, bf16)
#undef LOOM_EMULATE
}

namespace {

// A unary op, written once for both devices (a generic lambda), over every layout: forward, and
// backward through autograd when `grad` is set. `backward_from_output`, when given, is the op's
// backward functor over (g, y): for bf16 the reference gradient is then computed from the
// device's forward output (see the header comment).
template <class T, class Op, class D = std::nullptr_t>
void check_unary(const std::string& name, Op op, double lo, double hi, bool grad, D backward_from_output = nullptr) {
  uint64_t seed = 11;
  for (const Layout& layout : kLayouts) {
    const std::string what = name + " " + layout.name + (std::is_same_v<T, bf16> ? " bf16" : " float");
    const Tensor<T> x = make_input<T>(layout, lo, hi, ++seed);
    require_matches(op(on_device(x)), op(x), what + " forward");
    if (!grad) continue;
    const Tensor<T> g = uniform_values<T>(x.shape(), -1, 1, ++seed);
    const Tensor<T> xc = x.detach().requires_grad_();
    Tensor<T> yc = op(xc);
    yc.backward(g);
    const Tensor<T, CUDA> xd = on_device(x).detach().requires_grad_();
    Tensor<T, CUDA> yd = op(xd);
    yd.backward(on_device(g));
    REQUIRE(xd.grad().defined());
    if constexpr (!std::is_null_pointer_v<D>) {
      if (std::is_same_v<T, bf16>) {
        const Tensor<T> ref = loom::detail::map_elements<T>(g.shape(), 1, backward_from_output, g,
                                                            yd.detach().template to_device<CPU>());
        require_matches(xd.grad(), ref, what + " backward (from the device's output)");
        continue;
      }
    }
    require_matches(xd.grad(), xc.grad(), what + " backward");
  }
}

// Gradients of the broadcast pair row [1, 13], col [11, 1]: the elementwise backward, then sum_to
// (the reduction family's device sum in fp32; the CPU sums in double). Tolerance: tol_for<T>()
// plus n (n 2^-24 + d) M for n terms of size at most M: n - 1 fp32 roundings of partial sums up
// to n M, and each term up to d M off the CPU's (d: 4 float ulps; one bf16 rounding, 2^-8, where
// the terms are stored as bf16), with M read from the unsummed terms (the op on expanded copies).
template <class T, class Op>
void check_broadcast_grad(const std::string& name, Op op, const Tensor<T>& row, const Tensor<T>& col, uint64_t seed) {
  const Tensor<T> g = uniform_values<T>({11, 13}, -1, 1, seed + 1000);
  const Tensor<T> rc = row.detach().requires_grad_(), cc = col.detach().requires_grad_();
  op(rc, cc).backward(g);
  const Tensor<T, CUDA> rd = on_device(row).detach().requires_grad_(), cd = on_device(col).detach().requires_grad_();
  op(rd, cd).backward(on_device(g));
  const Tensor<T> re = row.expand({11, 13}).contiguous().detach().requires_grad_();
  const Tensor<T> ce = col.expand({11, 13}).contiguous().detach().requires_grad_();
  op(re, ce).backward(g);
  auto tolerance = [](const Tensor<T>& terms, double n) {
    double m = 0;
    for (double v : to_double(terms)) m = std::max(m, std::abs(v));
    const double d = std::is_same_v<T, bf16> ? std::ldexp(1.0, -8) : std::ldexp(4.0, -24);
    return loom::test::Tol{tol_for<T>().atol + n * (n * std::ldexp(1.0, -24) + d) * m, tol_for<T>().rtol};
  };
  {
    INFO(name << " broadcast backward of the [1, 13] row");
    require_close(rd.grad(), to_double(rc.grad()), tolerance(re.grad(), 11));
  }
  {
    INFO(name << " broadcast backward of the [11, 1] column");
    require_close(cd.grad(), to_double(cc.grad()), tolerance(ce.grad(), 13));
  }
}

// A binary op: same-shape layouts (forward and backward), and the broadcast pair [1, N] + [M, 1]
// (forward and backward). `a_lo`.. give each operand's range.
template <class T, class Op>
void check_binary(const std::string& name, Op op, double a_lo, double a_hi, double b_lo, double b_hi, bool grad) {
  uint64_t seed = 101;
  for (const Layout& layout : kLayouts) {
    const std::string what = name + " " + layout.name + (std::is_same_v<T, bf16> ? " bf16" : " float");
    const Tensor<T> a = make_input<T>(layout, a_lo, a_hi, ++seed);
    const Tensor<T> b = uniform_values<T>(a.shape(), b_lo, b_hi, ++seed);  // contiguous, a may be transposed
    require_matches(op(on_device(a), on_device(b)), op(a, b), what + " forward");
    if (!grad) continue;
    const Tensor<T> g = uniform_values<T>(a.shape(), -1, 1, ++seed);
    const Tensor<T> ac = a.detach().requires_grad_(), bc = b.detach().requires_grad_();
    op(ac, bc).backward(g);
    const Tensor<T, CUDA> ad = on_device(a).detach().requires_grad_(), bd = on_device(b).detach().requires_grad_();
    op(ad, bd).backward(on_device(g));
    require_matches(ad.grad(), ac.grad(), what + " backward a");
    require_matches(bd.grad(), bc.grad(), what + " backward b");
  }
  const Tensor<T> row = uniform_values<T>({1, 13}, a_lo, a_hi, ++seed);  // [1, N]
  const Tensor<T> col = uniform_values<T>({11, 1}, b_lo, b_hi, ++seed);  // [M, 1]
  require_matches(op(on_device(row), on_device(col)), op(row, col), name + " broadcast [1, 13] with [11, 1]");
  if (grad) check_broadcast_grad<T>(name, op, row, col, seed);
}

template <class T>
void check_all_unary() {
  using loom::GeluApprox;
  check_unary<T>("neg", [](const auto& x) { return -x; }, -3, 3, true);
  check_unary<T>("exp", [](const auto& x) { return loom::exp(x); }, -4, 4, true, fn::Mul{});
  check_unary<T>("log", [](const auto& x) { return loom::log(x); }, 0.05, 6, true);
  check_unary<T>("sqrt", [](const auto& x) { return loom::sqrt(x); }, 0.05, 6, true, fn::SqrtGrad{});
  check_unary<T>("rsqrt", [](const auto& x) { return loom::rsqrt(x); }, 0.05, 6, true, fn::RsqrtGrad{});
  check_unary<T>("tanh", [](const auto& x) { return loom::tanh(x); }, -3, 3, true, fn::TanhGrad{});
  check_unary<T>("erf", [](const auto& x) { return loom::erf(x); }, -3, 3, true);
  check_unary<T>("abs", [](const auto& x) { return loom::abs(x); }, -3, 3, true);
  check_unary<T>("sigmoid", [](const auto& x) { return loom::sigmoid(x); }, -6, 6, true, fn::SigmoidGrad{});
  check_unary<T>("relu", [](const auto& x) { return loom::relu(x); }, -3, 3, true);
  check_unary<T>("square", [](const auto& x) { return loom::square(x); }, -3, 3, true);
  check_unary<T>("clamp", [](const auto& x) { return loom::clamp(x, -1.0, 0.5); }, -3, 3, true);
  // Below x = -3 the CPU's erf-form gelu loses up to ~1e-6 absolute to the cancellation in
  // 1 + erf(z) (its vectorized erf is a few ulps off near -1): compared with the CPU above it,
  // with the exact formula below it (check_gelu_tail).
  check_unary<T>("gelu", [](const auto& x) { return loom::gelu(x); }, -3, 6, true);
  check_unary<T>("gelu tanh", [](const auto& x) { return loom::gelu(x, GeluApprox::tanh); }, -6, 6, true);
  // Scalar forms, both orders.
  check_unary<T>("x + 0.3", [](const auto& x) { return x + 0.3; }, -3, 3, true);
  check_unary<T>("x - 0.3", [](const auto& x) { return x - 0.3; }, -3, 3, true);
  check_unary<T>("0.3 - x", [](const auto& x) { return 0.3 - x; }, -3, 3, true);
  check_unary<T>("x * -1.7", [](const auto& x) { return x * -1.7; }, -3, 3, true);
  check_unary<T>("x / 1.7", [](const auto& x) { return x / 1.7; }, -3, 3, true);
  check_unary<T>("1.7 / x", [](const auto& x) { return 1.7 / x; }, 0.2, 3, true);
  check_unary<T>("x ^ 2", [](const auto& x) { return loom::pow(x, 2.0); }, -3, 3, true);
  check_unary<T>("x ^ 1.5", [](const auto& x) { return loom::pow(x, 1.5); }, 0.1, 3, true);
  check_unary<T>("x ^ 0", [](const auto& x) { return loom::pow(x, 0.0); }, -3, 3, true);
  // Selections and comparisons (uint8 results are exact on both sides; compared as numbers).
  check_unary<T>("masked_fill", [](const auto& x) { return loom::masked_fill(x, loom::gt(x, 0.5), -2.0); }, -3, 3,
                 true);
}

// gelu (erf form) on x in [-6, -3] against 0.5 x (1 + erf(x / sqrt 2)) in double: the device's
// erff keeps this tail within the float tolerance of the exact value.
void check_gelu_tail() {
  const Tensor<float> x = uniform_values<float>({97}, -6, -3, 17);
  std::vector<double> want;
  for (float v : x.to_vector()) want.push_back(0.5 * double(v) * (1 + std::erf(double(v) / std::sqrt(2.0))));
  INFO("gelu on [-6, -3] against the formula in double");
  require_close(loom::gelu(on_device(x)), want, tol_for<float>());
}

template <class T>
void check_all_binary() {
  check_binary<T>("add", [](const auto& a, const auto& b) { return a + b; }, -3, 3, -3, 3, true);
  check_binary<T>("sub", [](const auto& a, const auto& b) { return a - b; }, -3, 3, -3, 3, true);
  check_binary<T>("mul", [](const auto& a, const auto& b) { return a * b; }, -3, 3, -3, 3, true);
  check_binary<T>("div", [](const auto& a, const auto& b) { return a / b; }, -3, 3, 0.3, 3, true);
  check_binary<T>("pow", [](const auto& a, const auto& b) { return loom::pow(a, b); }, 0.1, 3, -2, 2, true);
  check_binary<T>("maximum", [](const auto& a, const auto& b) { return loom::maximum(a, b); }, -3, 3, -3, 3, true);
  check_binary<T>("minimum", [](const auto& a, const auto& b) { return loom::minimum(a, b); }, -3, 3, -3, 3, true);
  check_binary<T>("where", [](const auto& a, const auto& b) { return loom::where(loom::lt(a, b), a, b * 2.0); }, -3,
                  3, -3, 3, true);
}

// Comparisons and isfinite: uint8 results, exact on both sides.
template <class T>
void check_comparisons() {
  const Tensor<T> a = uniform_values<T>({15, 15}, -2, 2, 5).transpose(0, 1);
  Tensor<T> b = uniform_values<T>({15, 15}, -2, 2, 6);
  b.narrow(0, 0, 5).copy_(a.narrow(0, 0, 5));  // some ties
  const Tensor<T> row = uniform_values<T>({1, 15}, -2, 2, 7), col = uniform_values<T>({15, 1}, -2, 2, 8);
  auto same = [](const Tensor<uint8_t, CUDA>& d, const Tensor<uint8_t>& c, const char* what) {
    INFO(what);
    REQUIRE(d.shape() == c.shape());
    REQUIRE(d.to_vector() == c.to_vector());
  };
  const Tensor<T, CUDA> ad = on_device(a), bd = on_device(b), rd = on_device(row), cd = on_device(col);
  same(loom::eq(ad, bd), loom::eq(a, b), "eq");
  same(loom::ne(ad, bd), loom::ne(a, b), "ne");
  same(loom::lt(ad, bd), loom::lt(a, b), "lt");
  same(loom::le(ad, bd), loom::le(a, b), "le");
  same(loom::gt(ad, bd), loom::gt(a, b), "gt");
  same(loom::ge(ad, bd), loom::ge(a, b), "ge");
  same(loom::lt(rd, cd), loom::lt(row, col), "lt broadcast");
  same(loom::eq(ad, 0.5), loom::eq(a, 0.5), "eq scalar");
  same(loom::ne(ad, 0.5), loom::ne(a, 0.5), "ne scalar");
  same(loom::lt(ad, 0.1), loom::lt(a, 0.1), "lt scalar");
  same(loom::le(ad, 0.1), loom::le(a, 0.1), "le scalar");
  same(loom::gt(ad, -0.3), loom::gt(a, -0.3), "gt scalar");
  same(loom::ge(ad, -0.3), loom::ge(a, -0.3), "ge scalar");
  // isfinite over 0/0 (nan), 1/0 (inf) and ordinary values.
  const Tensor<T> z = uniform_values<T>({7, 9}, -1, 1, 9);
  Tensor<T> q = z.clone();
  q.narrow(0, 0, 2).fill_(T(0));                  // rows 0, 1: 0 / 0 = nan
  q.narrow(0, 2, 1).narrow(1, 0, 1).fill_(T(0));  // row 2: x / 0 = +-inf (nan in its first column)
  const Tensor<T> ratio = loom::div(q, q.narrow(1, 0, 1).contiguous());  // nan, inf and finite
  same(loom::isfinite(on_device(ratio)), loom::isfinite(ratio), "isfinite");
}

// add_ and mul_ in place, through a transposed destination and a broadcast source.
template <class T>
void check_inplace() {
  loom::autograd::NoGradGuard no_grad;
  const Tensor<T> base = uniform_values<T>({15, 15}, -2, 2, 21);
  const Tensor<T> other = uniform_values<T>({15, 15}, -2, 2, 22), row = uniform_values<T>({1, 15}, -2, 2, 23);
  Tensor<T> c = base.clone();
  Tensor<T, CUDA> d = on_device(base);
  loom::add_(c, other);
  loom::add_(d, on_device(other));
  require_matches(d, c, "add_");
  loom::add_(c.transpose(0, 1), other, -0.75);
  loom::add_(d.transpose(0, 1), on_device(other), -0.75);
  require_matches(d, c, "add_ alpha, transposed destination");
  loom::add_(c, row, 2.5);
  loom::add_(d, on_device(row), 2.5);
  require_matches(d, c, "add_ alpha, broadcast row");
  loom::mul_(c.narrow(1, 2, 7), 1.3);
  loom::mul_(d.narrow(1, 2, 7), 1.3);
  require_matches(d, c, "mul_ on a column block");
}

}  // namespace

TEST_CASE("CUDA elementwise: unary ops and scalar forms match the CPU, forward and backward", "[cuda][elementwise]") {
  REQUIRE_GPU();
  check_all_unary<float>();
  check_all_unary<bf16>();
  check_gelu_tail();
}

TEST_CASE("CUDA elementwise: binary ops match the CPU (same shape with gradients, broadcast forward)",
          "[cuda][elementwise]") {
  REQUIRE_GPU();
  check_all_binary<float>();
  check_all_binary<bf16>();
}

TEST_CASE("CUDA elementwise: comparisons and isfinite equal the CPU's", "[cuda][elementwise]") {
  REQUIRE_GPU();
  check_comparisons<float>();
  check_comparisons<bf16>();
}

TEST_CASE("CUDA elementwise: in-place add_ and mul_ match the CPU", "[cuda][elementwise]") {
  REQUIRE_GPU();
  check_inplace<float>();
  check_inplace<bf16>();
}

TEST_CASE("CUDA elementwise: a large tensor takes the grid-stride loop, float64 is refused", "[cuda][elementwise]") {
  REQUIRE_GPU();
  // More elements than one launch's grid (65536 blocks x 256 threads), flat and strided.
  const Tensor<float> big = uniform_values<float>({4100, 4100}, -2, 2, 31);  // 16.8M elements
  const Tensor<float, CUDA> big_d = on_device(big);
  require_matches(loom::tanh(big_d), loom::tanh(big), "tanh 16.8M");
  require_matches(big_d.transpose(0, 1) * 2.0, big.transpose(0, 1) * 2.0, "transposed 16.8M");
  const Tensor<double, CUDA> d = Tensor<double, CUDA>::ones({3});
  REQUIRE_THROWS_WITH(loom::exp(d), Catch::Contains("float64 is not supported on CUDA"));
}
