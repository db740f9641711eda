// Synthetic Earth (data/synthetic.hpp): spec parsing, determinism, the label rule, clouds, speckle
// statistics, value ranges, class separability per sensor, speed.
#include <catch2/catch.hpp>

#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "loom/data/dataset.hpp"
#include "loom/data/synthetic.hpp"
#include "support/check.hpp"

using loom::Error;
using loom::data::SyntheticEarth;
using loom::data::SyntheticOptions;
namespace synthetic = loom::data::synthetic;

namespace {

SyntheticOptions small_options(int64_t size = 48, double clouds = 0.3, uint64_t seed = 7) {
  SyntheticOptions o;
  o.train = 400, o.val = 50, o.test = 50;
  o.size = size;
  o.clouds = clouds;
  o.seed = seed;
  return o;
}

bool same_bytes(const loom::Tensor<float>& a, const loom::Tensor<float>& b) {
  if (a.defined() != b.defined()) return false;
  if (!a.defined()) return true;
  if (!(a.shape() == b.shape())) return false;
  const auto va = a.to_vector(), vb = b.to_vector();
  return std::memcmp(va.data(), vb.data(), va.size() * sizeof(float)) == 0;
}

bool same_sample(const loom::data::Sample& a, const loom::data::Sample& b) {
  return same_bytes(a.s1, b.s1) && same_bytes(a.s2, b.s2) && same_bytes(a.labels, b.labels) && a.name() == b.name();
}

[[maybe_unused]] double thread_cpu_seconds() {  // unused in debug builds
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

}  // namespace

TEST_CASE("synthetic spec: defaults, options, splits", "[data][synthetic]") {
  const auto ds = loom::data::open_dataset("synthetic");
  CHECK(ds->size() == 2048);
  CHECK(ds->num_classes() == 19);
  CHECK(ds->name(5) == "synthetic_train_000005");
  const auto* earth = dynamic_cast<const SyntheticEarth*>(ds.get());
  REQUIRE(earth != nullptr);
  CHECK(earth->options().size == 120);
  CHECK(earth->options().seed == 7);
  CHECK(earth->options().clouds == Approx(0.3));

  const auto val = loom::data::open_dataset("synthetic:train=10,val=3,test=4,size=33,seed=5,clouds=0.5,split=val");
  CHECK(val->size() == 3);
  CHECK(val->name(2) == "synthetic_val_000002");
  const auto s = val->get(1);
  CHECK(s.s1.shape() == loom::Shape{2, 33, 33});
  CHECK(s.s2.shape() == loom::Shape{12, 33, 33});
  CHECK(s.labels.shape() == loom::Shape{19});
  CHECK(s.s2_bands == loom::data::s2_band_names());

  // Options may also come as a query; modalities select the sensors.
  const auto q = loom::data::open_dataset("synthetic:train=4?size=16&modalities=s1");
  CHECK(q->size() == 4);
  const auto s1_only = q->get(0);
  CHECK(s1_only.has_s1());
  CHECK_FALSE(s1_only.has_s2());
  CHECK(loom::data::open_dataset("synthetic:test=7,split=test")->size() == 7);
}

TEST_CASE("synthetic spec: errors name the option", "[data][synthetic]") {
  using loom::data::open_dataset;
  REQUIRE_THROWS_WITH(open_dataset("synthetic:trian=3"),
                      Catch::Contains("unknown option trian") && Catch::Contains("known: train"));
  REQUIRE_THROWS_WITH(open_dataset("synthetic:size=abc"), Catch::Contains("size=abc is not an integer"));
  REQUIRE_THROWS_WITH(open_dataset("synthetic:clouds=x"), Catch::Contains("clouds=x is not a number"));
  REQUIRE_THROWS_WITH(open_dataset("synthetic:clouds=1.5"), Catch::Contains("clouds=1.5 outside [0, 1]"));
  REQUIRE_THROWS_WITH(open_dataset("synthetic:size=4"), Catch::Contains("size=4 outside [8, 4096]"));
  REQUIRE_THROWS_WITH(open_dataset("synthetic:split=dev"), Catch::Contains("split=dev"));
  REQUIRE_THROWS_WITH(open_dataset("synthetic:train=-1"), Catch::Contains("must not be negative"));
  REQUIRE_THROWS_WITH(open_dataset("synthetic:size"), Catch::Contains("\"size\" is not key=value"));
  REQUIRE_THROWS_WITH(open_dataset("synthetic:size=8,size=9"), Catch::Contains("option size given twice"));
  REQUIRE_THROWS_WITH(open_dataset("synthetic:size=8?size=9"), Catch::Contains("option size given twice"));
  REQUIRE_THROWS_WITH(open_dataset("synthetic:size=16?colour=1"), Catch::Contains("unknown option colour"));
  REQUIRE_THROWS_WITH(open_dataset("synthetic:modalities=s3"), Catch::Contains("modalities=s3"));
  REQUIRE_THROWS_WITH(open_dataset("synthetc"), Catch::Contains("unknown scheme \"synthetc\"") && Catch::Contains("synthetic["));
  const auto ds = open_dataset("synthetic:train=3,size=16");
  REQUIRE_THROWS_AS(ds->get(3), Error);
  REQUIRE_THROWS_WITH(ds->name(-1), Catch::Contains("index -1 out of range"));
}

TEST_CASE("synthetic: sample i is a pure function of (seed, split, i)", "[data][synthetic]") {
  const SyntheticEarth a(small_options()), b(small_options());
  // Same seed: identical bytes, generated in a different order and on other threads.
  constexpr int n = 12;
  std::vector<loom::data::Sample> forward(n), threaded(n);
  for (int i = 0; i < n; ++i) forward[size_t(i)] = a.get(i);
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t)
    threads.emplace_back([&, t] {
      for (int i = n - 1 - t; i >= 0; i -= 3) threaded[size_t(i)] = b.get(i);
    });
  for (auto& t : threads) t.join();
  for (int i = 0; i < n; ++i) {
    INFO("sample " << i);
    CHECK(same_sample(forward[size_t(i)], threaded[size_t(i)]));
    CHECK(same_sample(forward[size_t(i)], a.get(i)));  // and again, later
  }
  // Different seeds, splits and indices differ.
  const SyntheticEarth other_seed(small_options(48, 0.3, 8));
  SyntheticOptions val_options = small_options();
  val_options.split = "val";
  const SyntheticEarth val(val_options);
  CHECK_FALSE(same_bytes(a.get(0).s2, other_seed.get(0).s2));
  CHECK_FALSE(same_bytes(a.get(0).s1, other_seed.get(0).s1));
  CHECK_FALSE(same_bytes(a.get(0).s2, val.get(0).s2));
  CHECK_FALSE(same_bytes(a.get(0).s2, a.get(1).s2));
  // The split size does not change a sample.
  SyntheticOptions bigger = small_options();
  bigger.train = 1000;
  CHECK(same_sample(SyntheticEarth(bigger).get(7), a.get(7)));
}

