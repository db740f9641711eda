#pragma once
// Random numbers from a counter-based generator: Philox-4x32-10 (Salmon, Moraes, Dror, Shaw,
// "Parallel random numbers: as easy as 1, 2, 3", SC11). A draw is a pure function of
// (seed, offset, element index), so any tensor's random content can be recomputed from the numbers
// it was drawn with, on any thread layout, and a CUDA kernel can produce the identical bits.
//
// The stream
//   key      = {low 32 bits of seed, high 32 bits of seed}
//   counter  = {low 32 bits of c, high 32 bits of c, retry, 0}, c a 64-bit counter index
//   block(c) = philox4x32_10(counter, key): four 32-bit lanes x0..x3
// A Generator holds a seed and a running offset (in counters). A draw of n elements that uses L
// lanes per element (L = 1 for 32-bit results, L = 2 for double and for 64-bit integer ranges)
// takes the counters [offset, offset + ceil(n·L/4)) and advances the offset past them, so
// successive draws never overlap. Element i (row-major) reads lanes (i·L) % 4 .. (i·L) % 4 + L - 1
// of block(offset + (i·L) / 4)  (element_position() below).
//
// From lanes to values
//   uniform float/bf16: u = (x >> 8) · 2^-24 in [0, 1) from one lane; value lo + (hi - lo)·u.
//   uniform double:     u = ((x_a << 32 | x_b) >> 11) · 2^-53 from lanes a = 2k, b = 2k + 1.
//   normal (Box-Muller, each output from its own block only):
//     float/bf16: lanes (0, 1) give elements 4c+0 and 4c+1, lanes (2, 3) give 4c+2 and 4c+3:
//       r = sqrt(-2 ln u1), u1 = ((x_0 >> 8) + 1) · 2^-24 in (0, 1];  θ = 2π · (x_1 >> 8) · 2^-24;
//       element 4c+0 = r cos θ, element 4c+1 = r sin θ  (likewise 4c+2, 4c+3 from lanes 2, 3).
//     double: lanes (0, 1) give u1 in (0, 1] (53 bits), lanes (2, 3) give u2 in [0, 1);
//       element 2c+0 = r cos(2π u2), element 2c+1 = r sin(2π u2).
//   bernoulli(p): 1 when x < p · 2^32 (one lane; exact for p with 32 fractional bits).
//   randint [lo, hi): Lemire's multiply-shift with rejection, so it is exactly unbiased. A
//     rejected element draws again from the same lane of block {c, retry = 1, 2, ...}: streams no
//     ordinary draw touches (their retry word is 0), so the mapping stays one element → one lane.
//   randperm(n): Fisher-Yates; step k (swapping position n-1-k) takes element k's bounded draw.
// Uniforms, bernoulli, randint and randperm are bit-identical on every device; normals go through
// log/sin/cos (computed here in double) and may differ in the last bit where a device's libm does.
//
// On CUDA tensors uniform / normal (float, bf16) and bernoulli fill on the device (kernels/
// random_fill.cu, through loom/cuda/random_fill.hpp) from the same counters; randint and randperm
// draw on the CPU and upload (they are small index tensors). float64 draws are CPU-only.
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <type_traits>
#include <utility>
#include <vector>

#include "loom/core/device_backend.hpp"
#include "loom/core/dtype.hpp"
#include "loom/core/error.hpp"
#include "loom/core/parallel.hpp"
#include "loom/core/philox.hpp"
#include "loom/core/shape.hpp"
#include "loom/core/tensor.hpp"
#include "loom/cuda/random_fill.hpp"
#include "loom/ops/argsort.hpp"

namespace loom {

// ---- the generator -------------------------------------------------------------------------------

// A seed and a running offset. Draws reserve their counters atomically, so one generator may be
// shared by threads (the order of concurrent draws then decides who gets which counters).
class Generator {
 public:
  static constexpr uint64_t kDefaultSeed = 0x10037ull;

