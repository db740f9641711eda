#pragma once
// GELU, matching torch.nn.functional.gelu in both forms, with the exact derivative of each:
//   none: gelu(x) = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
//         gelu'(x) = Phi(x) + x * phi(x),   phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
//   tanh: gelu(x) = 0.5 x (1 + tanh(u)),   u = sqrt(2 / pi) (x + 0.044715 x^3)
//         gelu'(x) = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) sqrt(2 / pi) (1 + 3 * 0.044715 x^2)
// Computed in float for float and bf16, in double for double.
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "loom/autograd/engine.hpp"
#include "loom/core/iterate.hpp"
#include "loom/core/tensor.hpp"

namespace loom {

enum class GeluApprox { none, tanh };

namespace detail {

template <class C>
struct GeluConstants {
  static constexpr C kSqrtHalf = C(0.70710678118654752440);       // 1 / sqrt(2)
  static constexpr C kInvSqrt2Pi = C(0.39894228040143267794);     // 1 / sqrt(2 pi)
  static constexpr C kSqrt2OverPi = C(0.79788456080286535588);    // sqrt(2 / pi)
  static constexpr C kKappa = C(0.044715);
};

template <class C>
C gelu_value(C x, GeluApprox approx) {
  using K = GeluConstants<C>;
  if (approx == GeluApprox::tanh) {
    const C u = K::kSqrt2OverPi * (x + K::kKappa * x * x * x);
    return C(0.5) * x * (C(1) + std::tanh(u));
  }
  return C(0.5) * x * (C(1) + std::erf(x * K::kSqrtHalf));
}

template <class C>
C gelu_derivative(C x, GeluApprox approx) {
  using K = GeluConstants<C>;
  if (approx == GeluApprox::tanh) {
    const C x2 = x * x;
    const C t = std::tanh(K::kSqrt2OverPi * (x + K::kKappa * x2 * x));
    return C(0.5) * (C(1) + t) + C(0.5) * x * (C(1) - t * t) * K::kSqrt2OverPi * (C(1) + C(3) * K::kKappa * x2);
  }
  const C cdf = C(0.5) * (C(1) + std::erf(x * K::kSqrtHalf));
  const C pdf = std::exp(C(-0.5) * x * x) * K::kInvSqrt2Pi;
  return cdf + x * pdf;
}

}  // namespace detail

// Gaussian error linear unit, elementwise; `approximate` picks the erf (default) or tanh form.
template <FloatElement T, class Dev>
Tensor<T, Dev> gelu(const Tensor<T, Dev>& x, GeluApprox approximate = GeluApprox::none) {
  static_assert(std::is_same_v<Dev, CPU>, "gelu: only the CPU backend exists so far");
  using C = compute_t<T>;
  LOOM_CHECK(approximate == GeluApprox::none || approximate == GeluApprox::tanh,
             "gelu: unknown approximation ", int(approximate), " for input of shape ", x.shape());
  Tensor<T, Dev> y = Tensor<T, Dev>::empty(x.shape());
  T* py = y.data();
  const T* px = x.data();
  detail::for_each_run<2>(
      x.shape(), {y.strides(), x.strides()},
      [&](auto off, int64_t n, auto st) {
        for (int64_t i = 0; i < n; ++i)
          py[off[0] + i * st[0]] = T(detail::gelu_value(C(px[off[1] + i * st[1]]), approximate));
      },
      /*cost_per_element=*/8);
  if (autograd::should_record(x.impl())) {
    autograd::record("GeluBackward", y, {x.impl()},
                     [approximate, sx = autograd::SavedTensor<T, Dev>(x, "gelu")](const Tensor<T, Dev>& g) {
                       const Tensor<T, Dev>& xs = sx.get();
                       Tensor<T, Dev> gx = Tensor<T, Dev>::empty(xs.shape());
                       T* pgx = gx.data();
                       const T *pxs = xs.data(), *pg = g.data();
                       detail::for_each_run<3>(
                           xs.shape(), {gx.strides(), xs.strides(), g.strides()},
                           [&](auto off, int64_t n, auto st) {
                             for (int64_t i = 0; i < n; ++i)
                               pgx[off[0] + i * st[0]] = T(C(pg[off[2] + i * st[2]]) *
                                                           detail::gelu_derivative(C(pxs[off[1] + i * st[1]]), approximate));
                           },
                           /*cost_per_element=*/8);
                       return std::vector<Tensor<T, Dev>>{gx};
                     });
  }
  return y;
}

}  // namespace loom
