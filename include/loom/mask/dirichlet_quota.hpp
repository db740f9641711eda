#pragma once
// The dirichlet strategy's per-group visible counts, host and device alike: Gamma(alpha, 1) per
// group by Marsaglia–Tsang on the sample's kGamma stream, normalised to shares, K split by largest
// remainder with each group capped at L (docs/masking.md). The transcendental functions are
// loom::portable's, so the device draws the host's bits (see portable_math.hpp).
#include <math.h>

#include <cstdint>

#include "loom/core/host_device.hpp"
#include "loom/mask/mask_rng.hpp"
#include "loom/mask/portable_math.hpp"

namespace loom::mask {

// Gamma(alpha, 1) for sample b, group g: elements [g·256, g·256 + 256) of the kGamma stream,
// attempt a reading g·256 + 4a + {0, 1, 2}; alpha < 1 uses the boost Gamma(alpha + 1)·U^(1/alpha)
// with U at element g·256 + 255.
LOOM_HOST_DEVICE inline double gamma_draw(double alpha, uint64_t seed, uint64_t step, uint32_t b, int g) {
  using portable::rounded_product;
  const uint64_t base = uint64_t(g) * 256;
  const double boost =
      alpha < 1 ? portable::exp(portable::log(double(mask_uniform(seed, step, b, kGamma, base + 255)) + 0x1p-25) / alpha)
                : 1.0;
  const double a = alpha < 1 ? alpha + 1 : alpha;
  const double d = a - 1.0 / 3.0, c = 1.0 / ::sqrt(9 * d);
  for (uint64_t attempt = 0; attempt < 63; ++attempt) {
    const double u1 = double(mask_uniform(seed, step, b, kGamma, base + 4 * attempt)) + 0x1p-25;  // (0, 1)
    const double u2 = double(mask_uniform(seed, step, b, kGamma, base + 4 * attempt + 1));
    const double u3 = double(mask_uniform(seed, step, b, kGamma, base + 4 * attempt + 2)) + 0x1p-25;
    const double z = rounded_product(::sqrt(-2 * portable::log(u1)), portable::cos_two_pi(u2));  // N(0, 1)
    const double t = ::fma(c, z, 1.0), v = t * t * t;
    if (v <= 0) continue;
    // Accept when log u3 < z²/2 + d − d·v + d·log v.
    if (portable::log(u3) < ::fma(0.5 * z, z, ::fma(d, portable::log(v), ::fma(-d, v, d))))
      return rounded_product(d * v, boost);
  }
  return rounded_product(d, boost);  // acceptance is > 95% per attempt: reaching here has probability < 1e-80
}

// quota[g] = the visible tokens of group g (Σ quota = K, each ≤ L). `share` (double bits) and
// `order` are G elements of scratch.
LOOM_HOST_DEVICE inline void dirichlet_quota(double alpha, int G, int64_t L, int64_t K, uint64_t seed, uint64_t step,
                                             uint32_t b, uint64_t* share, int64_t* quota, int64_t* order) {
  using portable::double_bits;
  using portable::double_from_bits;
  double total = 0;
  for (int g = 0; g < G; ++g) {
    const double x = gamma_draw(alpha, seed, step, b, g);
    share[g] = double_bits(x);
    total += x;
  }
  // Floors of share·K, capped at L; the fractional remainders replace the shares.
  int64_t assigned = 0;
  for (int g = 0; g < G; ++g) {
    const double fraction = total > 0 ? double_from_bits(share[g]) / total : 1.0 / G;
    const double exact = portable::rounded_product(fraction, double(K)), whole = ::floor(exact);
    quota[g] = int64_t(whole) < L ? int64_t(whole) : L;
    assigned += quota[g];
    share[g] = double_bits(exact - whole);
  }
  // Groups by decreasing remainder, ties by index (insertion sort: G is small).
  for (int g = 0; g < G; ++g) {
    const double rem = double_from_bits(share[g]);
    int j = g;
    for (; j > 0 && double_from_bits(share[order[j - 1]]) < rem; --j) order[j] = order[j - 1];
    order[j] = g;
  }
  // The rest one by one in that order, round robin, skipping full groups (Σ caps = G·L ≥ K).
  for (int i = 0; assigned < K; i = (i + 1) % G) {
    if (quota[order[i]] < L) {
      ++quota[order[i]];
      ++assigned;
    }
  }
}

}  // namespace loom::mask
