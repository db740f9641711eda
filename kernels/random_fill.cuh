#pragma once
// Random fills on the device from loom's Philox stream (random_fill.cu): for the same (seed,
// offset) they give the numbers loom::uniform / loom::normal / loom::bernoulli draw on the CPU —
// uniforms and Bernoulli bits bit-identical, normals to the last bit of the device's libm (the
// CPU computes Box-Muller in double too). Layout as in loom/core/random.hpp: element i of a fill
// of n starting at counter `offset` reads lane i % 4 of block offset + i / 4; the caller advances
// its generator by philox::counters_for(n, 1) (Generator::reserve does both).
#include <cstdint>

#include "loom/core/bf16.hpp"

namespace loom::kernels {

template <class T>  // float or loom::bf16
void fill_uniform(T* out, int64_t n, uint64_t seed, uint64_t offset, double lo, double hi);
template <class T>
void fill_normal(T* out, int64_t n, uint64_t seed, uint64_t offset, double mean, double std);
// out[i] = 1 with probability p (dropout keep masks), as uint8.
void fill_bernoulli(uint8_t* out, int64_t n, uint64_t seed, uint64_t offset, double p);

}  // namespace loom::kernels
