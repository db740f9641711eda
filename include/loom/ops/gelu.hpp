#pragma once
// GELU, matching torch.nn.functional.gelu in both forms, with the exact derivative of each:
//   none: gelu(x) = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
//         gelu'(x) = Phi(x) + x * phi(x),   phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
//   tanh: gelu(x) = 0.5 x (1 + tanh(u)),   u = sqrt(2 / pi) (x + 0.044715 x^3)
//         gelu'(x) = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) sqrt(2 / pi) (1 + 3 * 0.044715 x^2)
// Computed in float for float and bf16, in double for double, in blocks of 256 elements with the
// vectorized exp/erf of loom/ops/fast_math.hpp (for double, erf is std::erf). CUDA tensors run the
// same formulas one element at a time (fn::GeluErf, fn::GeluTanh and their gradients in
// loom/ops/elementwise_functors.hpp, with CUDA's erff/expf).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "loom/autograd/engine.hpp"
#include "loom/core/iterate.hpp"
#include "loom/core/tensor.hpp"
#include "loom/ops/elementwise_functors.hpp"
#include "loom/ops/elementwise_map.hpp"
#include "loom/ops/fast_math.hpp"

namespace loom {

enum class GeluApprox { none, tanh };

namespace detail {

inline constexpr int64_t kGeluBlock = 256;  // elements converted to the compute type at a time

// GeluConstants, kGeluMaxExp and kGeluClampX live in elementwise_functors.hpp (shared with the
// device functors).
// The tanh form is evaluated through the logistic function, 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)):
// the same function, but without the cancellation of 1 + tanh(u) for negative u, which in float
// costs the derivative ~1e-6 absolute near x = -5 (its x^3 factor amplifies it).
// exp(-2u) is formed where -2u <= kGeluMaxExp (finite); beyond, gelu and its derivative are 0.
// u is computed from x clamped to +-kGeluClampX (x^3 stays finite); beyond it gelu(x) is x or 0.

// c = x clamped to +-kGeluClampX, NaN kept. (Two one-sided loops: the compiler vectorizes each,
// not their composition.)
template <class C>
void gelu_clamp(const C* x, C* c, int64_t n) {
  for (int64_t i = 0; i < n; ++i) c[i] = std::min(x[i], kGeluClampX<C>);
  for (int64_t i = 0; i < n; ++i) c[i] = std::max(c[i], -kGeluClampX<C>);
}

// a = -2u = -2 sqrt(2 / pi) (c + kappa c^3);  b = min(a, kGeluMaxExp)
template <class C>
void gelu_minus_2u(const C* c, C* a, C* b, int64_t n) {
  using K = GeluConstants<C>;
  for (int64_t i = 0; i < n; ++i) a[i] = C(-2) * K::kSqrt2OverPi * (c[i] + K::kKappa * c[i] * c[i] * c[i]);
  for (int64_t i = 0; i < n; ++i) b[i] = std::min(a[i], kGeluMaxExp<C>);
}

// y = gelu(x) for n <= kGeluBlock contiguous elements (y may not alias x). Plain loops vectorize;
// the transcendental functions are the blocks of loom/ops/fast_math.hpp.
template <class C>
void gelu_block(const C* x, C* y, int64_t n, GeluApprox approx) {
  using K = GeluConstants<C>;
  alignas(64) C a[kGeluBlock] = {}, b[kGeluBlock] = {};  // zeroed: keeps -Wmaybe-uninitialized quiet
  if (approx == GeluApprox::tanh) {
    gelu_clamp(x, y, n);
    gelu_minus_2u(y, a, b, n);
    exp_block(b, y, n);  // e = exp(-2u)
    // Masked by multiplication: a conditional division would keep the loop from vectorizing.
    for (int64_t i = 0; i < n; ++i) y[i] = (a[i] > kGeluMaxExp<C> ? C(0) : C(1)) * (x[i] / (C(1) + y[i]));
  } else {
    for (int64_t i = 0; i < n; ++i) a[i] = x[i] * K::kSqrtHalf;
    erf_block(a, y, n);
    for (int64_t i = 0; i < n; ++i) y[i] = C(0.5) * x[i] * (C(1) + y[i]);
  }
}

// dx = g * gelu'(x) for n <= kGeluBlock contiguous elements (dx may not alias x or g).
template <class C>
void gelu_grad_block(const C* x, const C* g, C* dx, int64_t n, GeluApprox approx) {
  using K = GeluConstants<C>;
  alignas(64) C a[kGeluBlock] = {}, b[kGeluBlock] = {}, c[kGeluBlock] = {};
  if (approx == GeluApprox::tanh) {
    // With e = exp(-2u), s = sigmoid(2u) = 1 / (1 + e) and sigmoid(-2u) = e s:
    //   gelu'(x) = s (1 + 2 x (e s) u'),   u' = sqrt(2 / pi) (1 + 3 kappa x^2)
    gelu_clamp(x, c, n);
    gelu_minus_2u(c, a, b, n);
    exp_block(b, dx, n);  // e
    for (int64_t i = 0; i < n; ++i) {
      const C e = dx[i], s = C(1) / (C(1) + e);
      const C du = K::kSqrt2OverPi * (C(1) + C(3) * K::kKappa * c[i] * c[i]);
      dx[i] = (a[i] > kGeluMaxExp<C> ? C(0) : C(1)) * g[i] * (s * (C(1) + C(2) * c[i] * (e * s) * du));
    }
  } else {
    // gelu'(x) = Phi(x) + x phi(x),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
    for (int64_t i = 0; i < n; ++i) {
      a[i] = x[i] * K::kSqrtHalf;
      b[i] = C(-0.5) * x[i] * x[i];
    }
    erf_block(a, dx, n);
    exp_block(b, c, n);
    for (int64_t i = 0; i < n; ++i) dx[i] = g[i] * (C(0.5) * (C(1) + dx[i]) + x[i] * c[i] * K::kInvSqrt2Pi);
  }
}

// y = gelu(x) on the CPU, converted to the compute type kGeluBlock elements at a time.
template <class T, class Dev>
Tensor<T, Dev> gelu_forward_cpu(const Tensor<T, Dev>& x, GeluApprox approximate) {
  using C = compute_t<T>;
  Tensor<T, Dev> y = Tensor<T, Dev>::empty(x.shape());
  T* py = y.data();
  const T* px = x.data();
  for_each_run<2>(
      x.shape(), {y.strides(), x.strides()},
      [&](auto off, int64_t n, auto st) {
        alignas(64) C xb[kGeluBlock], yb[kGeluBlock];
        for (int64_t b = 0; b < n; b += kGeluBlock) {
          const int64_t m = std::min(kGeluBlock, n - b);
          for (int64_t i = 0; i < m; ++i) xb[i] = C(px[off[1] + (b + i) * st[1]]);
          gelu_block<C>(xb, yb, m, approximate);
          for (int64_t i = 0; i < m; ++i) py[off[0] + (b + i) * st[0]] = T(yb[i]);
        }
      },
      /*cost_per_element=*/8);
  return y;
}

// g * gelu'(x) on the CPU (x and g of one shape).
template <class T, class Dev>
Tensor<T, Dev> gelu_backward_cpu(const Tensor<T, Dev>& xs, const Tensor<T, Dev>& g, GeluApprox approximate) {
  using C = compute_t<T>;
  Tensor<T, Dev> gx = Tensor<T, Dev>::empty(xs.shape());
  T* pgx = gx.data();
  const T *pxs = xs.data(), *pg = g.data();
  for_each_run<3>(
      xs.shape(), {gx.strides(), xs.strides(), g.strides()},
      [&](auto off, int64_t n, auto st) {
        alignas(64) C xb[kGeluBlock], gb[kGeluBlock], db[kGeluBlock];
        for (int64_t b = 0; b < n; b += kGeluBlock) {
          const int64_t m = std::min(kGeluBlock, n - b);
          for (int64_t i = 0; i < m; ++i) {
            xb[i] = C(pxs[off[1] + (b + i) * st[1]]);
            gb[i] = C(pg[off[2] + (b + i) * st[2]]);
          }
          gelu_grad_block<C>(xb, gb, db, m, approximate);
          for (int64_t i = 0; i < m; ++i) pgx[off[0] + (b + i) * st[0]] = T(db[i]);
        }
      },
      /*cost_per_element=*/8);
  return gx;
}

template <class T, class Dev>
Tensor<T, Dev> gelu_forward(const Tensor<T, Dev>& x, GeluApprox approximate) {
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    return approximate == GeluApprox::tanh ? map_elements<T>(x.shape(), 8, fn::GeluTanh{}, x)
                                           : map_elements<T>(x.shape(), 8, fn::GeluErf{}, x);
  } else {
    return gelu_forward_cpu(x, approximate);
  }
}

template <class T, class Dev>
Tensor<T, Dev> gelu_backward(const Tensor<T, Dev>& x, const Tensor<T, Dev>& g, GeluApprox approximate) {
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    return approximate == GeluApprox::tanh ? map_elements<T>(x.shape(), 8, fn::GeluTanhGrad{}, g, x)
                                           : map_elements<T>(x.shape(), 8, fn::GeluErfGrad{}, g, x);
  } else {
    return gelu_backward_cpu(x, g, approximate);
  }
}

}  // namespace detail

// Gaussian error linear unit, elementwise; `approximate` picks the erf (default) or tanh form.
template <FloatElement T, class Dev>
Tensor<T, Dev> gelu(const Tensor<T, Dev>& x, GeluApprox approximate = GeluApprox::none) {
  LOOM_CHECK(approximate == GeluApprox::none || approximate == GeluApprox::tanh,
             "gelu: unknown approximation ", int(approximate), " for input of shape ", x.shape());
  Tensor<T, Dev> y = detail::gelu_forward(x, approximate);
  if (autograd::should_record(x.impl())) {
    autograd::record("GeluBackward", y, {x.impl()},
                     [approximate, sx = autograd::SavedTensor<T, Dev>(x, "gelu")](const Tensor<T, Dev>& g) {
                       return std::vector<Tensor<T, Dev>>{detail::gelu_backward(sx.get(), g, approximate)};
                     });
  }
  return y;
}

}  // namespace loom
