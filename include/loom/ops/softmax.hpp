#pragma once
// softmax and log_softmax over any dim, numerically stable (the line's max is subtracted before
// exp), each with its backward computed from the saved output:
//   softmax:      dx = y * (g - sum(g * y))
//   log_softmax:  dx = g - exp(y) * sum(g)
// Sums are accumulated in double. As in PyTorch, a line that is all -inf (or holds NaN or +inf)
// gives NaN.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "loom/autograd/engine.hpp"
#include "loom/core/iterate.hpp"
#include "loom/core/shape.hpp"
#include "loom/core/tensor.hpp"

namespace loom {
namespace detail {

// Calls line(offsets, length, along) for every 1-d line of `shape` along `dim`, where offsets[k]
// is operand k's offset of the line's first element and along[k] its stride along dim. Lines run in
// parallel; a rank-0 shape is one line of length 1.
template <size_t N, class Line>
void for_each_line(const Shape& shape, int dim, const std::array<Strides, N>& strides, Line&& line) {
  const bool scalar = shape.size() == 0;
  const int64_t length = scalar ? 1 : shape[dim];
  std::array<int64_t, N> along{};
  Shape rest;
  std::array<Strides, N> rest_strides;
  for (size_t k = 0; k < N; ++k) along[k] = scalar ? 0 : strides[k][dim];
  for (int d = 0; d < shape.size(); ++d) {
    if (d == dim) continue;
    rest.push_back(shape[d]);
    for (size_t k = 0; k < N; ++k) rest_strides[k].push_back(strides[k][d]);
  }
  if (length == 0) return;
  for_each_run<N>(
      rest, rest_strides,
      [&](auto off, int64_t n, auto st) {
        for (int64_t i = 0; i < n; ++i) {
          std::array<int64_t, N> line_off;
          for (size_t k = 0; k < N; ++k) line_off[k] = off[k] + i * st[k];
          line(line_off, length, along);
        }
      },
      /*cost_per_element=*/4 * length);
}

inline int softmax_dim(const char* op, int64_t dim, const Shape& shape) {
  const int64_t wrap = std::max(shape.size(), 1);
  LOOM_CHECK(dim >= -wrap && dim < wrap, op, ": dimension ", dim, " out of range for input of shape ", shape);
  return shape.size() == 0 ? 0 : int(dim < 0 ? dim + wrap : dim);
}

template <class T, class Dev, bool kLog>
Tensor<T, Dev> softmax_forward(const char* op, const Tensor<T, Dev>& x, int64_t dim_in) {
  static_assert(std::is_same_v<Dev, CPU>, "softmax: only the CPU backend exists so far");
  using C = compute_t<T>;
  const int dim = softmax_dim(op, dim_in, x.shape());
  Tensor<T, Dev> y = Tensor<T, Dev>::empty(x.shape());
  T* py = y.data();
  const T* px = x.data();
  for_each_line<2>(x.shape(), dim, {y.strides(), x.strides()}, [&](auto off, int64_t n, auto along) {
    T* yl = py + off[0];
    const T* xl = px + off[1];
    const int64_t sy = along[0], sx = along[1];
    C m = -std::numeric_limits<C>::infinity();
    for (int64_t i = 0; i < n; ++i) m = std::max(m, C(xl[i * sx]));
    double s = 0;
    for (int64_t i = 0; i < n; ++i) {
      const C e = std::exp(C(xl[i * sx]) - m);
      if constexpr (!kLog && std::is_same_v<T, C>) yl[i * sy] = e;  // reused below
      s += e;
    }
    if constexpr (kLog) {
      const C log_s = C(std::log(s));
      for (int64_t i = 0; i < n; ++i) yl[i * sy] = T((C(xl[i * sx]) - m) - log_s);
    } else {
      const C inv = C(1.0 / s);
      for (int64_t i = 0; i < n; ++i) {
        if constexpr (std::is_same_v<T, C>) yl[i * sy] *= inv;
        else yl[i * sy] = T(std::exp(C(xl[i * sx]) - m) * inv);  // bf16: recompute at full precision
      }
    }
    // A NaN anywhere in the line reaches every output through s; max() above skips NaN.
  });
  if (autograd::should_record(x.impl())) {
    autograd::record(kLog ? "LogSoftmaxBackward" : "SoftmaxBackward", y, {x.impl()},
                     [dim, sy_saved = autograd::SavedTensor<T, Dev>(y, op)](const Tensor<T, Dev>& g) {
                       const Tensor<T, Dev>& ys = sy_saved.get();
                       Tensor<T, Dev> gx = Tensor<T, Dev>::empty(ys.shape());
                       T* pgx = gx.data();
                       const T *pys = ys.data(), *pg = g.data();
                       for_each_line<3>(ys.shape(), dim, {gx.strides(), ys.strides(), g.strides()},
                                        [&](auto off, int64_t n, auto along) {
                                          T* dl = pgx + off[0];
                                          const T* yl = pys + off[1];
                                          const T* gl = pg + off[2];
                                          double s = 0;  // softmax: sum(g * y); log_softmax: sum(g)
                                          for (int64_t i = 0; i < n; ++i) {
                                            const double gi = double(C(gl[i * along[2]]));
                                            s += kLog ? gi : gi * double(C(yl[i * along[1]]));
                                          }
                                          const C sc = C(s);
                                          for (int64_t i = 0; i < n; ++i) {
                                            const C yi = C(yl[i * along[1]]), gi = C(gl[i * along[2]]);
                                            dl[i * along[0]] = kLog ? T(gi - std::exp(yi) * sc) : T(yi * (gi - sc));
                                          }
                                        });
                       return std::vector<Tensor<T, Dev>>{gx};
                     });
  }
  return y;
}

}  // namespace detail

// exp(x - max) / sum(exp(x - max)) along `dim` (negative dims count from the end).
template <FloatElement T, class Dev>
Tensor<T, Dev> softmax(const Tensor<T, Dev>& x, int64_t dim) {
  return detail::softmax_forward<T, Dev, false>("softmax", x, dim);
}

// (x - max) - log(sum(exp(x - max))) along `dim`: the log of softmax without its underflow.
template <FloatElement T, class Dev>
Tensor<T, Dev> log_softmax(const Tensor<T, Dev>& x, int64_t dim) {
  return detail::softmax_forward<T, Dev, true>("log_softmax", x, dim);
}

}  // namespace loom
