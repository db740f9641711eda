#pragma once
// MaskPlan: which tokens of each sample the encoder sees, built as the MAE reference does — a
// per-sample permutation ids_shuffle of the T tokens with the K visible ones first (each part in
// increasing token-noise order); ids_keep = its first K entries, ids_restore = its inverse, so
// that the decoder's unshuffle is a gather.
#include <algorithm>
#include <bit>
#include <cstdint>
#include <cmath>
#include <numeric>
#include <vector>

#include "loom/core/parallel.hpp"
#include "loom/core/tensor.hpp"
#include "loom/mask/mask_rng.hpp"
#include "loom/mask/strategy.hpp"

namespace loom::mask {

struct MaskPlan {
  Tensor<int64_t> ids_keep;     // [B, K] visible token indices, in shuffle order
  Tensor<int64_t> ids_restore;  // [B, T] position of each token in the shuffle
  Tensor<float> mask;           // [B, T] 1 = hidden, 0 = visible
  std::vector<int> member;      // per sample: the mixture member used (0 for a plain strategy)
  int groups = 0;               // G
  int64_t locations = 0;        // L
  int64_t visible = 0;          // K
  int64_t tokens() const { return int64_t(groups) * locations; }
};

namespace detail {

// Sort key of (noise, index): the noise's bits above the index, so that plain integer order is
// "by noise, ties by index". Valid because the mask noise lies in [0, 1) (non-negative floats
// order like their bit patterns) and indices are below 2^32. Sorting these keys is several times
// faster than sorting indices through a comparator that reads the noise.
inline uint64_t noise_key(float noise, int64_t index) {
  return (uint64_t(std::bit_cast<uint32_t>(noise)) << 32) | uint64_t(index);
}

// Indices of the n smallest values of `noise` over `candidates`, in increasing noise order
// (ties broken by index, so the result is a pure function of the noise).
inline std::vector<int64_t> smallest(const std::vector<float>& noise, const std::vector<int64_t>& candidates, int64_t n) {
  std::vector<uint64_t> keys(candidates.size());
  for (size_t i = 0; i < candidates.size(); ++i) keys[i] = noise_key(noise[size_t(candidates[i])], candidates[i]);
  n = std::min<int64_t>(n, int64_t(keys.size()));
  std::partial_sort(keys.begin(), keys.begin() + n, keys.end());
  std::vector<int64_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = int64_t(keys[size_t(i)] & 0xffffffffu);
  return out;
}

inline std::vector<int64_t> iota(int64_t n, int64_t start = 0, int64_t step = 1) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = start + i * step;
  return v;
}

// Gamma(alpha, 1) by Marsaglia–Tsang from the sample's kGamma stream (group g uses elements
// [g·256, g·256 + 256)); alpha < 1 uses the boost Gamma(alpha + 1)·U^(1/alpha).
inline double gamma_draw(double alpha, uint64_t seed, uint64_t step, uint32_t b, int g) {
  const uint64_t base = uint64_t(g) * 256;
  const double boost = alpha < 1 ? std::pow(double(mask_uniform(seed, step, b, kGamma, base + 255)) + 0x1p-25, 1.0 / alpha) : 1.0;
  const double a = alpha < 1 ? alpha + 1 : alpha;
  const double d = a - 1.0 / 3.0, c = 1.0 / std::sqrt(9 * d);
  for (uint64_t attempt = 0; attempt < 63; ++attempt) {
    const double u1 = double(mask_uniform(seed, step, b, kGamma, base + 4 * attempt)) + 0x1p-25;  // (0, 1)
    const double u2 = double(mask_uniform(seed, step, b, kGamma, base + 4 * attempt + 1));
    const double u3 = double(mask_uniform(seed, step, b, kGamma, base + 4 * attempt + 2)) + 0x1p-25;
    const double z = std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2);
    const double v = std::pow(1 + c * z, 3);
    if (v <= 0) continue;
    if (std::log(u3) < 0.5 * z * z + d - d * v + d * std::log(v)) return d * v * boost;
  }
  return d * boost;  // acceptance is > 95% per attempt: reaching here has probability < 1e-80
}

