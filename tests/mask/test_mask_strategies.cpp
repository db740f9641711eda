// Mask strategies, plans and the spec parser, tested from the specification (docs/masking.md):
// T = G·L tokens, token t = g·L + l; K = round((1-r)·T) (consistent: G·round((1-r)·L));
// ids_restore is the inverse of a shuffle whose first K entries are ids_keep; mask 1 = hidden.
// Statistical checks use fixed seeds and 5-sigma / chi-square(p ~ 1e-6) bounds, so they are
// deterministic and fail only on a real bias.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "loom/core/parallel.hpp"
#include "loom/core/random.hpp"
#include "loom/mask/mask_plan.hpp"
#include "loom/mask/spec.hpp"
#include "loom/mask/strategy.hpp"
#include "support/check.hpp"

using loom::mask::Kind;
using loom::mask::MaskPlan;
using loom::mask::Strategy;
using loom::mask::make_mask_plan;
using loom::mask::parse_strategy;

namespace {

// The spec's K, written independently of visible_count.
int64_t expected_visible(const Strategy& s, int G, int64_t L) {
  if (s.kind == Kind::mixture) return expected_visible(s.members[0].first, G, L);
  if (s.kind == Kind::consistent) return G * int64_t(std::llround((1.0 - s.ratio) * double(L)));
  return int64_t(std::llround((1.0 - s.ratio) * double(G * L)));
}

// Visible tokens of sample b as a 0/1 vector read from the mask.
std::vector<int> visible_of(const MaskPlan& p, int64_t b) {
  const int64_t T = p.tokens();
  std::vector<int> v(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) v[size_t(t)] = p.mask.at({b, t}) == 0.0f;
  return v;
}

// Structural invariants every plan must satisfy; returns quietly or fails a REQUIRE.
void require_plan_invariants(const MaskPlan& p, int64_t B, int G, int64_t L, int64_t K) {
  const int64_t T = int64_t(G) * L;
  REQUIRE(p.groups == G);
  REQUIRE(p.locations == L);
  REQUIRE(p.visible == K);
  REQUIRE(p.ids_keep.shape() == loom::Shape{B, K});
  REQUIRE(p.ids_restore.shape() == loom::Shape{B, T});
  REQUIRE(p.mask.shape() == loom::Shape{B, T});
  const auto keep = p.ids_keep.to_vector();
  const auto restore = p.ids_restore.to_vector();
  const auto mask = p.mask.to_vector();
  for (int64_t b = 0; b < B; ++b) {
    // ids_restore is a permutation of [0, T): its inverse is the shuffle.
    std::vector<int64_t> shuffle(static_cast<size_t>(T), -1);
    for (int64_t t = 0; t < T; ++t) {
      const int64_t pos = restore[size_t(b * T + t)];
      REQUIRE(pos >= 0);
      REQUIRE(pos < T);
      REQUIRE(shuffle[size_t(pos)] == -1);
      shuffle[size_t(pos)] = t;
    }
    // The shuffle's first K entries are ids_keep.
    for (int64_t k = 0; k < K; ++k) REQUIRE(shuffle[size_t(k)] == keep[size_t(b * K + k)]);
    // mask: exactly T - K ones, 0 exactly on the kept tokens.
    int64_t ones = 0;
    for (int64_t t = 0; t < T; ++t) {
      const float m = mask[size_t(b * T + t)];
      REQUIRE((m == 0.0f || m == 1.0f));
      ones += m == 1.0f;
      REQUIRE((m == 0.0f) == (restore[size_t(b * T + t)] < K));
    }
    REQUIRE(ones == T - K);
  }
}

// Per-strategy rule of one sample's visible set (the member's rule for a mixture).
void require_strategy_rule(const Strategy& s, const std::vector<int>& vis, int G, int64_t L) {
  std::vector<int64_t> per_group(static_cast<size_t>(G), 0);
  for (int g = 0; g < G; ++g)
    for (int64_t l = 0; l < L; ++l) per_group[size_t(g)] += vis[size_t(g * L + l)];
  switch (s.kind) {
    case Kind::consistent:
      for (int64_t l = 0; l < L; ++l)
        for (int g = 1; g < G; ++g) REQUIRE(vis[size_t(g * L + l)] == vis[size_t(l)]);
      break;
    case Kind::disjoint: {
      for (int64_t l = 0; l < L; ++l) {
        int shown = 0;
        for (int g = 0; g < G; ++g) shown += vis[size_t(g * L + l)];
        REQUIRE(shown <= 1);
      }
      const auto [lo, hi] = std::minmax_element(per_group.begin(), per_group.end());
      REQUIRE(*hi - *lo <= 1);
      break;
    }
    case Kind::drop:
      REQUIRE(per_group[size_t(s.group)] == 0);
      break;
    default: break;  // independent, dirichlet: any K-subset
  }
}

// Upper critical value of chi-square with `df` degrees of freedom at z = 4.75 standard
// deviations (upper tail ~1e-6), by the Wilson–Hilferty cube approximation.
double chi2_critical(double df) {
  const double z = 4.75, a = 2.0 / (9.0 * df);
  return df * std::pow(1.0 - a + z * std::sqrt(a), 3.0);
}

// Within each group, every location must be visible equally often. Conditional on the per-sample
// visible counts k_s of the group (q_s = k_s / L), sum_l (o_l - mean)^2 · (L-1) / (L · V) with
// V = sum_s q_s (1 - q_s) is ~ chi-square(L - 1) for uniform draws without replacement.
void require_uniform_within_groups(const std::vector<std::vector<int>>& samples, int G, int64_t L) {
  if (L < 2) return;
  for (int g = 0; g < G; ++g) {
    std::vector<double> count(static_cast<size_t>(L), 0.0);
    double V = 0, total = 0;
    for (const auto& vis : samples) {
      double k = 0;
      for (int64_t l = 0; l < L; ++l) {
        count[size_t(l)] += vis[size_t(g * L + l)];
        k += vis[size_t(g * L + l)];
      }
      const double q = k / double(L);
      V += q * (1 - q);
      total += k;
    }
    if (V == 0) continue;  // never or always visible (dropped group, r = 0): nothing random
    const double mean = total / double(L);
    double ss = 0;
    for (double c : count) ss += (c - mean) * (c - mean);
    const double stat = ss * double(L - 1) / (double(L) * V);
    INFO("group " << g << " chi-square " << stat << " critical " << chi2_critical(double(L - 1)));
    REQUIRE(stat < chi2_critical(double(L - 1)));
  }
}

// For group-symmetric strategies every group gets K/G visible tokens on average (5 sigma, with
// the empirical spread of the per-sample counts).
void require_groups_balanced_on_average(const std::vector<std::vector<int>>& samples, int G, int64_t L, int64_t K) {
  const double N = double(samples.size());
  for (int g = 0; g < G; ++g) {
    double sum = 0, sum2 = 0;
    for (const auto& vis : samples) {
      double k = 0;
      for (int64_t l = 0; l < L; ++l) k += vis[size_t(g * L + l)];
      sum += k;
      sum2 += k * k;
    }
    const double mean = sum / N, var = std::max(0.0, sum2 / N - mean * mean);
    INFO("group " << g << " mean visible " << mean << " expected " << double(K) / G);
    REQUIRE(std::abs(mean - double(K) / G) <= 5 * std::sqrt(var / N) + 1e-9);
  }
}

std::vector<std::vector<int>> all_samples(const Strategy& s, int G, int64_t L, int64_t B, int steps, uint64_t seed) {
  std::vector<std::vector<int>> out;
  for (int step = 0; step < steps; ++step) {
    const MaskPlan p = make_mask_plan(s, B, G, L, seed, uint64_t(step));
    for (int64_t b = 0; b < B; ++b) out.push_back(visible_of(p, b));
  }
  return out;
}

bool same_plan_rows(const MaskPlan& a, int64_t row_a, const MaskPlan& b, int64_t row_b) {
  const int64_t T = a.tokens(), K = a.visible;
  for (int64_t k = 0; k < K; ++k)
    if (a.ids_keep.at({row_a, k}) != b.ids_keep.at({row_b, k})) return false;
  for (int64_t t = 0; t < T; ++t)
    if (a.ids_restore.at({row_a, t}) != b.ids_restore.at({row_b, t}) || a.mask.at({row_a, t}) != b.mask.at({row_b, t}))
      return false;
  return a.member[size_t(row_a)] == b.member[size_t(row_b)];
}

}  // namespace

