// The counter-based RNG: Philox-4x32-10 against the published known-answer vectors, the documented
// element -> (counter, lane) mapping, reproducibility from (seed, offset), distribution checks with
// fixed seeds (moments, chi-square, Kolmogorov-Smirnov), exact unbiasedness of randint, randperm,
// bernoulli, and the stable argsort the MAE masking shuffles tokens with.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <set>
#include <vector>

#include "loom/core/random.hpp"
#include "support/check.hpp"

using loom::Generator;
using loom::Shape;
using loom::Tensor;
namespace philox = loom::philox;

namespace {

// Random123's kat_vectors, "philox4x32 10" lines: counter (4 words), key (2 words), result (4 words).
// Verified against the file in the DEShawResearch/random123 repository.
struct KnownAnswer {
  uint32_t counter[4];
  uint32_t key[2];
  uint32_t expected[4];
};
constexpr KnownAnswer kKnownAnswers[] = {
    {{0x00000000, 0x00000000, 0x00000000, 0x00000000},
     {0x00000000, 0x00000000},
     {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
    {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
     {0xffffffff, 0xffffffff},
     {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
    {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
     {0xa4093822, 0x299f31d0},
     {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
};

constexpr bool matches(const KnownAnswer& k) {
  const philox::Counter out = philox::philox4x32_10(
      philox::Counter{{k.counter[0], k.counter[1], k.counter[2], k.counter[3]}}, philox::Key{{k.key[0], k.key[1]}});
  for (int i = 0; i < 4; ++i)
    if (out.x[i] != k.expected[i]) return false;
  return true;
}
// The generator is constexpr, so the known answers are also checked at compile time (the same code
// a CUDA kernel will run).
static_assert(matches(kKnownAnswers[0]) && matches(kKnownAnswers[1]) && matches(kKnownAnswers[2]));

// Lane `lane` of the block holding counter `index` of the stream of `seed` (documented layout).
uint32_t lane_of(uint64_t seed, uint64_t index, int lane) { return philox::block(seed, index).x[lane]; }

template <class T>
std::vector<double> values(const Tensor<T>& t) {
  return loom::test::to_double(t);
}

double mean_of(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / double(v.size()); }
double variance_of(const std::vector<double>& v) {
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return s / double(v.size() - 1);
}

// Kolmogorov-Smirnov statistic of the sample against the continuous CDF `cdf`.
template <class Cdf>
double ks_statistic(std::vector<double> v, Cdf cdf) {
  std::sort(v.begin(), v.end());
  const double n = double(v.size());
  double d = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    const double f = cdf(v[i]);
    d = std::max({d, f - double(i) / n, double(i + 1) / n - f});
  }
  return d;
}

// Pearson chi-square of observed bin counts against equal expected counts.
double chi_square_uniform(const std::vector<int64_t>& counts) {
  double total = 0;
  for (int64_t c : counts) total += double(c);
  const double expected = total / double(counts.size());
  double chi2 = 0;
  for (int64_t c : counts) chi2 += (double(c) - expected) * (double(c) - expected) / expected;
  return chi2;
}

bool is_permutation_of_range(const std::vector<int64_t>& v) {
  std::vector<int64_t> sorted = v;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i)
    if (sorted[i] != int64_t(i)) return false;
  return true;
}

}  // namespace

TEST_CASE("philox4x32-10 reproduces Random123's known-answer vectors", "[random]") {
  for (const KnownAnswer& k : kKnownAnswers) {
    const philox::Counter out = philox::philox4x32_10(
        philox::Counter{{k.counter[0], k.counter[1], k.counter[2], k.counter[3]}},
        philox::Key{{k.key[0], k.key[1]}});
    for (int i = 0; i < 4; ++i) CHECK(out.x[i] == k.expected[i]);
  }
}

TEST_CASE("philox stream layout: key from the seed, counter index in the low words", "[random]") {
  // The seed 0xa4093822'299f31d0 split into words must give the third vector's key.
  const uint64_t seed = (uint64_t(0x299f31d0) << 32) | 0xa4093822u;
  const philox::Key key = philox::key_for_seed(seed);
  CHECK(key.x[0] == 0xa4093822u);
  CHECK(key.x[1] == 0x299f31d0u);
  const philox::Counter c = philox::counter_at((uint64_t(0x85a308d3) << 32) | 0x243f6a88u, 7);
  CHECK(c.x[0] == 0x243f6a88u);
  CHECK(c.x[1] == 0x85a308d3u);
  CHECK(c.x[2] == 7u);
  CHECK(c.x[3] == 0u);
  CHECK(philox::block(0, 0).x[0] == 0x6627e8d5u);

  // element -> (counter, lane)
  CHECK(philox::element_position(10, 0, 1).counter == 10);
  CHECK(philox::element_position(10, 5, 1).counter == 11);
  CHECK(philox::element_position(10, 5, 1).lane == 1);
  CHECK(philox::element_position(10, 5, 2).counter == 12);
  CHECK(philox::element_position(10, 5, 2).lane == 2);
  CHECK(philox::counters_for(0, 1) == 0);
  CHECK(philox::counters_for(1, 1) == 1);
  CHECK(philox::counters_for(4, 1) == 1);
  CHECK(philox::counters_for(5, 1) == 2);
  CHECK(philox::counters_for(5, 2) == 3);
}

TEST_CASE("uniform float and bf16 follow the documented lane mapping exactly", "[random]") {
  const uint64_t seed = 1234567, offset = 77;
  Generator gen(seed, offset);
  const int64_t n = 97;
  const Tensor<float> u = loom::rand<float>({n}, gen);
  CHECK(gen.offset() == offset + 25);  // ceil(97 / 4)
  const std::vector<float> got = u.to_vector();
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t x = lane_of(seed, offset + uint64_t(i) / 4, int(i % 4));
    const double expected = double(x >> 8) / 16777216.0;  // top 24 bits as a fraction
    REQUIRE(double(got[size_t(i)]) == expected);
  }
  // uniform(lo, hi) is the affine map of the same fractions.
  Generator again(seed, offset);
  const Tensor<float> v = loom::uniform<float>({n}, -2.0, 3.0, again);
  std::vector<double> ref;
  for (float f : got) ref.push_back(-2.0 + 5.0 * double(f));
  loom::test::require_close(v, ref, loom::test::tol_for<float>());
  // bf16 draws the same fractions and rounds them.
  Generator third(seed, offset);
  const Tensor<loom::bf16> b = loom::uniform<loom::bf16>({n}, -2.0, 3.0, third);
  loom::test::require_close(b, ref, loom::test::tol_for<loom::bf16>());
  CHECK(third.offset() == offset + 25);
}

TEST_CASE("uniform double uses two lanes per element, high word first", "[random]") {
  const uint64_t seed = 99, offset = 5;
  Generator gen(seed, offset);
  const int64_t n = 7;
  const std::vector<double> got = loom::rand<double>({n}, gen).to_vector();
  CHECK(gen.offset() == offset + 4);  // ceil(7 * 2 / 4)
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t counter = offset + uint64_t(i) / 2;
    const int lane = int(2 * (i % 2));
    const uint64_t bits = (uint64_t(lane_of(seed, counter, lane)) << 32) | lane_of(seed, counter, lane + 1);
    REQUIRE(got[size_t(i)] == std::ldexp(double(bits >> 11), -53));
  }
}

TEST_CASE("normal: Box-Muller on the documented lane pairs", "[random]") {
  const double two_pi = 2 * 3.14159265358979323846;
  SECTION("float: lanes (0,1) -> elements 4c, 4c+1; lanes (2,3) -> 4c+2, 4c+3") {
    const uint64_t seed = 2024, offset = 3;
    Generator gen(seed, offset);
    const int64_t n = 11;
    const Tensor<float> z = loom::normal<float>({n}, 1.5, 2.0, gen);
    CHECK(gen.offset() == offset + 3);
    std::vector<double> ref;
    for (int64_t i = 0; i < n; ++i) {
      const uint64_t counter = offset + uint64_t(i) / 4;
      const int first_lane = int(i % 4) / 2 * 2;
      const double u1 = (double(lane_of(seed, counter, first_lane) >> 8) + 1) / 16777216.0;
      const double u2 = double(lane_of(seed, counter, first_lane + 1) >> 8) / 16777216.0;
      const double r = std::sqrt(-2 * std::log(u1));
      const double zi = i % 2 == 0 ? r * std::cos(two_pi * u2) : r * std::sin(two_pi * u2);
      ref.push_back(1.5 + 2.0 * zi);
    }
    loom::test::require_close(z, ref, loom::test::tol_for<float>());
  }
  SECTION("double: lanes (0,1) radius, lanes (2,3) angle -> elements 2c, 2c+1") {
    const uint64_t seed = 7, offset = 0;
    Generator gen(seed, offset);
    const int64_t n = 5;
    const Tensor<double> z = loom::randn<double>({n}, gen);
    CHECK(gen.offset() == 3);
    std::vector<double> ref;
    for (int64_t i = 0; i < n; ++i) {
      const uint64_t counter = uint64_t(i) / 2;
      const uint64_t a = (uint64_t(lane_of(seed, counter, 0)) << 32) | lane_of(seed, counter, 1);
      const uint64_t b = (uint64_t(lane_of(seed, counter, 2)) << 32) | lane_of(seed, counter, 3);
      const double u1 = std::ldexp(double((a >> 11) + 1), -53);
      const double u2 = std::ldexp(double(b >> 11), -53);
      const double r = std::sqrt(-2 * std::log(u1));
      ref.push_back(i % 2 == 0 ? r * std::cos(two_pi * u2) : r * std::sin(two_pi * u2));
    }
    loom::test::require_close(z, ref, loom::test::tol_for<double>());
  }
}

TEST_CASE("draws are reproducible from (seed, offset) and never overlap", "[random]") {
  Generator gen(42);
  const std::vector<float> a = loom::rand<float>({10}, gen).to_vector();  // counters 0..2
  CHECK(gen.offset() == 3);
  const std::vector<float> b = loom::rand<float>({2, 3}, gen).to_vector();  // counters 3..4
  CHECK(gen.offset() == 5);
  Generator fresh(42);
  const std::vector<float> all = loom::rand<float>({40}, fresh).to_vector();
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == all[i]);
  for (size_t i = 0; i < b.size(); ++i) CHECK(b[i] == all[12 + i]);  // starts at counter 3
  // Any draw can be recomputed by positioning a generator at its offset.
  Generator positioned(42, 3);
  CHECK(loom::rand<float>({2, 3}, positioned).to_vector() == b);
  // Copies continue independently from the same position.
  Generator copy = gen;
  CHECK(loom::randn<float>({9}, copy).to_vector() == loom::randn<float>({9}, gen).to_vector());
  // manual_seed restarts at offset 0.
  gen.manual_seed(42);
  CHECK(gen.offset() == 0);
  CHECK(loom::rand<float>({10}, gen).to_vector() == a);
  // Another seed gives another stream.
  Generator other(43);
  CHECK(loom::rand<float>({10}, other).to_vector() != a);
  // The default generator follows loom::manual_seed.
  loom::manual_seed(42);
  CHECK(loom::rand<float>({10}).to_vector() == a);
  CHECK(loom::default_generator().offset() == 3);
}

TEST_CASE("random content does not depend on the thread count", "[random]") {
  const int threads = loom::num_threads();
  const Shape shape{301, 257};  // large enough to be split over threads
  loom::set_num_threads(1);
  Generator g1(5);
  const auto u1 = loom::rand<float>(shape, g1).to_vector();
  const auto n1 = loom::randn<double>(shape, g1).to_vector();
  const auto i1 = loom::randint(shape, 0, 1000003, g1).to_vector();
  loom::set_num_threads(3);
  Generator g3(5);
  const auto u3 = loom::rand<float>(shape, g3).to_vector();
  const auto n3 = loom::randn<double>(shape, g3).to_vector();
  const auto i3 = loom::randint(shape, 0, 1000003, g3).to_vector();
  loom::set_num_threads(threads);
  CHECK(u1 == u3);
  CHECK(n1 == n3);
  CHECK(i1 == i3);
}

TEST_CASE("uniform: moments, chi-square and Kolmogorov-Smirnov with a fixed seed", "[random]") {
  const int64_t n = 200000;
  Generator gen(31337);
  const std::vector<double> u = values(loom::rand<float>({n}, gen));
  const auto [lo, hi] = std::minmax_element(u.begin(), u.end());
  CHECK(*lo >= 0.0);
  CHECK(*hi < 1.0);
  // Mean 1/2 and variance 1/12, each within 5 standard errors.
  CHECK(std::abs(mean_of(u) - 0.5) < 5 * std::sqrt(1.0 / 12 / double(n)));
  CHECK(std::abs(variance_of(u) - 1.0 / 12) < 5 * std::sqrt(1.0 / 180 / double(n)));
  // 100 equal bins: chi-square with 99 degrees of freedom; 99.9% quantile is 148.2.
  std::vector<int64_t> bins(100, 0);
  for (double x : u) ++bins[size_t(x * 100)];
  CHECK(chi_square_uniform(bins) < 148.2);
  // KS against U(0, 1): the 99.9% critical value is 1.949 / sqrt(n).
  CHECK(ks_statistic(u, [](double x) { return x; }) < 1.949 / std::sqrt(double(n)));

  // uniform(lo, hi) in double: bounds and KS on the affine CDF.
  const std::vector<double> w = values(loom::uniform<double>({n}, -3.0, 5.0, gen));
  CHECK(*std::min_element(w.begin(), w.end()) >= -3.0);
  CHECK(*std::max_element(w.begin(), w.end()) < 5.0);
  CHECK(ks_statistic(w, [](double x) { return (x + 3) / 8; }) < 1.949 / std::sqrt(double(n)));
}

TEST_CASE("uniform stays below hi after rounding to the element type", "[random]") {
  // 24-bit fractions rounded to bf16's 8 bits would reach 1.0 about once in 512 draws.
  Generator gen(8);
  const std::vector<double> b = values(loom::rand<loom::bf16>({100000}, gen));
  CHECK(*std::min_element(b.begin(), b.end()) >= 0.0);
  CHECK(*std::max_element(b.begin(), b.end()) < 1.0);
  CHECK(std::abs(mean_of(b) - 0.5) < 0.01);
  // A range far from zero: float spacing near 1e7 is 1, so lo + (hi - lo) u rounds up to hi often.
  const std::vector<double> f = values(loom::uniform<float>({100000}, 1e7, 1e7 + 4, gen));
  CHECK(*std::min_element(f.begin(), f.end()) >= 1e7);
  CHECK(*std::max_element(f.begin(), f.end()) < 1e7 + 4);
  const std::vector<double> neg = values(loom::uniform<loom::bf16>({100000}, -1.0, 0.0, gen));
  CHECK(*std::max_element(neg.begin(), neg.end()) < 0.0);
  // lo == hi is a constant.
  for (double x : values(loom::uniform<float>({7}, 2.5, 2.5, gen))) CHECK(x == 2.5);
}

TEST_CASE("normal: mean, variance and KS with a fixed seed", "[random]") {
  const int64_t n = 200000;
  Generator gen(2718);
  const auto check_standard = [&](const std::vector<double>& z, double mean, double stddev) {
    std::vector<double> s;
    for (double x : z) s.push_back((x - mean) / stddev);
    CHECK(std::abs(mean_of(s)) < 5 / std::sqrt(double(n)));
    CHECK(std::abs(variance_of(s) - 1) < 5 * std::sqrt(2.0 / double(n)));
    CHECK(ks_statistic(s, [](double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }) <
          1.949 / std::sqrt(double(n)));
  };
  check_standard(values(loom::randn<float>({n}, gen)), 0, 1);
  check_standard(values(loom::randn<double>({n}, gen)), 0, 1);
  check_standard(values(loom::normal<float>({400, 500}, -3.0, 0.5, gen)), -3.0, 0.5);
  // bf16 rounding (relative 2^-8) is far below what these checks resolve... except the KS
  // statistic, which sees the 8-bit grid; check the moments only.
  const std::vector<double> b = values(loom::normal<loom::bf16>({n}, 0.0, 1.0, gen));
  CHECK(std::abs(mean_of(b)) < 5 / std::sqrt(double(n)));
  CHECK(std::abs(variance_of(b) - 1) < 5 * std::sqrt(2.0 / double(n)) + 0.01);
  // Lanes are not reused across elements: the cos and sin outputs of one pair are uncorrelated.
  const std::vector<double> z = values(loom::randn<float>({n}, gen));
  double cross = 0;
  for (int64_t i = 0; i + 1 < n; i += 2) cross += z[size_t(i)] * z[size_t(i + 1)];
  CHECK(std::abs(cross / double(n / 2)) < 5 / std::sqrt(double(n / 2)));
}

TEST_CASE("bernoulli: frequency, edge probabilities, lane threshold", "[random]") {
  const int64_t n = 100000;
  Generator gen(11);
  for (double p : {0.1, 0.5, 0.75}) {
    const Tensor<uint8_t> b = loom::bernoulli({n}, p, gen);
    double ones = 0;
    for (uint8_t x : b.to_vector()) {
      REQUIRE((x == 0 || x == 1));
      ones += x;
    }
    CHECK(std::abs(ones / double(n) - p) < 5 * std::sqrt(p * (1 - p) / double(n)));
  }
  for (uint8_t x : loom::bernoulli({1000}, 0.0, gen).to_vector()) REQUIRE(x == 0);
  for (uint8_t x : loom::bernoulli({1000}, 1.0, gen).to_vector()) REQUIRE(x == 1);
  // Element i is 1 exactly when its lane is below p * 2^32.
  Generator at(11, 9);
  const std::vector<uint8_t> b = loom::bernoulli({7, 3}, 0.3, at).to_vector();
  for (size_t i = 0; i < b.size(); ++i)
    REQUIRE(b[i] == (double(lane_of(11, 9 + i / 4, int(i % 4))) < 0.3 * 4294967296.0 ? 1 : 0));
}

TEST_CASE("randint: range, exact unbiasedness, 32- and 64-bit paths", "[random]") {
  Generator gen(123);
  SECTION("small range: every value, chi-square") {
    const std::vector<int64_t> v = loom::randint({70000}, -3, 4, gen).to_vector();
    std::vector<int64_t> counts(7, 0);
    for (int64_t x : v) {
      REQUIRE(x >= -3);
      REQUIRE(x < 4);
      ++counts[size_t(x + 3)];
    }
    CHECK(chi_square_uniform(counts) < 22.46);  // 6 degrees of freedom, 99.9%
  }
  SECTION("range 3*2^30: a plain multiply-shift would give residue 0 mod 3 half of the time") {
    // floor(x * 3 * 2^30 / 2^32) = floor(3x / 4) hits multiples of 3 twice per four x; rejection of
    // a quarter of the draws (redrawn from the retry streams) makes the residues equally likely.
    const int64_t n = 60000;
    const std::vector<int64_t> v = loom::randint({n}, 0, int64_t(3) << 30, gen).to_vector();
    std::vector<int64_t> residues(3, 0);
    for (int64_t x : v) {
      REQUIRE(x >= 0);
      REQUIRE(x < (int64_t(3) << 30));
      ++residues[size_t(x % 3)];
    }
    CHECK(chi_square_uniform(residues) < 13.82);  // 2 degrees of freedom, 99.9%
  }
  SECTION("range 3*2^62 on the 64-bit path, residues likewise") {
    const int64_t lo = -(int64_t(3) << 61), hi = int64_t(3) << 61;
    const int64_t n = 60000;
    Generator g(77);
    const std::vector<int64_t> v = loom::randint({n}, lo, hi, g).to_vector();
    CHECK(g.offset() == uint64_t(n) / 2);  // two lanes per element
    std::vector<int64_t> residues(3, 0);
    bool negative = false, positive = false;
    for (int64_t x : v) {
      REQUIRE(x >= lo);
      REQUIRE(x < hi);
      negative |= x < 0;
      positive |= x > 0;
      ++residues[size_t((uint64_t(x) - uint64_t(lo)) % 3)];
    }
    CHECK(negative);
    CHECK(positive);
    CHECK(chi_square_uniform(residues) < 13.82);
  }
  SECTION("int32 results, full int32 range, reproducible") {
    Generator a(5), b(5);
    const Tensor<int32_t> x = loom::randint<int32_t>({97}, std::numeric_limits<int32_t>::min(),
                                                      int64_t(std::numeric_limits<int32_t>::max()) + 1, a);
    CHECK(x.to_vector() == loom::randint<int32_t>({97}, std::numeric_limits<int32_t>::min(),
                                                  int64_t(std::numeric_limits<int32_t>::max()) + 1, b)
                               .to_vector());
    CHECK(a.offset() == 25);
  }
  SECTION("range of one") {
    for (int64_t x : loom::randint({9}, 5, 6, gen).to_vector()) CHECK(x == 5);
  }
}

TEST_CASE("randperm: permutations, uniform over orderings, reproducible", "[random]") {
  Generator gen(2);
  for (int64_t n : {0, 1, 2, 7, 97, 1000}) {
    const Tensor<int64_t> p = loom::randperm(n, gen);
    CHECK(p.shape() == Shape{n});
    CHECK(is_permutation_of_range(p.to_vector()));
  }
  // All 6 orderings of 3 elements about equally often.
  std::vector<int64_t> counts(6, 0);
  const int draws = 12000;
  for (int d = 0; d < draws; ++d) {
    const std::vector<int64_t> p = loom::randperm(3, gen).to_vector();
    ++counts[size_t(p[0] * 2 + (p[1] > p[2] ? 1 : 0))];
  }
  CHECK(chi_square_uniform(counts) < 20.52);  // 5 degrees of freedom, 99.9%
  // Each position of a longer permutation takes each value about equally often.
  std::vector<int64_t> first(10, 0);
  for (int d = 0; d < 10000; ++d) ++first[size_t(loom::randperm(10, gen).to_vector()[0])];
  CHECK(chi_square_uniform(first) < 27.88);  // 9 degrees of freedom, 99.9%
  Generator a(9, 4), b(9, 4);
  CHECK(loom::randperm(225, a).to_vector() == loom::randperm(225, b).to_vector());
  CHECK(a.offset() == 4 + 57);
}

TEST_CASE("argsort is stable, puts NaN last, works along any dim and on views", "[random][argsort]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  // Reference position of element i: number of elements sorting before it, ties broken by index.
  auto reference_order = [](const std::vector<double>& v, bool descending) {
    std::vector<int64_t> order(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      size_t rank = 0;
      for (size_t j = 0; j < v.size(); ++j) {
        const bool ni = std::isnan(v[i]), nj = std::isnan(v[j]);
        bool before;
        if (ni || nj)
          before = descending ? (nj && !ni) : (ni && !nj);
        else
          before = descending ? v[j] > v[i] : v[j] < v[i];
        const bool tie = (ni && nj) || (!ni && !nj && v[j] == v[i]);
        if (before || (tie && j < i)) ++rank;
      }
      order[rank] = int64_t(i);
    }
    return order;
  };
  const std::vector<double> row{3, 1, nan, 2, 1, 3, -0.5, nan, 1};
  const Tensor<double> x = Tensor<double>::from_vector({9}, row);
  CHECK(loom::argsort(x).to_vector() == reference_order(row, false));
  CHECK(loom::argsort(x, 0, true).to_vector() == reference_order(row, true));

  // [4, 7] float with many ties, sorted along dim 0 on a transposed view.
  Generator gen(3);
  const Tensor<int64_t> codes = loom::randint({7, 4}, 0, 3, gen);
  const Tensor<float> base = codes.to<float>();  // [7, 4]
  const Tensor<float> t = base.transpose(0, 1);  // [4, 7], non-contiguous
  const Tensor<int64_t> by_row = loom::argsort(t, 1);
  const Tensor<int64_t> by_col = loom::argsort(t, 0);
  REQUIRE(by_row.shape() == Shape{4, 7});
  REQUIRE(by_col.shape() == Shape{4, 7});
  for (int64_t r = 0; r < 4; ++r) {
    std::vector<double> v;
    for (int64_t c = 0; c < 7; ++c) v.push_back(t.at({r, c}));
    const auto ref = reference_order(v, false);
    for (int64_t c = 0; c < 7; ++c) CHECK(by_row.at({r, c}) == ref[size_t(c)]);
  }
  for (int64_t c = 0; c < 7; ++c) {
    std::vector<double> v;
    for (int64_t r = 0; r < 4; ++r) v.push_back(t.at({r, c}));
    const auto ref = reference_order(v, false);
    for (int64_t r = 0; r < 4; ++r) CHECK(by_col.at({r, c}) == ref[size_t(r)]);
  }
  // bf16 and integer inputs, a rank-0 input, an empty dimension.
  CHECK(loom::argsort(Tensor<loom::bf16>::from_vector({3}, {loom::bf16(2.f), loom::bf16(-1.f), loom::bf16(2.f)}))
            .to_vector() == std::vector<int64_t>{1, 0, 2});
  CHECK(loom::argsort(Tensor<int32_t>::from_vector({4}, {5, -2, 5, 0}), 0, true).to_vector() ==
        std::vector<int64_t>{0, 2, 3, 1});
  CHECK(loom::argsort(Tensor<float>::scalar(1.f)).item() == 0);
  CHECK(loom::argsort(Tensor<float>::zeros({3, 0})).shape() == Shape{3, 0});
  REQUIRE_THROWS_AS(loom::argsort(x, 1), loom::Error);
  REQUIRE_THROWS_WITH(loom::argsort(x, 1), Catch::Contains("argsort") && Catch::Contains("out of range"));
}

TEST_CASE("argsort of uniform noise: per-row shuffles and their inverse (the MAE recipe)", "[random][argsort]") {
  Generator gen(17);
  const int64_t batch = 5, tokens = 225;
  const Tensor<int64_t> ids_shuffle = loom::random_shuffle_indices({batch, tokens}, 1, gen);  // [B, L]
  const Tensor<int64_t> ids_restore = loom::argsort(ids_shuffle, 1);                          // [B, L]
  // The same noise drawn explicitly gives the same shuffle.
  Generator again(17);
  const Tensor<float> noise = loom::rand<float>({batch, tokens}, again);  // [B, L]
  CHECK(loom::argsort(noise, 1).to_vector() == ids_shuffle.to_vector());
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<int64_t> row;
    for (int64_t l = 0; l < tokens; ++l) row.push_back(ids_shuffle.at({b, l}));
    CHECK(is_permutation_of_range(row));
    for (int64_t l = 0; l + 1 < tokens; ++l)
      CHECK(noise.at({b, ids_shuffle.at({b, l})}) <= noise.at({b, ids_shuffle.at({b, l + 1})}));
    for (int64_t l = 0; l < tokens; ++l) CHECK(ids_shuffle.at({b, ids_restore.at({b, l})}) == l);
  }
  // Rows differ from each other.
  CHECK(ids_shuffle.select(0, 0).to_vector() != ids_shuffle.select(0, 1).to_vector());
}