  explicit Generator(uint64_t seed = kDefaultSeed, uint64_t offset = 0) : seed_(seed), offset_(offset) {}
  Generator(const Generator& other) : seed_(other.seed_), offset_(other.offset()) {}
  Generator& operator=(const Generator& other) {
    seed_ = other.seed_;
    offset_.store(other.offset());
    return *this;
  }

  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_.load(std::memory_order_relaxed); }
  // Restarts the stream of `seed` at offset 0.
  void manual_seed(uint64_t seed) {
    seed_ = seed;
    offset_.store(0);
  }
  void set_offset(uint64_t offset) { offset_.store(offset); }
  // Takes `counters` consecutive counters and returns the first.
  uint64_t reserve(uint64_t counters) { return offset_.fetch_add(counters, std::memory_order_relaxed); }

 private:
  uint64_t seed_;
  std::atomic<uint64_t> offset_;
};

// The generator that draws without an explicit Generator use.
inline Generator& default_generator() {
  static Generator generator;
  return generator;
}
inline void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

namespace detail {

// Calls fill(first_element, counter_index, block) for each counter block of a draw of n elements
// with `lanes` lanes per element; blocks are independent, so they are spread over threads.
template <class Fill>
void for_each_random_block(Generator& gen, int64_t n, uint32_t lanes, Fill&& fill) {
  if (n <= 0) return;
  const int64_t blocks = int64_t(philox::counters_for(uint64_t(n), lanes));
  const uint64_t first = gen.reserve(uint64_t(blocks));
  const philox::Key key = philox::key_for_seed(gen.seed());
  const int64_t per_block = 4 / lanes;
  parallel_for(0, blocks, 4096, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      fill(b * per_block, first + uint64_t(b), philox::philox4x32_10(philox::counter_at(first + uint64_t(b)), key));
  });
}

// The largest value of T below hi (results of uniform() are kept in [lo, hi) after rounding).
template <class T>
T largest_below(double hi) {
  if constexpr (std::is_same_v<T, bf16>) {
    bf16 h(static_cast<float>(hi));
    if (double(float(h)) < hi) return h;
    // One bf16 step toward -inf in sign-magnitude bits.
    if (h.bits == 0x0000 || h.bits == 0x8000) return bf16::from_bits(0x8001);
    return bf16::from_bits(uint16_t((h.bits & 0x8000) ? h.bits + 1 : h.bits - 1));
  } else {
    const T h = static_cast<T>(hi);
    return double(h) < hi ? h : std::nextafter(h, -std::numeric_limits<T>::infinity());
  }
}

// lo + (hi - lo)·u with one rounding (an explicit fma), so that every compiler and the CUDA
// kernels (kernels/random_fill.cu) produce the same value whatever their contraction rules.
template <class T>
T uniform_value(double u, double lo, double hi, T below_hi) {
  const T v = T(static_cast<compute_t<T>>(std::fma(hi - lo, u, lo)));
  return lo < hi && double(compute_t<T>(v)) >= hi ? below_hi : v;
}

// Unbiased integer in [0, range), range in [1, 2^32], from `x` = lane `lane` of block `counter`.
inline uint64_t bounded32(uint32_t x, uint64_t range, uint64_t seed, uint64_t counter, uint32_t lane) {
  uint64_t m = uint64_t(x) * range;
  if (uint32_t(m) < range) {
    const uint64_t threshold = ((uint64_t(1) << 32) - range) % range;  // 2^32 mod range
    for (uint32_t retry = 1; uint32_t(m) < threshold; ++retry)
      m = uint64_t(philox::block(seed, counter, retry).x[lane]) * range;
  }
  return m >> 32;
}

