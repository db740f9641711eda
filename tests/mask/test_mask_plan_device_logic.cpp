// The host+device pieces of mask-plan generation (loom/mask/sample_plan.hpp and what it uses),
// run on the CPU against independent references: the merge sort against std::sort, the portable
// log/exp/cos against libm (long double for cos), the portable Gamma draw against the Gamma
// moments, and plan_sample on dirty scratch against make_mask_plan (the device hands it
// uninitialised global memory). tests/cuda/test_mask_plan_gpu.cpp checks the device plans.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "loom/mask/dirichlet_quota.hpp"
#include "loom/mask/flat_strategy.hpp"
#include "loom/mask/key_sort.hpp"
#include "loom/mask/mask_plan.hpp"
#include "loom/mask/portable_math.hpp"
#include "loom/mask/sample_plan.hpp"
#include "loom/mask/spec.hpp"
#include "support/check.hpp"

using loom::mask::FlatStrategy;
using loom::mask::Kind;
using loom::mask::Strategy;

TEST_CASE("mask device logic: sort_keys matches std::sort, ties and odd sizes included", "[mask]") {
  std::mt19937_64 rng(12345);
  for (int64_t n : {0, 1, 2, 15, 16, 17, 97, 450, 1000}) {
    for (int pattern = 0; pattern < 5; ++pattern) {
      INFO("n " << n << " pattern " << pattern);
      std::vector<uint64_t> keys(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        const uint64_t r = rng();
        keys[size_t(i)] = pattern == 0   ? r                       // distinct (almost surely)
                          : pattern == 1 ? r % 5                   // many ties
                          : pattern == 2 ? uint64_t(i)             // already sorted
                          : pattern == 3 ? uint64_t(n - i) << 40   // reversed
                                         : (r & 1) << 63;          // two values, top bit
      }
      std::vector<uint64_t> expected = keys, spare(static_cast<size_t>(n), 0xdeadbeefull);
      std::sort(expected.begin(), expected.end());
      const uint64_t* sorted = loom::mask::sort_keys(keys.data(), spare.data(), n);
      REQUIRE((sorted == keys.data() || sorted == spare.data()));
      REQUIRE(std::vector<uint64_t>(sorted, sorted + n) == expected);
    }
  }
}

namespace {

// Values spread over the whole positive double range (subnormals included) and around 1.
std::vector<double> log_arguments() {
  std::mt19937_64 rng(7);
  std::vector<double> x;
  for (int i = 0; i < 20000; ++i) x.push_back(loom::portable::double_from_bits(rng() % 0x7ff0000000000000ull));
  for (int i = 0; i < 2000; ++i) x.push_back(std::ldexp(1.0, -30) * double(i) + 0.99999);
  for (double v : {1.0, 2.0, 0.5, 0x1p-25, 1.0 - 0x1p-24, 0x1.6a09e667f3bcdp+0, 0x1.6a09e667f3bcep+0, 4.9e-324, 1.7e308})
    x.push_back(v);
  return x;
}

}  // namespace

TEST_CASE("mask device logic: portable log and exp agree with libm within 4 ulp", "[mask]") {
  const double four_ulp = 4 * 0x1p-53;  // relative
  std::vector<double> ours, ref;
  for (double x : log_arguments()) {
    ours.push_back(loom::portable::log(x));
    ref.push_back(std::log(x));
  }
  loom::test::require_close(ours, ref, {0.0, four_ulp});
  REQUIRE(loom::portable::log(1.0) == 0.0);
  REQUIRE(loom::portable::log(0.0) == -INFINITY);
  REQUIRE(std::isnan(loom::portable::log(-1.0)));

  ours.clear();
  ref.clear();
  std::mt19937_64 rng(8);
  std::uniform_real_distribution<double> wide(-745.0, 709.7), narrow(-1.0, 1.0);
  for (int i = 0; i < 20000; ++i) {
    const double y = i % 2 ? wide(rng) : narrow(rng);
    ours.push_back(loom::portable::exp(y));
    ref.push_back(std::exp(y));
  }
  // 4 ulp relative; near the bottom a subnormal result has an absolute ulp of 2^-1074.
  loom::test::require_close(ours, ref, {4 * 0x1p-1074, four_ulp});
  REQUIRE(loom::portable::exp(0.0) == 1.0);
  REQUIRE(loom::portable::exp(-800.0) == 0.0);
  REQUIRE(loom::portable::exp(800.0) == INFINITY);
}

TEST_CASE("mask device logic: cos_two_pi agrees with a long-double cos within 4·2^-53", "[mask]") {
  const long double two_pi = 6.283185307179586476925286766559005768L;
  std::vector<double> ours, ref;
  std::mt19937 rng(9);
  for (int i = 0; i < 20000; ++i) {
    const double u = double(loom::philox::uniform_float(uint32_t(rng())));  // the draws gamma_draw feeds it
    ours.push_back(loom::portable::cos_two_pi(u));
    ref.push_back(double(std::cos(two_pi * (long double)u)));
  }
  for (int q = 0; q <= 64; ++q) {  // multiples of 1/64 turn, quadrant edges included
    ours.push_back(loom::portable::cos_two_pi(q / 64.0));
    ref.push_back(double(std::cos(two_pi * (long double)(q / 64.0))));
  }
  loom::test::require_close(ours, ref, {4 * 0x1p-53, 0.0});
  REQUIRE(loom::portable::cos_two_pi(0.0) == 1.0);
  REQUIRE(loom::portable::cos_two_pi(0.5) == -1.0);
  REQUIRE(loom::portable::cos_two_pi(0.25) == 0.0);
}