TEST_CASE("mask plans: exact K, inverse restore and per-strategy rules over thousands of samples", "[mask]") {
  struct Grid {
    int G;
    int64_t L;
  };
  const std::vector<Grid> grids = {{2, 1}, {2, 7}, {2, 225}, {3, 7}, {1, 7}, {4, 16}};
  for (const Grid grid : grids) {
    const int G = grid.G;
    const int64_t L = grid.L, T = G * L;
    const double r_disjoint = 1.0 - 1.0 / G;
    std::vector<Strategy> strategies = {Strategy::independent(0.75), Strategy::independent(0.0),
                                        Strategy::independent(1.0 - 1.0 / double(T)),
                                        Strategy::consistent(0.75), Strategy::consistent(0.0),
                                        Strategy::disjoint(std::max(0.75, r_disjoint)),
                                        Strategy::disjoint(r_disjoint), Strategy::disjoint(1.0 - 1.0 / double(T)),
                                        Strategy::dirichlet(1.0, 0.75), Strategy::dirichlet(0.5, 1.0 - 1.0 / double(T))};
    if (G >= 2) {
      strategies.push_back(Strategy::drop(0, 0.75));
      strategies.push_back(Strategy::drop(G - 1, 1.0 - 1.0 / double(G)));
      strategies.push_back(Strategy::drop(G - 1, 1.0 - 1.0 / double(T)));
    }
    for (const Strategy& s : strategies) {
      int64_t K = 0;
      try {
        K = loom::mask::visible_count(s, G, L);
      } catch (const loom::Error&) {
        continue;  // not applicable to this grid (e.g. drop(0.75) of 1 location); error paths are tested below
      }
      INFO("strategy " << s.str() << " G = " << G << " L = " << L);
      REQUIRE(K == expected_visible(s, G, L));
      const int64_t B = 32;
      const int steps = L >= 100 ? 32 : 64;  // 1024 or 2048 samples per strategy and grid
      for (int step = 0; step < steps; ++step) {
        const MaskPlan p = make_mask_plan(s, B, G, L, 1234 + uint64_t(G), uint64_t(step));
        require_plan_invariants(p, B, G, L, K);
        for (int64_t b = 0; b < B; ++b) require_strategy_rule(s, visible_of(p, b), G, L);
      }
      REQUIRE(K <= T);
    }
  }
}

