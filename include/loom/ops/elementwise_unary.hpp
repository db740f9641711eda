#pragma once
// Unary elementwise math, each op's backward beside its forward (floating-point tensors):
//   exp, log, sqrt, rsqrt, tanh, erf, abs, sigmoid, relu, square, clamp / clamp_min / clamp_max
// and the selections where(cond, a, b) and masked_fill(t, mask, value), whose masks are uint8
// tensors (nonzero = true) that broadcast like any operand. neg lives with the binary ops.
// Backward formulas reuse the forward output where that is cheaper (exp, sqrt, rsqrt, tanh,
// sigmoid), so those ops save their output rather than their input.
// exp, tanh, erf and sigmoid on float and bf16 run the vectorized blocks of loom/ops/fast_math.hpp
// and Eigen: within a few float ulps of the C library, with its results at inf, nan, underflow and
// saturation. double uses the C library.
#include <cmath>
#include <cstddef>
#include <limits>
#include <type_traits>
#include <vector>

#include "loom/core/tensor.hpp"
#include "loom/autograd/engine.hpp"
#include "loom/ops/elementwise_binary.hpp"
#include "loom/ops/elementwise_functors.hpp"
#include "loom/ops/elementwise_map.hpp"
#include "loom/ops/fast_math.hpp"

namespace loom {
namespace detail {

// Relative cost of one element of a transcendental function (vs an add), so that for_each_run and
// parallel_for split such work across threads at a smaller size.
inline constexpr int64_t kTranscendentalCost = 16;

// y = tanh(x) for n <= kMapBlock floats (Eigen's vectorized rational approximation; keeps nan).
inline void tanh_block(const float* x, float* y, int64_t n) {
  ArrayMap<float>(y, n) = ConstArrayMap<float>(x, n).tanh();
}

// y = 1 / (1 + exp(-x)) for n <= kMapBlock floats. Eigen's exp clamps its argument, so below
// x = -88 (where expf(-x) overflows and the C library gives 0) the result is set to 0 explicitly.
inline void sigmoid_block(const float* x, float* y, int64_t n) {
  alignas(64) float minus_x[kMapBlock] = {};  // zeroed: keeps -Wmaybe-uninitialized quiet
  for (int64_t i = 0; i < n; ++i) minus_x[i] = -x[i];
  exp_block(minus_x, y, n);
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] < -88.0f ? 0.0f : 1.0f / (1.0f + y[i]);
}

// out = f(a); when recording, the gradient is d(g, saved) with `saved` the input (SaveWhat::input)
// or the output (SaveWhat::output); f and d are functors of elementwise_functors.hpp. With a block
// function (see map_blocks), float and bf16 CPU tensors compute the forward with it instead of f.
enum class SaveWhat { input, output };

template <class T, class Dev, class F, class D, class Block = std::nullptr_t>
Tensor<T, Dev> unary_op(const char* op, const char* node_name, const Tensor<T, Dev>& a, int64_t cost, SaveWhat what,
                        F f, D d, Block block = nullptr) {
  static_assert(FloatElement<T>, "elementwise math needs a floating-point tensor");
  check_defined(a, op);
  Tensor<T, Dev> out;
  if constexpr (!std::is_null_pointer_v<Block> && std::is_same_v<compute_t<T>, float>) {
    out = map_blocks(a, cost, block, f);
  } else {
    out = map_elements<T>(a.shape(), cost, f, a);
  }
  if (autograd::should_record(a.impl())) {
    autograd::record(node_name, out, {a.impl()},
                     [cost, d, saved = autograd::SavedTensor<T, Dev>(what == SaveWhat::input ? a : out, op)](
                         const Tensor<T, Dev>& g) {
                       return std::vector<Tensor<T, Dev>>{map_elements<T>(g.shape(), cost, d, g, saved.get())};
                     });
  }
  return out;
}

}  // namespace detail

