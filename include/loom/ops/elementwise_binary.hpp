#pragma once
// Binary elementwise arithmetic with NumPy broadcasting, each op's backward beside its forward:
//   add, sub, mul, div, pow, maximum, minimum     tensor ∘ tensor
//   add, sub, mul, div (both orders), pow(t, s)    tensor ∘ scalar
//   operators + - * / (tensor∘tensor, tensor∘scalar, scalar∘tensor) and unary -
// Scalars are doubles converted to the tensor's compute type (float for bf16), as PyTorch does.
// add, sub, mul, maximum, minimum and neg also work on integer tensors (no autograd there); div and
// pow need a floating-point type. Gradients of broadcast inputs are summed back to the input's shape.
#include <cmath>
#include <vector>

#include "loom/core/tensor.hpp"
#include "loom/autograd/engine.hpp"
#include "loom/ops/elementwise_functors.hpp"
#include "loom/ops/elementwise_map.hpp"

namespace loom {
namespace detail {

// Gradient of one input of a broadcasting op: f(g, operands...) over the output's shape, summed back
// to the input's shape; an undefined Tensor when that input needs no gradient.
template <class T, class Dev, class F, class... Ts>
Tensor<T, Dev> broadcast_grad(bool needed, const Shape& input_shape, const Tensor<T, Dev>& g, F f,
                              const Tensor<Ts, Dev>&... operands) {
  if (!needed) return {};
  return sum_to(map_elements<T>(g.shape(), 1, f, g, operands...), input_shape);
}

// Output of a binary op on two tensors; the error names the op and both shapes.
template <class T, class Dev, class F>
Tensor<T, Dev> binary_forward(const char* op, const Tensor<T, Dev>& a, const Tensor<T, Dev>& b, F f,
                              int64_t cost_per_element = 1) {
  LOOM_CHECK(a.defined() && b.defined(), op, ": undefined input tensor");
  return map_elements<T>(broadcast_shapes(a.shape(), b.shape(), op), cost_per_element, f, a, b);
}

template <class T, class Dev>
void check_defined(const Tensor<T, Dev>& t, const char* op) {
  LOOM_CHECK(t.defined(), op, ": undefined input tensor");
}

}  // namespace detail

// ---- tensor ∘ tensor --------------------------------------------------------------------------

// a + b, broadcast.
template <class T, class Dev>
Tensor<T, Dev> add(const Tensor<T, Dev>& a, const Tensor<T, Dev>& b) {
  Tensor<T, Dev> out = detail::binary_forward("add", a, b, fn::Add{});
  if constexpr (FloatElement<T>) {
    if (autograd::should_record(a.impl(), b.impl())) {
      autograd::record("AddBackward", out, {a.impl(), b.impl()},
                       [sa = a.shape(), sb = b.shape(), need_a = autograd::needs_grad(a.impl()),
                        need_b = autograd::needs_grad(b.impl())](const Tensor<T, Dev>& g) {
                         return std::vector<Tensor<T, Dev>>{need_a ? detail::sum_to(g, sa) : Tensor<T, Dev>(),
                                                            need_b ? detail::sum_to(g, sb) : Tensor<T, Dev>()};
                       });
    }
  }
  return out;
}

// a - b, broadcast.
template <class T, class Dev>
Tensor<T, Dev> sub(const Tensor<T, Dev>& a, const Tensor<T, Dev>& b) {
  Tensor<T, Dev> out = detail::binary_forward("sub", a, b, fn::Sub{});
  if constexpr (FloatElement<T>) {
    if (autograd::should_record(a.impl(), b.impl())) {
      autograd::record("SubBackward", out, {a.impl(), b.impl()},
                       [sa = a.shape(), sb = b.shape(), need_a = autograd::needs_grad(a.impl()),
                        need_b = autograd::needs_grad(b.impl())](const Tensor<T, Dev>& g) {
                         return std::vector<Tensor<T, Dev>>{
                             need_a ? detail::sum_to(g, sa) : Tensor<T, Dev>(),
                             detail::broadcast_grad(need_b, sb, g, fn::Neg{})};
                       });
    }
  }
  return out;
}

// a * b, broadcast.
template <class T, class Dev>
Tensor<T, Dev> mul(const Tensor<T, Dev>& a, const Tensor<T, Dev>& b) {
  Tensor<T, Dev> out = detail::binary_forward("mul", a, b, fn::Mul{});
  if constexpr (FloatElement<T>) {
    if (autograd::should_record(a.impl(), b.impl())) {
      const bool need_a = autograd::needs_grad(a.impl()), need_b = autograd::needs_grad(b.impl());
      // Each gradient needs only the other operand: save just what will be used.
      autograd::record(
          "MulBackward", out, {a.impl(), b.impl()},
          [sa = a.shape(), sb = b.shape(), need_a, need_b,
           saved_a = autograd::SavedTensor<T, Dev>(need_b ? a : Tensor<T, Dev>(), "mul"),
           saved_b = autograd::SavedTensor<T, Dev>(need_a ? b : Tensor<T, Dev>(), "mul")](const Tensor<T, Dev>& g) {
            const fn::Mul times;
            Tensor<T, Dev> ga = need_a ? detail::broadcast_grad(true, sa, g, times, saved_b.get()) : Tensor<T, Dev>();
            Tensor<T, Dev> gb = need_b ? detail::broadcast_grad(true, sb, g, times, saved_a.get()) : Tensor<T, Dev>();
            return std::vector<Tensor<T, Dev>>{ga, gb};
          });
    }
  }
  return out;
}

// a / b, broadcast (floating point).
template <class T, class Dev>
Tensor<T, Dev> div(const Tensor<T, Dev>& a, const Tensor<T, Dev>& b) {
  static_assert(FloatElement<T>, "div: needs a floating-point tensor");
  Tensor<T, Dev> out = detail::binary_forward("div", a, b, fn::Div{});
  if (autograd::should_record(a.impl(), b.impl())) {
    const bool need_b = autograd::needs_grad(b.impl());
    autograd::record(
        "DivBackward", out, {a.impl(), b.impl()},
        [sa = a.shape(), sb = b.shape(), need_a = autograd::needs_grad(a.impl()), need_b,
         saved_a = autograd::SavedTensor<T, Dev>(need_b ? a : Tensor<T, Dev>(), "div"),
         saved_b = autograd::SavedTensor<T, Dev>(b, "div")](const Tensor<T, Dev>& g) {
          const Tensor<T, Dev>& vb = saved_b.get();
          Tensor<T, Dev> ga = detail::broadcast_grad(need_a, sa, g, fn::Div{}, vb);
          Tensor<T, Dev> gb = need_b ? detail::broadcast_grad(true, sb, g, fn::DivGradDenominator{}, saved_a.get(), vb)
                                     : Tensor<T, Dev>();
          return std::vector<Tensor<T, Dev>>{ga, gb};
        });
  }
  return out;
}

// a ^ b elementwise, broadcast (floating point). As in PyTorch, d/da is 0 where b == 0 and d/db is 0
// where a == 0 and b >= 0 (instead of 0 * log(0) = nan); a negative base with a tensor exponent
// gives nan in d/db (log of a negative number).
template <class T, class Dev>
Tensor<T, Dev> pow(const Tensor<T, Dev>& a, const Tensor<T, Dev>& b) {
  static_assert(FloatElement<T>, "pow: needs a floating-point tensor");
  Tensor<T, Dev> out = detail::binary_forward("pow", a, b, fn::Pow{}, 8);
  if (autograd::should_record(a.impl(), b.impl())) {
    autograd::record(
        "PowBackward", out, {a.impl(), b.impl()},
        [sa = a.shape(), sb = b.shape(), need_a = autograd::needs_grad(a.impl()),
         need_b = autograd::needs_grad(b.impl()), saved_a = autograd::SavedTensor<T, Dev>(a, "pow"),
         saved_b = autograd::SavedTensor<T, Dev>(b, "pow")](const Tensor<T, Dev>& g) {
          const Tensor<T, Dev>&va = saved_a.get(), &vb = saved_b.get();
          Tensor<T, Dev> ga = detail::broadcast_grad(need_a, sa, g, fn::PowGradBase{}, va, vb);
          Tensor<T, Dev> gb = detail::broadcast_grad(need_b, sb, g, fn::PowGradExponent{}, va, vb);
          return std::vector<Tensor<T, Dev>>{ga, gb};
        });
  }
  return out;
}

namespace detail {
// Shared by maximum and minimum: `Pick` (fn::PickMax, fn::PickMin) says where a wins. The gradient
// goes to the winning input; on an exact tie it is split half and half between a and b, as PyTorch
// does, so that maximum(x, x) has gradient 1 with respect to x.
template <class Pick, class T, class Dev>
Tensor<T, Dev> extremum(const char* op, const char* node_name, const Tensor<T, Dev>& a, const Tensor<T, Dev>& b) {
  Tensor<T, Dev> out = binary_forward(op, a, b, fn::Extremum<Pick>{});
  if constexpr (FloatElement<T>) {
    if (autograd::should_record(a.impl(), b.impl())) {
      autograd::record(
          node_name, out, {a.impl(), b.impl()},
          [sa = a.shape(), sb = b.shape(), need_a = autograd::needs_grad(a.impl()),
           need_b = autograd::needs_grad(b.impl()), saved_a = autograd::SavedTensor<T, Dev>(a, op),
           saved_b = autograd::SavedTensor<T, Dev>(b, op)](const Tensor<T, Dev>& g) {
            const Tensor<T, Dev>&va = saved_a.get(), &vb = saved_b.get();
            const fn::ExtremumGrad<Pick> share;
            return std::vector<Tensor<T, Dev>>{broadcast_grad(need_a, sa, g, share, va, vb),
                                               broadcast_grad(need_b, sb, g, share, vb, va)};
          });
    }
  }
  return out;
}
}  // namespace detail

// Elementwise max, broadcast; nan if either input is nan. Gradient: see detail::extremum.
template <class T, class Dev>
Tensor<T, Dev> maximum(const Tensor<T, Dev>& a, const Tensor<T, Dev>& b) {
  // x != x: a nan in a wins; a nan in b wins because x > nan is false.
  return detail::extremum<fn::PickMax>("maximum", "MaximumBackward", a, b);
}

// Elementwise min, broadcast; nan if either input is nan. Gradient: see detail::extremum.
template <class T, class Dev>
Tensor<T, Dev> minimum(const Tensor<T, Dev>& a, const Tensor<T, Dev>& b) {
  return detail::extremum<fn::PickMin>("minimum", "MinimumBackward", a, b);
}

// ---- tensor ∘ scalar --------------------------------------------------------------------------

// -a.
template <class T, class Dev>
Tensor<T, Dev> neg(const Tensor<T, Dev>& a) {
  detail::check_defined(a, "neg");
  Tensor<T, Dev> out = detail::map_elements<T>(a.shape(), 1, fn::Neg{}, a);
  if constexpr (FloatElement<T>) {
    if (autograd::should_record(a.impl())) {
      autograd::record("NegBackward", out, {a.impl()}, [](const Tensor<T, Dev>& g) {
        return std::vector<Tensor<T, Dev>>{detail::map_elements<T>(g.shape(), 1, fn::Neg{}, g)};
      });
    }
  }
  return out;
}

// a + s.
template <class T, class Dev>
Tensor<T, Dev> add(const Tensor<T, Dev>& a, double s) {
  using C = compute_t<T>;
  detail::check_defined(a, "add");
  const C c = static_cast<C>(s);
  Tensor<T, Dev> out = detail::map_elements<T>(a.shape(), 1, fn::AddScalar<C>{c}, a);
  if constexpr (FloatElement<T>) {
    if (autograd::should_record(a.impl()))
      autograd::record("AddBackward", out, {a.impl()},
                       [](const Tensor<T, Dev>& g) { return std::vector<Tensor<T, Dev>>{g}; });
  }
  return out;
}

// s + a.
template <class T, class Dev>
Tensor<T, Dev> add(double s, const Tensor<T, Dev>& a) {
  return add(a, s);
}

// a - s.
template <class T, class Dev>
Tensor<T, Dev> sub(const Tensor<T, Dev>& a, double s) {
  using C = compute_t<T>;
  detail::check_defined(a, "sub");
  const C c = static_cast<C>(s);
  Tensor<T, Dev> out = detail::map_elements<T>(a.shape(), 1, fn::SubScalar<C>{c}, a);
  if constexpr (FloatElement<T>) {
    if (autograd::should_record(a.impl()))
      autograd::record("SubBackward", out, {a.impl()},
                       [](const Tensor<T, Dev>& g) { return std::vector<Tensor<T, Dev>>{g}; });
  }
  return out;
}

// s - a.
template <class T, class Dev>
Tensor<T, Dev> sub(double s, const Tensor<T, Dev>& a) {
  using C = compute_t<T>;
  detail::check_defined(a, "sub");
  const C c = static_cast<C>(s);
  Tensor<T, Dev> out = detail::map_elements<T>(a.shape(), 1, fn::RsubScalar<C>{c}, a);
  if constexpr (FloatElement<T>) {
    if (autograd::should_record(a.impl())) {
      autograd::record("RsubBackward", out, {a.impl()}, [](const Tensor<T, Dev>& g) {
        return std::vector<Tensor<T, Dev>>{detail::map_elements<T>(g.shape(), 1, fn::Neg{}, g)};
      });
    }
  }
  return out;
}

// a * s.
template <class T, class Dev>
Tensor<T, Dev> mul(const Tensor<T, Dev>& a, double s) {
  using C = compute_t<T>;
  detail::check_defined(a, "mul");
  const C c = static_cast<C>(s);
  Tensor<T, Dev> out = detail::map_elements<T>(a.shape(), 1, fn::MulScalar<C>{c}, a);
  if constexpr (FloatElement<T>) {
    if (autograd::should_record(a.impl())) {
      autograd::record("MulBackward", out, {a.impl()}, [c](const Tensor<T, Dev>& g) {
        return std::vector<Tensor<T, Dev>>{detail::map_elements<T>(g.shape(), 1, fn::MulScalar<C>{c}, g)};
      });
    }
  }
  return out;
}

// s * a.
template <class T, class Dev>
Tensor<T, Dev> mul(double s, const Tensor<T, Dev>& a) {
  return mul(a, s);
}

// a / s (floating point).
template <class T, class Dev>
Tensor<T, Dev> div(const Tensor<T, Dev>& a, double s) {
  static_assert(FloatElement<T>, "div: needs a floating-point tensor");
  using C = compute_t<T>;
  detail::check_defined(a, "div");
  const C c = static_cast<C>(s);
  Tensor<T, Dev> out = detail::map_elements<T>(a.shape(), 1, fn::DivScalar<C>{c}, a);
  if (autograd::should_record(a.impl())) {
    autograd::record("DivBackward", out, {a.impl()}, [c](const Tensor<T, Dev>& g) {
      return std::vector<Tensor<T, Dev>>{detail::map_elements<T>(g.shape(), 1, fn::DivScalar<C>{c}, g)};
    });
  }
  return out;
}

// s / a (floating point).
template <class T, class Dev>
Tensor<T, Dev> div(double s, const Tensor<T, Dev>& a) {
  static_assert(FloatElement<T>, "div: needs a floating-point tensor");
  using C = compute_t<T>;
  detail::check_defined(a, "div");
  const C c = static_cast<C>(s);
  Tensor<T, Dev> out = detail::map_elements<T>(a.shape(), 1, fn::RdivScalar<C>{c}, a);
  if (autograd::should_record(a.impl())) {
    autograd::record("RdivBackward", out, {a.impl()},
                     [c, saved_a = autograd::SavedTensor<T, Dev>(a, "div")](const Tensor<T, Dev>& g) {
                       return std::vector<Tensor<T, Dev>>{
                           detail::map_elements<T>(g.shape(), 1, fn::RdivScalarGrad<C>{c}, g, saved_a.get())};
                     });
  }
  return out;
}

// a ^ s elementwise (floating point); d/da is 0 when s == 0, as in PyTorch.
template <class T, class Dev>
Tensor<T, Dev> pow(const Tensor<T, Dev>& a, double s) {
  static_assert(FloatElement<T>, "pow: needs a floating-point tensor");
  using C = compute_t<T>;
  detail::check_defined(a, "pow");
  const C e = static_cast<C>(s);
  Tensor<T, Dev> out = s == 2.0 ? detail::map_elements<T>(a.shape(), 1, fn::Square{}, a)
                                : detail::map_elements<T>(a.shape(), 8, fn::PowScalar<C>{e}, a);
  if (autograd::should_record(a.impl())) {
    autograd::record("PowBackward", out, {a.impl()},
                     [e, saved_a = autograd::SavedTensor<T, Dev>(a, "pow")](const Tensor<T, Dev>& g) {
                       const C e_minus_1 = e - C(1);
                       return std::vector<Tensor<T, Dev>>{
                           detail::map_elements<T>(g.shape(), 8, fn::PowScalarGrad<C>{e, e_minus_1}, g, saved_a.get())};
                     });
  }
  return out;
}

// ---- operators --------------------------------------------------------------------------------

template <class T, class Dev>
Tensor<T, Dev> operator+(const Tensor<T, Dev>& a, const Tensor<T, Dev>& b) { return add(a, b); }
template <class T, class Dev>
Tensor<T, Dev> operator+(const Tensor<T, Dev>& a, double s) { return add(a, s); }
template <class T, class Dev>
Tensor<T, Dev> operator+(double s, const Tensor<T, Dev>& a) { return add(a, s); }

template <class T, class Dev>
Tensor<T, Dev> operator-(const Tensor<T, Dev>& a, const Tensor<T, Dev>& b) { return sub(a, b); }
template <class T, class Dev>
Tensor<T, Dev> operator-(const Tensor<T, Dev>& a, double s) { return sub(a, s); }
template <class T, class Dev>
Tensor<T, Dev> operator-(double s, const Tensor<T, Dev>& a) { return sub(s, a); }
template <class T, class Dev>
Tensor<T, Dev> operator-(const Tensor<T, Dev>& a) { return neg(a); }

template <class T, class Dev>
Tensor<T, Dev> operator*(const Tensor<T, Dev>& a, const Tensor<T, Dev>& b) { return mul(a, b); }
template <class T, class Dev>
Tensor<T, Dev> operator*(const Tensor<T, Dev>& a, double s) { return mul(a, s); }
template <class T, class Dev>
Tensor<T, Dev> operator*(double s, const Tensor<T, Dev>& a) { return mul(a, s); }

template <class T, class Dev>
Tensor<T, Dev> operator/(const Tensor<T, Dev>& a, const Tensor<T, Dev>& b) { return div(a, b); }
template <class T, class Dev>
Tensor<T, Dev> operator/(const Tensor<T, Dev>& a, double s) { return div(a, s); }
template <class T, class Dev>
Tensor<T, Dev> operator/(double s, const Tensor<T, Dev>& a) { return div(s, a); }

}  // namespace loom
