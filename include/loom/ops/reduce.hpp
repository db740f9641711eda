#pragma once
// Reductions, each with its backward beside it:
//   sum, mean, var, stddev, amax, amin   over a list of dims (negative dims allowed; an empty list
//                                        means every dim) with keepdim; sum/mean over all elements;
//   max, min                             over one dim, returning {values, indices};
//   argmax, argmin                       over one dim or over all elements (no gradient).
//
// Accuracy: float and bf16 inputs are accumulated in double; var/stddev use two passes (mean first).
// Determinism: the reduced range of every output is cut into fixed chunks (their size depends on
// the shape only), whose partial results are merged in chunk order. Threads only decide who
// computes which chunk, so results are bit-identical for any thread count.
//
// On CUDA tensors (float, bf16) every reduction here and its backward runs on the device
// (loom/cuda/reduce.hpp, kernels/reduce.cu), accumulated in fp32 in a fixed order, so reruns are
// bit-identical; integer inputs and float64 are a loom::Error there.
//
// Semantics follow PyTorch:
//   - max/min send the gradient to the one index they return; on ties that is the FIRST
//     occurrence along the dim. A NaN counts as larger (max) / smaller (min) than any number, so
//     it propagates and its index is returned.
//   - amax/amin split the gradient evenly among all elements equal to the result (ties).
//   - var/stddev with unbiased=true divide by N - 1: with N = 1 that is 0/0 = NaN (and the gradient is
//     NaN), as in PyTorch. stddev's gradient is 0 where std == 0 (PyTorch masks it the same way).
//   - mean over zero elements is NaN; max/min/amax/amin/argmax over zero elements throw.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "loom/autograd/engine.hpp"
#include "loom/core/device.hpp"
#include "loom/core/iterate.hpp"
#include "loom/core/parallel.hpp"
#include "loom/core/shape.hpp"
#include "loom/core/tensor.hpp"
#include "loom/cuda/reduce.hpp"
#include "loom/ops/fast_math.hpp"
#include "loom/ops/view.hpp"

