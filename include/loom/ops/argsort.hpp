#pragma once
// argsort: the indices that sort a tensor along one dimension. The sort is stable (equal values keep
// their input order), so the result is a deterministic function of the values: the MAE masking
// draws uniform noise and takes argsort(noise) as a random shuffle of the tokens, and argsort of
// that shuffle as its inverse (ids_restore). NaN sorts after every number (first when descending),
// as in PyTorch. Not differentiable: the result is an index tensor.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "loom/autograd/grad_mode.hpp"
#include "loom/core/parallel.hpp"
#include "loom/core/tensor.hpp"

namespace loom {

namespace detail {
// Strict weak order with NaN above every number; integers never compare as NaN.
template <class V>
bool sorts_before(V a, V b) {
  if constexpr (std::is_floating_point_v<V>) {
    if (std::isnan(a)) return false;
    if (std::isnan(b)) return true;
  }
  return a < b;
}
}  // namespace detail

// [..., n, ...] -> int64 indices of the same shape; along `dim`, x[idx[0]] <= x[idx[1]] <= ...
// On CUDA tensors the sort runs on a host copy (one download, one upload): loom sorts only small
// index sets (mask plans are made on the host or by their own kernel), so no device sort kernel.
template <Element T, class Dev>
Tensor<int64_t, Dev> argsort(const Tensor<T, Dev>& x, int64_t dim = -1, bool descending = false) {
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    NoGradGuard no_grad;
    return argsort(x.template to_device<CPU>(), dim, descending).template to_device<Dev>();
  }
  if (x.dim() == 0) return Tensor<int64_t, Dev>::zeros(Shape{});
  const int d = wrap_dim(dim, x.dim(), "argsort");
  NoGradGuard no_grad;  // only values are read; nothing here belongs to a graph
  // Move the sorted dimension last and make rows contiguous: [rows, n].
  const Tensor<T, Dev> rows = x.transpose(d, -1).contiguous();
  const int64_t n = rows.size(-1);
  Tensor<int64_t, Dev> order = Tensor<int64_t, Dev>::empty(rows.shape());
  const int64_t row_count = n == 0 ? 0 : rows.numel() / n;
  const T* src = rows.data();
  int64_t* dst = order.data();
  using V = compute_t<T>;
  // Rows are independent; a grain of a few thousand elements keeps tiny sorts on one thread.
  parallel_for(0, row_count, std::max<int64_t>(1, 4096 / std::max<int64_t>(n, 1)), [&](int64_t r0, int64_t r1) {
    std::vector<V> values(static_cast<size_t>(n));
    for (int64_t r = r0; r < r1; ++r) {
      const T* row = src + r * n;
      int64_t* out = dst + r * n;
      for (int64_t i = 0; i < n; ++i) values[size_t(i)] = V(row[i]);
      std::iota(out, out + n, int64_t(0));
      if (descending)
        std::stable_sort(out, out + n, [&](int64_t a, int64_t b) {
          return detail::sorts_before(values[size_t(b)], values[size_t(a)]);
        });
      else
        std::stable_sort(out, out + n, [&](int64_t a, int64_t b) {
          return detail::sorts_before(values[size_t(a)], values[size_t(b)]);
        });
    }
  });
  return order.transpose(d, -1).contiguous();
}

}  // namespace loom