TEST_CASE("mask device logic: gamma_draw has the Gamma(alpha, 1) mean and variance", "[mask]") {
  // Gamma(alpha, 1): mean alpha, variance alpha. Sample mean within 5 sigma; sample variance within
  // 5 sigma of its own spread, sd(s²) ≈ sqrt((m4 − alpha²) / N), m4 = 3alpha² + 6alpha (4th central moment).
  const int N = 40000;
  for (double alpha : {0.1, 0.5, 1.0, 2.0, 30.0}) {
    INFO("alpha " << alpha);
    double sum = 0, sum2 = 0;
    for (int i = 0; i < N; ++i) {
      const double x = loom::mask::gamma_draw(alpha, 99, 3, uint32_t(i), i % 3);
      REQUIRE(x > 0);
      sum += x;
      sum2 += x * x;
    }
    const double mean = sum / N, var = sum2 / N - mean * mean;
    REQUIRE(std::abs(mean - alpha) <= 5 * std::sqrt(alpha / N));
    const double m4 = 3 * alpha * alpha + 6 * alpha;
    REQUIRE(std::abs(var - alpha) <= 5 * std::sqrt((m4 - alpha * alpha) / N));
  }
}

TEST_CASE("mask device logic: dirichlet_quota splits K exactly with caps at L", "[mask]") {
  for (int G : {1, 2, 3, 5}) {
    for (int64_t L : {1, 7, 225}) {
      const int64_t T = G * L;
      for (int64_t K : {int64_t(0), int64_t(1), T / 4, T - 1, T}) {
        std::vector<uint64_t> share(static_cast<size_t>(G));
        std::vector<int64_t> quota(static_cast<size_t>(G)), order(static_cast<size_t>(G));
        for (uint32_t b = 0; b < 20; ++b) {
          loom::mask::dirichlet_quota(0.3, G, L, K, 5, 6, b, share.data(), quota.data(), order.data());
          int64_t total = 0;
          for (int64_t q : quota) {
            REQUIRE(q >= 0);
            REQUIRE(q <= L);
            total += q;
          }
          REQUIRE(total == K);
        }
      }
    }
  }
}

TEST_CASE("mask device logic: flatten keeps kinds, groups, alphas and weights", "[mask]") {
  const Strategy mix = loom::mask::parse_strategy("mixture(disjoint(0.75):0.8, drop(s2,0.7):0.15, dirichlet(0.4,0.75):0.05)");
  const FlatStrategy flat = loom::mask::flatten(mix);
  REQUIRE(flat.mixture);
  REQUIRE(flat.members == 3);
  REQUIRE(flat.member[0].kind == Kind::disjoint);
  REQUIRE(flat.member[0].weight == 0.8);
  REQUIRE(flat.member[1].kind == Kind::drop);
  REQUIRE(flat.member[1].group == 1);
  REQUIRE(flat.member[1].ratio == 0.7);
  REQUIRE(flat.member[2].kind == Kind::dirichlet);
  REQUIRE(flat.member[2].alpha == 0.4);
  const FlatStrategy plain = loom::mask::flatten(Strategy::consistent(0.6));
  REQUIRE(!plain.mixture);
  REQUIRE(plain.members == 1);
  REQUIRE(plain.member[0].kind == Kind::consistent);
  std::vector<std::pair<Strategy, double>> many(FlatStrategy::kMaxMembers + 1, {Strategy::independent(0.75), 1.0});
  REQUIRE_THROWS_WITH(loom::mask::flatten(Strategy::mixture(many)), Catch::Contains("1 to 16 members"));
}

TEST_CASE("mask device logic: plan_sample on dirty scratch gives make_mask_plan's rows", "[mask]") {
  std::mt19937_64 rng(3);
  for (const char* spec : {"independent(0.75)", "consistent(0.6)", "disjoint(0.75)", "drop(s1,0.75)", "dirichlet(0.5,0.75)",
                           "mixture(disjoint(0.75):0.8, drop(s1,0.75):0.1, dirichlet(2,0.75):0.1)"}) {
    for (int64_t L : {1, 9, 50}) {
      const int G = 2;
      const int64_t T = G * L;
      const Strategy s = loom::mask::parse_strategy(spec);
      INFO(spec << " L " << L);
      const auto plan = loom::mask::make_mask_plan(s, 5, G, L, 11, 12, 13);
      const int64_t K = plan.visible;
      const FlatStrategy flat = loom::mask::flatten(s);
      std::vector<uint64_t> words(static_cast<size_t>(loom::mask::sample_scratch_words(G, L)));
      for (int64_t b = 0; b < 5; ++b) {
        for (uint64_t& w : words) w = rng();  // uninitialised memory on the device
        std::vector<int64_t> keep(static_cast<size_t>(K), -1), restore(static_cast<size_t>(T), -1);
        std::vector<float> mask(static_cast<size_t>(T), -1.0f);
        const int member = loom::mask::plan_sample(flat, G, L, K, 11, 12, 13 + uint32_t(b),
                                                   loom::mask::carve_sample_scratch(words.data(), G, L), keep.data(),
                                                   restore.data(), mask.data());
        REQUIRE(member == plan.member[size_t(b)]);
        for (int64_t k = 0; k < K; ++k) REQUIRE(keep[size_t(k)] == plan.ids_keep.at({b, k}));
        for (int64_t t = 0; t < T; ++t) {
          REQUIRE(restore[size_t(t)] == plan.ids_restore.at({b, t}));
          REQUIRE(mask[size_t(t)] == plan.mask.at({b, t}));
        }
      }
    }
  }
}
