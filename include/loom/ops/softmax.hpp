#pragma once
// softmax and log_softmax over any dim, numerically stable (the line's max is subtracted before
// exp), each with its backward computed from the saved output:
//   softmax:      dx = y * (g - sum(g * y))
//   log_softmax:  dx = g - exp(y) * sum(g)
// Sums are accumulated in double; exp is vectorized (loom/ops/fast_math.hpp). As in PyTorch, a line
// that is all -inf (or holds a NaN or a +inf) gives NaN. On CUDA tensors (float, bf16) both passes
// run on the device, one block per line with fp32 sums (loom/cuda/norm.hpp, kernels/norm.cu).
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
#include "loom/cuda/norm.hpp"
#include "loom/ops/fast_math.hpp"
#include "loom/ops/reduce.hpp"

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

// The lines of `shape` along `dim` for the device kernels: start offsets over the other dims.
template <size_t N>
cuda::Lines<N> device_lines(const Shape& shape, int dim, const std::array<Strides, N>& strides) {
  cuda::Lines<N> lines;
  const bool scalar = shape.size() == 0;
  Shape rest;
  std::array<Strides, N> rest_strides;
  for (size_t k = 0; k < N; ++k) lines.along[k] = scalar ? 0 : strides[k][dim];
  for (int d = 0; d < shape.size(); ++d) {
    if (d == dim) continue;
    rest.push_back(shape[d]);
    for (size_t k = 0; k < N; ++k) rest_strides[k].push_back(strides[k][d]);
  }
  lines.starts = cuda::make_offset_map<N>(rest, rest_strides);
  lines.count = rest.numel();
  lines.length = scalar ? 1 : shape[dim];
  return lines;
}

inline int softmax_dim(const char* op, int64_t dim, const Shape& shape) {
  const int64_t wrap = std::max(shape.size(), 1);
  LOOM_CHECK(dim >= -wrap && dim < wrap, op, ": dimension ", dim, " out of range for input of shape ", shape);
  return shape.size() == 0 ? 0 : int(dim < 0 ? dim + wrap : dim);
}

// ---- per-line helpers: lines are brought into contiguous compute-type buffers so that the inner
// loops vectorize (and exp runs through loom/ops/fast_math.hpp) whatever the layout and type.

// Thread-local scratch lines (4 slots); they keep their size between lines up to kKeptScratch.
inline constexpr int64_t kKeptScratch = int64_t(1) << 16;

template <class C>
std::vector<C>* line_scratch_slots() {
  thread_local std::vector<C> scratch[4];
  return scratch;
}

// Scratch line number `slot`, at least n long.
template <class C>
C* line_scratch(int slot, int64_t n) {
  std::vector<C>& buffer = line_scratch_slots<C>()[slot];
  if (int64_t(buffer.size()) < n) buffer.resize(size_t(n));
  return buffer.data();
}

// Called after each line: a very long line's scratch is freed rather than kept by the thread.
template <class C>
void trim_line_scratch() {
  std::vector<C>* slots = line_scratch_slots<C>();
  for (int k = 0; k < 4; ++k)
    if (int64_t(slots[k].size()) > kKeptScratch) std::vector<C>().swap(slots[k]);
}

