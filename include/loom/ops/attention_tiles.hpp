#pragma once
// Tile bookkeeping of the fused (flash-style) attention: block ranges over a sequence and the
// online-softmax update of one row. Plain arithmetic on scalars, free of tensors and threads, so
// the CPU kernel (loom/ops/attention.hpp) and a CUDA kernel share the same rules.
// The math is derived in docs/attention.md.
#include <cmath>
#include <cstdint>
#include <limits>

#include "loom/core/host_device.hpp"

namespace loom::attention_tiles {

// Rows [begin, end) of one block.
struct BlockRange {
  int64_t begin = 0;
  int64_t end = 0;
  LOOM_HOST_DEVICE constexpr int64_t size() const { return end - begin; }
};

// Number of blocks of `block` rows covering n rows (the last one may be shorter).
LOOM_HOST_DEVICE constexpr int64_t block_count(int64_t n, int64_t block) { return (n + block - 1) / block; }

// Rows of block `index` of a sequence of n rows cut into blocks of `block` rows.
LOOM_HOST_DEVICE constexpr BlockRange block_range(int64_t index, int64_t block, int64_t n) {
  const int64_t begin = index * block;
  return {begin, begin + block < n ? begin + block : n};
}

// Blocks [begin, end) of group g when `blocks` blocks are dealt into `groups` contiguous groups of
// near-equal size (the backward's key-block groups, each with its own dQ partial sum).
LOOM_HOST_DEVICE constexpr BlockRange group_range(int64_t g, int64_t groups, int64_t blocks) {
  return {blocks * g / groups, blocks * (g + 1) / groups};
}

// Running state of one query row's softmax over the key blocks seen so far:
//   max = max_j s_j,  sum = sum_j exp(s_j - max).
template <class C>
struct OnlineSoftmax {
  C max = -std::numeric_limits<C>::infinity();
  C sum = 0;
};

// The value subtracted from this block's scores before exp: the new running maximum.
template <class C>
LOOM_HOST_DEVICE C online_softmax_max(const OnlineSoftmax<C>& state, C block_max) {
  return block_max > state.max ? block_max : state.max;
}

// Folds a block into the state, given its scores' new running maximum (online_softmax_max) and
// block_sum = sum_j exp(s_j - new_max). Returns the factor exp(old_max - new_max) by which
// everything accumulated so far with the old maximum (the sum, the output row) must be scaled.
// Equal maxima give exactly 1 (also when both are -inf, which would otherwise be NaN).
template <class C>
LOOM_HOST_DEVICE C online_softmax_update(OnlineSoftmax<C>& state, C new_max, C block_sum) {
  using std::exp;
  const C rescale = state.max == new_max ? C(1) : exp(state.max - new_max);
  state.sum = state.sum * rescale + block_sum;
  state.max = new_max;
  return rescale;
}

// log sum_j exp(s_j) of the finished row: what the forward saves for the backward, which then
// recomputes every probability directly as p_j = exp(s_j - lse).
template <class C>
LOOM_HOST_DEVICE C online_softmax_lse(const OnlineSoftmax<C>& state) {
  using std::log;
  return state.max + log(state.sum);
}

}  // namespace loom::attention_tiles