TEST_CASE("synthetic: labels are the classes covering at least 5% of the land-cover map", "[data][synthetic]") {
  const SyntheticEarth earth(small_options(48));
  std::vector<int> label_count(19, 0);
  int multi_label = 0;
  for (int64_t i = 0; i < 300; ++i) {
    const synthetic::Scene scene = earth.scene(i);
    REQUIRE(scene.land.cls.size() == size_t(48 * 48));
    // Independent count over the map.
    std::vector<double> share(19, 0.0);
    for (uint8_t c : scene.land.cls) {
      REQUIRE(c < 19);
      share[c] += 1.0 / double(scene.land.cls.size());
    }
    std::vector<double> expected(19);
    int present = 0;
    for (int c = 0; c < 19; ++c) {
      // 5% of 2304 pixels is 115.2: no class sits on the boundary, so rounding cannot matter here.
      expected[size_t(c)] = share[size_t(c)] >= 0.05 ? 1.0 : 0.0;
      present += int(expected[size_t(c)]);
      label_count[size_t(c)] += int(expected[size_t(c)]);
    }
    multi_label += present > 1;
    REQUIRE(present >= 1);
    INFO("sample " << i);
    loom::test::require_close(earth.get(i).labels, expected, {0, 0});
  }
  // The maps use all 19 classes; small patches cover little ground, so many have one label.
  for (int c = 0; c < 19; ++c) {
    INFO("class " << c << " (" << loom::data::kBigEarthNet19Classes[size_t(c)] << ")");
    CHECK(label_count[size_t(c)] >= 3);
  }
  CHECK(multi_label > 60);
  // At BigEarthNet's 120 x 120 px (1.2 km) nearly every patch is multi-label, ~3 labels on average
  // (BigEarthNet-19: 2.9).
  const SyntheticEarth full(small_options(120));
  double labels = 0;
  int multi = 0;
  for (int64_t i = 0; i < 40; ++i) {
    int present = 0;
    for (float v : full.get(i).labels.to_vector()) present += v > 0;
    labels += present;
    multi += present > 1;
  }
  CHECK(multi >= 32);
  CHECK(labels / 40 > 2.0);
  CHECK(labels / 40 < 5.0);
}