// Unbiased integer in [0, range), range > 2^32, from lanes (lane, lane + 1) of block `counter`.
inline uint64_t bounded64(uint32_t high, uint32_t low, uint64_t range, uint64_t seed, uint64_t counter,
                          uint32_t lane) {
  auto product = [&](uint32_t h, uint32_t l) {
    return static_cast<unsigned __int128>((uint64_t(h) << 32) | l) * range;
  };
  unsigned __int128 m = product(high, low);
  if (uint64_t(m) < range) {
    const uint64_t threshold = (0 - range) % range;  // 2^64 mod range
    for (uint32_t retry = 1; uint64_t(m) < threshold; ++retry) {
      const philox::Counter again = philox::block(seed, counter, retry);
      m = product(again.x[lane], again.x[lane + 1]);
    }
  }
  return uint64_t(m >> 64);
}

// The counters of an n-element one-lane draw on the device: reserved as the CPU draw reserves them.
inline uint64_t reserve_device_draw(Generator& gen, int64_t n) {
  return n > 0 ? gen.reserve(philox::counters_for(uint64_t(n), 1)) : gen.offset();
}

}  // namespace detail

// ---- distributions -------------------------------------------------------------------------------

// Uniform in [lo, hi) (lo == hi gives lo everywhere).
template <FloatElement T = float, class Dev = CPU>
Tensor<T, Dev> uniform(const Shape& shape, double lo, double hi, Generator& gen = default_generator()) {
  LOOM_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo <= hi, "uniform: need finite lo <= hi, got [", lo, ", ",
             hi, ") for shape ", shape);
  Tensor<T, Dev> out = Tensor<T, Dev>::empty(shape);
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    static_assert(detail::cuda_backend_for<T>, "uniform on CUDA tensors needs LOOM_WITH_CUDA (link loom::kernels)");
    LOOM_CHECK((!std::is_same_v<T, double>), "uniform: float64 is not supported on CUDA (shape ", shape, ")");
    const int64_t n = out.numel();
    const uint64_t offset = detail::reserve_device_draw(gen, n);
    if (n > 0) cuda::random_uniform(dtype_traits<T>::tag, out.data(), n, gen.seed(), offset, lo, hi);
    return out;
  }
  T* p = out.data();
  const int64_t n = out.numel();
  const T below_hi = detail::largest_below<T>(hi);
  if constexpr (std::is_same_v<T, double>) {
    detail::for_each_random_block(gen, n, 2, [&](int64_t i, uint64_t, const philox::Counter& b) {
      for (int k = 0; k < 2 && i + k < n; ++k)
        p[i + k] = detail::uniform_value<T>(philox::uniform_double(b.x[2 * k], b.x[2 * k + 1]), lo, hi, below_hi);
    });
  } else {
    detail::for_each_random_block(gen, n, 1, [&](int64_t i, uint64_t, const philox::Counter& b) {
      for (int k = 0; k < 4 && i + k < n; ++k)
        p[i + k] = detail::uniform_value<T>(philox::uniform_float(b.x[k]), lo, hi, below_hi);
    });
  }
  return out;
}

// Uniform in [0, 1).
template <FloatElement T = float, class Dev = CPU>
Tensor<T, Dev> rand(const Shape& shape, Generator& gen = default_generator()) {
  return uniform<T, Dev>(shape, 0.0, 1.0, gen);
}