TEST_CASE("mask plans: each token is visible equally often (chi-square, fixed seed)", "[mask]") {
  // Critical values: chi-square(L - 1) at z = 4.75 (upper tail ~1e-6) via Wilson–Hilferty, e.g.
  // 339.45 for L - 1 = 224 and 57.31 for L - 1 = 15.
  REQUIRE(std::abs(chi2_critical(224) - 339.45) < 0.01);
  REQUIRE(std::abs(chi2_critical(15) - 57.31) < 0.01);
  const int G = 2;
  for (const int64_t L : {int64_t(16), int64_t(225)}) {
    const std::vector<Strategy> strategies = {Strategy::independent(0.75), Strategy::consistent(0.75),
                                              Strategy::disjoint(0.75), Strategy::dirichlet(1.0, 0.75),
                                              Strategy::drop(0, 0.75), Strategy::drop(1, 0.75)};
    for (const Strategy& s : strategies) {
      INFO("strategy " << s.str() << " L = " << L);
      const int64_t K = loom::mask::visible_count(s, G, L);
      const auto samples = all_samples(s, G, L, 64, 64, 99);  // 4096 samples
      require_uniform_within_groups(samples, G, L);
      if (s.kind != Kind::drop) require_groups_balanced_on_average(samples, G, L, K);
    }
  }
}

TEST_CASE("mask plans: a biased rule fails the uniformity test (the test has power)", "[mask]") {
  // Location 0 of group 0 visible in every sample, otherwise independent: must be rejected.
  const int G = 2;
  const int64_t L = 225;
  auto samples = all_samples(Strategy::independent(0.75), G, L, 64, 16, 5);
  for (auto& vis : samples) vis[0] = 1;
  const int64_t T = G * L;
  std::vector<double> count(static_cast<size_t>(L), 0.0);
  double V = 0, total = 0;
  for (const auto& vis : samples) {
    double k = 0;
    for (int64_t l = 0; l < L; ++l) k += vis[size_t(l)], count[size_t(l)] += vis[size_t(l)];
    V += (k / L) * (1 - k / L);
    total += k;
  }
  double ss = 0;
  for (double c : count) ss += (c - total / L) * (c - total / L);
  REQUIRE(ss * (L - 1) / (L * V) > chi2_critical(double(L - 1)));
  (void)T;
}