namespace loom {

// Result of max/min over a dim: the extreme values and where they are along that dim.
template <class T, class Dev = CPU>
struct ValuesIndices {
  Tensor<T, Dev> values;
  Tensor<int64_t, Dev> indices;
};

namespace detail {

// Input elements per chunk of one output's reduced range (row mode).
inline constexpr int64_t kReduceChunk = 32768;
// Outputs reduced side by side when the kept dims are innermost in memory ("column" reductions,
// e.g. a bias gradient): up to a whole row of them, so each reduced position is one contiguous read,
// and chunks of kReduceColumnChunk input elements.
inline constexpr int64_t kReduceColumnBlock = 1024;
inline constexpr int64_t kReduceColumnChunk = 262144;

// The dims a reduction folds, resolved against the input shape.
struct ReduceSpec {
  std::array<bool, kMaxRank> reduced{};
  Shape in_shape;
  Shape keep_shape;  // in_shape with every reduced dim set to 1
  Shape out_shape;   // keep_shape, or without the reduced dims when !keepdim
  bool keepdim = false;
  int64_t n_reduced = 1;  // input elements folded into each output
};

inline ReduceSpec make_reduce_spec(const char* op, const Shape& shape, const std::vector<int64_t>& dims,
                                   bool keepdim) {
  ReduceSpec spec;
  const int rank = shape.size();
  const int64_t wrap = std::max(rank, 1);  // a rank-0 tensor accepts dim 0 / -1, as in PyTorch
  for (int d = 0; d < rank; ++d) spec.reduced[d] = dims.empty();
  for (int64_t d : dims) {
    LOOM_CHECK(d >= -wrap && d < wrap, op, ": dimension ", d, " out of range for input of shape ", shape);
    if (rank == 0) continue;
    const int w = int(d < 0 ? d + wrap : d);
    LOOM_CHECK(!spec.reduced[w], op, ": dimension ", d, " given twice for input of shape ", shape);
    spec.reduced[w] = true;
  }
  spec.in_shape = shape;
  spec.keepdim = keepdim;
  for (int d = 0; d < rank; ++d) {
    spec.keep_shape.push_back(spec.reduced[d] ? 1 : shape[d]);
    if (!spec.reduced[d] || keepdim) spec.out_shape.push_back(spec.reduced[d] ? 1 : shape[d]);
    if (spec.reduced[d]) spec.n_reduced *= shape[d];
  }
  return spec;
}

// Strides that lay a tensor of the reduction's output shape over keep_shape (0 on reduced dims).
template <class T, class Dev>
Strides strides_over_keep_shape(const Tensor<T, Dev>& out_like, const ReduceSpec& spec) {
  Strides st = Strides::filled(spec.in_shape.size(), 0);
  int k = 0;
  for (int d = 0; d < spec.in_shape.size(); ++d) {
    if (!spec.reduced[d]) st[d] = out_like.strides()[k++];
    else if (spec.keepdim) ++k;
  }
  return st;
}

// Dense strides of keep_shape with 0 on reduced dims: index of the output an input element feeds.
inline Strides output_index_strides(const ReduceSpec& spec) {
  Strides st = contiguous_strides(spec.keep_shape);
  for (int d = 0; d < spec.in_shape.size(); ++d)
    if (spec.reduced[d]) st[d] = 0;
  return st;
}

// A gradient of the output shape, read as the input shape (stride 0 over the reduced dims).
template <class T, class Dev>
Tensor<T, Dev> broadcast_to_input(const Tensor<T, Dev>& g, const ReduceSpec& spec) {
  return alias(g, spec.in_shape, strides_over_keep_shape(g, spec), g.offset());
}

// Where the elements of one output live: kept dims (output order) and reduced dims (largest
// stride first, so the innermost run is the most local one), each merged where contiguous.
struct ReduceLayout {
  Shape kept;
  Strides kept_in;
  Shape red;
  Strides red_in;
  int64_t n_out = 1;
  int64_t n_red = 1;
};

inline ReduceLayout make_reduce_layout(const Strides& strides, const ReduceSpec& spec) {
  const Shape& shape = spec.in_shape;
  auto [kept_shape, red_shape, kept_strides, red_strides] = cuda::split_reduced_dims(shape, strides, spec.reduced);
  // Merging neighbours that are contiguous keeps the row-major order, hence the output order.
  const StridedLayout<1> kept = coalesce<1>(kept_shape, {kept_strides});
  const StridedLayout<1> red = coalesce<1>(red_shape, {red_strides});
  ReduceLayout lay;
  lay.kept = kept.shape;
  lay.kept_in = kept.strides[0];
  lay.red = red.shape;
  lay.red_in = red.strides[0];
  lay.n_out = kept_shape.numel();
  lay.n_red = red_shape.numel();
  return lay;
}

// Input offset of the first element feeding output `o`.
inline int64_t kept_offset(const ReduceLayout& lay, int64_t o) {
  int64_t off = 0;
  for (int d = lay.kept.size() - 1; d >= 0; --d) {
    off += (o % lay.kept[d]) * lay.kept_in[d];
    o /= lay.kept[d];
  }
  return off;
}

// Calls piece(offset, count, stride, first_position) over the reduced positions [begin, end) of
// the output whose first element is at `base`, as runs along the innermost reduced dim.
template <class Piece>
void visit_reduced(const ReduceLayout& lay, int64_t base, int64_t begin, int64_t end, Piece&& piece) {
  if (begin >= end) return;
  const int rank = lay.red.size();
  const int64_t inner = lay.red[rank - 1], inner_stride = lay.red_in[rank - 1];
  std::array<int64_t, kMaxRank> idx{};
  int64_t off = base, rem = begin / inner, i0 = begin % inner;
  for (int d = rank - 2; d >= 0; --d) {
    idx[d] = rem % lay.red[d];
    rem /= lay.red[d];
    off += idx[d] * lay.red_in[d];
  }
  for (int64_t pos = begin; pos < end;) {
    const int64_t n = std::min(inner - i0, end - pos);
    piece(off + i0 * inner_stride, n, inner_stride, pos);
    pos += n;
    i0 = 0;
    for (int d = rank - 2; d >= 0; --d) {
      ++idx[d];
      off += lay.red_in[d];
      if (idx[d] < lay.red[d]) break;
      off -= lay.red_in[d] * lay.red[d];
      idx[d] = 0;
    }
  }
}

// The reduction driver. A Reducer provides
//   State init(o)                                  start state of output o
//   void run(State&, const T* p, n, stride, pos)   fold p[0], p[stride], ... (positions pos, pos+1, ...)
//   void columns(State* s, const T* p, m, cstride, pos)   s[j] folds p[j * cstride] (j < m), all at pos
//   void merge(State& earlier, const State& later)  combine the partials of consecutive chunks
// and gets back one final state per output (dense, row-major over the kept dims).
template <class T, class Reducer>
std::vector<typename Reducer::State> reduce_states(const T* x, const ReduceLayout& lay, const Reducer& reducer) {
  using State = typename Reducer::State;
  std::vector<State> result(static_cast<size_t>(lay.n_out));
  if (lay.n_out == 0) return result;
  const int64_t row = lay.kept.back(), row_stride = lay.kept_in.back();
  // Column mode when neighbouring outputs are closer in memory than neighbouring reduced elements.
  const bool column_mode = row > 1 && lay.n_red > 1 && row_stride < lay.red_in.back();
  const int64_t width = column_mode ? std::min(row, kReduceColumnBlock) : 1;
  const int64_t blocks_per_row = column_mode ? (row + width - 1) / width : 1;
  const int64_t n_groups = column_mode ? lay.n_out / row * blocks_per_row : lay.n_out;
  const int64_t per_chunk = std::max<int64_t>(1, column_mode ? kReduceColumnChunk / width : kReduceChunk);
  const int64_t n_chunks = std::max<int64_t>(1, (lay.n_red + per_chunk - 1) / per_chunk);
  std::vector<State> partial(n_chunks > 1 ? size_t(lay.n_out * n_chunks) : 0);  // [chunk][output]

  auto task = [&](int64_t t) {
    const int64_t group = t / n_chunks, chunk = t % n_chunks;
    int64_t o0 = group, m = 1;
    if (column_mode) {
      const int64_t block = group % blocks_per_row;
      o0 = group / blocks_per_row * row + block * width;
      m = std::min(width, row - block * width);
    }
    State* s = n_chunks > 1 ? &partial[size_t(chunk * lay.n_out + o0)] : &result[size_t(o0)];
    for (int64_t j = 0; j < m; ++j) s[j] = reducer.init(o0 + j);
    const int64_t begin = chunk * per_chunk, end = std::min(lay.n_red, begin + per_chunk);
    if (column_mode) {
      visit_reduced(lay, kept_offset(lay, o0), begin, end, [&](int64_t off, int64_t n, int64_t st, int64_t pos) {
        for (int64_t q = 0; q < n; ++q) reducer.columns(s, x + off + q * st, m, row_stride, pos + q);
      });
    } else {
      visit_reduced(lay, kept_offset(lay, o0), begin, end, [&](int64_t off, int64_t n, int64_t st, int64_t pos) {
        reducer.run(s[0], x + off, n, st, pos);
      });
    }
  };
  const int64_t n_tasks = n_groups * n_chunks;
  const int64_t work_per_task = std::max<int64_t>(1, width * std::min(per_chunk, lay.n_red));
  parallel_for(0, n_tasks, std::max<int64_t>(1, kReduceChunk / work_per_task), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) task(t);
  });
  if (n_chunks > 1) {
    for (int64_t o = 0; o < lay.n_out; ++o) {
      State s = partial[size_t(o)];
      for (int64_t c = 1; c < n_chunks; ++c) reducer.merge(s, partial[size_t(c * lay.n_out + o)]);
      result[size_t(o)] = s;
    }
  }
  return result;
}