// The line p[0], p[stride], ... as contiguous compute-type values: p itself when it already is.
template <class C, class T>
const C* line_values(const T* p, int64_t stride, int64_t n, int slot) {
  if constexpr (std::is_same_v<T, C>)
    if (stride == 1) return p;
  C* buffer = line_scratch<C>(slot, n);
  if (stride == 1) {
    for (int64_t i = 0; i < n; ++i) buffer[i] = C(p[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) buffer[i] = C(p[i * stride]);
  }
  return buffer;
}

// Where a line's result is computed: the output itself when it is contiguous and of the compute type.
template <class C, class T>
C* line_target(T* p, int64_t stride, int64_t n, int slot) {
  if constexpr (std::is_same_v<T, C>)
    if (stride == 1) return p;
  return line_scratch<C>(slot, n);
}

template <class C, class T>
void store_line(const C* values, T* p, int64_t stride, int64_t n) {
  if (static_cast<const void*>(values) == static_cast<const void*>(p)) return;
  if (stride == 1) {
    for (int64_t i = 0; i < n; ++i) p[i] = T(values[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) p[i * stride] = T(values[i]);
  }
}

// sum_i a[i] b[i] in double (8 partial sums in a fixed order).
template <class C>
double dot_run(const C* a, const C* b, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += double(a[i + k]) * double(b[i + k]);
  double tail = 0;
  for (; i < n; ++i) tail += double(a[i]) * double(b[i]);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

template <class T, class Dev, bool kLog>
Tensor<T, Dev> softmax_forward(const char* op, const Tensor<T, Dev>& x, int64_t dim_in) {
  using C = compute_t<T>;
  const int dim = softmax_dim(op, dim_in, x.shape());
  Tensor<T, Dev> y = Tensor<T, Dev>::empty(x.shape());
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    static_assert(cuda_backend_for<T>, "softmax on CUDA tensors needs LOOM_WITH_CUDA (link loom::kernels)");
    cuda::softmax_forward(dtype_traits<T>::tag, kLog, y.data(), x.data(),
                          device_lines<2>(x.shape(), dim, {y.strides(), x.strides()}));
  } else {
    T* py = y.data();
    const T* px = x.data();
    for_each_line<2>(x.shape(), dim, {y.strides(), x.strides()}, [&](auto off, int64_t n, auto along) {
      const C* xv = line_values<C>(px + off[1], along[1], n, 0);
      C* out = line_target<C>(py + off[0], along[0], n, 1);
      // A NaN, a +inf (inf - inf) or a line of -inf (-inf - -inf) makes `shifted` NaN somewhere, the
      // sum NaN and so every output NaN, as in PyTorch.
      const C m = ConstArrayMap<C>(xv, n).maxCoeff();
      C* shifted = line_scratch<C>(2, n);
      for (int64_t i = 0; i < n; ++i) shifted[i] = xv[i] - m;
      C* e = kLog ? line_scratch<C>(3, n) : out;
      exp_block(shifted, e, n);
      const double s = sum_run(e, n, 1);
      if constexpr (kLog) {
        const C log_s = C(std::log(s));
        for (int64_t i = 0; i < n; ++i) out[i] = shifted[i] - log_s;
      } else {
        const C inv = C(1.0 / s);
        for (int64_t i = 0; i < n; ++i) out[i] *= inv;
      }
      store_line(out, py + off[0], along[0], n);
      trim_line_scratch<C>();
    });
  }
  if (autograd::should_record(x.impl())) {
    autograd::record(kLog ? "LogSoftmaxBackward" : "SoftmaxBackward", y, {x.impl()},
                     [dim, sy_saved = autograd::SavedTensor<T, Dev>(y, op)](const Tensor<T, Dev>& g) {
                       const Tensor<T, Dev>& ys = sy_saved.get();
                       Tensor<T, Dev> gx = Tensor<T, Dev>::empty(ys.shape());
                       if constexpr (Tensor<T, Dev>::kOnDevice) {
                         const cuda::Lines<3> lines =
                             device_lines<3>(ys.shape(), dim, {gx.strides(), ys.strides(), g.strides()});
                         cuda::softmax_backward(dtype_traits<T>::tag, kLog, gx.data(), ys.data(), g.data(), lines);
                         return std::vector<Tensor<T, Dev>>{gx};
                       } else {
                         T* pgx = gx.data();
                         const T *pys = ys.data(), *pg = g.data();
                         for_each_line<3>(
                             ys.shape(), dim, {gx.strides(), ys.strides(), g.strides()},
                             [&](auto off, int64_t n, auto along) {
                               const C* yv = line_values<C>(pys + off[1], along[1], n, 0);
                               const C* gv = line_values<C>(pg + off[2], along[2], n, 1);
                               C* out = line_target<C>(pgx + off[0], along[0], n, 2);
                               if constexpr (kLog) {  // dx = g - exp(y) sum(g)
                                 const C s = C(sum_run(gv, n, 1));
                                 exp_block(yv, out, n);
                                 for (int64_t i = 0; i < n; ++i) out[i] = gv[i] - out[i] * s;
                               } else {  // dx = y (g - sum(g y))
                                 const C dot = C(dot_run(gv, yv, n));
                                 for (int64_t i = 0; i < n; ++i) out[i] = yv[i] * (gv[i] - dot);
                               }
                               store_line(out, pgx + off[0], along[0], n);
                               trim_line_scratch<C>();
                             });
                         return std::vector<Tensor<T, Dev>>{gx};
                       }
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
