#pragma once
// Tile bookkeeping of the fused (flash-style) attention: block ranges over a sequence and the
// online softmax of one row (natural units for the CPU kernel, base 2 for the CUDA kernels).
// Plain arithmetic on scalars, free of tensors and threads, so the CPU kernel
// (loom/ops/attention.hpp), the CUDA kernels (kernels/flash_attention*.cu) and their CPU
// reference share the same rules.
// The math is derived in docs/attention.md.
#include <cmath>
#include <cstdint>

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

inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr float kLn2 = 0.6931471805599453f;

// The base of an online softmax's exponentials. NaturalBase takes scores as they are (the CPU
// kernel, float or double). Base2 takes scores pre-multiplied by log2(e) — the CUDA kernels fold
// it into the softmax scale, so each weight is a single exp2 — in float, the kernels' type.
struct NaturalBase {
  template <class C>
  LOOM_HOST_DEVICE static C exp(C x) {
    using std::exp;
    return exp(x);
  }
  template <class C>
  LOOM_HOST_DEVICE static C log(C x) {
    using std::log;
    return log(x);
  }
  template <class C>
  LOOM_HOST_DEVICE static C to_natural(C x) {
    return x;
  }
};
struct Base2 {
  LOOM_HOST_DEVICE static float exp(float x) { return exp2f(x); }
  LOOM_HOST_DEVICE static float log(float x) { return log2f(x); }
  LOOM_HOST_DEVICE static float to_natural(float x) { return x * kLn2; }
};

// fmax (a NaN operand yields the other one) in host and device code alike.
LOOM_HOST_DEVICE inline float max_of(float a, float b) { return fmaxf(a, b); }
LOOM_HOST_DEVICE inline double max_of(double a, double b) { return fmax(a, b); }

// Running state of one query row's softmax over the key tiles seen so far, in Base units:
//   max = max_j s_j,  sum = sum_j Base^(s_j - max).
template <class C, class Base = NaturalBase>
struct OnlineSoftmax {
  C max = C(-INFINITY);
  C sum = 0;
};

// Starts a key tile whose largest score is tile_max: the running maximum becomes the larger of the
// two. Returns the factor Base^(old max - new max) by which everything accumulated so far (the
// output row; the sum, scaled here) must be multiplied to be relative to the new maximum. An empty
// state gives 0 (nothing to keep), never Base^(-inf + inf) = NaN.
template <class C, class Base>
LOOM_HOST_DEVICE C rescale_for_tile(OnlineSoftmax<C, Base>& state, C tile_max) {
  const C new_max = max_of(state.max, tile_max);
  const C rescale = state.max == C(-INFINITY) ? C(0) : Base::exp(state.max - new_max);
  state.max = new_max;
  state.sum *= rescale;
  return rescale;
}

// The weight Base^(score - max) of one score of the started tile; adds it to the running sum.
template <class C, class Base>
LOOM_HOST_DEVICE C accumulate_weight(OnlineSoftmax<C, Base>& state, C score) {
  const C p = Base::exp(score - state.max);
  state.sum += p;
  return p;
}

// Adds the started tile's weights when the caller computed them itself (the CPU kernel's
// vectorised exp): weight_sum = sum_j Base^(s_j - state.max).
template <class C, class Base>
LOOM_HOST_DEVICE void accumulate_weight_sum(OnlineSoftmax<C, Base>& state, C weight_sum) {
  state.sum += weight_sum;
}

// log sum_j exp(s_j) of the finished row in natural-log units, whatever the Base: what the
// forward saves for the backward, which then recomputes every probability from it.
template <class C, class Base>
LOOM_HOST_DEVICE C log_sum_exp(const OnlineSoftmax<C, Base>& state) {
  return Base::to_natural(state.max + Base::log(state.sum));
}

}  // namespace loom::attention_tiles