TEST_CASE("in-place fills write through views in row-major order", "[random]") {
  Tensor<double> w = Tensor<double>::zeros({4, 6});
  const Tensor<double> view = w.transpose(0, 1).narrow(0, 1, 3);  // [3, 4], non-contiguous
  Generator a(50), b(50);
  loom::uniform_(view, -1.0, 1.0, a);
  const std::vector<double> expected = loom::uniform<double>({3, 4}, -1.0, 1.0, b).to_vector();
  loom::test::require_close(view, expected, loom::test::tol_for<double>());
  // Outside the view nothing changed.
  for (int64_t r = 0; r < 4; ++r) {
    CHECK(w.at({r, 0}) == 0.0);
    for (int64_t c = 4; c < 6; ++c) CHECK(w.at({r, c}) == 0.0);
  }
  Tensor<float> z = Tensor<float>::zeros({7});
  Generator c(51), d(51);
  loom::normal_(z, 0.0, 2.0, c);
  CHECK(z.to_vector() == loom::normal<float>({7}, 0.0, 2.0, d).to_vector());
  // A leaf that requires grad is refused while recording, allowed under NoGradGuard.
  Tensor<float> leaf = Tensor<float>::zeros({3}).requires_grad_();
  REQUIRE_THROWS_AS(loom::uniform_(leaf, 0.0, 1.0), loom::Error);
  {
    loom::NoGradGuard guard;
    loom::uniform_(leaf, 0.0, 1.0);
  }
}

