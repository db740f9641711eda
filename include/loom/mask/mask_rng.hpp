#pragma once
// The random numbers of the mask module: a pure function of (seed, step, sample, purpose, element),
// independent of the batch's composition and of threads, and computable identically on a GPU.
//   key     = {seed low 32 bits, seed high 32 bits}
//   counter = {element / 4, sample, step low 32 bits, (purpose << 16) | (step bits 32..47)}
//   value   = lane (element % 4) of philox4x32_10(counter, key);  uniform = (value >> 8) · 2^-24.
#include <cstdint>

#include "loom/core/philox.hpp"

namespace loom::mask {

enum Purpose : uint32_t {
  kTokenNoise = 0,     // order of tokens (which are kept first) within a sample
  kLocationNoise = 1,  // choice of locations (consistent, disjoint)
  kGroupShift = 2,     // which groups get the extra token when K is not a multiple of G (disjoint)
  kGamma = 3,          // Dirichlet gamma draws
  kStrategy = 4,       // which member of a mixture a sample uses
};

LOOM_HOST_DEVICE constexpr philox::Counter mask_counter(uint64_t step, uint32_t sample, uint32_t purpose,
                                                        uint64_t element) {
  return philox::Counter{{uint32_t(element / 4), sample, uint32_t(step),
                          (purpose << 16) | (uint32_t(step >> 32) & 0xffffu)}};
}

LOOM_HOST_DEVICE constexpr uint32_t mask_bits(uint64_t seed, uint64_t step, uint32_t sample, uint32_t purpose,
                                              uint64_t element) {
  return philox::philox4x32_10(mask_counter(step, sample, purpose, element), philox::key_for_seed(seed))
      .x[element % 4];
}

// Uniform in [0, 1) with 24 bits.
LOOM_HOST_DEVICE constexpr float mask_uniform(uint64_t seed, uint64_t step, uint32_t sample, uint32_t purpose,
                                              uint64_t element) {
  return philox::uniform_float(mask_bits(seed, step, sample, purpose, element));
}

// Fills out[0..n) with the uniforms of one (sample, purpose) stream, one Philox call per 4 values.
inline void mask_uniforms(uint64_t seed, uint64_t step, uint32_t sample, uint32_t purpose, int64_t n, float* out) {
  const philox::Key key = philox::key_for_seed(seed);
  for (int64_t i = 0; i < n; i += 4) {
    const philox::Counter block = philox::philox4x32_10(mask_counter(step, sample, purpose, uint64_t(i)), key);
    for (int64_t j = 0; j < 4 && i + j < n; ++j) out[i + j] = philox::uniform_float(block.x[j]);
  }
}

}  // namespace loom::mask