template <class T>
double as_double(T v) {
  return double(compute_t<T>(v));
}

template <class T>
bool is_nan_value(T v) {
  if constexpr (std::is_floating_point_v<T>) return std::isnan(v);
  else return false;
}

// Sum of p[0], p[stride], ..., p[(n-1) stride] in double, with 8 independent partial sums in a
// fixed order (vectorizable, and more accurate than one running sum).
template <class T>
double sum_run(const T* p, int64_t n, int64_t stride) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  if (stride == 1) {
    for (; i + 8 <= n; i += 8)
      for (int k = 0; k < 8; ++k) acc[k] += as_double(p[i + k]);
  } else {
    for (; i + 8 <= n; i += 8)
      for (int k = 0; k < 8; ++k) acc[k] += as_double(p[(i + k) * stride]);
  }
  double tail = 0;
  for (; i < n; ++i) tail += as_double(p[i * stride]);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

template <class T>
struct SumReducer {
  using State = double;
  State init(int64_t) const { return 0.0; }
  void run(State& s, const T* p, int64_t n, int64_t stride, int64_t) const { s += sum_run(p, n, stride); }
  void columns(State* s, const T* p, int64_t m, int64_t cstride, int64_t) const {
    if (cstride == 1) {  // the common case, worth its own (contiguous, vectorized) loop
      for (int64_t j = 0; j < m; ++j) s[j] += as_double(p[j]);
    } else {
      for (int64_t j = 0; j < m; ++j) s[j] += as_double(p[j * cstride]);
    }
  }
  void merge(State& a, const State& b) const { a += b; }
};

// Sum of deviations and of squared deviations from a known per-output mean (second pass of var).
template <class T>
struct DeviationReducer {
  struct State {
    double mean = 0, dev = 0, dev2 = 0;
  };
  const double* means;
  State init(int64_t o) const { return {means[o], 0.0, 0.0}; }
  void run(State& s, const T* p, int64_t n, int64_t stride, int64_t) const {
    for (int64_t i = 0; i < n; ++i) {
      const double d = as_double(p[i * stride]) - s.mean;
      s.dev += d;
      s.dev2 += d * d;
    }
  }
  void columns(State* s, const T* p, int64_t m, int64_t cstride, int64_t) const {
    for (int64_t j = 0; j < m; ++j) {
      const double d = as_double(p[j * cstride]) - s[j].mean;
      s[j].dev += d;
      s[j].dev2 += d * d;
    }
  }
  void merge(State& a, const State& b) const {
    a.dev += b.dev;
    a.dev2 += b.dev2;
  }
};

// The largest (kMax) or smallest of n contiguous floating-point values, vectorized by Eigen, when
// all are finite; false (and nothing computed) when a NaN or an infinity is among them.
template <bool kMax, class C>
bool finite_extreme(const C* p, int64_t n, C& best) {
  const ConstArrayMap<C> values(p, n);
  if (!((values - values).sum() == C(0))) return false;  // x - x is NaN exactly for NaN and +-inf
  best = kMax ? values.maxCoeff() : values.minCoeff();
  return true;
}

