#pragma once
// The per-element math of every elementwise op, as named functors that run on the host and the
// device alike (LOOM_HOST_DEVICE call operators). The CPU ops hand them to detail::map_elements;
// on CUDA tensors the same functor is the body of the kernel in kernels/elementwise_map.cuh —
// one expression per op, so the device computes what the CPU computes (up to the last ulps of
// the transcendental functions, where each side has its own library).
//
// Arguments arrive in the compute type (float for bf16) and results are stored as the output's
// element type. Each functor says `kDevice = true`: detail::map_elements refuses on CUDA tensors
// anything that does not (a lambda), at compile time. Porting a new op to the device = one functor
// here + one entry in LOOM_CUDA_ELEMENTWISE_KERNELS (loom/cuda/elementwise.hpp).
//
// Backward functors take the incoming gradient g first, then what the op saved (its input x or
// its output y). Scalars are members, already converted to the compute type.
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "loom/core/host_device.hpp"

namespace loom {
namespace detail {

// GELU's constants (loom/ops/gelu.hpp): the CPU blocks and the functors below share them.
template <class C>
struct GeluConstants {
  static constexpr C kSqrtHalf = C(0.70710678118654752440);     // 1 / sqrt(2)
  static constexpr C kInvSqrt2Pi = C(0.39894228040143267794);   // 1 / sqrt(2 pi)
  static constexpr C kSqrt2OverPi = C(0.79788456080286535588);  // sqrt(2 / pi)
  static constexpr C kKappa = C(0.044715);
};

// The tanh form is evaluated through the logistic function (see gelu.hpp): exp(-2u) is formed where
// -2u <= kGeluMaxExp (finite); beyond, gelu and its derivative are 0. u is computed from x clamped
// to +-kGeluClampX (x^3 stays finite); beyond it gelu(x) is x or 0.
template <class C>
inline constexpr C kGeluMaxExp = std::is_same_v<C, float> ? C(88) : C(708);
template <class C>
inline constexpr C kGeluClampX = C(1e10);

}  // namespace detail

namespace fn {

// ---- arithmetic ----------------------------------------------------------------------------------

struct Add {
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C x, C y) const { return x + y; }
};
struct Sub {
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C x, C y) const { return x - y; }
};
struct Mul {  // also exp's backward (g * y)
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C x, C y) const { return x * y; }
};
struct Div {  // also log's backward (g / x)
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C x, C y) const { return x / y; }
};
struct Pow {
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C x, C y) const { return std::pow(x, y); }
};
struct Neg {  // also the backward of sub's second operand and of s - a
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C x) const { return -x; }
};
struct Square {
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C x) const { return x * x; }
};

// t += a * other (add_ with alpha != 1).
template <class C>
struct AddScaled {
  static constexpr bool kDevice = true;
  C a;
  LOOM_HOST_DEVICE auto operator()(C x, C y) const { return x + a * y; }
};

// ---- tensor ∘ scalar ---------------------------------------------------------------------------

template <class C>
struct AddScalar {
  static constexpr bool kDevice = true;
  C c;
  LOOM_HOST_DEVICE auto operator()(C x) const { return x + c; }
};
template <class C>
struct SubScalar {  // a - s
  static constexpr bool kDevice = true;
  C c;
  LOOM_HOST_DEVICE auto operator()(C x) const { return x - c; }
};
template <class C>
struct RsubScalar {  // s - a
  static constexpr bool kDevice = true;
  C c;
  LOOM_HOST_DEVICE auto operator()(C x) const { return c - x; }
};
template <class C>
struct MulScalar {  // also the backward of a * s
  static constexpr bool kDevice = true;
  C c;
  LOOM_HOST_DEVICE auto operator()(C x) const { return x * c; }
};
template <class C>
struct DivScalar {  // a / s; also its backward
  static constexpr bool kDevice = true;
  C c;
  LOOM_HOST_DEVICE auto operator()(C x) const { return x / c; }
};
template <class C>
struct RdivScalar {  // s / a
  static constexpr bool kDevice = true;
  C c;
  LOOM_HOST_DEVICE auto operator()(C x) const { return c / x; }
};
template <class C>
struct PowScalar {  // a ^ e
  static constexpr bool kDevice = true;
  C e;
  LOOM_HOST_DEVICE auto operator()(C x) const { return std::pow(x, e); }
};

// ---- unary math --------------------------------------------------------------------------------

struct Exp {
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C x) const { return std::exp(x); }
};
struct Log {
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C x) const { return std::log(x); }
};
struct Sqrt {
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C x) const { return std::sqrt(x); }
};
struct Rsqrt {
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C x) const { return C(1) / std::sqrt(x); }
};
struct Tanh {
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C x) const { return std::tanh(x); }
};
struct Erf {
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C x) const { return std::erf(x); }
};
struct Abs {
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C x) const { return std::abs(x); }
};
struct Sigmoid {
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C x) const { return C(1) / (C(1) + std::exp(-x)); }
};
struct Relu {  // nan stays nan
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C x) const { return x < C(0) ? C(0) : x; }
};
template <class C>
struct Clamp {  // nan stays nan
  static constexpr bool kDevice = true;
  C lo, hi;
  LOOM_HOST_DEVICE auto operator()(C x) const { return x < lo ? lo : (x > hi ? hi : x); }
};