// Splits K into per-group counts proportional to `share` (largest remainder), each capped at L,
// overflow moved to the groups with room (largest share first).
inline std::vector<int64_t> split_counts(const std::vector<double>& share, int64_t K, int64_t L) {
  const size_t G = share.size();
  std::vector<int64_t> k(G);
  std::vector<std::pair<double, size_t>> rem;
  int64_t assigned = 0;
  for (size_t g = 0; g < G; ++g) {
    const double exact = share[g] * double(K);
    k[g] = std::min<int64_t>(int64_t(std::floor(exact)), L);
    assigned += k[g];
    rem.emplace_back(exact - std::floor(exact), g);
  }
  std::sort(rem.begin(), rem.end(), [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  for (size_t i = 0; assigned < K; i = (i + 1) % G) {
    if (k[rem[i].second] < L) {
      ++k[rem[i].second];
      ++assigned;
    }
  }
  return k;
}

// The visible token set of one sample under a non-mixture strategy.
inline std::vector<int64_t> visible_tokens(const Strategy& s, int G, int64_t L, int64_t K, const std::vector<float>& token_noise,
                                           uint64_t seed, uint64_t step, uint32_t b) {
  const int64_t T = int64_t(G) * L;
  switch (s.kind) {
    case Kind::independent: return smallest(token_noise, iota(T), K);
    case Kind::consistent:
    case Kind::disjoint: {
      std::vector<float> loc_noise(static_cast<size_t>(L));
      mask_uniforms(seed, step, b, kLocationNoise, L, loc_noise.data());
      const int64_t n_loc = s.kind == Kind::consistent ? K / G : K;
      const std::vector<int64_t> locs = smallest(loc_noise, iota(L), n_loc);
      std::vector<int64_t> out;
      if (s.kind == Kind::consistent) {
        for (int g = 0; g < G; ++g)
          for (int64_t l : locs) out.push_back(g * L + l);
      } else {
        // Balanced groups: the j-th chosen location (random order) goes to group (j + shift) % G.
        const int shift = int(mask_bits(seed, step, b, kGroupShift, 0) % uint32_t(G));
        for (size_t j = 0; j < locs.size(); ++j) out.push_back(int64_t((int(j) + shift) % G) * L + locs[j]);
      }
      return out;
    }
    case Kind::drop: {
      std::vector<int64_t> candidates;
      for (int64_t t = 0; t < T; ++t)
        if (t / L != s.group) candidates.push_back(t);
      return smallest(token_noise, candidates, K);
    }
    case Kind::dirichlet: {
      std::vector<double> share(static_cast<size_t>(G));
      double total = 0;
      for (int g = 0; g < G; ++g) total += share[size_t(g)] = gamma_draw(s.alpha, seed, step, b, g);
      for (double& x : share) x = total > 0 ? x / total : 1.0 / G;
      const std::vector<int64_t> k = split_counts(share, K, L);
      std::vector<int64_t> out;
      for (int g = 0; g < G; ++g) {
        const auto chosen = smallest(token_noise, iota(L, int64_t(g) * L), k[size_t(g)]);
        out.insert(out.end(), chosen.begin(), chosen.end());
      }
      return out;
    }
    case Kind::mixture: break;
  }
  loom::detail::fail("mask: internal error: visible_tokens called on a mixture");
}

// Which mixture member sample b uses.
inline int pick_member(const Strategy& s, uint64_t seed, uint64_t step, uint32_t b) {
  if (s.kind != Kind::mixture) return 0;
  double total = 0;
  for (const auto& m : s.members) total += m.second;
  const double u = double(mask_uniform(seed, step, b, kStrategy, 0)) * total;
  double acc = 0;
  for (size_t i = 0; i < s.members.size(); ++i) {
    acc += s.members[i].second;
    if (u < acc) return int(i);
  }
  return int(s.members.size()) - 1;
}

}  // namespace detail

// The plan for a batch of B samples at training step `step`. Sample b's plan depends only on
// (strategy, G, L, seed, step, first_sample + b): the same sample gets the same mask whatever the
// batch size or thread count. `first_sample` offsets the sample index (e.g. a rank's shard).
inline MaskPlan make_mask_plan(const Strategy& strategy, int64_t B, int G, int64_t L, uint64_t seed, uint64_t step,
                               uint32_t first_sample = 0) {
  LOOM_CHECK(B >= 0, "make_mask_plan: negative batch size ", B);
  const int64_t K = visible_count(strategy, G, L), T = int64_t(G) * L;
  MaskPlan plan;
  plan.groups = G;
  plan.locations = L;
  plan.visible = K;
  plan.ids_keep = Tensor<int64_t>::empty({B, K});
  plan.ids_restore = Tensor<int64_t>::empty({B, T});
  plan.mask = Tensor<float>::empty({B, T});
  plan.member.assign(size_t(B), 0);
  int64_t* keep = plan.ids_keep.data();
  int64_t* restore = plan.ids_restore.data();
  float* mask = plan.mask.data();
  parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<float> noise(static_cast<size_t>(T));
    std::vector<uint8_t> visible(static_cast<size_t>(T));
    std::vector<uint64_t> order(static_cast<size_t>(T));  // sort keys of ids_shuffle
    for (int64_t b = b0; b < b1; ++b) {
      const uint32_t sample = first_sample + uint32_t(b);
      const int member = detail::pick_member(strategy, seed, step, sample);
      plan.member[size_t(b)] = member;
      const Strategy& s = strategy.kind == Kind::mixture ? strategy.members[size_t(member)].first : strategy;
      mask_uniforms(seed, step, sample, kTokenNoise, T, noise.data());
      std::fill(visible.begin(), visible.end(), 0);
      for (int64_t t : detail::visible_tokens(s, G, L, K, noise, seed, step, sample)) visible[size_t(t)] = 1;
      // ids_shuffle: visible tokens by noise, then hidden tokens by noise (ties by index); the
      // top bit of the key puts hidden tokens last (noise keys never use it).
      for (int64_t t = 0; t < T; ++t)
        order[size_t(t)] = detail::noise_key(noise[size_t(t)], t) | (visible[size_t(t)] ? 0 : uint64_t(1) << 63);
      std::sort(order.begin(), order.end());
      for (int64_t i = 0; i < T; ++i) {
        const int64_t t = int64_t(order[size_t(i)] & 0xffffffffu);
        if (i < K) keep[b * K + i] = t;
        restore[b * T + t] = i;
        mask[b * T + i] = visible[size_t(i)] ? 0.0f : 1.0f;
      }
    }
  });
  return plan;
}

}  // namespace loom::mask
