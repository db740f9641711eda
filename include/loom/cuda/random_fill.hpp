#pragma once
// Device random fills behind loom::uniform / normal / bernoulli on CUDA tensors (loom/core/random.hpp),
// untyped entry points over the kernels of kernels/random_fill.cuh (defined in kernels/device_ops.cu).
// Element i of a fill of n starting at counter `offset` is the CPU generator's element i for the
// same (seed, offset); the caller reserves philox::counters_for(n, 1) counters (Generator::reserve).
#include <cstdint>

#include "loom/core/dtype.hpp"

namespace loom::cuda {

void random_uniform(DType type, void* out, int64_t n, uint64_t seed, uint64_t offset, double lo, double hi);  // f32, bf16
void random_normal(DType type, void* out, int64_t n, uint64_t seed, uint64_t offset, double mean, double std);
void random_bernoulli(uint8_t* out, int64_t n, uint64_t seed, uint64_t offset, double p);

}  // namespace loom::cuda