// Largest (kMax) or smallest value and (kIndex) the position of its first occurrence; NaN wins.
template <class T, bool kMax, bool kIndex = true>
struct ExtremeReducer {
  using C = compute_t<T>;
  struct State {
    C value{};
    int64_t index = -1;  // -1: nothing seen yet
  };
  static bool better(C v, C best) {
    if constexpr (kMax) return v > best || (is_nan_value(v) && !is_nan_value(best));
    else return v < best || (is_nan_value(v) && !is_nan_value(best));
  }
  static void fold(State& s, C v, int64_t pos) {
    if (s.index < 0 || better(v, s.value)) {
      s.value = v;
      s.index = pos;
    }
  }
  State init(int64_t) const { return {}; }
  void run(State& s, const T* p, int64_t n, int64_t stride, int64_t pos) const {
    if constexpr (std::is_floating_point_v<T>) {
      // Contiguous and finite: the extreme vectorized first, then (if wanted) where it first occurs.
      C best;
      if (stride == 1 && n >= 16 && finite_extreme<kMax>(p, n, best)) {
        int64_t at = 0;
        if constexpr (kIndex)
          while (p[at] != best) ++at;
        fold(s, best, pos + at);
        return;
      }
    }
    for (int64_t i = 0; i < n; ++i) fold(s, C(p[i * stride]), pos + i);
  }
  void columns(State* s, const T* p, int64_t m, int64_t cstride, int64_t pos) const {
    for (int64_t j = 0; j < m; ++j) fold(s[j], C(p[j * cstride]), pos);
  }
  // Later chunks hold later positions: they win only when strictly better (first occurrence).
  void merge(State& a, const State& b) const {
    if (b.index >= 0 && (a.index < 0 || better(b.value, a.value))) a = b;
  }
};

// How many reduced elements equal the output's value (ties of amax/amin).
template <class T>
struct CountEqualReducer {
  using C = compute_t<T>;
  struct State {
    C target{};
    int64_t count = 0;
  };
  const T* values;  // one per output
  State init(int64_t o) const { return {C(values[o]), 0}; }
  void run(State& s, const T* p, int64_t n, int64_t stride, int64_t) const {
    for (int64_t i = 0; i < n; ++i) s.count += C(p[i * stride]) == s.target;
  }
  void columns(State* s, const T* p, int64_t m, int64_t cstride, int64_t) const {
    for (int64_t j = 0; j < m; ++j) s[j].count += C(p[j * cstride]) == s[j].target;
  }
  void merge(State& a, const State& b) const { a.count += b.count; }
};

// The CUDA path of sum / mean / amax / amin: x folded over the spec's dims into a fresh dense
// tensor of the output shape (loom/cuda/reduce.hpp; fp32 accumulation, deterministic).
template <class T, class Dev>
Tensor<T, Dev> device_reduce(const Tensor<T, Dev>& x, const ReduceSpec& spec, cuda::ReduceOp rop, double scale = 1.0) {
  static_assert(cuda_backend_for<T>, "reductions on CUDA tensors need LOOM_WITH_CUDA (link loom::kernels)");
  Tensor<T, Dev> out = Tensor<T, Dev>::empty(spec.out_shape);
  cuda::reduce_tensor(dtype_traits<T>::tag, rop, out.data(), x.data(), x.shape(), x.strides(), spec.reduced, scale);
  return out;
}

// Per-output mean of x over the spec's reduced dims, in double.
template <class T, class Dev>
std::vector<double> reduce_means(const Tensor<T, Dev>& x, const ReduceSpec& spec, const ReduceLayout& lay) {
  std::vector<double> means = reduce_states(x.data(), lay, SumReducer<T>{});
  for (double& m : means) m /= double(spec.n_reduced);
  return means;
}

// out = g * factor as a fresh tensor (backward of mean).
template <class T, class Dev>
Tensor<T, Dev> scaled_copy(const Tensor<T, Dev>& g, double factor) {
  Tensor<T, Dev> out = Tensor<T, Dev>::empty(g.shape());
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    static_assert(cuda_backend_for<T>, "mean on CUDA tensors needs LOOM_WITH_CUDA (link loom::kernels)");
    cuda::scale_strided(dtype_traits<T>::tag, out.data(), g.data(),
                        cuda::make_offset_map<2>(g.shape(), {out.strides(), g.strides()}), g.numel(), factor);
    return out;
  } else {
    T* po = out.data();
    const T* pg = g.data();
    for_each_run<2>(g.shape(), {out.strides(), g.strides()}, [&](auto off, int64_t n, auto st) {
      for (int64_t i = 0; i < n; ++i)
        po[off[0] + i * st[0]] = T(compute_t<T>(as_double(pg[off[1] + i * st[1]]) * factor));
    });
    return out;
  }
}