TEST_CASE("mask plans: mixture members drawn by weight, each sample follows its member", "[mask]") {
  const int G = 2;
  const int64_t L = 225, B = 256;
  const Strategy mix = parse_strategy(loom::mask::kDefaultMaskSpec);
  REQUIRE(mix.kind == Kind::mixture);
  REQUIRE(mix.members.size() == 3);
  const int64_t K = loom::mask::visible_count(mix, G, L);
  REQUIRE(K == 113);  // round(0.25 · 450) = round(112.5), half away from zero
  std::vector<double> count(3, 0.0);
  double N = 0;
  for (uint64_t step = 0; step < 16; ++step) {  // 4096 samples
    const MaskPlan p = make_mask_plan(mix, B, G, L, 2024, step);
    require_plan_invariants(p, B, G, L, K);
    for (int64_t b = 0; b < B; ++b) {
      const auto vis = visible_of(p, b);
      int64_t shown[2] = {0, 0};
      for (int64_t t = 0; t < G * L; ++t) shown[t / L] += vis[size_t(t)];
      // Classify the sample from its mask alone: a dropped group shows nothing; disjoint shows both.
      const int member = shown[0] == 0 ? 1 : shown[1] == 0 ? 2 : 0;
      REQUIRE(p.member[size_t(b)] == member);
      require_strategy_rule(mix.members[size_t(member)].first, vis, G, L);
      count[size_t(member)] += 1;
      N += 1;
    }
  }
  const double w[3] = {0.8, 0.1, 0.1};
  for (int i = 0; i < 3; ++i) {
    INFO("member " << i << " drawn " << count[size_t(i)] << " of " << N);
    REQUIRE(std::abs(count[size_t(i)] - N * w[i]) <= 5 * std::sqrt(N * w[i] * (1 - w[i])));
  }
  // Unnormalized weights mean the same as normalized ones.
  const Strategy mix2 = parse_strategy("mixture(independent(0.5):3, consistent(0.5):1)");
  double first = 0;
  const int64_t n = 4096;
  const MaskPlan p = make_mask_plan(mix2, n, 2, 8, 7, 0);
  for (int m : p.member) first += m == 0;
  REQUIRE(std::abs(first - 0.75 * n) <= 5 * std::sqrt(n * 0.75 * 0.25));
}

TEST_CASE("mask plans: dirichlet group shares have mean 1/G and shrink as alpha grows", "[mask]") {
  for (const int G : {2, 3}) {
    const int64_t L = 225;
    double previous_sd = 1e9;
    for (const double alpha : {0.3, 1.0, 10.0}) {
      const Strategy s = Strategy::dirichlet(alpha, 0.75);
      const int64_t K = loom::mask::visible_count(s, G, L);
      const auto samples = all_samples(s, G, L, 128, 32, 77);  // 4096 samples
      const double N = double(samples.size());
      for (int g = 0; g < G; ++g) {
        double sum = 0, sum2 = 0;
        for (const auto& vis : samples) {
          double k = 0;
          for (int64_t l = 0; l < L; ++l) k += vis[size_t(g * L + l)];
          sum += k / double(K);
          sum2 += (k / double(K)) * (k / double(K));
        }
        const double mean = sum / N, var = sum2 / N - mean * mean;
        // Dirichlet(alpha, ..., alpha) marginal: mean 1/G, variance (1/G)(1 - 1/G) / (G·alpha + 1);
        // integer rounding adds at most 1/(4K²) which is negligible here (K = 169 or 170).
        const double theory_var = (1.0 / G) * (1 - 1.0 / G) / (G * alpha + 1);
        INFO("G " << G << " alpha " << alpha << " group " << g << " mean " << mean << " var " << var << " theory "
                  << theory_var);
        REQUIRE(std::abs(mean - 1.0 / G) <= 5 * std::sqrt(theory_var / N));
        // The sample variance's relative error is ~sqrt((kurtosis - 1)/N) <= sqrt(2/N) for these shares.
        REQUIRE(std::abs(var / theory_var - 1) <= 5 * std::sqrt(2.0 / N) + 1.0 / (4.0 * K * K * theory_var));
        if (g == 0) {
          REQUIRE(std::sqrt(var) < previous_sd);
          previous_sd = std::sqrt(var);
        }
      }
    }
  }
}

