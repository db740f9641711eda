#pragma once
// Philox-4x32-10 (Salmon, Moraes, Dror, Shaw, SC11) and the exact maps from its 32-bit lanes to
// numbers: the core of loom's random streams (random.hpp documents the stream layout). Everything
// here is constexpr and LOOM_HOST_DEVICE with no other loom dependency, so CUDA kernels include it
// and produce the CPU's bits.
#include <cstdint>

#include "loom/core/host_device.hpp"

namespace loom {

namespace philox {

inline constexpr uint32_t kMultiplier0 = 0xD2511F53u;
inline constexpr uint32_t kMultiplier1 = 0xCD9E8D57u;
inline constexpr uint32_t kKeyBump0 = 0x9E3779B9u;  // golden ratio
inline constexpr uint32_t kKeyBump1 = 0xBB67AE85u;  // sqrt(3) - 1
inline constexpr int kRounds = 10;

struct Counter {
  uint32_t x[4];  // x[0] is the least significant word
};
struct Key {
  uint32_t x[2];
};

// One round: two 32x32->64 multiplies, their halves crossed and xor-ed with the key.
LOOM_HOST_DEVICE constexpr Counter single_round(const Counter& c, const Key& k) {
  const uint64_t p0 = uint64_t(kMultiplier0) * c.x[0];
  const uint64_t p1 = uint64_t(kMultiplier1) * c.x[2];
  return Counter{{uint32_t(p1 >> 32) ^ c.x[1] ^ k.x[0], uint32_t(p1), uint32_t(p0 >> 32) ^ c.x[3] ^ k.x[1],
                  uint32_t(p0)}};
}

// Ten rounds, the key bumped by the Weyl constants between rounds.
LOOM_HOST_DEVICE constexpr Counter philox4x32_10(Counter c, Key k) {
  c = single_round(c, k);
  for (int r = 1; r < kRounds; ++r) {
    k.x[0] += kKeyBump0;
    k.x[1] += kKeyBump1;
    c = single_round(c, k);
  }
  return c;
}

LOOM_HOST_DEVICE constexpr Key key_for_seed(uint64_t seed) { return Key{{uint32_t(seed), uint32_t(seed >> 32)}}; }

// Counter `index` of the stream; `retry` > 0 selects the redraw streams used by rejection sampling.
LOOM_HOST_DEVICE constexpr Counter counter_at(uint64_t index, uint32_t retry = 0) {
  return Counter{{uint32_t(index), uint32_t(index >> 32), retry, 0u}};
}

LOOM_HOST_DEVICE constexpr Counter block(uint64_t seed, uint64_t index, uint32_t retry = 0) {
  return philox4x32_10(counter_at(index, retry), key_for_seed(seed));
}

// Where element `element` of a draw starting at counter `offset` reads its first lane.
struct LanePosition {
  uint64_t counter;
  uint32_t lane;
};
LOOM_HOST_DEVICE constexpr LanePosition element_position(uint64_t offset, uint64_t element,
                                                         uint32_t lanes_per_element) {
  const uint64_t lane = element * lanes_per_element;
  return LanePosition{offset + lane / 4, uint32_t(lane % 4)};
}

// Counters a draw of n elements consumes.
LOOM_HOST_DEVICE constexpr uint64_t counters_for(uint64_t n, uint32_t lanes_per_element) {
  return (n * lanes_per_element + 3) / 4;
}

// ---- lanes to numbers (exact: every value is a multiple of a power of two) ----
LOOM_HOST_DEVICE constexpr float uniform_float(uint32_t x) { return float(x >> 8) * 0x1p-24f; }  // [0, 1)
LOOM_HOST_DEVICE constexpr float uniform_float_nonzero(uint32_t x) {                            // (0, 1]
  return float((x >> 8) + 1) * 0x1p-24f;
}
LOOM_HOST_DEVICE constexpr double uniform_double(uint32_t high, uint32_t low) {  // [0, 1)
  return double(((uint64_t(high) << 32) | low) >> 11) * 0x1p-53;
}
LOOM_HOST_DEVICE constexpr double uniform_double_nonzero(uint32_t high, uint32_t low) {  // (0, 1]
  return double((((uint64_t(high) << 32) | low) >> 11) + 1) * 0x1p-53;
}
LOOM_HOST_DEVICE constexpr bool bernoulli_bit(uint32_t x, uint64_t threshold) { return x < threshold; }

}  // namespace philox

}  // namespace loom