// gx = coef[o] * (x - center[o]) for every input element, o being the output it feeds.
template <class T, class Dev>
Tensor<T, Dev> affine_per_output(const Tensor<T, Dev>& x, const ReduceSpec& spec, const std::vector<double>& coef,
                                 const std::vector<double>& center) {
  Tensor<T, Dev> gx = Tensor<T, Dev>::empty(x.shape());
  T* pgx = gx.data();
  const T* px = x.data();
  const double *pc = coef.data(), *pm = center.data();
  for_each_run<3>(x.shape(), {gx.strides(), x.strides(), output_index_strides(spec)},
                  [&](auto off, int64_t n, auto st) {
                    for (int64_t i = 0; i < n; ++i) {
                      const int64_t o = off[2] + i * st[2];
                      pgx[off[0] + i * st[0]] =
                          T(compute_t<T>(pc[o] * (as_double(px[off[1] + i * st[1]]) - pm[o])));
                    }
                  });
  return gx;
}

template <class T, class Dev, bool kMax>
ValuesIndices<T, Dev> extreme_along(const char* op, const Tensor<T, Dev>& x, int64_t dim, bool keepdim,
                                    bool want_values) {
  const ReduceSpec spec = make_reduce_spec(op, x.shape(), {dim}, keepdim);
  const int d = x.dim() == 0 ? 0 : wrap_dim(dim, x.dim(), op);
  LOOM_CHECK(x.dim() == 0 || x.shape()[d] > 0, op, ": cannot reduce over dimension ", dim,
             " of extent 0 (input shape ", x.shape(), ")");
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    static_assert(cuda_backend_for<T>, "max / min on CUDA tensors need LOOM_WITH_CUDA (link loom::kernels)");
    ValuesIndices<T, Dev> r;
    r.indices = Tensor<int64_t, Dev>::empty(spec.out_shape);
    if (want_values) r.values = Tensor<T, Dev>::empty(spec.out_shape);
    cuda::arg_extreme(dtype_traits<T>::tag, kMax, want_values ? r.values.data() : nullptr, r.indices.data(), x.data(),
                      cuda::make_reduce_map(x.shape(), x.strides(), spec.reduced));
    if (!want_values) return r;
    if constexpr (FloatElement<T>) {
      if (autograd::should_record(x.impl())) {
        autograd::record(kMax ? "MaxBackward" : "MinBackward", r.values, {x.impl()},
                         [spec, d, si = autograd::SavedTensor<int64_t, Dev>(r.indices, op)](const Tensor<T, Dev>& g) {
                           // As on the CPU: the gradient goes to the returned index along d, 0 elsewhere.
                           const Tensor<int64_t, Dev>& idx = si.get();
                           Tensor<T, Dev> gx = Tensor<T, Dev>::zeros(spec.in_shape);
                           const int64_t step = spec.in_shape.size() ? gx.strides()[d] : 0;
                           cuda::put_along(dtype_traits<T>::tag, gx.data(), g.data(), idx.data(),
                                           cuda::make_offset_map<3>(spec.keep_shape,
                                                                    {gx.strides(), strides_over_keep_shape(g, spec),
                                                                     strides_over_keep_shape(idx, spec)}),
                                           spec.keep_shape.numel(), step);
                           return std::vector<Tensor<T, Dev>>{gx};
                         });
      }
    }
    return r;
  } else {
    const ReduceLayout lay = make_reduce_layout(x.strides(), spec);
    const auto states = reduce_states(x.data(), lay, ExtremeReducer<T, kMax>{});
    ValuesIndices<T, Dev> r;
    r.indices = Tensor<int64_t, Dev>::empty(spec.out_shape);
    int64_t* pi = r.indices.data();
    for (size_t o = 0; o < states.size(); ++o) pi[o] = states[o].index;
    if (!want_values) return r;
    r.values = Tensor<T, Dev>::empty(spec.out_shape);
    T* pv = r.values.data();
    for (size_t o = 0; o < states.size(); ++o) pv[o] = T(states[o].value);
    if constexpr (FloatElement<T>) {
      if (autograd::should_record(x.impl())) {
        autograd::record(kMax ? "MaxBackward" : "MinBackward", r.values, {x.impl()},
                         [spec, d, si = autograd::SavedTensor<int64_t, Dev>(r.indices, op)](const Tensor<T, Dev>& g) {
                           // The gradient goes to the returned index along d; every other element gets 0.
                           const Tensor<int64_t, Dev>& idx = si.get();
                           Tensor<T, Dev> gx = Tensor<T, Dev>::zeros(spec.in_shape);
                           const Strides gx_strides = gx.strides();
                           const int64_t step = spec.in_shape.size() ? gx_strides[d] : 0;
                           T* pgx = gx.data();
                           const T* pg = g.data();
                           const int64_t* pidx = idx.data();
                           for_each_run<3>(spec.keep_shape,
                                           {gx_strides, strides_over_keep_shape(g, spec),
                                            strides_over_keep_shape(idx, spec)},
                                           [&](auto off, int64_t n, auto st) {
                                             for (int64_t i = 0; i < n; ++i)
                                               pgx[off[0] + i * st[0] + pidx[off[2] + i * st[2]] * step] =
                                                   pg[off[1] + i * st[1]];
                                           });
                           return std::vector<Tensor<T, Dev>>{gx};
                         });
      }
    }
    return r;
  }
}