// gelu(x) = 0.5 x (1 + erf(x / sqrt 2)): gelu_block's erf form, one element at a time.
struct GeluErf {
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C x) const {
    return C(0.5) * x * (C(1) + std::erf(x * detail::GeluConstants<C>::kSqrtHalf));
  }
};

// gelu(x) = 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)): gelu_block's tanh form, one element at a time.
struct GeluTanh {
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C x) const {
    using K = detail::GeluConstants<C>;
    const C c = clamp_x(x);
    const C a = C(-2) * K::kSqrt2OverPi * (c + K::kKappa * c * c * c);  // -2u
    const C e = std::exp(min_max_exp(a));
    return (a > detail::kGeluMaxExp<C> ? C(0) : C(1)) * (x / (C(1) + e));
  }
  // x clamped to +-kGeluClampX, nan kept: gelu_clamp's std::min then std::max, spelled out.
  template <class C>
  LOOM_HOST_DEVICE static C clamp_x(C x) {
    const C upper = detail::kGeluClampX<C> < x ? detail::kGeluClampX<C> : x;
    return upper < -detail::kGeluClampX<C> ? -detail::kGeluClampX<C> : upper;
  }
  // std::min(a, kGeluMaxExp), as gelu_minus_2u.
  template <class C>
  LOOM_HOST_DEVICE static C min_max_exp(C a) {
    return detail::kGeluMaxExp<C> < a ? detail::kGeluMaxExp<C> : a;
  }
};

// ---- backward of the unary math ----------------------------------------------------------------

struct SqrtGrad {  // (g, y = sqrt x)
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C g, C y) const { return g / (C(2) * y); }
};
struct RsqrtGrad {  // (g, y = x^-1/2): d/dx x^-1/2 = -x^-3/2 / 2
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C g, C y) const { return C(-0.5) * g * y * y * y; }
};
struct TanhGrad {  // (g, y = tanh x)
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C g, C y) const { return g * (C(1) - y * y); }
};
struct ErfGrad {  // (g, x): 2/sqrt(pi) e^-x^2
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C g, C x) const { return g * C(1.1283791670955126) * std::exp(-x * x); }
};
struct AbsGrad {  // (g, x): sign(x) g, 0 at 0
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C g, C x) const { return x > C(0) ? g : (x < C(0) ? -g : C(0)); }
};
struct SigmoidGrad {  // (g, y = sigmoid x)
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C g, C y) const { return g * y * (C(1) - y); }
};
struct ReluGrad {  // (g, y = relu x)
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C g, C y) const { return y > C(0) ? g : C(0); }
};
struct SquareGrad {  // (g, x)
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C g, C x) const { return C(2) * x * g; }
};
template <class C>
struct ClampGrad {  // (g, x): passes on [lo, hi], boundaries included
  static constexpr bool kDevice = true;
  C lo, hi;
  LOOM_HOST_DEVICE auto operator()(C g, C x) const { return x >= lo && x <= hi ? g : C(0); }
};

// (g, x): g * gelu'(x), gelu'(x) = Phi(x) + x phi(x) (gelu_grad_block's erf form).
struct GeluErfGrad {
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C g, C x) const {
    using K = detail::GeluConstants<C>;
    const C phi_unscaled = std::exp(C(-0.5) * x * x);
    return g * (C(0.5) * (C(1) + std::erf(x * K::kSqrtHalf)) + x * phi_unscaled * K::kInvSqrt2Pi);
  }
};

// (g, x): g * gelu'(x) of the tanh form, through e = exp(-2u) and s = 1 / (1 + e) (gelu_grad_block).
struct GeluTanhGrad {
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C g, C x) const {
    using K = detail::GeluConstants<C>;
    const C c = GeluTanh::clamp_x(x);
    const C a = C(-2) * K::kSqrt2OverPi * (c + K::kKappa * c * c * c);
    const C e = std::exp(GeluTanh::min_max_exp(a)), s = C(1) / (C(1) + e);
    const C du = K::kSqrt2OverPi * (C(1) + C(3) * K::kKappa * c * c);
    return (a > detail::kGeluMaxExp<C> ? C(0) : C(1)) * g * (s * (C(1) + C(2) * c * (e * s) * du));
  }
};

// ---- backward of the binary arithmetic ---------------------------------------------------------