TEST_CASE("mask plans: a pure function of (seed, step, sample), whatever the batch size and threads", "[mask]") {
  const int previous_threads = loom::num_threads();
  const int G = 2;
  const int64_t L = 49;
  for (const char* spec : {"mixture(disjoint(0.75):0.8, drop(s1,0.75):0.1, drop(s2,0.75):0.1)", "independent(0.6)",
                           "consistent(0.75)", "dirichlet(0.7, 0.75)"}) {
    INFO(spec);
    const Strategy s = parse_strategy(spec);
    loom::set_num_threads(2);
    const MaskPlan big = make_mask_plan(s, 37, G, L, 42, 5);
    loom::set_num_threads(1);
    const MaskPlan big1 = make_mask_plan(s, 37, G, L, 42, 5);
    loom::set_num_threads(previous_threads);
    for (int64_t b = 0; b < 37; ++b) {
      REQUIRE(same_plan_rows(big, b, big1, b));
      const MaskPlan one = make_mask_plan(s, 1, G, L, 42, 5, uint32_t(b));
      REQUIRE(same_plan_rows(big, b, one, 0));
    }
    const MaskPlan tail = make_mask_plan(s, 5, G, L, 42, 5, 30);
    for (int64_t b = 0; b < 5; ++b) REQUIRE(same_plan_rows(big, 30 + b, tail, b));
    // Run twice: bit identical. Other steps and seeds: different masks.
    const MaskPlan again = make_mask_plan(s, 37, G, L, 42, 5);
    const MaskPlan next_step = make_mask_plan(s, 37, G, L, 42, 6);
    const MaskPlan other_seed = make_mask_plan(s, 37, G, L, 43, 5);
    const MaskPlan far_step = make_mask_plan(s, 37, G, L, 42, 5 + (uint64_t(1) << 32));
    int differ_step = 0, differ_seed = 0, differ_far = 0;
    for (int64_t b = 0; b < 37; ++b) {
      REQUIRE(same_plan_rows(big, b, again, b));
      differ_step += !same_plan_rows(big, b, next_step, b);
      differ_seed += !same_plan_rows(big, b, other_seed, b);
      differ_far += !same_plan_rows(big, b, far_step, b);
    }
    REQUIRE(differ_step >= 35);
    REQUIRE(differ_seed >= 35);
    REQUIRE(differ_far >= 35);
  }
}

namespace {

// The documented RNG index map (docs/masking.md), written out from the doc rather than through
// mask_rng.hpp: key = seed halves, counter = {element / 4, sample, step low, purpose << 16 | step
// bits 32..47}, lane element % 4, uniform = (bits >> 8) · 2^-24.
uint32_t doc_bits(uint64_t seed, uint64_t step, uint32_t sample, uint32_t purpose, uint64_t element) {
  const loom::philox::Counter c{{uint32_t(element / 4), sample, uint32_t(step & 0xffffffffu),
                                 (purpose << 16) | uint32_t((step >> 32) & 0xffffu)}};
  const loom::philox::Key k{{uint32_t(seed & 0xffffffffu), uint32_t(seed >> 32)}};
  return loom::philox::philox4x32_10(c, k).x[element % 4];
}
double doc_uniform(uint64_t seed, uint64_t step, uint32_t sample, uint32_t purpose, uint64_t element) {
  return double(doc_bits(seed, step, sample, purpose, element) >> 8) / 16777216.0;
}

// Indices 0..n-1 ordered by increasing noise, ties by index.
std::vector<int64_t> by_noise(const std::vector<double>& noise) {
  std::vector<int64_t> order(noise.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return noise[size_t(a)] < noise[size_t(b)] || (noise[size_t(a)] == noise[size_t(b)] && a < b);
  });
  return order;
}

}  // namespace

