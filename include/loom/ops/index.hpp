#pragma once
// Index ops, each with its backward beside it:
//   index_select(t, dim, index[K])         picks K slices of t along dim (any order, repeats allowed)
//   gather(t, dim, index)                  torch.gather: out[.., i, ..] = t[.., index[.., i, ..], ..]
//   scatter_add(base, dim, index, src)     out-of-place: base + src added at index positions along dim
// Indices are int64 in [0, size of dim); anything else throws naming the index value, the dim and
// the shape. index_select and gather go backward as scatter_add of the gradient; scatter_add sends
// the gradient itself to base and gather(grad) to src.
//
// scatter_add is deterministic: no atomics. Positions that differ outside `dim` never write the
// same output element, so the work is split across those coordinates only, and each output element
// receives its contributions in increasing order along `dim`. bf16 accumulates in float.
//
// On CUDA tensors (float and bf16; gather/index_select of any element type) the same algorithms run
// as device kernels (loom/cuda/index.hpp, kernels/index.cu): gather one thread per element,
// scatter_add one thread per column along `dim` in the CPU's order (bit-identical sums), and the
// index check is a device pass that finds the first bad position, whose value is read back to
// throw the CPU's message (one synchronization per checked op).
#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <vector>

#include "loom/autograd/engine.hpp"
#include "loom/core/device_backend.hpp"
#include "loom/core/iterate.hpp"
#include "loom/core/parallel.hpp"
#include "loom/core/tensor.hpp"
#include "loom/cuda/index.hpp"
#include "loom/ops/view.hpp"

namespace loom {
namespace detail {

// Calls body(offsets, n, inner_strides) over the innermost runs of a strided layout, in parallel
// across runs and, when there are fewer runs than threads, across blocks of each run. Every
// element belongs to exactly one call; `cost_per_element` scales the minimum work per task.
template <size_t N, class Body>
void for_each_run_blocked(const Shape& shape, const std::array<Strides, N>& strides, int64_t cost_per_element,
                          Body&& body) {
  const StridedLayout<N> lay = coalesce<N>(shape, strides);
  const int rank = lay.shape.size();
  const int64_t inner = lay.shape[rank - 1];
  const int64_t outer = lay.shape.numel() / std::max<int64_t>(inner, 1);
  if (inner == 0 || outer == 0) return;
  const int64_t min_elements = std::max<int64_t>(1, 32768 / std::max<int64_t>(cost_per_element, 1));
  const int64_t threads = num_threads();
  int64_t blocks_per_run = 1;
  if (outer < threads) {
    const int64_t max_blocks = std::max<int64_t>(1, inner / min_elements);
    blocks_per_run = std::min((threads + outer - 1) / outer, max_blocks);
  }
  const int64_t block = (inner + blocks_per_run - 1) / blocks_per_run;
  const int64_t grain = std::max<int64_t>(1, min_elements / block);
  std::array<int64_t, N> inner_strides;
  for (size_t k = 0; k < N; ++k) inner_strides[k] = lay.strides[k][rank - 1];
  parallel_for(0, outer * blocks_per_run, grain, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      int64_t run = item / blocks_per_run;
      const int64_t part = item % blocks_per_run;
      const int64_t start = inner * part / blocks_per_run, stop = inner * (part + 1) / blocks_per_run;
      std::array<int64_t, N> off{};
      for (int d = rank - 2; d >= 0; --d) {
        const int64_t i = run % lay.shape[d];
        run /= lay.shape[d];
        for (size_t k = 0; k < N; ++k) off[k] += i * lay.strides[k][d];
      }
      for (size_t k = 0; k < N; ++k) off[k] += start * inner_strides[k];
      if (stop > start) body(off, stop - start, inner_strides);
    }
  });
}

// The first value (row-major) of a CUDA index tensor outside [0, limit), if any: a device pass finds
// its position (kernels/index.cu), then that one value is read back.
template <class Dev>
std::optional<int64_t> first_bad_index_on_device(const Tensor<int64_t, Dev>& index, int64_t limit) {
  static_assert(cuda_backend_for<Dev>, "index checks on CUDA tensors need LOOM_WITH_CUDA (link loom::kernels)");
  const cuda::OffsetMap<1> map = cuda::make_offset_map<1>(index.shape(), {index.strides()});
  const int64_t bad = cuda::first_out_of_range(index.data(), map, index.numel(), limit);
  if (bad < 0) return std::nullopt;
  int64_t off[1];
  map.offsets(bad, off);
  int64_t v = 0;
  copy_bytes(&v, false, index.data() + off[0], true, sizeof v);
  return v;
}