// Normal(mean, std²) by Box-Muller (lane pairing in the header comment).
template <FloatElement T = float, class Dev = CPU>
Tensor<T, Dev> normal(const Shape& shape, double mean, double std, Generator& gen = default_generator()) {
  LOOM_CHECK(std::isfinite(mean) && std::isfinite(std) && std >= 0, "normal: need finite mean and std >= 0, got mean ",
             mean, ", std ", std, " for shape ", shape);
  Tensor<T, Dev> out = Tensor<T, Dev>::empty(shape);
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    static_assert(detail::cuda_backend_for<T>, "normal on CUDA tensors needs LOOM_WITH_CUDA (link loom::kernels)");
    LOOM_CHECK((!std::is_same_v<T, double>), "normal: float64 is not supported on CUDA (shape ", shape, ")");
    const int64_t n = out.numel();
    const uint64_t offset = detail::reserve_device_draw(gen, n);
    if (n > 0) cuda::random_normal(dtype_traits<T>::tag, out.data(), n, gen.seed(), offset, mean, std);
    return out;
  }
  T* p = out.data();
  const int64_t n = out.numel();
  constexpr double two_pi = 2 * std::numbers::pi;
  auto store = [&](int64_t i, double z) {  // explicit fma: the same rounding on every compiler and the GPU
    if (i < n) p[i] = T(static_cast<compute_t<T>>(std::fma(std, z, mean)));
  };
  if constexpr (std::is_same_v<T, double>) {
    detail::for_each_random_block(gen, n, 2, [&](int64_t i, uint64_t, const philox::Counter& b) {
      const double r = std::sqrt(-2.0 * std::log(philox::uniform_double_nonzero(b.x[0], b.x[1])));
      const double theta = two_pi * philox::uniform_double(b.x[2], b.x[3]);
      store(i, r * std::cos(theta));
      store(i + 1, r * std::sin(theta));
    });
  } else {
    detail::for_each_random_block(gen, n, 1, [&](int64_t i, uint64_t, const philox::Counter& b) {
      for (int pair = 0; pair < 2; ++pair) {
        const double r = std::sqrt(-2.0 * std::log(double(philox::uniform_float_nonzero(b.x[2 * pair]))));
        const double theta = two_pi * double(philox::uniform_float(b.x[2 * pair + 1]));
        store(i + 2 * pair, r * std::cos(theta));
        store(i + 2 * pair + 1, r * std::sin(theta));
      }
    });
  }
  return out;
}

// Standard normal.
template <FloatElement T = float, class Dev = CPU>
Tensor<T, Dev> randn(const Shape& shape, Generator& gen = default_generator()) {
  return normal<T, Dev>(shape, 0.0, 1.0, gen);
}

// 1 with probability p, else 0.
template <class Dev = CPU>
Tensor<uint8_t, Dev> bernoulli(const Shape& shape, double p, Generator& gen = default_generator()) {
  LOOM_CHECK(p >= 0 && p <= 1, "bernoulli: probability ", p, " outside [0, 1] for shape ", shape);
  Tensor<uint8_t, Dev> out = Tensor<uint8_t, Dev>::empty(shape);
  if constexpr (Tensor<uint8_t, Dev>::kOnDevice) {
    static_assert(detail::cuda_backend_for<Dev>, "bernoulli on CUDA tensors needs LOOM_WITH_CUDA (link loom::kernels)");
    const int64_t n = out.numel();
    const uint64_t offset = detail::reserve_device_draw(gen, n);
    if (n > 0) cuda::random_bernoulli(out.data(), n, gen.seed(), offset, p);
    return out;
  }
  uint8_t* o = out.data();
  const int64_t n = out.numel();
  const uint64_t threshold = uint64_t(std::ldexp(p, 32));
  detail::for_each_random_block(gen, n, 1, [&](int64_t i, uint64_t, const philox::Counter& b) {
    for (int k = 0; k < 4 && i + k < n; ++k) o[i + k] = philox::bernoulli_bit(b.x[k], threshold) ? 1 : 0;
  });
  return out;
}