template <class T, class Dev, bool kMax>
Tensor<T, Dev> extreme_over(const char* op, const Tensor<T, Dev>& x, const std::vector<int64_t>& dims, bool keepdim) {
  const ReduceSpec spec = make_reduce_spec(op, x.shape(), dims, keepdim);
  LOOM_CHECK(spec.n_reduced > 0 || spec.keep_shape.numel() == 0, op,
             ": cannot reduce over zero elements (input shape ", x.shape(), ")");
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    Tensor<T, Dev> out = device_reduce(x, spec, kMax ? cuda::ReduceOp::max : cuda::ReduceOp::min);
    if constexpr (FloatElement<T>) {
      if (autograd::should_record(x.impl())) {
        autograd::record(kMax ? "AmaxBackward" : "AminBackward", out, {x.impl()},
                         [spec, sx = autograd::SavedTensor<T, Dev>(x, op), so = autograd::SavedTensor<T, Dev>(out, op)](
                             const Tensor<T, Dev>& g) {
                           // As on the CPU: each element equal to the result gets g / (number of such elements).
                           const Tensor<T, Dev>& xs = sx.get();
                           const Tensor<T, Dev>& outs = so.get();  // fresh and dense
                           Tensor<float, Dev> counts = Tensor<float, Dev>::empty(spec.out_shape);
                           cuda::reduce_tensor(dtype_traits<T>::tag, cuda::ReduceOp::count_equal, counts.data(),
                                               xs.data(), xs.shape(), xs.strides(), spec.reduced, 1.0, outs.data());
                           const Tensor<T, Dev> gd = g.contiguous();
                           Tensor<T, Dev> gx = Tensor<T, Dev>::empty(spec.in_shape);
                           cuda::extreme_backward(
                               dtype_traits<T>::tag, gx.data(), xs.data(), outs.data(), gd.data(), counts.data(),
                               cuda::make_offset_map<3>(spec.in_shape,
                                                        {gx.strides(), xs.strides(), output_index_strides(spec)}),
                               gx.numel());
                           return std::vector<Tensor<T, Dev>>{gx};
                         });
      }
    }
    return out;
  } else {
    const ReduceLayout lay = make_reduce_layout(x.strides(), spec);
    const auto states = reduce_states(x.data(), lay, ExtremeReducer<T, kMax, false>{});
    Tensor<T, Dev> out = Tensor<T, Dev>::empty(spec.out_shape);
    T* po = out.data();
    for (size_t o = 0; o < states.size(); ++o) po[o] = T(states[o].value);
    if constexpr (FloatElement<T>) {
      if (autograd::should_record(x.impl())) {
        autograd::record(kMax ? "AmaxBackward" : "AminBackward", out, {x.impl()},
                         [spec, sx = autograd::SavedTensor<T, Dev>(x, op), so = autograd::SavedTensor<T, Dev>(out, op)](
                             const Tensor<T, Dev>& g) {
                           // Each element equal to the result gets g / (number of such elements).
                           const Tensor<T, Dev>& xs = sx.get();
                           const Tensor<T, Dev>& outs = so.get();  // fresh and dense
                           const ReduceLayout lay = make_reduce_layout(xs.strides(), spec);
                           const auto counts = reduce_states(xs.data(), lay, CountEqualReducer<T>{outs.data()});
                           std::vector<double> share(counts.size());
                           const Tensor<T, Dev> gd = g.contiguous();
                           for (size_t o = 0; o < counts.size(); ++o)
                             share[o] = counts[o].count ? as_double(gd.data()[o]) / double(counts[o].count) : 0.0;
                           Tensor<T, Dev> gx = Tensor<T, Dev>::empty(spec.in_shape);
                           T* pgx = gx.data();
                           const T *px = xs.data(), *pv = outs.data();
                           for_each_run<3>(spec.in_shape, {gx.strides(), xs.strides(), output_index_strides(spec)},
                                           [&](auto off, int64_t n, auto st) {
                                             for (int64_t i = 0; i < n; ++i) {
                                               const int64_t o = off[2] + i * st[2];
                                               const bool hit =
                                                   compute_t<T>(px[off[1] + i * st[1]]) == compute_t<T>(pv[o]);
                                               pgx[off[0] + i * st[0]] = T(compute_t<T>(hit ? share[size_t(o)] : 0.0));
                                             }
                                           });
                           return std::vector<Tensor<T, Dev>>{gx};
                         });
      }
    }
    return out;
  }
}