TEST_CASE("synthetic: the label threshold is exactly 5% of the pixels", "[data][synthetic]") {
  std::array<int64_t, 19> pixels{};
  pixels[2] = 95, pixels[4] = 5, pixels[9] = 0;  // 100 pixels: 5 of them is exactly 5%
  loom::test::require_close(synthetic::labels_from_class_pixels(pixels),
                            {0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, {0, 0});
  pixels[4] = 4, pixels[2] = 96;  // 4%: not a label
  loom::test::require_close(synthetic::labels_from_class_pixels(pixels),
                            {0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, {0, 0});
}

TEST_CASE("synthetic: clouds hide S2 in about the configured share of images", "[data][synthetic]") {
  const int n = 300;
  for (double share : {0.0, 0.3, 1.0}) {
    SyntheticOptions o = small_options(40, share);
    o.modalities = loom::data::Modalities::s2;
    const SyntheticEarth earth(o);
    int flagged = 0, bright = 0;
    for (int64_t i = 0; i < n; ++i) {
      const synthetic::Scene scene = earth.scene(i);
      // From the data alone: no clear surface reaches a blue reflectance of 0.3, opaque cloud does.
      const size_t pixels = 40 * 40;
      int64_t cloud_pixels = 0;
      const std::vector<float> b02 = earth.get(i).s2.select(0, 1).contiguous().to_vector();
      for (float v : b02) cloud_pixels += v > 3000.0f;
      const bool seen = double(cloud_pixels) >= 0.005 * double(pixels);
      INFO("sample " << i << " with clouds=" << share);
      CHECK(seen == scene.cloudy);
      flagged += scene.cloudy;
      bright += seen;
    }
    // Binomial(n, share): within 4 standard deviations.
    const double sd = std::sqrt(share * (1 - share) / n);
    CHECK(std::abs(double(bright) / n - share) <= 4 * sd + 1e-12);
    CHECK(flagged == bright);
  }
}

TEST_CASE("synthetic: SAR does not see the clouds", "[data][synthetic]") {
  const SyntheticEarth clear(small_options(40, 0.0)), cloudy(small_options(40, 1.0));
  for (int64_t i = 0; i < 5; ++i) {
    const auto a = clear.get(i), b = cloudy.get(i);
    CHECK(same_bytes(a.s1, b.s1));
    CHECK(same_bytes(a.labels, b.labels));
    CHECK_FALSE(same_bytes(a.s2, b.s2));
  }
}

TEST_CASE("synthetic: S1 speckle is unit-mean gamma with ENL 4.4", "[data][synthetic]") {
  const SyntheticEarth earth(small_options(120));
  // (a) Intensity over its speckle-free value, over every pixel: mean 1, variance 1/ENL.
  double sum = 0, sum2 = 0, count = 0;
  // (b) Homogeneous regions (pixels with one and the same speckle-free backscatter, e.g. a lake):
  // their linear intensity has variance / mean^2 = 1/ENL.
  double pooled_ratio = 0, pooled_weight = 0;
  for (int64_t i = 0; i < 6; ++i) {
    const synthetic::Scene scene = earth.scene(i);
    const size_t n = scene.s1.size();
    std::map<float, std::vector<double>> regions;
    for (size_t k = 0; k < n; ++k) {
      const double intensity = std::pow(10.0, scene.s1[k] / 10.0);
      const double clean = std::pow(10.0, scene.s1_clean_db[k] / 10.0);
      const double z = intensity / clean;
      sum += z, sum2 += z * z, count += 1;
      regions[scene.s1_clean_db[k]].push_back(intensity);
    }
    for (const auto& [level, values] : regions) {
      if (values.size() < 400) continue;
      double m = 0, v = 0;
      for (double x : values) m += x;
      m /= double(values.size());
      for (double x : values) v += (x - m) * (x - m);
      v /= double(values.size() - 1);
      pooled_ratio += double(values.size()) * v / (m * m);
      pooled_weight += double(values.size());
    }
  }
  const double mean = sum / count, variance = sum2 / count - mean * mean;
  const double enl = loom::data::synthetic::kSpeckleLooks;
  // 86400 values: the standard errors are 0.002 (mean) and ~0.6% (variance); bounds are 5 x that.
  CHECK(std::abs(mean - 1.0) < 0.01);
  CHECK(std::abs(variance * enl - 1.0) < 0.03);
  REQUIRE(pooled_weight >= 4000);  // enough homogeneous pixels were found
  CHECK(std::abs(pooled_ratio / pooled_weight * enl - 1.0) < 0.08);
}

TEST_CASE("synthetic: values in physical units and normalized ranges", "[data][synthetic]") {
  const SyntheticEarth earth(small_options(64, 0.0));
  const loom::data::BandStatistics stats = loom::data::bigearthnet_statistics();
  std::vector<double> sum(14, 0), sum2(14, 0);
  double count = 0;
  for (int64_t i = 0; i < 40; ++i) {
    const loom::data::Sample raw = earth.get(i);
    for (float v : raw.s1.to_vector()) {
      REQUIRE(std::isfinite(v));
      REQUIRE(v > -60.0f);
      REQUIRE(v < 25.0f);
    }
    for (float v : raw.s2.to_vector()) {
      REQUIRE(v >= 0.0f);
      REQUIRE(v <= 10000.0f);
      REQUIRE(v == std::round(v));  // integer counts, as in the real files
    }
    // The same normalization function the loader applies to real data.
    const loom::data::Sample norm = loom::data::normalize(raw, stats);
    const auto s1 = norm.s1.to_vector(), s2 = norm.s2.to_vector();
    const size_t plane = 64 * 64;
    for (size_t c = 0; c < 14; ++c)
      for (size_t k = 0; k < plane; ++k) {
        const double v = c < 2 ? s1[c * plane + k] : s2[(c - 2) * plane + k];
        sum[c] += v, sum2[c] += v * v;
      }
    count += double(plane);
  }
  for (size_t c = 0; c < 14; ++c) {
    const double mean = sum[c] / count, sd = std::sqrt(sum2[c] / count - mean * mean);
    INFO("band " << stats.bands[c] << ": normalized mean " << mean << ", std " << sd);
    // Comparable to real data: the published statistics put the bulk within a few units of 0.
    CHECK(std::abs(mean) < 1.0);
    CHECK(sd > 0.25);
    CHECK(sd < 2.0);
  }
}

TEST_CASE("synthetic: classes are told apart partly by S1, mostly by S2, best by both", "[data][synthetic]") {
  // Per-pixel Gaussian naive Bayes (features: S1 dB, log S2 reflectance) trained on 40 clear scenes,
  // tested on 40 others; then on opaque-cloud pixels, where only SAR still sees the ground.
  const int64_t size = 64;
  const size_t n = size_t(size * size);
  constexpr int F = 14, C = 19;
  const SyntheticEarth clear(small_options(size, 0.0)), cloudy(small_options(size, 1.0));
  std::vector<double> s(C * F, 0), s2(C * F, 0), count(C, 0);
  auto features = [&](const synthetic::Scene& sc, size_t k, double* f) {
    f[0] = sc.s1[k], f[1] = sc.s1[n + k];
    for (size_t b = 0; b < 12; ++b) f[2 + b] = std::log(double(sc.s2[b * n + k]) + 1);
  };
  for (int64_t i = 0; i < 40; ++i) {
    const synthetic::Scene sc = clear.scene(i);
    double f[F];
    for (size_t k = 0; k < n; ++k) {
      const int c = sc.land.cls[k];
      features(sc, k, f);
      count[size_t(c)] += 1;
      for (int j = 0; j < F; ++j) s[size_t(c * F + j)] += f[j], s2[size_t(c * F + j)] += f[j] * f[j];
    }
  }
  auto classify = [&](const double* f, int lo, int hi) {
    int best = -1;
    double best_log = -1e300;
    for (int c = 0; c < C; ++c) {
      if (count[size_t(c)] < 10) continue;
      double l = std::log(count[size_t(c)]);
      for (int j = lo; j < hi; ++j) {
        const double m = s[size_t(c * F + j)] / count[size_t(c)];
        const double v = s2[size_t(c * F + j)] / count[size_t(c)] - m * m + 1e-6;
        l += -0.5 * std::log(v) - 0.5 * (f[j] - m) * (f[j] - m) / v;
      }
      if (l > best_log) best_log = l, best = c;
    }
    return best;
  };
  double right_s1 = 0, right_s2 = 0, right_both = 0, total = 0;
  double cloud_s1 = 0, cloud_s2 = 0, cloud_total = 0;
  for (int64_t i = 40; i < 80; ++i) {
    const synthetic::Scene sc = clear.scene(i), sc_cloudy = cloudy.scene(i);
    double f[F];
    for (size_t k = 0; k < n; k += 2) {
      const int c = sc.land.cls[k];
      features(sc, k, f);
      right_s1 += classify(f, 0, 2) == c;
      right_s2 += classify(f, 2, F) == c;
      right_both += classify(f, 0, F) == c;
      total += 1;
      if (sc_cloudy.cloud[k] > 0.9f) {
        features(sc_cloudy, k, f);
        cloud_s1 += classify(f, 0, 2) == c;
        cloud_s2 += classify(f, 2, F) == c;
        cloud_total += 1;
      }
    }
  }
  const double a1 = right_s1 / total, a2 = right_s2 / total, a12 = right_both / total;
  INFO("pixel accuracy: S1 " << a1 << ", S2 " << a2 << ", S1+S2 " << a12 << "; under cloud: S1 "
                             << cloud_s1 / cloud_total << ", S2 " << cloud_s2 / cloud_total);
  CHECK(a1 > 0.15);        // SAR alone: partly (water, built-up, forest vs open land)
  CHECK(a2 > a1 + 0.15);   // optical: mostly
  CHECK(a12 > a2);         // both: best
  REQUIRE(cloud_total > 1000);
  CHECK(cloud_s1 / cloud_total > 2 * cloud_s2 / cloud_total);  // under clouds only SAR helps
}

TEST_CASE("synthetic: any image size", "[data][synthetic]") {
  for (int64_t size : {8, 33, 97, 200}) {
    SyntheticOptions o = small_options(size);
    const SyntheticEarth earth(o);
    for (int64_t i = 0; i < 3; ++i) {
      const synthetic::Scene scene = earth.scene(i);
      const loom::data::Sample s = earth.get(i);
      INFO("size " << size << ", sample " << i);
      CHECK(s.s1.shape() == loom::Shape{2, size, size});
      CHECK(s.s2.shape() == loom::Shape{12, size, size});
      for (float v : s.s1.to_vector()) REQUIRE(std::isfinite(v));
      for (float v : s.s2.to_vector()) REQUIRE(std::isfinite(v));
      int64_t total = 0;
      for (int64_t p : scene.class_pixels) total += p;
      CHECK(total == size * size);
    }
  }
}

TEST_CASE("synthetic: a 120 x 120 sample takes well under 10 ms", "[data][synthetic][timing]") {
#ifndef NDEBUG
  LOOM_SKIP("timing is meaningful in optimized builds only");
#else
  const SyntheticEarth earth(small_options(120));
  earth.get(0);  // warm-up
  // CPU time of this thread, so that other processes on the machine do not count.
  const double start = thread_cpu_seconds();
  const int n = 20;
  for (int64_t i = 1; i <= n; ++i) earth.get(i);
  const double ms = (thread_cpu_seconds() - start) / n * 1e3;
  INFO("ms per sample: " << ms);
  CHECK(ms < 10.0);
#endif
}

// ================================================================================================
// per-band statistics over a dataset (what `pack_dataset --stats` prints)
// ================================================================================================

TEST_CASE("statistics: compute_band_statistics over synthetic data matches a naive two-pass sum", "[data][stats]") {
  // 13 samples of 17 x 17, with clouds (S2 changes), one split: every pixel of every band counts.
  const auto ds = loom::data::open_dataset("synthetic:train=13,val=0,test=0,size=17,seed=11,clouds=0.5");
  REQUIRE(ds->size() == 13);
  // Naive reference: all values of each band collected in double, mean, then mean squared deviation.
  std::map<std::string, std::vector<double>> values;  // band -> every pixel
  for (int64_t i = 0; i < ds->size(); ++i) {
    const loom::data::Sample s = ds->get(i);
    REQUIRE(s.has_s1());
    REQUIRE(s.has_s2());
    const std::vector<float> s1 = s.s1.contiguous().to_vector(), s2 = s.s2.contiguous().to_vector();
    const size_t plane = size_t(17 * 17);
    for (size_t k = 0; k < s1.size(); ++k) values[loom::data::kS1Bands[k / plane]].push_back(s1[k]);
    for (size_t k = 0; k < s2.size(); ++k) values[s.s2_bands[k / plane]].push_back(s2[k]);
  }
  const loom::data::BandStatistics stats = loom::data::compute_band_statistics(*ds);
  REQUIRE(stats.bands.size() == 14);
  for (const auto& [band, v] : values) {
    INFO(band);
    REQUIRE(v.size() == size_t(13 * 17 * 17));
    double sum = 0;
    for (double x : v) sum += x;
    const double mean = sum / double(v.size());
    double squares = 0;
    for (double x : v) squares += (x - mean) * (x - mean);
    const auto k = stats.find(band);
    REQUIRE(k.has_value());
    loom::test::require_close(std::vector<double>{stats.mean[*k], stats.stddev[*k]},
                              {mean, std::sqrt(squares / double(v.size()))}, {1e-9, 1e-10});
  }
  // The first n samples only.
  const loom::data::BandStatistics first = loom::data::compute_band_statistics(*ds, 2);
  const std::vector<double>& vv = values["VV"];
  double sum2 = 0;
  for (size_t k = 0; k < size_t(2 * 17 * 17); ++k) sum2 += vv[k];
  loom::test::require_close(std::vector<double>{first.mean[*first.find("VV")]}, {sum2 / double(2 * 17 * 17)},
                            {1e-9, 1e-10});

  // The printed table: S1 rows first, then S2 rows in the dataset's band order, full precision.
  std::ostringstream printed;
  loom::data::print_band_statistics(printed, stats);
  std::istringstream lines(printed.str());
  std::string header, group, band;
  std::getline(lines, header);
  CHECK(header.find("mean") != std::string::npos);
  std::vector<std::string> order;
  double mean = 0, stddev = 0;
  while (lines >> group >> band >> mean >> stddev) {
    order.push_back(group + " " + band);
    const auto k = stats.find(band);
    REQUIRE(k.has_value());
    CHECK(mean == stats.mean[*k]);  // %.17g round-trips a double exactly
    CHECK(stddev == stats.stddev[*k]);
  }
  const std::vector<std::string> expected = {"S1 VV",  "S1 VH",  "S2 B01", "S2 B02", "S2 B03", "S2 B04", "S2 B05",
                                             "S2 B06", "S2 B07", "S2 B08", "S2 B8A", "S2 B09", "S2 B11", "S2 B12"};
  CHECK(order == expected);
}