// Throws unless every value of `index` lies in [0, limit), naming the first bad value.
template <class Dev>
void check_index_values(const char* op, const Tensor<int64_t, Dev>& index, int64_t limit, int dim,
                        const Shape& indexed_shape) {
  if constexpr (Tensor<int64_t, Dev>::kOnDevice) {
    static_assert(cuda_backend_for<Dev>, "index ops on CUDA tensors need LOOM_WITH_CUDA (link loom::kernels)");
    const std::optional<int64_t> v = first_bad_index_on_device(index, limit);
    if (!v) return;
    fail(op, ": index ", *v, " out of range for dimension ", dim, " (size ", limit, ") of shape ", indexed_shape);
  } else {
    const int64_t* p = index.data();
    for_each_run_serial<1>(index.shape(), {index.strides()}, [&](auto off, int64_t n, auto st) {
      for (int64_t i = 0; i < n; ++i) {
        const int64_t v = p[off[0] + i * st[0]];
        LOOM_CHECK(v >= 0 && v < limit, op, ": index ", v, " out of range for dimension ", dim, " (size ", limit,
                   ") of shape ", indexed_shape);
      }
    });
  }
}

template <class Dev>
void check_index_device() {
  static_assert(std::is_same_v<Dev, CPU> || cuda_backend_for<Dev>,
                "index ops on CUDA tensors need LOOM_WITH_CUDA (link loom::kernels)");
}

// out[pos] = t[pos with coordinate `dim` replaced by index[pos]] for every pos of index's shape.
// Values are already checked; index may have stride-0 (broadcast) dims.
template <class T, class Dev>
Tensor<T, Dev> gather_unchecked(const Tensor<T, Dev>& t, int dim, const Tensor<int64_t, Dev>& index) {
  Tensor<T, Dev> out = Tensor<T, Dev>::empty(index.shape());
  Strides t_strides = t.strides();
  const int64_t dim_stride = t_strides[dim];
  t_strides[dim] = 0;  // the coordinate along dim comes from the index instead
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    static_assert(cuda_backend_for<T>, "gather on CUDA tensors needs LOOM_WITH_CUDA (link loom::kernels)");
    cuda::gather_strided(sizeof(T), out.data(), t.data(), index.data(),
                         cuda::make_offset_map<3>(index.shape(), {out.strides(), t_strides, index.strides()}),
                         out.numel(), dim_stride);
  } else {
    T* po = out.data();
    const T* pt = t.data();
    const int64_t* pi = index.data();
    for_each_run<3>(index.shape(), {out.strides(), t_strides, index.strides()}, [&](auto off, int64_t n, auto st) {
      for (int64_t i = 0; i < n; ++i)
        po[off[0] + i * st[0]] = pt[off[1] + i * st[1] + pi[off[2] + i * st[2]] * dim_stride];
    });
  }
  return out;
}