template <class T, class Dev, bool kStd>
Tensor<T, Dev> spread(const char* op, const Tensor<T, Dev>& x, const std::vector<int64_t>& dims, bool unbiased,
                      bool keepdim) {
  const ReduceSpec spec = make_reduce_spec(op, x.shape(), dims, keepdim);
  const double denom = double(spec.n_reduced) - (unbiased ? 1.0 : 0.0);
  Tensor<T, Dev> out = Tensor<T, Dev>::empty(spec.out_shape);
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    static_assert(cuda_backend_for<T>, "var / stddev on CUDA tensors need LOOM_WITH_CUDA (link loom::kernels)");
    cuda::spread_forward(dtype_traits<T>::tag, kStd, out.data(), x.data(),
                         cuda::make_reduce_map(x.shape(), x.strides(), spec.reduced), denom);
  } else {
    const ReduceLayout lay = make_reduce_layout(x.strides(), spec);
    const std::vector<double> means = reduce_means(x, spec, lay);
    const auto dev = reduce_states(x.data(), lay, DeviationReducer<T>{means.data()});
    const double n = double(spec.n_reduced);
    T* po = out.data();
    for (size_t o = 0; o < dev.size(); ++o) {
      // dev2 - dev^2/n corrects for the rounding of the mean (the two-pass "corrected" formula).
      const double v = (dev[o].dev2 - dev[o].dev * dev[o].dev / n) / denom;
      po[o] = T(compute_t<T>(kStd ? std::sqrt(v) : v));
    }
  }
  if (autograd::should_record(x.impl())) {
    autograd::record(
        kStd ? "StdBackward" : "VarBackward", out, {x.impl()},
        [spec, denom, sx = autograd::SavedTensor<T, Dev>(x, op),
         so = autograd::SavedTensor<T, Dev>(out, op)](const Tensor<T, Dev>& g) {
          // var: dx = g * 2 (x - mean) / denom;  std: dx = g * (x - mean) / (denom * std).
          const Tensor<T, Dev>& xs = sx.get();
          const Tensor<T, Dev> gd = g.contiguous();
          if constexpr (Tensor<T, Dev>::kOnDevice) {
            Tensor<T, Dev> gx = Tensor<T, Dev>::empty(spec.in_shape);
            cuda::spread_backward(
                dtype_traits<T>::tag, kStd, gx.data(), xs.data(), gd.data(), so.get().data(),
                cuda::make_reduce_map(xs.shape(), xs.strides(), spec.reduced),
                cuda::make_offset_map<3>(spec.in_shape, {gx.strides(), xs.strides(), output_index_strides(spec)}),
                gx.numel(), denom);
            return std::vector<Tensor<T, Dev>>{gx};
          } else {
            const T* pout = so.get().data();
            const std::vector<double> mean = reduce_means(xs, spec, make_reduce_layout(xs.strides(), spec));
            std::vector<double> coef(mean.size());
            for (size_t o = 0; o < coef.size(); ++o) {
              const double go = as_double(gd.data()[o]);
              if constexpr (kStd) {
                const double s = as_double(pout[o]);
                coef[o] = s == 0 ? 0.0 : go / (denom * s);
              } else {
                coef[o] = 2.0 * go / denom;
              }
            }
            return std::vector<Tensor<T, Dev>>{affine_per_output(xs, spec, coef, mean)};
          }
        });
  }
  return out;
}

}  // namespace detail

// ---- sum / mean -------------------------------------------------------------------------------

// Sum over `dims` (all dims when empty).
template <FloatElement T, class Dev>
Tensor<T, Dev> sum(const Tensor<T, Dev>& x, const std::vector<int64_t>& dims, bool keepdim = false) {
  const detail::ReduceSpec spec = detail::make_reduce_spec("sum", x.shape(), dims, keepdim);
  Tensor<T, Dev> out;
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    out = detail::device_reduce(x, spec, cuda::ReduceOp::sum);
  } else {
    const auto sums = detail::reduce_states(x.data(), detail::make_reduce_layout(x.strides(), spec),
                                            detail::SumReducer<T>{});
    out = Tensor<T, Dev>::empty(spec.out_shape);
    T* po = out.data();
    for (size_t o = 0; o < sums.size(); ++o) po[o] = T(compute_t<T>(sums[o]));
  }
  if (autograd::should_record(x.impl())) {
    autograd::record("SumBackward", out, {x.impl()}, [spec](const Tensor<T, Dev>& g) {
      return std::vector<Tensor<T, Dev>>{detail::broadcast_to_input(g, spec)};
    });
  }
  return out;
}

// Sum of all elements, as a rank-0 tensor.
template <FloatElement T, class Dev>
Tensor<T, Dev> sum(const Tensor<T, Dev>& x) {
  return sum(x, std::vector<int64_t>{}, false);
}

