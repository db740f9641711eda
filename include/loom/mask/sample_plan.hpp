#pragma once
// One sample's mask plan, as host+device code: make_mask_plan (mask_plan.hpp) runs it per sample
// on the CPU and kernels/mask_plan.cu runs it per GPU thread, so both produce the same plan by
// construction. No allocation, no library sort: the caller passes SampleScratch (one block of
// sample_scratch_words(G, L) 64-bit words per concurrently planned sample).
//
// The plan, as the MAE reference builds it: ids_shuffle = the visible tokens in increasing
// token-noise order, then the hidden ones in increasing token-noise order; ids_keep = its first K
// entries, ids_restore = its inverse, mask = 1 on hidden tokens. Here that is one sort of the T
// token-noise keys followed by a stable partition by visibility.
#include <cstdint>

#include "loom/core/host_device.hpp"
#include "loom/core/philox.hpp"
#include "loom/mask/dirichlet_quota.hpp"
#include "loom/mask/flat_strategy.hpp"
#include "loom/mask/key_sort.hpp"
#include "loom/mask/mask_rng.hpp"
#include "loom/mask/portable_math.hpp"

namespace loom::mask {

// Sort key of (noise, index): the noise's bits above the index, so that plain integer order is
// "by noise, ties by index". Valid because the mask noise lies in [0, 1) (non-negative floats
// order like their bit patterns) and indices are below 2^32.
LOOM_HOST_DEVICE inline uint64_t noise_key(float noise, int64_t index) {
  return (uint64_t(portable::float_bits(noise)) << 32) | uint64_t(index);
}
LOOM_HOST_DEVICE inline int64_t key_index(uint64_t key) { return int64_t(key & 0xffffffffu); }

// keys[i] = noise_key(uniform i of the (sample, purpose) stream, i) for i < n: the numbers
// mask_uniforms gives, one Philox call per 4.
LOOM_HOST_DEVICE inline void fill_noise_keys(uint64_t seed, uint64_t step, uint32_t sample, uint32_t purpose, int64_t n,
                                             uint64_t* keys) {
  const philox::Key key = philox::key_for_seed(seed);
  for (int64_t i = 0; i < n; i += 4) {
    const philox::Counter block = philox::philox4x32_10(mask_counter(step, sample, purpose, uint64_t(i)), key);
    for (int64_t j = 0; j < 4 && i + j < n; ++j) keys[i + j] = noise_key(philox::uniform_float(block.x[j]), i + j);
  }
}

// Working memory of one sample (T = G·L).
struct SampleScratch {
  uint64_t* keys;    // [T] sort keys: location noise, then token noise
  uint64_t* spare;   // [T] the merge sort's second buffer
  uint64_t* share;   // [G] dirichlet: shares, then remainders (double bits)
  int64_t* quota;    // [G] dirichlet: visible tokens still owed to each group
  int64_t* order;    // [G] dirichlet: groups by decreasing remainder
  uint8_t* visible;  // [T] 1 = token visible
};

LOOM_HOST_DEVICE constexpr int64_t sample_scratch_words(int G, int64_t L) {
  const int64_t T = int64_t(G) * L;
  return 2 * T + 3 * int64_t(G) + (T + 7) / 8;
}

// Lays SampleScratch over `words` (sample_scratch_words(G, L) of them).
LOOM_HOST_DEVICE inline SampleScratch carve_sample_scratch(uint64_t* words, int G, int64_t L) {
  const int64_t T = int64_t(G) * L;
  SampleScratch s;
  s.keys = words;
  s.spare = words + T;
  s.share = words + 2 * T;
  s.quota = reinterpret_cast<int64_t*>(words + 2 * T + G);
  s.order = reinterpret_cast<int64_t*>(words + 2 * T + 2 * G);
  s.visible = reinterpret_cast<uint8_t*>(words + 2 * T + 3 * G);
  return s;
}

// Which mixture member sample b uses: u·Σw against the running sum of the weights.
LOOM_HOST_DEVICE inline int pick_member(const FlatStrategy& s, uint64_t seed, uint64_t step, uint32_t b) {
  if (!s.mixture) return 0;
  double total = 0;
  for (int i = 0; i < s.members; ++i) total += s.member[i].weight;
  const double u = double(mask_uniform(seed, step, b, kStrategy, 0)) * total;
  double acc = 0;
  for (int i = 0; i < s.members; ++i) {
    acc += s.member[i].weight;
    if (u < acc) return i;
  }
  return s.members - 1;
}

// Plans sample `sample` (the global index: first_sample + b) into its rows keep [K], restore [T]
// and mask [T]; returns the mixture member used. K must be visible_count(strategy, G, L) — the
// caller validates the strategy on the host (this code cannot throw).
LOOM_HOST_DEVICE inline int plan_sample(const FlatStrategy& strategy, int G, int64_t L, int64_t K, uint64_t seed,
                                        uint64_t step, uint32_t sample, const SampleScratch& scratch, int64_t* keep,
                                        int64_t* restore, float* mask) {
  const int64_t T = int64_t(G) * L;
  const int member = pick_member(strategy, seed, step, sample);
  const FlatMember& m = strategy.member[member];
  uint8_t* visible = scratch.visible;
  for (int64_t t = 0; t < T; ++t) visible[t] = 0;

  // consistent / disjoint: locations by increasing location noise.
  if (m.kind == Kind::consistent || m.kind == Kind::disjoint) {
    fill_noise_keys(seed, step, sample, kLocationNoise, L, scratch.keys);
    const uint64_t* locations = sort_keys(scratch.keys, scratch.spare, L);
    if (m.kind == Kind::consistent) {  // the first K/G locations, in every group
      for (int64_t j = 0; j < K / G; ++j)
        for (int g = 0; g < G; ++g) visible[int64_t(g) * L + key_index(locations[j])] = 1;
    } else {  // the first K locations; the j-th goes to group (j + shift) mod G (balanced groups)
      const int64_t shift = int64_t(mask_bits(seed, step, sample, kGroupShift, 0) % uint32_t(G));
      for (int64_t j = 0; j < K; ++j) visible[((j + shift) % G) * L + key_index(locations[j])] = 1;
    }
  }
  if (m.kind == Kind::dirichlet)
    dirichlet_quota(m.alpha, G, L, K, seed, step, sample, scratch.share, scratch.quota, scratch.order);

  // Tokens by increasing token noise (ties by index).
  fill_noise_keys(seed, step, sample, kTokenNoise, T, scratch.keys);
  const uint64_t* by_noise = sort_keys(scratch.keys, scratch.spare, T);

  // independent / drop / dirichlet: the K allowed tokens of smallest noise.
  if (m.kind == Kind::independent || m.kind == Kind::drop || m.kind == Kind::dirichlet) {
    int64_t shown = 0;
    for (int64_t i = 0; i < T && shown < K; ++i) {
      const int64_t t = key_index(by_noise[i]), g = t / L;
      bool take = true;
      if (m.kind == Kind::drop) take = g != m.group;
      if (m.kind == Kind::dirichlet) take = scratch.quota[g] > 0 && scratch.quota[g]-- > 0;
      if (take) {
        visible[t] = 1;
        ++shown;
      }
    }
  }

  // ids_shuffle: a stable partition of the noise order, visible tokens first.
  int64_t next_visible = 0, next_hidden = K;
  for (int64_t i = 0; i < T; ++i) {
    const int64_t t = key_index(by_noise[i]);
    const bool shown = visible[t] != 0;
    const int64_t position = shown ? next_visible++ : next_hidden++;
    if (position < K) keep[position] = t;
    restore[t] = position;
    mask[t] = shown ? 0.0f : 1.0f;
  }
  return member;
}

}  // namespace loom::mask