// base + src scattered along dim (out[pos with dim -> index[pos]] += src[pos] for pos over index's
// shape) as a new tensor. Values are already checked; accumulates in compute_t<T>.
template <class T, class Dev>
Tensor<T, Dev> scatter_add_unchecked(const Tensor<T, Dev>& base, int dim, const Tensor<int64_t, Dev>& index,
                                     const Tensor<T, Dev>& src) {
  using Acc = compute_t<T>;
  NoGradGuard no_grad;
  Tensor<Acc, Dev> acc = Tensor<Acc, Dev>::empty(base.shape());
  acc.copy_(base);
  // Walk every coordinate but `dim` in parallel; the loop along `dim` stays inside one task.
  Shape rest = index.shape();
  Strides acc_rest = acc.strides(), src_rest = src.strides(), index_rest = index.strides();
  const int64_t steps = rest[dim], acc_dim = acc_rest[dim], src_dim = src_rest[dim], index_dim = index_rest[dim];
  rest.erase(dim);
  acc_rest.erase(dim);
  src_rest.erase(dim);
  index_rest.erase(dim);
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    static_assert(cuda_backend_for<T>, "scatter_add on CUDA tensors needs LOOM_WITH_CUDA (link loom::kernels)");
    if constexpr (std::is_same_v<Acc, float>) {  // float and bf16
      cuda::scatter_add_columns(acc.data(), dtype_traits<T>::tag, src.data(), index.data(),
                                cuda::make_offset_map<3>(rest, {acc_rest, src_rest, index_rest}), rest.numel(),
                                {steps, acc_dim, src_dim, index_dim});
    } else {
      fail("scatter_add: ", dtype_traits<T>::name, " is not supported on CUDA (float32 and bfloat16 are)");
    }
  } else {
    Acc* pa = acc.data();
    const T* ps = src.data();
    const int64_t* pi = index.data();
    for_each_run_blocked<3>(rest, {acc_rest, src_rest, index_rest}, steps, [&](auto off, int64_t n, auto st) {
      for (int64_t j = 0; j < steps; ++j) {
        const T* s = ps + off[1] + j * src_dim;
        const int64_t* ix = pi + off[2] + j * index_dim;
        Acc* a = pa + off[0];
        for (int64_t e = 0; e < n; ++e) a[e * st[0] + ix[e * st[2]] * acc_dim] += Acc(s[e * st[1]]);
      }
    });
  }
  if constexpr (std::is_same_v<Acc, T>) {
    return acc;
  } else {
    return acc.template to<T>();
  }
}

// A 1-D index [K] viewed over `shape` (whose extent along dim is K): stride 0 on every other dim.
template <class Dev>
Tensor<int64_t, Dev> spread_index(const Tensor<int64_t, Dev>& index, int dim, const Shape& shape) {
  Shape one_dim = Shape::filled(shape.size(), 1);
  one_dim[dim] = index.numel();
  return index.reshape(one_dim).expand(shape);
}

}  // namespace detail

// Slices of t along dim picked by a 1-D int64 index: out.shape = t.shape with dim's extent = K.
template <class T, class Dev>
Tensor<T, Dev> index_select(const Tensor<T, Dev>& t, int64_t dim, const Tensor<int64_t, Dev>& index) {
  detail::check_index_device<Dev>();
  LOOM_CHECK(t.dim() >= 1, "index_select: cannot index a 0-d tensor (shape ", t.shape(), ")");
  LOOM_CHECK(index.dim() <= 1, "index_select: index must be 1-D, got shape ", index.shape(), " (input shape ",
             t.shape(), ")");
  const int d = wrap_dim(dim, t.dim(), "index_select");
  detail::check_index_values("index_select", index, t.shape()[d], d, t.shape());
  Shape out_shape = t.shape();
  out_shape[d] = index.numel();
  const Tensor<int64_t, Dev> spread = detail::spread_index(index, d, out_shape);  // [.., K, ..], a view
  Tensor<T, Dev> out = detail::gather_unchecked(t, d, spread);
  if constexpr (FloatElement<T>) {
    if (autograd::should_record(t.impl())) {
      autograd::record("IndexSelectBackward", out, {t.impl(), index.impl()},
                       [si = autograd::SavedTensor<int64_t, Dev>(index, "index_select"), t_shape = t.shape(),
                        d](const Tensor<T, Dev>& g) {
                         const auto spread_g = detail::spread_index(si.get(), d, g.shape());
                         return std::vector<Tensor<T, Dev>>{
                             detail::scatter_add_unchecked(Tensor<T, Dev>::zeros(t_shape), d, spread_g, g),
                             Tensor<T, Dev>()};
                       });
    }
  }
  return out;
}