TEST_CASE("mask plans: follow the documented rules and RNG index map exactly", "[mask]") {
  const int G = 2;
  const int64_t L = 25, T = G * L, B = 6;
  const uint64_t seed = 0x123456789abcdefull, step = (uint64_t(3) << 32) + 17;
  for (const char* spec : {"independent(0.7)", "consistent(0.6)", "disjoint(0.75)", "drop(s2,0.75)",
                           "mixture(independent(0.75):1, disjoint(0.75):2, drop(s1,0.75):1)"}) {
    INFO(spec);
    const Strategy strategy = parse_strategy(spec);
    const MaskPlan plan = make_mask_plan(strategy, B, G, L, seed, step, 1000);
    const int64_t K = plan.visible;
    for (int64_t b = 0; b < B; ++b) {
      const uint32_t sample = 1000 + uint32_t(b);
      Strategy s = strategy;
      if (strategy.kind == Kind::mixture) {
        const double u = doc_uniform(seed, step, sample, 4, 0) * 4.0;  // weights 1, 2, 1
        const int member = u < 1 ? 0 : u < 3 ? 1 : 2;
        REQUIRE(plan.member[size_t(b)] == member);
        s = strategy.members[size_t(member)].first;
      }
      std::vector<double> token_noise(static_cast<size_t>(T)), loc_noise(static_cast<size_t>(L));
      for (int64_t t = 0; t < T; ++t) token_noise[size_t(t)] = doc_uniform(seed, step, sample, 0, uint64_t(t));
      for (int64_t l = 0; l < L; ++l) loc_noise[size_t(l)] = doc_uniform(seed, step, sample, 1, uint64_t(l));
      std::vector<int> visible(static_cast<size_t>(T), 0);
      if (s.kind == Kind::independent || s.kind == Kind::drop) {
        int64_t shown = 0;
        for (int64_t t : by_noise(token_noise))
          if (shown < K && !(s.kind == Kind::drop && t / L == s.group)) visible[size_t(t)] = 1, ++shown;
      } else {
        const auto locs = by_noise(loc_noise);
        if (s.kind == Kind::consistent) {
          for (int64_t j = 0; j < K / G; ++j)
            for (int g = 0; g < G; ++g) visible[size_t(g * L + locs[size_t(j)])] = 1;
        } else {  // disjoint: j-th location to group (j + shift) mod G
          const int shift = int(doc_bits(seed, step, sample, 2, 0) % uint32_t(G));
          for (int64_t j = 0; j < K; ++j) visible[size_t(((j + shift) % G) * L + locs[size_t(j)])] = 1;
        }
      }
      // ids_shuffle: visible tokens by token noise, then hidden ones by token noise.
      std::vector<int64_t> shuffle;
      for (int pass = 1; pass >= 0; --pass)
        for (int64_t t : by_noise(token_noise))
          if (visible[size_t(t)] == pass) shuffle.push_back(t);
      for (int64_t i = 0; i < T; ++i) {
        if (i < K) REQUIRE(plan.ids_keep.at({b, i}) == shuffle[size_t(i)]);
        REQUIRE(plan.ids_restore.at({b, shuffle[size_t(i)]}) == i);
        REQUIRE(plan.mask.at({b, i}) == (visible[size_t(i)] ? 0.0f : 1.0f));
      }
    }
  }
}

TEST_CASE("mask plans: batch of zero and odd grids", "[mask]") {
  const MaskPlan empty = make_mask_plan(Strategy::independent(0.75), 0, 2, 7, 1, 0);
  REQUIRE(empty.ids_keep.shape() == loom::Shape{0, 4});
  REQUIRE(empty.ids_restore.shape() == loom::Shape{0, 14});
  // r = 0: every token visible; ids_keep is then a permutation of all tokens.
  const MaskPlan all = make_mask_plan(Strategy::independent(0.0), 3, 2, 225, 1, 0);
  require_plan_invariants(all, 3, 2, 225, 450);
  for (float m : all.mask.to_vector()) REQUIRE(m == 0.0f);
  // r = 1 - 1/T: exactly one visible token.
  const MaskPlan one = make_mask_plan(Strategy::disjoint(1.0 - 1.0 / 14), 3, 2, 7, 1, 0);
  require_plan_invariants(one, 3, 2, 7, 1);
}

