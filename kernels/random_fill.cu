// Device random fills (random_fill.cuh), one thread per Philox block of 4 elements.
// Versions: fill_uniform<T> / fill_normal<T> for T ∈ {float, bf16}, fill_bernoulli (uint8).
// How to run: tests/cuda/test_cuda_kernels.cpp ("[random]") compares with loom::uniform/normal/
// bernoulli on the CPU; benchmarks/gpu/run.sh runs it. The Philox core is loom/core/philox.hpp,
// shared with the CPU generator.
#include <cmath>

#include "cuda_check.cuh"
#include "device_types.cuh"
#include "loom/core/philox.hpp"
#include "random_fill.cuh"

namespace loom::kernels {
namespace {

using detail::dev;
using detail::store;

__device__ __forceinline__ int64_t block_index() { return int64_t(blockIdx.x) * blockDim.x + threadIdx.x; }

template <class DT>
__global__ void uniform_kernel(DT* __restrict__ out, int64_t n, uint64_t seed, uint64_t offset, double lo, double hi,
                               float below_hi) {
  const int64_t b = block_index(), first = b * 4;
  if (first >= n) return;
  const philox::Counter x = philox::block(seed, offset + uint64_t(b));
  for (int k = 0; k < 4 && first + k < n; ++k) {
    float v = float(fma(hi - lo, double(philox::uniform_float(x.x[k])), lo));  // as the CPU: one rounding
    store(out + first + k, v);
    if (lo < hi && double(detail::load(out + first + k)) >= hi) store(out + first + k, below_hi);
  }
}

template <class DT>
__global__ void normal_kernel(DT* __restrict__ out, int64_t n, uint64_t seed, uint64_t offset, double mean,
                              double std) {
  const int64_t b = block_index(), first = b * 4;
  if (first >= n) return;
  const philox::Counter x = philox::block(seed, offset + uint64_t(b));
  constexpr double two_pi = 6.283185307179586476925286766559;
  for (int pair = 0; pair < 2; ++pair) {
    const double r = sqrt(-2.0 * log(double(philox::uniform_float_nonzero(x.x[2 * pair]))));
    const double theta = two_pi * double(philox::uniform_float(x.x[2 * pair + 1]));
    if (first + 2 * pair < n) store(out + first + 2 * pair, float(fma(std, r * cos(theta), mean)));
    if (first + 2 * pair + 1 < n) store(out + first + 2 * pair + 1, float(fma(std, r * sin(theta), mean)));
  }
}

__global__ void bernoulli_kernel(uint8_t* __restrict__ out, int64_t n, uint64_t seed, uint64_t offset,
                                 uint64_t threshold) {
  const int64_t b = block_index(), first = b * 4;
  if (first >= n) return;
  const philox::Counter x = philox::block(seed, offset + uint64_t(b));
  for (int k = 0; k < 4 && first + k < n; ++k) out[first + k] = philox::bernoulli_bit(x.x[k], threshold) ? 1 : 0;
}

unsigned grid_for(int64_t n) { return unsigned((philox::counters_for(uint64_t(n), 1) + 255) / 256); }

// The largest T below hi, as loom::detail::largest_below (results stay in [lo, hi) after rounding).
template <class T>
float largest_below(double hi) {
  if constexpr (std::is_same_v<T, loom::bf16>) {
    const loom::bf16 h(static_cast<float>(hi));
    if (double(float(h)) < hi) return float(h);
    if (h.bits == 0x0000 || h.bits == 0x8000) return float(loom::bf16::from_bits(0x8001));
    return float(loom::bf16::from_bits(uint16_t((h.bits & 0x8000) ? h.bits + 1 : h.bits - 1)));
  } else {
    const float h = static_cast<float>(hi);
    return double(h) < hi ? h : std::nextafter(h, -INFINITY);
  }
}

}  // namespace

template <class T>
void fill_uniform(T* out, int64_t n, uint64_t seed, uint64_t offset, double lo, double hi) {
  LOOM_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo <= hi, "fill_uniform: need finite lo <= hi, got [", lo,
             ", ", hi, ")");
  if (n <= 0) return;
  uniform_kernel<<<grid_for(n), 256>>>(dev(out), n, seed, offset, lo, hi, largest_below<T>(hi));
  LOOM_CUDA_CHECK_LAUNCH();
}

template <class T>
void fill_normal(T* out, int64_t n, uint64_t seed, uint64_t offset, double mean, double std) {
  LOOM_CHECK(std::isfinite(mean) && std::isfinite(std) && std >= 0, "fill_normal: need finite mean and std >= 0, got ",
             mean, ", ", std);
  if (n <= 0) return;
  normal_kernel<<<grid_for(n), 256>>>(dev(out), n, seed, offset, mean, std);
  LOOM_CUDA_CHECK_LAUNCH();
}

void fill_bernoulli(uint8_t* out, int64_t n, uint64_t seed, uint64_t offset, double p) {
  LOOM_CHECK(p >= 0 && p <= 1, "fill_bernoulli: need p in [0, 1], got ", p);
  if (n <= 0) return;
  const uint64_t threshold = uint64_t(std::ldexp(p, 32));  // x < p·2^32, as loom::bernoulli
  bernoulli_kernel<<<grid_for(n), 256>>>(out, n, seed, offset, threshold);
  LOOM_CUDA_CHECK_LAUNCH();
}

template void fill_uniform<float>(float*, int64_t, uint64_t, uint64_t, double, double);
template void fill_uniform<loom::bf16>(loom::bf16*, int64_t, uint64_t, uint64_t, double, double);
template void fill_normal<float>(float*, int64_t, uint64_t, uint64_t, double, double);
template void fill_normal<loom::bf16>(loom::bf16*, int64_t, uint64_t, uint64_t, double, double);

}  // namespace loom::kernels