struct DivGradDenominator {  // (g, x, y): d(x / y)/dy
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C g, C x, C y) const { return -g * x / (y * y); }
};
template <class C>
struct RdivScalarGrad {  // (g, x): d(s / x)/dx
  static constexpr bool kDevice = true;
  C c;
  LOOM_HOST_DEVICE auto operator()(C g, C x) const { return -g * c / (x * x); }
};
struct PowGradBase {  // (g, x, y): d(x^y)/dx, 0 where y == 0 (as PyTorch)
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C g, C x, C y) const { return y == C(0) ? C(0) : g * y * std::pow(x, y - C(1)); }
};
struct PowGradExponent {  // (g, x, y): d(x^y)/dy, 0 where x == 0 and y >= 0 (as PyTorch)
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C g, C x, C y) const {
    return x == C(0) && y >= C(0) ? C(0) : g * std::pow(x, y) * std::log(x);
  }
};
template <class C>
struct PowScalarGrad {  // (g, x): d(x^e)/dx, 0 where e == 0; e_minus_1 = e - 1
  static constexpr bool kDevice = true;
  C e, e_minus_1;
  LOOM_HOST_DEVICE auto operator()(C g, C x) const { return e == C(0) ? C(0) : g * e * std::pow(x, e_minus_1); }
};

// maximum / minimum: `Pick` says where the first operand wins (a nan in either operand wins).
struct PickMax {
  template <class C>
  LOOM_HOST_DEVICE bool operator()(C x, C y) const { return x > y || x != x; }
};
struct PickMin {
  template <class C>
  LOOM_HOST_DEVICE bool operator()(C x, C y) const { return x < y || x != x; }
};
template <class Pick>
struct Extremum {
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C x, C y) const { return Pick{}(x, y) ? x : y; }
};
// (g, mine, other): the gradient goes to the winner, half and half on an exact tie.
template <class Pick>
struct ExtremumGrad {
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C g, C mine, C other) const {
    return mine == other ? g * C(0.5) : (Pick{}(mine, other) ? g : C(0));
  }
};
using Maximum = Extremum<PickMax>;
using Minimum = Extremum<PickMin>;
using MaximumGrad = ExtremumGrad<PickMax>;
using MinimumGrad = ExtremumGrad<PickMin>;

// ---- selections (uint8 masks, nonzero = true) --------------------------------------------------

struct Where {  // (cond, a, b)
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(uint8_t c, C x, C y) const { return c ? x : y; }
};
struct PassWhere {  // (g, cond): where's gradient of a
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C g, uint8_t c) const { return c ? g : C(0); }
};
struct PassWhereNot {  // (g, cond): where's gradient of b, masked_fill's gradient
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE auto operator()(C g, uint8_t c) const { return c ? C(0) : g; }
};
template <class C>
struct MaskedFill {  // (x, mask)
  static constexpr bool kDevice = true;
  C value;
  LOOM_HOST_DEVICE auto operator()(C x, uint8_t m) const { return m ? value : x; }
};

// ---- comparisons (uint8 results) ---------------------------------------------------------------

struct Eq {
  template <class A>
  LOOM_HOST_DEVICE bool operator()(A x, A y) const { return x == y; }
};
struct Ne {  // true where either is nan
  template <class A>
  LOOM_HOST_DEVICE bool operator()(A x, A y) const { return x != y; }
};
struct Lt {
  template <class A>
  LOOM_HOST_DEVICE bool operator()(A x, A y) const { return x < y; }
};
struct Le {
  template <class A>
  LOOM_HOST_DEVICE bool operator()(A x, A y) const { return x <= y; }
};
struct Gt {
  template <class A>
  LOOM_HOST_DEVICE bool operator()(A x, A y) const { return x > y; }
};
struct Ge {
  template <class A>
  LOOM_HOST_DEVICE bool operator()(A x, A y) const { return x >= y; }
};

template <class Pred>
struct Compare {  // (a, b)
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE uint8_t operator()(C x, C y) const { return uint8_t(Pred{}(x, y)); }
};
// (a) against the scalar c, compared in S: the compute type for floating tensors, double for
// integer ones (so an int tensor is < 0.5 where it is <= 0).
template <class Pred, class S>
struct CompareScalar {
  static constexpr bool kDevice = true;
  S c;
  template <class X>
  LOOM_HOST_DEVICE uint8_t operator()(X x) const { return uint8_t(Pred{}(S(x), c)); }
};
template <class Pred>
using CompareFloatScalar = CompareScalar<Pred, float>;  // one name for LOOM_CUDA_ELEMENTWISE_KERNELS

// 1 where x is neither inf nor nan. (The CPU isfinite tests the stored bits; bf16 -> float keeps
// inf and nan, so the two agree.)
struct IsFinite {
  static constexpr bool kDevice = true;
  template <class C>
  LOOM_HOST_DEVICE uint8_t operator()(C x) const { return uint8_t(x - x == C(0)); }  // inf - inf, nan: nan
};

}  // namespace fn
}  // namespace loom