// e^a.
template <class T, class Dev>
Tensor<T, Dev> exp(const Tensor<T, Dev>& a) {
  return detail::unary_op("exp", "ExpBackward", a, detail::kTranscendentalCost, detail::SaveWhat::output, fn::Exp{},
                          fn::Mul{}, &detail::exp_block<float>);
}

// Natural logarithm.
template <class T, class Dev>
Tensor<T, Dev> log(const Tensor<T, Dev>& a) {
  return detail::unary_op("log", "LogBackward", a, detail::kTranscendentalCost, detail::SaveWhat::input, fn::Log{},
                          fn::Div{});
}

// Square root.
template <class T, class Dev>
Tensor<T, Dev> sqrt(const Tensor<T, Dev>& a) {
  return detail::unary_op("sqrt", "SqrtBackward", a, 4, detail::SaveWhat::output, fn::Sqrt{}, fn::SqrtGrad{});
}

// 1 / sqrt(a).
template <class T, class Dev>
Tensor<T, Dev> rsqrt(const Tensor<T, Dev>& a) {
  return detail::unary_op("rsqrt", "RsqrtBackward", a, 4, detail::SaveWhat::output, fn::Rsqrt{}, fn::RsqrtGrad{});
}

// Hyperbolic tangent.
template <class T, class Dev>
Tensor<T, Dev> tanh(const Tensor<T, Dev>& a) {
  return detail::unary_op("tanh", "TanhBackward", a, detail::kTranscendentalCost, detail::SaveWhat::output, fn::Tanh{},
                          fn::TanhGrad{}, &detail::tanh_block);
}

// Gauss error function.
template <class T, class Dev>
Tensor<T, Dev> erf(const Tensor<T, Dev>& a) {
  return detail::unary_op("erf", "ErfBackward", a, detail::kTranscendentalCost, detail::SaveWhat::input, fn::Erf{},
                          fn::ErfGrad{}, &detail::erf_block<float>);
}

// |a|; the gradient is sign(a), 0 at 0 (as PyTorch).
template <class T, class Dev>
Tensor<T, Dev> abs(const Tensor<T, Dev>& a) {
  return detail::unary_op("abs", "AbsBackward", a, 1, detail::SaveWhat::input, fn::Abs{}, fn::AbsGrad{});
}

// 1 / (1 + e^-a).
template <class T, class Dev>
Tensor<T, Dev> sigmoid(const Tensor<T, Dev>& a) {
  return detail::unary_op("sigmoid", "SigmoidBackward", a, detail::kTranscendentalCost, detail::SaveWhat::output,
                          fn::Sigmoid{}, fn::SigmoidGrad{}, &detail::sigmoid_block);
}

// max(a, 0); nan stays nan. The gradient passes where the output is > 0 (0 at a == 0, as PyTorch).
template <class T, class Dev>
Tensor<T, Dev> relu(const Tensor<T, Dev>& a) {
  return detail::unary_op("relu", "ReluBackward", a, 1, detail::SaveWhat::output, fn::Relu{}, fn::ReluGrad{});
}

// a * a.
template <class T, class Dev>
Tensor<T, Dev> square(const Tensor<T, Dev>& a) {
  return detail::unary_op("square", "SquareBackward", a, 1, detail::SaveWhat::input, fn::Square{}, fn::SquareGrad{});
}

// a limited to [lo, hi]; nan stays nan. The gradient passes where lo <= a <= hi, boundaries
// included (as PyTorch), and is 0 outside. lo > hi is an error; use ±infinity for a one-sided clamp.
template <class T, class Dev>
Tensor<T, Dev> clamp(const Tensor<T, Dev>& a, double lo, double hi) {
  using C = compute_t<T>;
  LOOM_CHECK(lo <= hi, "clamp: min ", lo, " is greater than max ", hi, " (input of shape ",
             a.defined() ? a.shape().str() : std::string("undefined"), ")");
  const C l = static_cast<C>(lo), h = static_cast<C>(hi);
  return detail::unary_op("clamp", "ClampBackward", a, 1, detail::SaveWhat::input, fn::Clamp<C>{l, h},
                          fn::ClampGrad<C>{l, h});
}