// Integers uniform in [lo, hi), exactly unbiased.
template <class T = int64_t, class Dev = CPU>
Tensor<T, Dev> randint(const Shape& shape, int64_t lo, int64_t hi, Generator& gen = default_generator()) {
  static_assert(std::is_same_v<T, int64_t> || std::is_same_v<T, int32_t>, "randint: int64_t or int32_t results");
  if constexpr (Tensor<T, Dev>::kOnDevice) return randint<T, CPU>(shape, lo, hi, gen).template to_device<Dev>();
  LOOM_CHECK(lo < hi, "randint: empty range [", lo, ", ", hi, ") for shape ", shape);
  LOOM_CHECK(lo >= int64_t(std::numeric_limits<T>::min()) && hi - 1 <= int64_t(std::numeric_limits<T>::max()),
             "randint: range [", lo, ", ", hi, ") does not fit ", dtype_traits<T>::name);
  Tensor<T, Dev> out = Tensor<T, Dev>::empty(shape);
  T* o = out.data();
  const int64_t n = out.numel();
  const uint64_t range = uint64_t(hi) - uint64_t(lo);  // wraps correctly for any lo < hi
  const uint64_t seed = gen.seed();
  if (range <= (uint64_t(1) << 32)) {
    detail::for_each_random_block(gen, n, 1, [&](int64_t i, uint64_t counter, const philox::Counter& b) {
      for (int k = 0; k < 4 && i + k < n; ++k)
        o[i + k] = T(uint64_t(lo) + detail::bounded32(b.x[k], range, seed, counter, uint32_t(k)));
    });
  } else {
    detail::for_each_random_block(gen, n, 2, [&](int64_t i, uint64_t counter, const philox::Counter& b) {
      for (int k = 0; k < 2 && i + k < n; ++k)
        o[i + k] = T(uint64_t(lo) +
                     detail::bounded64(b.x[2 * k], b.x[2 * k + 1], range, seed, counter, uint32_t(2 * k)));
    });
  }
  return out;
}

// A uniformly random permutation of 0 .. n-1.
template <class Dev = CPU>
Tensor<int64_t, Dev> randperm(int64_t n, Generator& gen = default_generator()) {
  if constexpr (Tensor<int64_t, Dev>::kOnDevice) return randperm<CPU>(n, gen).template to_device<Dev>();
  LOOM_CHECK(n >= 0 && n <= (int64_t(1) << 32), "randperm: n = ", n, " outside [0, 2^32]");
  // Step k swaps position i = n-1-k with a position j uniform in [0, i]: draw every j first (each
  // from its own lane, in parallel), then swap in order.
  const uint64_t seed = gen.seed();
  std::vector<int64_t> swap_with(size_t(n), 0);
  detail::for_each_random_block(gen, n, 1, [&](int64_t k0, uint64_t counter, const philox::Counter& b) {
    for (int lane = 0; lane < 4 && k0 + lane < n; ++lane) {
      const int64_t k = k0 + lane;
      const uint64_t positions = uint64_t(n - k);  // j in [0, n-1-k]
      swap_with[size_t(k)] =
          int64_t(detail::bounded32(b.x[lane], positions, seed, counter, uint32_t(lane)));
    }
  });
  Tensor<int64_t, Dev> out = Tensor<int64_t, Dev>::arange(n);
  int64_t* p = out.data();
  for (int64_t k = 0; k + 1 < n; ++k) std::swap(p[n - 1 - k], p[swap_with[size_t(k)]]);
  return out;
}

// Each row of a fresh uniform noise tensor argsorted along `dim`: random permutations, drawn as the
// MAE reference draws its token shuffles (noise of the given shape, stable ascending argsort).
template <class Dev = CPU>
Tensor<int64_t, Dev> random_shuffle_indices(const Shape& shape, int64_t dim = -1,
                                            Generator& gen = default_generator()) {
  return argsort(rand<float, Dev>(shape, gen), dim);
}

// ---- in-place fills (element i of the tensor, in row-major order, is element i of the draw) ----

// `t` is a handle: views (a narrow()ed slice of a weight) are filled in place. Returns t.
template <FloatElement T, class Dev>
Tensor<T, Dev> uniform_(Tensor<T, Dev> t, double lo, double hi, Generator& gen = default_generator()) {
  t.copy_(uniform<T, Dev>(t.shape(), lo, hi, gen));
  return t;
}

template <FloatElement T, class Dev>
Tensor<T, Dev> normal_(Tensor<T, Dev> t, double mean, double std, Generator& gen = default_generator()) {
  t.copy_(normal<T, Dev>(t.shape(), mean, std, gen));
  return t;
}

}  // namespace loom
