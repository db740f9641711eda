#pragma once
// Strided iteration shared by every CPU op: walks the elements of N operands laid over one shape,
// each with its own strides (0 for broadcast dimensions), as runs along the innermost dimension so
// that inner loops are simple and vectorizable. Dimensions that are contiguous for every operand are
// merged first, so contiguous tensors become a single run.
#include <array>
#include <cstdint>

#include "loom/core/parallel.hpp"
#include "loom/core/shape.hpp"

namespace loom::detail {

template <size_t N>
struct StridedLayout {
  Shape shape;                     // merged extents, innermost last
  std::array<Strides, N> strides;  // per operand, aligned with shape
};

// Drops extent-1 dims and merges neighbours that are contiguous for all operands.
template <size_t N>
StridedLayout<N> coalesce(const Shape& shape, const std::array<Strides, N>& strides) {
  StridedLayout<N> out;
  for (int d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    const int last = out.shape.size() - 1;
    bool mergeable = last >= 0;
    for (size_t k = 0; k < N && mergeable; ++k)
      mergeable = out.strides[k][last] == strides[k][d] * shape[d];
    if (mergeable) {
      out.shape[last] *= shape[d];
      for (size_t k = 0; k < N; ++k) out.strides[k][last] = strides[k][d];
    } else {
      out.shape.push_back(shape[d]);
      for (size_t k = 0; k < N; ++k) out.strides[k].push_back(strides[k][d]);
    }
  }
  if (out.shape.empty()) {  // a scalar, or all extents 1
    out.shape.push_back(1);
    for (size_t k = 0; k < N; ++k) out.strides[k].push_back(0);
  }
  return out;
}

// Calls run(offsets, length, inner_strides) for every innermost run, where offsets[k] is operand
// k's element offset at the run's start. Runs are spread over threads when the work is large
// (`cost_per_element` scales the threshold); the callback must be safe to call concurrently.
template <size_t N, class Run>
void for_each_run(const Shape& shape, const std::array<Strides, N>& strides, Run&& run,
                  int64_t cost_per_element = 1, bool allow_parallel = true) {
  const StridedLayout<N> lay = coalesce<N>(shape, strides);
  const int rank = lay.shape.size();
  const int64_t inner = lay.shape[rank - 1];
  std::array<int64_t, N> inner_strides;
  for (size_t k = 0; k < N; ++k) inner_strides[k] = lay.strides[k][rank - 1];
  const int64_t outer = lay.shape.numel() / std::max<int64_t>(inner, 1);
  if (inner == 0 || outer == 0) return;

  const int64_t min_elements_per_chunk = 32768 / std::max<int64_t>(cost_per_element, 1);
  const int64_t grain = allow_parallel ? std::max<int64_t>(1, min_elements_per_chunk / inner) : outer;
  parallel_for(0, outer, grain, [&](int64_t begin, int64_t end) {
    // Decompose `begin` into an index over the outer dims, then step it like an odometer.
    std::array<int64_t, kMaxRank> idx{};
    std::array<int64_t, N> off{};
    int64_t rem = begin;
    for (int d = rank - 2; d >= 0; --d) {
      idx[d] = rem % lay.shape[d];
      rem /= lay.shape[d];
      for (size_t k = 0; k < N; ++k) off[k] += idx[d] * lay.strides[k][d];
    }
    for (int64_t i = begin; i < end; ++i) {
      run(off, inner, inner_strides);
      for (int d = rank - 2; d >= 0; --d) {
        ++idx[d];
        for (size_t k = 0; k < N; ++k) off[k] += lay.strides[k][d];
        if (idx[d] < lay.shape[d]) break;
        for (size_t k = 0; k < N; ++k) off[k] -= lay.strides[k][d] * lay.shape[d];
        idx[d] = 0;
      }
    }
  });
}

// The same walk on the calling thread only, in order: for runs that write shared outputs.
template <size_t N, class Run>
void for_each_run_serial(const Shape& shape, const std::array<Strides, N>& strides, Run&& run) {
  for_each_run<N>(shape, strides, std::forward<Run>(run), 1, false);
}

}  // namespace loom::detail