TEST_CASE("mask strategies: error paths name the strategy and the grid", "[mask]") {
  using loom::mask::visible_count;
  // Mask ratio outside [0, 1).
  REQUIRE_THROWS_AS(visible_count(Strategy::independent(1.0), 2, 7), loom::Error);
  REQUIRE_THROWS_WITH(visible_count(Strategy::independent(1.0), 2, 7), Catch::Contains("independent(1)") &&
                                                                           Catch::Contains("[0, 1)"));
  REQUIRE_THROWS_WITH(visible_count(Strategy::consistent(-0.1), 2, 7), Catch::Contains("mask ratio"));
  REQUIRE_THROWS_WITH(make_mask_plan(Strategy::disjoint(1.5), 4, 2, 7, 0, 0), Catch::Contains("mask ratio"));
  // Disjoint needs r >= 1 - 1/G, also where rounding would still give K <= L.
  REQUIRE_THROWS_WITH(visible_count(Strategy::disjoint(0.4), 2, 225),
                      Catch::Contains("disjoint(0.4)") && Catch::Contains("1 - 1/G"));
  REQUIRE_THROWS_WITH(visible_count(Strategy::disjoint(0.4999), 2, 225), Catch::Contains("1 - 1/G"));
  REQUIRE_THROWS_WITH(visible_count(Strategy::disjoint(0.6), 3, 7), Catch::Contains("1 - 1/G"));
  REQUIRE(visible_count(Strategy::disjoint(0.5), 2, 225) == 225);
  REQUIRE(visible_count(Strategy::disjoint(2.0 / 3.0), 3, 7) == 7);
  // Dropping a group that does not exist.
  REQUIRE_THROWS_WITH(visible_count(Strategy::drop(2, 0.75), 2, 7),
                      Catch::Contains("group 2 does not exist") && Catch::Contains("G = 2"));
  REQUIRE_THROWS_WITH(visible_count(Strategy::drop(-1, 0.75), 2, 7), Catch::Contains("does not exist"));
  REQUIRE_THROWS_WITH(visible_count(Strategy::drop(0, 0.25), 2, 7), Catch::Contains("other groups have only"));
  REQUIRE_THROWS_WITH(visible_count(Strategy::dirichlet(0.0, 0.75), 2, 7), Catch::Contains("alpha must be positive"));
  // Mixture members keeping different K: consistent keeps 2·round(1.25) = 2, independent round(2.5) = 3.
  const Strategy bad_mix = parse_strategy("mixture(consistent(0.75):1, independent(0.75):1)");
  REQUIRE_THROWS_WITH(visible_count(bad_mix, 2, 5), Catch::Contains("different token counts") &&
                                                        Catch::Contains("keeps 2") && Catch::Contains("keeps 3"));
  REQUIRE_THROWS_AS(make_mask_plan(bad_mix, 4, 2, 5, 0, 0), loom::Error);
  REQUIRE(visible_count(bad_mix, 2, 8) == 4);  // 2·round(2) = round(4): fine on this grid
  REQUIRE_THROWS_WITH(visible_count(Strategy::mixture({}), 2, 7), Catch::Contains("at least one member"));
  REQUIRE_THROWS_WITH(visible_count(Strategy::mixture({{Strategy::independent(0.5), 0.0}}), 2, 7),
                      Catch::Contains("weights must be positive"));
  REQUIRE_THROWS_WITH(visible_count(Strategy::mixture({{Strategy::independent(0.5), INFINITY}}), 2, 7),
                      Catch::Contains("positive and finite"));
  REQUIRE_THROWS_WITH(visible_count(Strategy::dirichlet(INFINITY, 0.5), 2, 7), Catch::Contains("positive and finite"));
  REQUIRE_THROWS_WITH(visible_count(Strategy::independent(NAN), 2, 7), Catch::Contains("mask ratio"));
  REQUIRE_THROWS_WITH(visible_count(Strategy::independent(0.5), 0, 7), Catch::Contains("G = 0"));
  REQUIRE_THROWS_WITH(make_mask_plan(Strategy::independent(0.5), -1, 2, 7, 0, 0), Catch::Contains("negative batch"));
}