// Mean over `dims` (all dims when empty); NaN over zero elements.
template <FloatElement T, class Dev>
Tensor<T, Dev> mean(const Tensor<T, Dev>& x, const std::vector<int64_t>& dims, bool keepdim = false) {
  const detail::ReduceSpec spec = detail::make_reduce_spec("mean", x.shape(), dims, keepdim);
  Tensor<T, Dev> out;
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    out = detail::device_reduce(x, spec, cuda::ReduceOp::sum, 1.0 / double(spec.n_reduced));
  } else {
    const auto means = detail::reduce_means(x, spec, detail::make_reduce_layout(x.strides(), spec));
    out = Tensor<T, Dev>::empty(spec.out_shape);
    T* po = out.data();
    for (size_t o = 0; o < means.size(); ++o) po[o] = T(compute_t<T>(means[o]));
  }
  if (autograd::should_record(x.impl())) {
    autograd::record("MeanBackward", out, {x.impl()}, [spec](const Tensor<T, Dev>& g) {
      return std::vector<Tensor<T, Dev>>{
          detail::broadcast_to_input(detail::scaled_copy(g, 1.0 / double(spec.n_reduced)), spec)};
    });
  }
  return out;
}

// Mean of all elements, as a rank-0 tensor.
template <FloatElement T, class Dev>
Tensor<T, Dev> mean(const Tensor<T, Dev>& x) {
  return mean(x, std::vector<int64_t>{}, false);
}

// ---- var / std --------------------------------------------------------------------------------

// Variance over `dims` (all when empty); unbiased divides by N - 1 (NaN when N == 1), else by N.
template <FloatElement T, class Dev>
Tensor<T, Dev> var(const Tensor<T, Dev>& x, const std::vector<int64_t>& dims = {}, bool unbiased = true,
                   bool keepdim = false) {
  return detail::spread<T, Dev, false>("var", x, dims, unbiased, keepdim);
}

// Standard deviation, sqrt(var(x, dims, unbiased, keepdim)), with its own backward (torch.std;
// named stddev because a function loom::std is ambiguous with namespace std under `using namespace loom`).
template <FloatElement T, class Dev>
Tensor<T, Dev> stddev(const Tensor<T, Dev>& x, const std::vector<int64_t>& dims = {}, bool unbiased = true,
                   bool keepdim = false) {
  return detail::spread<T, Dev, true>("stddev", x, dims, unbiased, keepdim);
}

// ---- max / min / amax / amin / argmax / argmin ------------------------------------------------

// Largest value along `dim` and the index of its first occurrence (the one that gets the gradient).
template <Element T, class Dev>
ValuesIndices<T, Dev> max(const Tensor<T, Dev>& x, int64_t dim, bool keepdim = false) {
  return detail::extreme_along<T, Dev, true>("max", x, dim, keepdim, true);
}

// Smallest value along `dim` and the index of its first occurrence (the one that gets the gradient).
template <Element T, class Dev>
ValuesIndices<T, Dev> min(const Tensor<T, Dev>& x, int64_t dim, bool keepdim = false) {
  return detail::extreme_along<T, Dev, false>("min", x, dim, keepdim, true);
}

// Largest value over `dims` (all when empty); the gradient is shared evenly among ties.
template <Element T, class Dev>
Tensor<T, Dev> amax(const Tensor<T, Dev>& x, const std::vector<int64_t>& dims = {}, bool keepdim = false) {
  return detail::extreme_over<T, Dev, true>("amax", x, dims, keepdim);
}

// Smallest value over `dims` (all when empty); the gradient is shared evenly among ties.
template <Element T, class Dev>
Tensor<T, Dev> amin(const Tensor<T, Dev>& x, const std::vector<int64_t>& dims = {}, bool keepdim = false) {
  return detail::extreme_over<T, Dev, false>("amin", x, dims, keepdim);
}

// Index of the first largest element along `dim`.
template <Element T, class Dev>
Tensor<int64_t, Dev> argmax(const Tensor<T, Dev>& x, int64_t dim, bool keepdim = false) {
  return detail::extreme_along<T, Dev, true>("argmax", x, dim, keepdim, false).indices;
}

// Index of the first smallest element along `dim`.
template <Element T, class Dev>
Tensor<int64_t, Dev> argmin(const Tensor<T, Dev>& x, int64_t dim, bool keepdim = false) {
  return detail::extreme_along<T, Dev, false>("argmin", x, dim, keepdim, false).indices;
}

// Row-major flat index of the first largest element, as a rank-0 tensor.
template <Element T, class Dev>
Tensor<int64_t, Dev> argmax(const Tensor<T, Dev>& x) {
  NoGradGuard no_grad;
  return argmax(x.reshape({x.numel()}), 0);
}

// Row-major flat index of the first smallest element, as a rank-0 tensor.
template <Element T, class Dev>
Tensor<int64_t, Dev> argmin(const Tensor<T, Dev>& x) {
  NoGradGuard no_grad;
  return argmin(x.reshape({x.numel()}), 0);
}

}  // namespace loom