// max(a, lo).
template <class T, class Dev>
Tensor<T, Dev> clamp_min(const Tensor<T, Dev>& a, double lo) {
  return clamp(a, lo, std::numeric_limits<double>::infinity());
}

// min(a, hi).
template <class T, class Dev>
Tensor<T, Dev> clamp_max(const Tensor<T, Dev>& a, double hi) {
  return clamp(a, -std::numeric_limits<double>::infinity(), hi);
}

// cond ? a : b elementwise, all three broadcast together. The gradient of a is g where cond holds
// (0 elsewhere), that of b the rest; both are summed back to their input's shape.
template <class T, class Dev>
Tensor<T, Dev> where(const Tensor<uint8_t, Dev>& cond, const Tensor<T, Dev>& a, const Tensor<T, Dev>& b) {
  LOOM_CHECK(cond.defined() && a.defined() && b.defined(), "where: undefined input tensor");
  LOOM_CHECK(detail::broadcastable(cond.shape(), a.shape()) && detail::broadcastable(cond.shape(), b.shape()) &&
                 detail::broadcastable(a.shape(), b.shape()),
             "where: condition of shape ", cond.shape(), ", input of shape ", a.shape(), " and other of shape ",
             b.shape(), " cannot be broadcast together");
  const Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor<T, Dev> out = detail::map_elements<T>(shape, 1, fn::Where{}, cond, a, b);
  if constexpr (FloatElement<T>) {
    if (autograd::should_record(a.impl(), b.impl())) {
      autograd::record(
          "WhereBackward", out, {cond.impl(), a.impl(), b.impl()},
          [sa = a.shape(), sb = b.shape(), need_a = autograd::needs_grad(a.impl()),
           need_b = autograd::needs_grad(b.impl()),
           saved_cond = autograd::SavedTensor<uint8_t, Dev>(cond, "where")](const Tensor<T, Dev>& g) {
            const Tensor<uint8_t, Dev>& c = saved_cond.get();
            return std::vector<Tensor<T, Dev>>{
                Tensor<T, Dev>(),  // the condition gets no gradient
                detail::broadcast_grad(need_a, sa, g, fn::PassWhere{}, c),
                detail::broadcast_grad(need_b, sb, g, fn::PassWhereNot{}, c)};
          });
    }
  }
  return out;
}

// t with `value` wherever mask (broadcast to t's shape) is nonzero. The gradient is g with zeros
// at the masked positions. The output has t's shape: the mask may not enlarge it.
template <class T, class Dev>
Tensor<T, Dev> masked_fill(const Tensor<T, Dev>& t, const Tensor<uint8_t, Dev>& mask, double value) {
  using C = compute_t<T>;
  LOOM_CHECK(t.defined() && mask.defined(), "masked_fill: undefined input tensor");
  LOOM_CHECK(detail::broadcastable(t.shape(), mask.shape()) &&
                 broadcast_shapes(t.shape(), mask.shape(), "masked_fill") == t.shape(),
             "masked_fill: mask of shape ", mask.shape(), " does not broadcast to the input's shape ", t.shape());
  const C v = static_cast<C>(value);
  Tensor<T, Dev> out = detail::map_elements<T>(t.shape(), 1, fn::MaskedFill<C>{v}, t, mask);
  if constexpr (FloatElement<T>) {
    if (autograd::should_record(t.impl())) {
      autograd::record("MaskedFillBackward", out, {t.impl(), mask.impl()},
                       [saved_mask = autograd::SavedTensor<uint8_t, Dev>(mask, "masked_fill")](const Tensor<T, Dev>& g) {
                         return std::vector<Tensor<T, Dev>>{
                             detail::map_elements<T>(g.shape(), 1, fn::PassWhereNot{}, g, saved_mask.get()),
                             Tensor<T, Dev>()};  // the mask gets no gradient
                       });
    }
  }
  return out;
}

}  // namespace loom