TEST_CASE("mask spec: str() round trips through the parser", "[mask]") {
  for (const char* spec : {"consistent(0.75)", "independent(0.6)", "disjoint(0.75)", "drop(s1,0.75)", "drop(s2,0.5)",
                           "dirichlet(1,0.75)", "dirichlet(0.3,0.8)",
                           "mixture(disjoint(0.75):0.8, drop(s1,0.75):0.1, drop(s2,0.75):0.1)"}) {
    INFO(spec);
    REQUIRE(parse_strategy(spec).str() == spec);
  }
  // Whitespace, modality_drop and group indices parse to the same canonical text.
  REQUIRE(parse_strategy("  mixture( disjoint( 0.75 ) : 0.8 ,modality_drop(s1 , 0.75):0.2 ) ").str() ==
          "mixture(disjoint(0.75):0.8, drop(s1,0.75):0.2)");
  REQUIRE(parse_strategy("drop(1, 0.75)").group == 1);
  REQUIRE(parse_strategy("drop(opt, 0.75)", {"sar", "opt"}).str({"sar", "opt"}) == "drop(opt,0.75)");
  // Values that need more than 6 decimals survive str() -> parse exactly.
  const Strategy precise = Strategy::mixture({{Strategy::dirichlet(1e-7, 0.123456789), 1.0 / 3.0},
                                              {Strategy::drop(1, 0.7654321), 2.0 / 3.0}});
  const Strategy back = parse_strategy(precise.str());
  INFO(precise.str());
  REQUIRE(back.kind == Kind::mixture);
  REQUIRE(back.members.size() == 2);
  REQUIRE(back.members[0].first.kind == Kind::dirichlet);
  REQUIRE(back.members[0].first.alpha == 1e-7);
  REQUIRE(back.members[0].first.ratio == 0.123456789);
  REQUIRE(back.members[0].second == 1.0 / 3.0);
  REQUIRE(back.members[1].first.kind == Kind::drop);
  REQUIRE(back.members[1].first.group == 1);
  REQUIRE(back.members[1].first.ratio == 0.7654321);
  REQUIRE(back.members[1].second == 2.0 / 3.0);
  REQUIRE(back.str() == precise.str());
}

TEST_CASE("mask spec: malformed specs put the caret under the offending column", "[mask]") {
  struct Bad {
    std::string spec;
    size_t column;  // 1-based
    std::string what;
  };
  const std::vector<Bad> bad = {
      {"disjoint(1.5)", 10, "mask ratio must be in [0, 1)"},
      {"consistent(0.75", 16, "expected ')'"},
      {"random(0.75)", 1, "unknown strategy 'random'"},
      {"drop(s3, 0.75)", 6, "unknown group 's3'"},
      {"disjoint(0.75) x", 16, "unexpected text"},
      {"mixture(disjoint(0.75):0.8, mixture(independent(0.5):1):0.2)", 29, "mixtures cannot be nested"},
      {"mixture(disjoint(0.75):-1)", 24, "weights must be positive"},
      {"mixture(disjoint(0.75) 0.8)", 24, "expected ':'"},
      {"dirichlet(0, 0.75)", 11, "alpha must be positive"},
      {"independent()", 13, "expected a number"},
      {"", 1, "expected a strategy name"},
      {"drop(s1 0.75)", 9, "expected ','"},
      {"mixture(disjoint(0.75):inf)", 24, "weights must be positive and finite"},
      {"mixture(disjoint(0.75):1e400)", 24, "weights must be positive and finite"},
      {"dirichlet(nan, 0.75)", 11, "alpha must be positive and finite"},
      {"consistent(nan)", 12, "mask ratio must be in [0, 1)"},
  };
  for (const Bad& b : bad) {
    INFO("spec '" << b.spec << "'");
    REQUIRE_THROWS_AS(parse_strategy(b.spec), loom::Error);
    try {
      parse_strategy(b.spec);
    } catch (const loom::Error& e) {
      const std::string msg = e.what();
      INFO(msg);
      REQUIRE(msg.find(b.what) != std::string::npos);
      REQUIRE(msg.find("at column " + std::to_string(b.column)) != std::string::npos);
      // The spec line and the caret line are indented alike, so the caret sits under the column.
      const std::string picture = "\n  " + b.spec + "\n  " + std::string(b.column - 1, ' ') + "^";
      REQUIRE(msg.find(picture) != std::string::npos);
    }
  }
}

TEST_CASE("mask plans: the default mixture on a 15x15 grid, G = 2, B = 256 is fast", "[mask]") {
  // Loose bound, only to catch pathological slowness (e.g. quadratic per-token work).
  const Strategy mix = parse_strategy(loom::mask::kDefaultMaskSpec);
  (void)make_mask_plan(mix, 256, 2, 225, 3, 0);  // warm the thread pool
  double best_ms = 1e9;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    const MaskPlan p = make_mask_plan(mix, 256, 2, 225, 3, uint64_t(rep + 1));
    const auto t1 = std::chrono::steady_clock::now();
    REQUIRE(p.visible == 113);
    best_ms = std::min(best_ms, std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  INFO("best of 3: " << best_ms << " ms");
  REQUIRE(best_ms < 50.0);
}