TEST_CASE("random: argument errors name the op and the shape", "[random][errors]") {
  Generator gen(1);
  REQUIRE_THROWS_WITH(loom::uniform<float>({2, 3}, 1.0, 0.0, gen),
                      Catch::Contains("uniform") && Catch::Contains("[2, 3]"));
  REQUIRE_THROWS_AS(loom::uniform<float>({2}, 0.0, INFINITY, gen), loom::Error);
  REQUIRE_THROWS_WITH(loom::normal<double>({4}, 0.0, -1.0, gen), Catch::Contains("normal") && Catch::Contains("[4]"));
  REQUIRE_THROWS_WITH(loom::bernoulli({5}, 1.5, gen), Catch::Contains("bernoulli") && Catch::Contains("[5]"));
  REQUIRE_THROWS_AS(loom::bernoulli({5}, -0.1, gen), loom::Error);
  REQUIRE_THROWS_WITH(loom::randint({3}, 4, 4, gen), Catch::Contains("randint") && Catch::Contains("[3]"));
  REQUIRE_THROWS_WITH(loom::randint<int32_t>({3}, 0, int64_t(1) << 40, gen),
                      Catch::Contains("randint") && Catch::Contains("int32"));
  REQUIRE_THROWS_WITH(loom::randperm(-1, gen), Catch::Contains("randperm"));
  REQUIRE_THROWS_AS(loom::rand<float>({-1, 2}, gen), loom::Error);
  // Failed argument checks consume no counters.
  CHECK(gen.offset() == 0);
}
