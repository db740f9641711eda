#pragma once
// In-place elementwise updates for optimizers and trainers (no autograd):
//   add_(t, other, alpha)   t += alpha * other   (other broadcast to t's shape)
//   mul_(t, s)              t *= s
// Like Tensor::fill_ and copy_, they refuse a tensor that is part of the autograd graph while grad
// mode is on (run them under NoGradGuard, as optimizers do), and bump t's version counter so that
// a backward which saved t notices the change. They take and return the handle by value: handles
// share their array, so `add_(param.grad(), g)` updates the gradient itself.
#include <cstdint>

#include "loom/autograd/engine.hpp"
#include "loom/core/tensor.hpp"
#include "loom/ops/elementwise_functors.hpp"
#include "loom/ops/elementwise_map.hpp"

namespace loom {
namespace detail {

// The rule of Tensor::check_inplace (private there), plus a refusal to write through a layout in
// which several elements share one memory location (an expand()ed tensor).
template <class T, class Dev>
void check_inplace_target(const Tensor<T, Dev>& t, const char* op) {
  LOOM_CHECK(t.defined(), op, ": undefined tensor");
  LOOM_CHECK(!autograd::grad_enabled() || !t.requires_grad(), op,
             ": in-place change of a tensor that is part of the autograd graph; do it under "
             "NoGradGuard (as optimizers do) or on a detach()ed tensor");
  for (int d = 0; d < t.dim(); ++d)
    LOOM_CHECK(t.strides()[d] != 0 || t.shape()[d] <= 1, op, ": the destination of shape ", t.shape(),
               " and strides ", t.strides(), " has several elements in one memory location (an expanded "
               "view); write into a contiguous() copy instead");
}

}  // namespace detail

// t += alpha * other, with other broadcast to t's shape; returns t.
template <class T, class Dev>
Tensor<T, Dev> add_(const Tensor<T, Dev>& t, const Tensor<T, Dev>& other, double alpha = 1.0) {
  using C = compute_t<T>;
  detail::check_inplace_target(t, "add_");
  LOOM_CHECK(other.defined(), "add_: undefined tensor to add");
  LOOM_CHECK(detail::broadcastable(t.shape(), other.shape()) &&
                 broadcast_shapes(t.shape(), other.shape(), "add_") == t.shape(),
             "add_: a tensor of shape ", other.shape(), " does not broadcast to the destination's shape ", t.shape());
  if (alpha == 1.0) {
    detail::map_elements_inplace(t, fn::Add{}, other);
  } else {
    const C a = static_cast<C>(alpha);
    detail::map_elements_inplace(t, fn::AddScaled<C>{a}, other);
  }
  t.bump_version();
  return t;
}

// t *= s; returns t.
template <class T, class Dev>
Tensor<T, Dev> mul_(const Tensor<T, Dev>& t, double s) {
  using C = compute_t<T>;
  detail::check_inplace_target(t, "mul_");
  const C c = static_cast<C>(s);
  detail::map_elements_inplace(t, fn::MulScalar<C>{c});
  t.bump_version();
  return t;
}

}  // namespace loom
