#pragma once
// ReduceMap: where the device reduction kernels (kernels/reduce.cu) find their elements. A reduction
// folds, for every output o (row-major over the kept dims), the input elements at
//   input_offset(o, r) = kept.offset(o) + reduced.offset(r),   r = 0 .. n_red - 1
// Both halves are OffsetMaps (coalesced); the reduced dims are ordered largest stride first, so
// consecutive r are as close in memory as the layout allows. Plain host/device code: the CPU test
// (tests/cuda/test_reduce_map.cpp) checks it against a naive loop over every input element.
#include <algorithm>
#include <array>
#include <cstdint>

#include "loom/core/host_device.hpp"
#include "loom/core/shape.hpp"
#include "loom/cuda/offset_map.hpp"

namespace loom::cuda {

struct ReduceMap {
  OffsetMap<1> kept;     // over the kept dims in output order, with the input's strides
  OffsetMap<1> reduced;  // over the reduced dims, largest stride first
  int64_t n_out = 1;     // outputs
  int64_t n_red = 1;     // input elements folded into each output

  // Rank 1 (the common case after coalescing) needs no division.
  LOOM_HOST_DEVICE int64_t kept_offset(int64_t o) const {
    if (kept.rank == 1) return o * kept.stride[0][0];
    int64_t off[1];
    kept.offsets(o, off);
    return off[0];
  }
  LOOM_HOST_DEVICE int64_t reduced_offset(int64_t r) const {
    if (reduced.rank == 1) return r * reduced.stride[0][0];
    int64_t off[1];
    reduced.offsets(r, off);
    return off[0];
  }
  LOOM_HOST_DEVICE int64_t input_offset(int64_t o, int64_t r) const { return kept_offset(o) + reduced_offset(r); }

  // Neighbouring outputs are closer in memory than neighbouring reduced elements (e.g. a bias
  // gradient, summing [M, N] over M): the kernels then give adjacent threads adjacent outputs.
  LOOM_HOST_DEVICE bool column_mode() const {
    const int64_t kept_inner = kept.stride[0][kept.rank - 1];
    const int64_t red_inner = reduced.stride[0][reduced.rank - 1];
    const int64_t kept_extent = kept.extent[kept.rank - 1];
    return kept_extent > 1 && n_red > 1 && kept_inner < red_inner;
  }
};

// A reduction's dims split in two: the kept ones in order, and the reduced ones ordered by
// decreasing input stride (so the innermost reduced dim walks memory fastest). Shared by the CPU
// reduction (loom/ops/reduce.hpp) and the device map below.
struct ReducedDimSplit {
  Shape kept_shape, red_shape;
  Strides kept_strides, red_strides;
};
inline ReducedDimSplit split_reduced_dims(const Shape& shape, const Strides& strides,
                                          const std::array<bool, kMaxRank>& reduced) {
  ReducedDimSplit out;
  std::array<int, kMaxRank> red_dims{};
  int n_red_dims = 0;
  for (int d = 0; d < shape.size(); ++d) {
    if (reduced[d]) {
      red_dims[n_red_dims++] = d;
    } else {
      out.kept_shape.push_back(shape[d]);
      out.kept_strides.push_back(strides[d]);
    }
  }
  std::stable_sort(red_dims.begin(), red_dims.begin() + n_red_dims,
                   [&](int a, int b) { return strides[a] > strides[b]; });
  for (int i = 0; i < n_red_dims; ++i) {
    out.red_shape.push_back(shape[red_dims[i]]);
    out.red_strides.push_back(strides[red_dims[i]]);
  }
  return out;
}

// The map of a reduction of a tensor (shape, strides) over the dims with reduced[d] set.
inline ReduceMap make_reduce_map(const Shape& shape, const Strides& strides,
                                 const std::array<bool, kMaxRank>& reduced) {
  auto [kept_shape, red_shape, kept_strides, red_strides] = split_reduced_dims(shape, strides, reduced);
  ReduceMap map;
  map.kept = make_offset_map<1>(kept_shape, {kept_strides});
  map.reduced = make_offset_map<1>(red_shape, {red_strides});
  map.n_out = kept_shape.numel();
  map.n_red = red_shape.numel();
  return map;
}

// How the kernels split one reduction: `chunks` consecutive ranges of `chunk` reduced elements per
// output (partials merged in chunk order by a second pass when chunks > 1). It depends on the
// shape only, so a rerun — on any card — adds in the same order and is bit-identical.
struct ReduceSplit {
  int64_t chunks = 1;
  int64_t chunk = 1;
};

inline constexpr int64_t kReduceTargetBlocks = 1024;  // enough blocks to fill a large GPU
inline constexpr int kReduceColumnWidth = 32;  // outputs per column-mode block (threadIdx.x)
inline constexpr int kReduceColumnLanes = 8;   // reduced-index lanes per column-mode block (threadIdx.y)
inline constexpr int64_t kReduceMinChunk = 4096;      // reduced elements worth a block of their own

// out_blocks: blocks the outputs alone occupy (one per output in row mode, per 32 in column mode).
LOOM_HOST_DEVICE inline ReduceSplit reduce_split(int64_t n_red, int64_t out_blocks) {
  ReduceSplit s;
  const int64_t by_work = (n_red + kReduceMinChunk - 1) / kReduceMinChunk;
  const int64_t by_blocks = (kReduceTargetBlocks + out_blocks - 1) / (out_blocks > 0 ? out_blocks : 1);
  s.chunks = by_work < by_blocks ? by_work : by_blocks;
  if (s.chunks < 1) s.chunks = 1;
  s.chunk = n_red > 0 ? (n_red + s.chunks - 1) / s.chunks : 1;
  s.chunks = n_red > 0 ? (n_red + s.chunk - 1) / s.chunk : 1;  // no empty trailing chunk
  return s;
}

// The positions one thread folds: chunk `chunk` of a split of n, r = chunk * split.chunk + lane,
// + lanes, ... (lanes threads share a chunk: a row-mode block, or a column-mode block's 8 lanes).
// f(r) in increasing r. The kernels' inner loops are these functions.
template <class F>
LOOM_HOST_DEVICE inline void for_each_lane_position(const ReduceSplit& split, int64_t n, int64_t chunk, int64_t lane,
                                                    int64_t lanes, F&& f) {
  const int64_t begin = chunk * split.chunk;
  const int64_t end = begin + split.chunk < n ? begin + split.chunk : n;
  for (int64_t r = begin + lane; r < end; r += lanes) f(r);
}

// The same over output o's input elements: f(input offset of position r).
template <class F>
LOOM_HOST_DEVICE inline void for_each_lane_element(const ReduceMap& map, const ReduceSplit& split, int64_t o,
                                                   int64_t chunk, int64_t lane, int64_t lanes, F&& f) {
  const int64_t base = map.kept_offset(o);
  for_each_lane_position(split, map.n_red, chunk, lane, lanes,
                         [&](int64_t r) { f(base + map.reduced_offset(r)); });
}

// Threads per block for a row of n elements in row mode: a power of two in [32, 256].
LOOM_HOST_DEVICE inline int row_threads(int64_t n) {
  int t = 32;
  while (t < 256 && t < n) t *= 2;
  return t;
}

}  // namespace loom::cuda
