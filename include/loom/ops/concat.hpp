#pragma once
// Joining and cutting along a dimension, with backward:
//   concat(tensors, dim)         one new tensor; backward hands each input its narrow of the gradient
//   stack(tensors, dim)          concat of the inputs each unsqueezed at dim (a new dim)
//   split(t, size, dim)          views (narrow) of `size` along dim, the last one possibly shorter
//   split(t, {sizes..}, dim)     views with the given extents, which must add up to t's extent
//   chunk(t, n, dim)             torch.chunk: split by ceil(extent / n), so possibly fewer than n
// split and chunk return views, so their backward is the narrow's.
#include <algorithm>
#include <concepts>
#include <cstdint>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "loom/autograd/engine.hpp"
#include "loom/core/device_backend.hpp"
#include "loom/core/tensor.hpp"
#include "loom/ops/view.hpp"

namespace loom {

// Concatenates tensors of equal rank along dim; every other extent must match the first tensor's.
template <class T, class Dev>
Tensor<T, Dev> concat(const std::vector<Tensor<T, Dev>>& tensors, int64_t dim) {
  // CUDA tensors: the copies into narrow views of `out` and the narrow views of the gradient are
  // Tensor<T, CUDA>'s own copy_ and views, so the op needs no kernel of its own.
  static_assert(std::is_same_v<Dev, CPU> || detail::cuda_backend_for<T>,
                "concat on CUDA tensors needs LOOM_WITH_CUDA (link loom::kernels)");
  LOOM_CHECK(!tensors.empty(), "concat: needs at least one tensor");
  const Shape& first = tensors[0].shape();
  LOOM_CHECK(first.size() >= 1, "concat: cannot concatenate 0-d tensors (shape ", first, ")");
  const int d = wrap_dim(dim, first.size(), "concat");
  Shape out_shape = first;
  out_shape[d] = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Shape& s = tensors[i].shape();
    bool same = s.size() == first.size();
    for (int k = 0; same && k < s.size(); ++k) same = k == d || s[k] == first[k];
    LOOM_CHECK(same, "concat: tensor ", i, " has shape ", s, ", which differs from tensor 0's shape ", first,
               " outside dimension ", d);
    out_shape[d] += s[d];
  }
  Tensor<T, Dev> out = Tensor<T, Dev>::empty(out_shape);
  std::vector<int64_t> extents;  // of each input along d
  {
    NoGradGuard no_grad;
    int64_t offset = 0;
    for (const auto& t : tensors) {
      const int64_t n = t.shape()[d];
      if (n > 0) out.narrow(d, offset, n).copy_(t);
      extents.push_back(n);
      offset += n;
    }
  }
  if constexpr (FloatElement<T>) {
    const bool any_needs_grad = std::any_of(tensors.begin(), tensors.end(),
                                            [](const Tensor<T, Dev>& t) { return autograd::needs_grad(t.impl()); });
    if (autograd::grad_enabled() && any_needs_grad) {
      std::vector<autograd::ImplPtr> inputs;
      for (const auto& t : tensors) inputs.push_back(t.impl());
      autograd::record(std::string("ConcatBackward"), out, inputs, [extents, d](const Tensor<T, Dev>& g) {
        std::vector<Tensor<T, Dev>> grads;
        int64_t offset = 0;
        for (int64_t n : extents) {
          grads.push_back(g.narrow(d, offset, n));
          offset += n;
        }
        return grads;
      });
    }
  }
  return out;
}

// Stacks tensors of one shape along a new dimension dim (in [-(rank + 1), rank]).
template <class T, class Dev>
Tensor<T, Dev> stack(const std::vector<Tensor<T, Dev>>& tensors, int64_t dim) {
  LOOM_CHECK(!tensors.empty(), "stack: needs at least one tensor");
  const Shape& first = tensors[0].shape();
  for (size_t i = 1; i < tensors.size(); ++i)
    LOOM_CHECK(tensors[i].shape() == first, "stack: tensor ", i, " has shape ", tensors[i].shape(),
               ", tensor 0 has shape ", first, " (all must be equal)");
  const int d = wrap_dim(dim, first.size() + 1, "stack");
  std::vector<Tensor<T, Dev>> expanded;
  expanded.reserve(tensors.size());
  for (const auto& t : tensors) expanded.push_back(t.unsqueeze(d));
  return concat(expanded, d);
}

// Views of t along dim, `split_size` each (the last may be shorter); one empty view when the
// extent is 0.
template <class T, class Dev, std::integral I>
std::vector<Tensor<T, Dev>> split(const Tensor<T, Dev>& t, I split_size, int64_t dim = 0) {
  LOOM_CHECK(t.dim() >= 1, "split: cannot split a 0-d tensor (shape ", t.shape(), ")");
  const int d = wrap_dim(dim, t.dim(), "split");
  LOOM_CHECK(split_size >= 1, "split: split size must be >= 1, got ", int64_t(split_size), " for shape ", t.shape());
  const int64_t extent = t.shape()[d], size = int64_t(split_size);
  std::vector<Tensor<T, Dev>> parts;
  for (int64_t start = 0; start < extent || (start == 0 && extent == 0); start += size)
    parts.push_back(t.narrow(d, start, std::min(size, extent - start)));
  return parts;
}

// Views of t along dim with the given extents (each >= 0), which must add up to t's extent.
template <class T, class Dev>
std::vector<Tensor<T, Dev>> split(const Tensor<T, Dev>& t, const std::vector<int64_t>& sizes, int64_t dim = 0) {
  LOOM_CHECK(t.dim() >= 1, "split: cannot split a 0-d tensor (shape ", t.shape(), ")");
  const int d = wrap_dim(dim, t.dim(), "split");
  int64_t total = 0;
  std::ostringstream listed;  // the sizes as written, for messages
  for (size_t i = 0; i < sizes.size(); ++i) {
    LOOM_CHECK(sizes[i] >= 0, "split: negative size ", sizes[i], " for shape ", t.shape());
    listed << (i ? ", " : "") << sizes[i];
    total += sizes[i];
  }
  LOOM_CHECK(total == t.shape()[d], "split: sizes [", listed.str(), "] add up to ", total, " but dimension ", d,
             " of shape ", t.shape(), " has ", t.shape()[d]);
  std::vector<Tensor<T, Dev>> parts;
  int64_t start = 0;
  for (int64_t s : sizes) {
    parts.push_back(t.narrow(d, start, s));
    start += s;
  }
  return parts;
}

// torch.chunk: split by ceil(extent / chunks), which can give fewer than `chunks` views; an empty
// extent gives `chunks` empty views.
template <class T, class Dev>
std::vector<Tensor<T, Dev>> chunk(const Tensor<T, Dev>& t, int64_t chunks, int64_t dim = 0) {
  LOOM_CHECK(t.dim() >= 1, "chunk: cannot chunk a 0-d tensor (shape ", t.shape(), ")");
  const int d = wrap_dim(dim, t.dim(), "chunk");
  LOOM_CHECK(chunks >= 1, "chunk: number of chunks must be >= 1, got ", chunks, " for shape ", t.shape());
  const int64_t extent = t.shape()[d];
  if (extent == 0) {
    std::vector<Tensor<T, Dev>> parts;
    for (int64_t i = 0; i < chunks; ++i) parts.push_back(t.narrow(d, 0, 0));
    return parts;
  }
  return split(t, (extent + chunks - 1) / chunks, d);
}

}  // namespace loom