// torch.gather: index has t's rank, index.size(i) <= t.size(i) for i != dim; out has index's shape
// and out[.., i_dim, ..] = t[.., index[.., i_dim, ..], ..].
template <class T, class Dev>
Tensor<T, Dev> gather(const Tensor<T, Dev>& t, int64_t dim, const Tensor<int64_t, Dev>& index) {
  detail::check_index_device<Dev>();
  LOOM_CHECK(t.dim() >= 1 && index.dim() == t.dim(), "gather: index must have the input's rank (>= 1): input ",
             t.shape(), ", index ", index.shape());
  const int d = wrap_dim(dim, t.dim(), "gather");
  for (int i = 0; i < t.dim(); ++i)
    LOOM_CHECK(i == d || index.shape()[i] <= t.shape()[i], "gather: index ", index.shape(),
               " is larger than the input ", t.shape(), " in dimension ", i, " (only dimension ", d, " may differ)");
  detail::check_index_values("gather", index, t.shape()[d], d, t.shape());
  Tensor<T, Dev> out = detail::gather_unchecked(t, d, index);
  if constexpr (FloatElement<T>) {
    if (autograd::should_record(t.impl())) {
      autograd::record("GatherBackward", out, {t.impl(), index.impl()},
                       [si = autograd::SavedTensor<int64_t, Dev>(index, "gather"), t_shape = t.shape(),
                        d](const Tensor<T, Dev>& g) {
                         return std::vector<Tensor<T, Dev>>{
                             detail::scatter_add_unchecked(Tensor<T, Dev>::zeros(t_shape), d, si.get(), g),
                             Tensor<T, Dev>()};
                       });
    }
  }
  return out;
}

// Out-of-place torch.scatter_add: a copy of base with src[pos] added at pos with its dim
// coordinate replaced by index[pos], for every pos of index's shape. Needs equal ranks,
// index.size(i) <= src.size(i) for all i and index.size(i) <= base.size(i) for i != dim.
// Repeated indices accumulate, in increasing order along dim (deterministic).
template <class T, class Dev>
Tensor<T, Dev> scatter_add(const Tensor<T, Dev>& base, int64_t dim, const Tensor<int64_t, Dev>& index,
                           const Tensor<T, Dev>& src) {
  detail::check_index_device<Dev>();
  LOOM_CHECK(base.dim() >= 1 && index.dim() == base.dim() && src.dim() == base.dim(),
             "scatter_add: base, index and src must have the same rank (>= 1): base ", base.shape(), ", index ",
             index.shape(), ", src ", src.shape());
  const int d = wrap_dim(dim, base.dim(), "scatter_add");
  for (int i = 0; i < base.dim(); ++i) {
    LOOM_CHECK(index.shape()[i] <= src.shape()[i], "scatter_add: index ", index.shape(), " is larger than src ",
               src.shape(), " in dimension ", i);
    LOOM_CHECK(i == d || index.shape()[i] <= base.shape()[i], "scatter_add: index ", index.shape(),
               " is larger than base ", base.shape(), " in dimension ", i, " (only dimension ", d, " may differ)");
  }
  detail::check_index_values("scatter_add", index, base.shape()[d], d, base.shape());
  // src beyond index's extents takes no part: read it through a view of index's shape.
  Tensor<T, Dev> src_used = src.detach();
  for (int i = 0; i < src.dim(); ++i) src_used = src_used.narrow(i, 0, index.shape()[i]);
  Tensor<T, Dev> out = detail::scatter_add_unchecked(base, d, index, src_used);
  if constexpr (FloatElement<T>) {
    if (autograd::should_record(base.impl(), src.impl())) {
      const bool need_src = autograd::needs_grad(src.impl());
      autograd::record(
          "ScatterAddBackward", out, {base.impl(), index.impl(), src.impl()},
          [si = autograd::SavedTensor<int64_t, Dev>(index, "scatter_add"), src_shape = src.shape(), d,
           need_src](const Tensor<T, Dev>& g) {
            Tensor<T, Dev> g_src;
            if (need_src) {
              const Tensor<int64_t, Dev>& ix = si.get();
              g_src = detail::gather_unchecked(g, d, ix);  // [index shape]
              if (!(ix.shape() == src_shape)) {  // src positions outside index's extents get zero
                Tensor<T, Dev> padded = Tensor<T, Dev>::zeros(src_shape);
                Tensor<T, Dev> region = padded;
                for (int i = 0; i < region.dim(); ++i) region = region.narrow(i, 0, ix.shape()[i]);
                region.copy_(g_src);
                g_src = padded;
              }
            }
            return std::vector<Tensor<T, Dev>>{g, Tensor<T, Dev>(), g_src};
          });
    }
  }
  return out;
}

}  // namespace loom
