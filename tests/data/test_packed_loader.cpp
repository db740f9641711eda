// Packed shards (data/packed.hpp) and the DataLoader (data/loader.hpp).
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "data/corrupt.hpp"
#include "support/temp_dir.hpp"
#include "loom/core/random.hpp"
#include "loom/data/dataset.hpp"
#include "loom/data/loader.hpp"
#include "loom/data/packed.hpp"
#include "loom/data/synthetic.hpp"
#include "support/check.hpp"

using loom::Error;
using loom::Shape;
using loom::Tensor;
using loom::data::BadDataPolicy;
using loom::data::DataLoader;
using loom::data::LoaderOptions;
using loom::data::OnBadSample;
using loom::data::Sample;
namespace fs = std::filesystem;
namespace pf = loom::data::packed_format;

namespace {

// A dataset made by a function (which may throw loom::Error for bad samples).
class FunctionDataset : public loom::data::Dataset {
 public:
  FunctionDataset(int64_t n, std::function<Sample(int64_t)> make, BadDataPolicy policy = {})
      : Dataset(std::move(policy)), n_(n), make_(std::move(make)) {}
  int64_t size() const override { return n_; }
  std::string name(int64_t i) const override { return "patch_" + std::to_string(i); }
  std::vector<std::string> class_names() const override {
    return {loom::data::kBigEarthNet19Classes.begin(), loom::data::kBigEarthNet19Classes.end()};
  }
  std::atomic<int64_t> loads{0};

 protected:
  Sample load(int64_t i) const override {
    const_cast<FunctionDataset*>(this)->loads.fetch_add(1);
    return make_(i);
  }

 private:
  int64_t n_;
  std::function<Sample(int64_t)> make_;
};

// Forwards get() to another dataset: the loader's generic path over any dataset.
class ForwardingDataset : public loom::data::Dataset {
 public:
  explicit ForwardingDataset(const loom::data::Dataset& inner) : inner_(inner) {}
  int64_t size() const override { return inner_.size(); }
  std::string name(int64_t i) const override { return inner_.name(i); }
  std::vector<std::string> class_names() const override { return inner_.class_names(); }

 protected:
  Sample load(int64_t i) const override { return inner_.get(i); }

 private:
  const loom::data::Dataset& inner_;
};

// Sample i with every pixel distinct: S1 channel c at (y, x) = -30 + c + (y*W + x)/1000 + i/7 dB,
// S2 = 100 + 500 c + 3 (y*W + x) + i + 0.25 (non-integer, to exercise rounding); labels from i.
Sample pattern_sample(int64_t i, int64_t H, int64_t W) {
  Sample s;
  s.s1_name = "S1_" + std::to_string(i);
  s.s2_name = "patch_" + std::to_string(i);
  std::vector<float> s1(size_t(2 * H * W)), s2(size_t(12 * H * W));
  for (int64_t c = 0; c < 2; ++c)
    for (int64_t p = 0; p < H * W; ++p) s1[size_t(c * H * W + p)] = float(-30.0 + double(c) + double(p) / 1000.0 + double(i) / 7.0);
  for (int64_t c = 0; c < 12; ++c)
    for (int64_t p = 0; p < H * W; ++p) s2[size_t(c * H * W + p)] = float(100 + 500 * c + 3 * p + i) + 0.25f;
  s.s1 = Tensor<float>::from_vector({2, H, W}, s1);
  s.s2 = Tensor<float>::from_vector({12, H, W}, s2);
  std::vector<float> labels(19, 0.0f);
  labels[size_t(i % 19)] = 1;
  labels[size_t((3 * i + 5) % 19)] = 1;
  s.labels = Tensor<float>::from_vector({19}, labels);
  return s;
}

using loom::test::read_bytes;
using loom::test::read_everything;
using loom::test::write_bytes;

// Nearest float16 value to x (ties to even), computed in double from the definition.
double nearest_half(double x) {
  if (std::abs(x) >= 65520.0) return std::copysign(INFINITY, x);
  const double a = std::abs(x);
  const int e = a < 0x1p-14 ? -14 : std::ilogb(a);  // subnormals share the spacing 2^-24
  const double ulp = std::ldexp(1.0, e - 10);
  return std::copysign(std::nearbyint(a / ulp) * ulp, x);
}

std::vector<int64_t> sorted(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace

// ---- format building blocks ---------------------------------------------------------------------

TEST_CASE("packed: CRC32C check values, hardware and software agree", "[data][packed]") {
  CHECK(pf::crc32c("123456789", 9) == 0xE3069283u);
  const std::vector<uint8_t> zeros(32, 0), ones(32, 0xff);
  CHECK(pf::crc32c(zeros.data(), 32) == 0x8A9136AAu);  // RFC 3720 B.4 test vectors
  CHECK(pf::crc32c(ones.data(), 32) == 0x62A8AB43u);
  std::vector<uint8_t> bytes(100010);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = uint8_t(i * 131 + (i >> 9) + 7);
  // Small buffers take one stream, from 4096 bytes three interleaved ones (then combined).
  for (size_t offset : {0, 1, 3, 7})
    for (size_t n : {0, 1, 5, 8, 9, 63, 500, 993, 4095, 4096, 4103, 9000, 100003}) {
      const uint32_t sw = ~pf::crc32c_software(~0u, bytes.data() + offset, n);
      CHECK(pf::crc32c(bytes.data() + offset, n) == sw);
      // Continuing a CRC over a split buffer gives the CRC of the whole.
      CHECK(pf::crc32c(bytes.data() + offset + n / 2, n - n / 2, pf::crc32c(bytes.data() + offset, n / 2)) == sw);
      // Combining the CRCs of two parts gives the CRC of the whole.
      const size_t k = n / 3;
      CHECK(pf::crc32c_combine(pf::crc32c(bytes.data() + offset, k), pf::crc32c(bytes.data() + offset + k, n - k), n - k) ==
            sw);
    }
}

TEST_CASE("packed: float16 conversion rounds to nearest even and decodes exactly", "[data][packed]") {
  // Every half value survives decode -> encode (NaNs stay NaN).
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = pf::half_to_float(uint16_t(h));
    if (std::isnan(f)) {
      CHECK(std::isnan(pf::half_to_float(pf::float_to_half(f))));
      continue;
    }
    REQUIRE(pf::float_to_half(f) == h);
  }
  // Random floats over the whole range, and the ties, against the definition.
  loom::Generator gen(11);
  const std::vector<float> u = loom::uniform<float>({20000}, -1, 1, gen).to_vector();
  std::vector<double> ours, ref;
  for (size_t i = 0; i < u.size(); ++i) {
    const double x = std::ldexp(double(u[i]), int(i % 44) - 28);  // magnitudes 2^-28 .. 2^15
    ours.push_back(pf::half_to_float(pf::float_to_half(float(x))));
    ref.push_back(nearest_half(double(float(x))));
  }
  for (double tie : {1.0 + 0x1p-11, 1.0 + 3 * 0x1p-11, 0x1p-25, 3 * 0x1p-25, 65519.0, 65520.0, -2049.0}) {
    ours.push_back(pf::half_to_float(pf::float_to_half(float(tie))));
    ref.push_back(nearest_half(tie));
  }
  loom::test::require_close(ours, ref, {0, 0});
  CHECK(std::isinf(pf::half_to_float(pf::float_to_half(1e6f))));
  // The SIMD decoders (normalizing on the way) match the scalar ones.
  std::vector<uint16_t> halves(1003), counts(1003);
  for (size_t i = 0; i < halves.size(); ++i) halves[i] = pf::float_to_half(float(i) * 0.37f - 150.0f), counts[i] = uint16_t(i * 61);
  std::vector<float> a(1003), b(1003);
  pf::decode_f16(halves.data(), a.data(), a.size(), -12.62f, 1 / 5.116f);
  pf::decode_f16_plain(halves.data(), b.data(), b.size(), -12.62f, 1 / 5.116f);
  CHECK(a == b);
  pf::decode_u16(counts.data(), a.data(), a.size(), 590.24f, 1 / 675.89f);
  pf::decode_u16_plain(counts.data(), b.data(), b.size(), 590.24f, 1 / 675.89f);
  CHECK(a == b);
}

// ---- round trip ---------------------------------------------------------------------------------

TEST_CASE("packed: pack -> read back equals the source within uint16 / float16 precision", "[data][packed]") {
  loom::test::TempDir dir("packed");
  const int64_t H = 7, W = 9;  // odd, non-square
  // Sample 4 has no S1, sample 6 no S2: single-modality samples keep their gap.
  FunctionDataset source(11, [&](int64_t i) {
    Sample s = pattern_sample(i, H, W);
    if (i == 4) s.s1 = Tensor<float>(), s.s1_name.clear();
    if (i == 6) s.s2 = Tensor<float>(), s.s2_name.clear();
    return s;
  });
  std::vector<std::pair<int64_t, int64_t>> progress;
  loom::data::PackOptions options;
  options.window = 3;
  options.progress = [&](int64_t done, int64_t total) { progress.emplace_back(done, total); };
  const loom::data::PackReport report = loom::data::write_packed(source, dir.file("a.pack"), options);
  CHECK(report.written == 11);
  CHECK(report.skipped == 0);
  CHECK(report.bytes == fs::file_size(dir.file("a.pack")));
  CHECK(progress.back() == std::pair<int64_t, int64_t>{11, 11});
  CHECK(progress.size() == 4);

  const auto packed = loom::data::open_dataset("packed:" + dir.file("a.pack"));
  const auto* p = dynamic_cast<const loom::data::PackedDataset*>(packed.get());
  REQUIRE(p != nullptr);
  CHECK(p->size() == 11);
  CHECK(p->class_names() == source.class_names());
  CHECK(p->layout().height == H);
  CHECK(p->layout().width == W);
  CHECK(p->layout().s1_bands == loom::data::s1_band_names());
  CHECK(p->layout().s2_bands == loom::data::s2_band_names());
  const loom::data::BandStatistics ben = loom::data::bigearthnet_statistics();
  CHECK(p->layout().statistics.bands == ben.bands);
  CHECK(p->layout().statistics.mean == ben.mean);
  CHECK(p->layout().statistics.stddev == ben.stddev);

  for (int64_t i = 0; i < 11; ++i) {
    INFO("sample " << i);
    const Sample a = source.get(i), b = packed->get(i);
    CHECK(a.s1_name == b.s1_name);
    CHECK(a.s2_name == b.s2_name);
    CHECK(packed->name(i) == a.name());
    loom::test::require_close(b.labels, loom::test::to_double(a.labels), {0, 0});
    REQUIRE(a.has_s1() == b.has_s1());
    REQUIRE(a.has_s2() == b.has_s2());
    if (a.has_s2()) {
      // uint16 counts: the nearest integer, so at most 0.5 away.
      CHECK(b.s2.shape() == Shape{12, H, W});
      loom::test::require_close(b.s2, loom::test::to_double(a.s2), {0.5, 0});
      for (float v : b.s2.to_vector()) REQUIRE(v == std::round(v));
    }
    if (a.has_s1()) {
      // float16: 11 significant bits, so |error| <= 2^-11 |x| (these values are all normal halves).
      CHECK(b.s1.shape() == Shape{2, H, W});
      loom::test::require_close(b.s1, loom::test::to_double(a.s1), {0, std::ldexp(1.0, -11)});
    }
  }
}

TEST_CASE("packed: a synthetic dataset round-trips, integer S2 exactly", "[data][packed]") {
  loom::test::TempDir dir("packed");
  const auto source = loom::data::open_dataset("synthetic:train=6,size=40");
  loom::data::write_packed(*source, dir.file("s.pack"));
  const auto packed = loom::data::open_dataset("packed:" + dir.file("s.pack") + "?verify=1");
  for (int64_t i = 0; i < 6; ++i) {
    const Sample a = source->get(i), b = packed->get(i);
    loom::test::require_close(b.s2, loom::test::to_double(a.s2), {0, 0});
    loom::test::require_close(b.s1, loom::test::to_double(a.s1), {std::ldexp(1.0, -24), std::ldexp(1.0, -11)});
    loom::test::require_close(b.labels, loom::test::to_double(a.labels), {0, 0});
    CHECK(b.name() == a.name());
  }
}

TEST_CASE("packed: writing refuses what the format cannot hold, naming the sample", "[data][packed]") {
  loom::test::TempDir dir("packed");
  const std::string out = dir.file("bad.pack");
  auto with = [&](int64_t bad_index, std::function<void(Sample&)> spoil) {
    return FunctionDataset(5, [=](int64_t i) {
      Sample s = pattern_sample(i, 4, 4);
      if (i == bad_index) spoil(s);
      return s;
    });
  };
  {
    auto ds = with(2, [](Sample& s) { s.s2.data()[3] = -7.0f; });
    REQUIRE_THROWS_WITH(loom::data::write_packed(ds, out),
                        Catch::Contains("sample 2") && Catch::Contains("does not fit uint16"));
  }
  {
    auto ds = with(3, [](Sample& s) { s.s2.data()[0] = 70000.0f; });
    REQUIRE_THROWS_WITH(loom::data::write_packed(ds, out), Catch::Contains("sample 3"));
  }
  {
    auto ds = with(1, [](Sample& s) { s.s1.data()[5] = std::numeric_limits<float>::quiet_NaN(); });
    REQUIRE_THROWS_WITH(loom::data::write_packed(ds, out),
                        Catch::Contains("sample 1") && Catch::Contains("not a finite float16"));
  }
  {
    auto ds = with(4, [](Sample& s) { s.labels.data()[0] = 0.5f; });
    REQUIRE_THROWS_WITH(loom::data::write_packed(ds, out), Catch::Contains("sample 4") && Catch::Contains("label value 0.5"));
  }
  {
    auto ds = with(2, [](Sample& s) { s.s2 = Tensor<float>::zeros({12, 4, 5}); });
    REQUIRE_THROWS_WITH(loom::data::write_packed(ds, out),
                        Catch::Contains("sample 2") && Catch::Contains("[12, 4, 5]") && Catch::Contains("[12, 4, 4]"));
  }
  {
    loom::data::PackOptions no_stats;
    no_stats.statistics = {};
    auto ds = with(-1, [](Sample&) {});
    REQUIRE_THROWS_WITH(loom::data::write_packed(ds, out, no_stats), Catch::Contains("no normalization statistics for band VV"));
  }
  CHECK_FALSE(fs::exists(out));  // nothing half-written is left behind
  // Under the dataset's on_bad=skip, bad samples are left out and counted.
  BadDataPolicy skip;
  skip.on_bad = OnBadSample::skip;
  std::vector<std::string> warnings;
  skip.warn = [&](const std::string& m) { warnings.push_back(m); };
  FunctionDataset ds(6, [](int64_t i) {
    Sample s = pattern_sample(i, 4, 4);
    if (i == 1) s.s2.data()[0] = -100;  // cannot be packed
    if (i == 4) throw Error("reader: sample 4 is unreadable");
    return s;
  }, skip);
  const auto report = loom::data::write_packed(ds, out);
  CHECK(report.written == 4);
  CHECK(report.skipped == 2);
  CHECK(warnings.size() == 2);
  const auto packed = loom::data::open_dataset("packed:" + out);
  REQUIRE(packed->size() == 4);
  std::vector<std::string> names;
  for (int64_t i = 0; i < 4; ++i) names.push_back(packed->name(i));
  CHECK(names == std::vector<std::string>{"patch_0", "patch_2", "patch_3", "patch_5"});
}

// ---- damaged files ------------------------------------------------------------------------------

TEST_CASE("packed: opening errors name the file and the problem", "[data][packed]") {
  loom::test::TempDir dir("packed");
  REQUIRE_THROWS_WITH(loom::data::open_dataset("packed:" + dir.file("missing.pack")), Catch::Contains("cannot open"));
  dir.write("text.pack", "this is not a pack, just some text of some length");
  REQUIRE_THROWS_WITH(loom::data::open_dataset("packed:" + dir.file("text.pack")), Catch::Contains("bad magic"));
  dir.write("tiny.pack", "LOOM");
  REQUIRE_THROWS_WITH(loom::data::open_dataset("packed:" + dir.file("tiny.pack")), Catch::Contains("truncated header"));
  REQUIRE_THROWS_WITH(loom::data::open_dataset("packed:" + dir.file("tiny.pack") + "?verfy=0"),
                      Catch::Contains("unknown option verfy"));
}

TEST_CASE("packed: truncated files are detected, naming the first lost sample", "[data][packed]") {
  loom::test::TempDir dir("packed");
  FunctionDataset source(6, [](int64_t i) { return pattern_sample(i, 6, 6); });
  loom::data::write_packed(source, dir.file("full.pack"));
  const loom::test::Bytes full = read_bytes(dir.file("full.pack"));
  // Cuts in the header, the index and the records are all refused.
  for (size_t cut : {size_t(0), size_t(7), size_t(40), size_t(200), full.size() / 2, full.size() - 1}) {
    write_bytes(dir.file("cut.pack"), loom::test::Bytes(full.begin(), full.begin() + std::ptrdiff_t(cut)));
    INFO("cut at byte " << cut << " of " << full.size());
    CHECK_FALSE(read_everything("packed:" + dir.file("cut.pack")).empty());
  }
  // Records are equal-sized here and fill the file from the data offset (header bytes 60..67).
  uint64_t data_offset = 0;
  std::memcpy(&data_offset, full.data() + 60, 8);
  const size_t record = (full.size() - size_t(data_offset)) / 6;
  REQUIRE(record * 6 == full.size() - size_t(data_offset));
  for (int64_t k = 0; k < 6; ++k) {
    const size_t cut = size_t(data_offset) + size_t(k) * record + record / 2;  // inside record k
    write_bytes(dir.file("cut.pack"), loom::test::Bytes(full.begin(), full.begin() + std::ptrdiff_t(cut)));
    INFO("cut inside record " << k);
    REQUIRE_THROWS_WITH(loom::data::open_dataset("packed:" + dir.file("cut.pack")),
                        Catch::Contains("truncated file") &&
                            Catch::Contains("sample " + std::to_string(k) + " and the " + std::to_string(5 - k) +
                                            " after it are cut off"));
    if (k == 0) continue;
    // Under on_bad=skip the intact samples stay readable; the lost ones are skipped and counted.
    std::vector<std::string> warnings;
    loom::data::PackedOptions options;
    options.path = dir.file("cut.pack");
    options.bad.on_bad = OnBadSample::skip;
    options.bad.warn = [&](const std::string& m) { warnings.push_back(m); };
    const loom::data::PackedDataset cut_pack(options);
    for (int64_t i = 0; i < k; ++i) CHECK(cut_pack.get(i).name() == "patch_" + std::to_string(i));
    for (int64_t i = k; i < 6; ++i) CHECK(cut_pack.get(i).name() == "patch_0");  // the next good one, wrapping
    CHECK(cut_pack.skipped() == 6 - k);
    REQUIRE(warnings.size() == size_t(6 - k));
    CHECK_THAT(warnings.front(), Catch::Contains("sample " + std::to_string(k) + " is truncated"));
  }
}

TEST_CASE("packed: every flipped byte is detected (fuzz), never a crash", "[data][packed]") {
  loom::test::TempDir dir("packed");
  FunctionDataset source(5, [](int64_t i) {
    Sample s = pattern_sample(i, 5, 5);
    if (i == 3) s.s1 = Tensor<float>(), s.s1_name.clear();
    return s;
  });
  loom::data::write_packed(source, dir.file("good.pack"));
  const loom::test::Bytes good = read_bytes(dir.file("good.pack"));
  REQUIRE(read_everything("packed:" + dir.file("good.pack")).empty());
  uint32_t header_bytes = 0;
  uint64_t data_offset = 0;
  std::memcpy(&header_bytes, good.data() + 12, 4);
  std::memcpy(&data_offset, good.data() + 8 + 4 + 4 + 8 + 8 + 4 * 5 + 8, 8);
  // Record spans from the index (read from the intact file).
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (int i = 0; i < 5; ++i) {
    uint64_t offset = 0;
    uint32_t bytes = 0;
    std::memcpy(&offset, good.data() + header_bytes + 16 * i, 8);
    std::memcpy(&bytes, good.data() + header_bytes + 16 * i + 8, 4);
    spans.emplace_back(offset, offset + bytes);
  }
  REQUIRE(spans.back().second == good.size());

  loom::Generator gen(2024);
  const int trials = 300;
  const std::vector<int64_t> where = loom::randint({trials}, 0, int64_t(good.size()), gen).to_vector();
  const std::vector<int64_t> early = loom::randint({trials}, 0, int64_t(data_offset), gen).to_vector();
  const std::vector<int64_t> flip = loom::randint({trials}, 1, 256, gen).to_vector();
  const std::vector<int64_t> burst = loom::randint({trials}, 1, 9, gen).to_vector();
  int in_records = 0;
  for (int t = 0; t < trials; ++t) {
    loom::test::Bytes bytes = good;
    // A third of the trials hit the header or index, the rest anywhere; some flip several bytes.
    const size_t at = size_t(t % 3 == 0 ? early[size_t(t)] : where[size_t(t)]);
    const size_t count = t % 4 == 0 ? size_t(burst[size_t(t)]) : 1;
    for (size_t k = at; k < std::min(bytes.size(), at + count); ++k) bytes[k] = uint8_t(bytes[k] ^ uint8_t(flip[size_t(t)]));
    write_bytes(dir.file("bad.pack"), bytes);
    const std::string message = read_everything("packed:" + dir.file("bad.pack"));
    INFO("trial " << t << ": byte " << at << " (+" << count << ") of " << good.size() << " xor " << flip[size_t(t)]);
    REQUIRE_FALSE(message.empty());
    if (at >= data_offset) {
      ++in_records;
      int sample = -1;
      for (int i = 0; i < 5; ++i)
        if (at >= spans[size_t(i)].first && at < spans[size_t(i)].second) sample = i;
      CHECK_THAT(message, Catch::Contains("sample " + std::to_string(sample) + " is corrupt"));
    } else {
      CHECK_THAT(message, Catch::Contains("header") || Catch::Contains("index") || Catch::Contains("magic") ||
                              Catch::Contains("version") || Catch::Contains("truncated"));
    }
  }
  CHECK(in_records > 100);
  // verify=0 trusts the records: a flipped payload byte then goes unnoticed (structure is still
  // checked).
  loom::test::Bytes bytes = good;
  bytes[size_t(spans[2].second) - 100] ^= 0x10;
  write_bytes(dir.file("bad.pack"), bytes);
  CHECK(read_everything("packed:" + dir.file("bad.pack") + "?verify=0").empty());
  CHECK_FALSE(read_everything("packed:" + dir.file("bad.pack")).empty());
}

// ---- the loader ---------------------------------------------------------------------------------

TEST_CASE("loader: every sample exactly once per epoch, drop_last, batch shapes", "[data][loader]") {
  FunctionDataset ds(37, [](int64_t i) { return pattern_sample(i, 4, 6); });
  for (bool drop_last : {false, true}) {
    DataLoader loader(ds, LoaderOptions().batch_size(5).workers(2).drop_last(drop_last).normalize(false));
    CHECK(loader.num_batches() == (drop_last ? 7 : 8));
    for (int64_t epoch = 0; epoch < 2; ++epoch) {
      loader.start_epoch(epoch);
      std::vector<int64_t> seen;
      int64_t batches = 0;
      while (auto batch = loader.next()) {
        CHECK(batch->index == batches);
        CHECK(batch->epoch == epoch);
        const int64_t b = batch->size();
        CHECK(b == (batches < 7 ? 5 : 2));
        CHECK(batch->s1.shape() == Shape{b, 2, 4, 6});
        CHECK(batch->s2.shape() == Shape{b, 12, 4, 6});
        CHECK(batch->labels.shape() == Shape{b, 19});
        for (int64_t r = 0; r < b; ++r) {
          const int64_t i = batch->indices[size_t(r)];
          CHECK(batch->names[size_t(r)] == "patch_" + std::to_string(i));
          // Row r holds sample i (no normalization): compare to the source.
          const Sample s = pattern_sample(i, 4, 6);
          loom::test::require_close(batch->s2.select(0, r), loom::test::to_double(s.s2), {0, 0});
          loom::test::require_close(batch->s1.select(0, r), loom::test::to_double(s.s1), {0, 0});
          loom::test::require_close(batch->labels.select(0, r), loom::test::to_double(s.labels), {0, 0});
        }
        seen.insert(seen.end(), batch->indices.begin(), batch->indices.end());
        ++batches;
      }
      CHECK(batches == loader.num_batches());
      CHECK_FALSE(loader.next().has_value());
      const std::set<int64_t> distinct(seen.begin(), seen.end());
      CHECK(distinct.size() == seen.size());
      CHECK(int64_t(seen.size()) == (drop_last ? 35 : 37));
      const std::vector<int64_t> order = loader.epoch_order(epoch);  // the first `seen` of them, in batches
      CHECK(seen == std::vector<int64_t>(order.begin(), order.begin() + std::ptrdiff_t(seen.size())));
      for (int64_t i : seen) CHECK((i >= 0 && i < 37));
    }
  }
}

TEST_CASE("loader: pinned batches need the CUDA backend and say so", "[data][loader]") {
  const auto ds = loom::data::open_dataset("synthetic:train=4,size=16");
  if (loom::detail::kCudaBackend) LOOM_SKIP("this test binary links the CUDA backend (test_device_tensor covers it)");
  REQUIRE_THROWS_WITH(DataLoader(*ds, LoaderOptions().pinned(true)),
                      Catch::Contains("pinned(true)") && Catch::Contains("CUDA backend"));
  REQUIRE_THROWS_WITH(loom::pinned_empty<float>({2, 3}), Catch::Contains("CUDA backend"));
}

TEST_CASE("loader: the same batches for the same (seed, epoch) whatever the workers", "[data][loader]") {
  const auto ds = loom::data::open_dataset("synthetic:train=23,size=24");
  auto collect = [&](int workers, int prefetch, int64_t epoch, uint64_t seed) {
    DataLoader loader(*ds, LoaderOptions().batch_size(4).workers(workers).prefetch(prefetch).seed(seed).augment(true));
    loader.start_epoch(epoch);
    std::vector<std::vector<float>> out;
    std::vector<int64_t> order;
    while (auto b = loader.next()) {
      out.push_back(b->s1.to_vector());
      out.push_back(b->s2.to_vector());
      out.push_back(b->labels.to_vector());
      order.insert(order.end(), b->indices.begin(), b->indices.end());
    }
    return std::pair{out, order};
  };
  const auto reference = collect(0, 1, 3, 9);
  for (auto [workers, prefetch] : {std::pair{1, 1}, std::pair{2, 4}, std::pair{5, 2}}) {
    INFO(workers << " workers, prefetch " << prefetch);
    const auto other = collect(workers, prefetch, 3, 9);
    CHECK(other.second == reference.second);
    REQUIRE(other.first.size() == reference.first.size());
    for (size_t k = 0; k < other.first.size(); ++k)
      CHECK(std::memcmp(other.first[k].data(), reference.first[k].data(), other.first[k].size() * sizeof(float)) == 0);
  }
  // Other epochs and seeds shuffle differently; each order is a permutation.
  const auto epoch4 = collect(2, 2, 4, 9), seed10 = collect(2, 2, 3, 10);
  CHECK(epoch4.second != reference.second);
  CHECK(seed10.second != reference.second);
  CHECK(sorted(epoch4.second) == sorted(reference.second));
  // shuffle(false): dataset order.
  DataLoader plain(*ds, LoaderOptions().batch_size(10).shuffle(false));
  std::vector<int64_t> identity(23);
  for (int64_t i = 0; i < 23; ++i) identity[size_t(i)] = i;
  CHECK(plain.epoch_order(0) == identity);
  CHECK(plain.epoch_order(5) == identity);
  // make_batch() reproduces any batch directly.
  DataLoader direct(*ds, LoaderOptions().batch_size(4).seed(9).augment(true));
  const loom::data::Batch b2 = direct.make_batch(3, 2);
  CHECK(b2.s2.to_vector() == reference.first[2 * 3 + 1]);
}

TEST_CASE("loader: augmentation is one symmetry per sample, the same for S1 and S2", "[data][loader]") {
  const int64_t N = 5;  // square
  FunctionDataset ds(64, [&](int64_t i) { return pattern_sample(i, N, N); });
  const uint64_t seed = 77;
  DataLoader loader(ds, LoaderOptions().batch_size(16).augment(true).seed(seed).normalize(false));
  std::vector<int> used(8, 0);
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    loader.start_epoch(epoch);
    while (auto batch = loader.next()) {
      for (int64_t r = 0; r < batch->size(); ++r) {
        const int64_t i = batch->indices[size_t(r)];
        const int t = loom::data::augmentation_of(seed, epoch, i, true);
        ++used[size_t(t)];
        // Reference: flip left-right if t & 4, then rotate t & 3 quarter turns counter-clockwise
        // (numpy's rot90), each written out on coordinates.
        const Sample s = pattern_sample(i, N, N);
        for (auto [tensor, out, channels] :
             {std::tuple{s.s1, batch->s1.select(0, r), int64_t(2)}, std::tuple{s.s2, batch->s2.select(0, r), int64_t(12)}}) {
          std::vector<double> expected;
          const std::vector<float> src = tensor.to_vector();
          for (int64_t c = 0; c < channels; ++c) {
            std::vector<double> img(size_t(N * N));
            for (int64_t y = 0; y < N; ++y)
              for (int64_t x = 0; x < N; ++x) img[size_t(y * N + x)] = src[size_t(c * N * N + y * N + (t & 4 ? N - 1 - x : x))];
            for (int k = 0; k < (t & 3); ++k) {  // rot90: out[y][x] = in[x][N-1-y]
              std::vector<double> turned(img.size());
              for (int64_t y = 0; y < N; ++y)
                for (int64_t x = 0; x < N; ++x) turned[size_t(y * N + x)] = img[size_t(x * N + (N - 1 - y))];
              img = turned;
            }
            expected.insert(expected.end(), img.begin(), img.end());
          }
          INFO("sample " << i << ", symmetry " << t);
          loom::test::require_close(out, expected, {0, 0});
        }
      }
    }
  }
  for (int t = 0; t < 8; ++t) CHECK(used[size_t(t)] > 4);  // 128 draws over 8 symmetries
  // Non-square images only get the shape-keeping symmetries.
  for (int64_t i = 0; i < 200; ++i) CHECK(loom::data::augmentation_of(seed, 0, i, false) % 2 == 0);
  // A different epoch draws again.
  int same = 0;
  for (int64_t i = 0; i < 64; ++i)
    same += loom::data::augmentation_of(seed, 0, i, true) == loom::data::augmentation_of(seed, 1, i, true);
  CHECK(same < 20);
  REQUIRE_THROWS_WITH(loom::data::apply_symmetry(nullptr, nullptr, 1, 2, 3, 1), Catch::Contains("square"));
}

TEST_CASE("loader: bad samples raise an error naming them, or are skipped and counted", "[data][loader]") {
  auto make = [](int64_t i) {
    Sample s = pattern_sample(i, 6, 6);
    if (i == 3) s.s1 = Tensor<float>();                                      // missing band
    if (i == 7) s.s2 = Tensor<float>::zeros({12, 6, 5});                     // wrong size
    if (i == 11) s.s2.data()[17] = std::numeric_limits<float>::infinity();  // non-finite
    if (i == 14) throw Error("reader: patch_14_B02.tif: cannot open");       // unreadable
    return s;
  };
  FunctionDataset ds(20, make);
  {
    DataLoader loader(ds, LoaderOptions().batch_size(4).shuffle(false).workers(2));
    loader.start_epoch(0);
    REQUIRE_THROWS_WITH(loader.next(), Catch::Contains("batch 0") && Catch::Contains("sample 3 (patch_3): no S1"));
    REQUIRE_THROWS_WITH(loader.next(),
                        Catch::Contains("sample 7") && Catch::Contains("[12, 6, 5]") && Catch::Contains("[12, 6, 6]"));
    REQUIRE_THROWS_WITH(loader.next(), Catch::Contains("sample 11") && Catch::Contains("non-finite S2"));
    REQUIRE_THROWS_WITH(loader.next(), Catch::Contains("batch 3") && Catch::Contains("patch_14_B02.tif"));
    CHECK(loader.next()->size() == 4);  // samples 16-19 are fine
    CHECK_FALSE(loader.next().has_value());
    CHECK(loader.skipped() == 0);
  }
  {
    std::mutex m;
    std::vector<std::string> warnings;
    DataLoader loader(ds, LoaderOptions().batch_size(4).workers(3).on_bad(OnBadSample::skip).warn([&](const std::string& w) {
      std::lock_guard lock(m);
      warnings.push_back(w);
    }));
    for (int64_t epoch = 0; epoch < 2; ++epoch) {
      loader.start_epoch(epoch);
      std::vector<int64_t> seen;
      int64_t skipped_in_batches = 0;
      while (auto batch = loader.next()) {
        CHECK(batch->s1.shape()[0] == batch->size());
        CHECK(batch->s2.shape()[0] == batch->size());
        CHECK(batch->labels.shape()[0] == batch->size());
        CHECK(batch->size() + batch->skipped == 4);
        skipped_in_batches += batch->skipped;
        seen.insert(seen.end(), batch->indices.begin(), batch->indices.end());
      }
      CHECK(skipped_in_batches == 4);
      CHECK(sorted(seen) == std::vector<int64_t>{0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 15, 16, 17, 18, 19});
      CHECK(loader.skipped() == 4 * (epoch + 1));
    }
    CHECK(warnings.size() == 8);
    CHECK(loader.skip_messages().size() == 8);
    CHECK_THAT(loader.skip_messages()[0], Catch::Contains("sample"));
  }
}

TEST_CASE("loader: normalization, and the packed fast path equals the generic path", "[data][loader]") {
  loom::test::TempDir dir("loader");
  const auto source = loom::data::open_dataset("synthetic:train=9,size=20");
  loom::data::write_packed(*source, dir.file("s.pack"));
  const auto packed = loom::data::open_dataset("packed:" + dir.file("s.pack"));
  const ForwardingDataset generic(*packed);
  DataLoader fast(*packed, LoaderOptions().batch_size(4).augment(true).seed(5));
  DataLoader slow(generic, LoaderOptions().batch_size(4).augment(true).seed(5));
  DataLoader raw(*source, LoaderOptions().batch_size(4).shuffle(false).normalize(false));
  DataLoader norm(*source, LoaderOptions().batch_size(4).shuffle(false));
  fast.start_epoch(2), slow.start_epoch(2), raw.start_epoch(0), norm.start_epoch(0);
  while (auto a = fast.next()) {
    const auto b = slow.next();
    CHECK(a->indices == b->indices);
    CHECK(a->names == b->names);
    CHECK(a->s1.to_vector() == b->s1.to_vector());
    CHECK(a->s2.to_vector() == b->s2.to_vector());
    CHECK(a->labels.to_vector() == b->labels.to_vector());
  }
  const loom::data::BandStatistics stats = loom::data::bigearthnet_statistics();
  while (auto r = raw.next()) {
    const auto n = norm.next();
    // Normalized = (raw - mean[band]) / std[band], computed here in double.
    const std::vector<float> s2 = r->s2.to_vector();
    std::vector<double> expected(s2.size());
    const size_t plane = 20 * 20;
    for (size_t k = 0; k < s2.size(); ++k) {
      const size_t band = 2 + (k / plane) % 12;
      expected[k] = (double(s2[k]) - stats.mean[band]) / stats.stddev[band];
    }
    loom::test::require_close(n->s2, expected, {1e-5, 1e-5});
  }
}

TEST_CASE("loader: workers keep loom's compute pool free", "[data][loader]") {
  loom::set_num_threads(2);
  std::mutex m;
  bool all_inline = true;
  int64_t calls = 0;
  FunctionDataset ds(12, [&](int64_t i) {
    const std::thread::id me = std::this_thread::get_id();
    loom::parallel_for(0, 1000, 1, [&](int64_t, int64_t) {
      std::lock_guard lock(m);
      all_inline = all_inline && std::this_thread::get_id() == me;
      ++calls;
    });
    return pattern_sample(i, 4, 4);
  });
  DataLoader loader(ds, LoaderOptions().batch_size(3).workers(2));
  loader.start_epoch(0);
  while (loader.next()) {
  }
  CHECK(calls >= 12);
  CHECK(all_inline);
  // On the main thread the same call does use the pool (so the test above can fail).
  std::set<std::thread::id> ids;
  for (int attempt = 0; attempt < 50 && ids.size() < 2; ++attempt)
    loom::parallel_tasks(8, [&](int64_t) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      std::lock_guard lock(m);
      ids.insert(std::this_thread::get_id());
    });
  CHECK(ids.size() == 2);
}

TEST_CASE("loader: prefetch bounds the batches made ahead", "[data][loader]") {
  FunctionDataset ds(100, [](int64_t i) { return pattern_sample(i, 4, 4); });
  DataLoader loader(ds, LoaderOptions().batch_size(5).workers(3).prefetch(2));
  const int64_t probe_loads = ds.loads.load();
  loader.start_epoch(0);
  REQUIRE(loader.next().has_value());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  // One batch consumed, at most two more in the making or done.
  CHECK(ds.loads.load() - probe_loads <= (1 + 2) * 5);
  CHECK(ds.loads.load() - probe_loads >= 2 * 5);
  // Restarting mid-epoch is fine.
  loader.start_epoch(1);
  int64_t n = 0;
  while (loader.next()) ++n;
  CHECK(n == 20);
}

TEST_CASE("loader: argument errors", "[data][loader]") {
  FunctionDataset ds(10, [](int64_t i) { return pattern_sample(i, 4, 4); });
  REQUIRE_THROWS_WITH(DataLoader(ds, LoaderOptions().batch_size(0)), Catch::Contains("batch_size 0"));
  REQUIRE_THROWS_WITH(DataLoader(ds, LoaderOptions().workers(-1)), Catch::Contains("workers -1"));
  REQUIRE_THROWS_WITH(DataLoader(ds, LoaderOptions().prefetch(0)), Catch::Contains("prefetch 0"));
  DataLoader loader(ds, LoaderOptions());
  REQUIRE_THROWS_WITH(loader.next(), Catch::Contains("start_epoch"));
  REQUIRE_THROWS_WITH(loader.make_batch(0, 5), Catch::Contains("batch 5 out of range"));
  FunctionDataset no_s1(4, [](int64_t i) {
    Sample s = pattern_sample(i, 4, 4);
    s.s1 = Tensor<float>();
    return s;
  });
  // S2 only is fine when asked for; both is an error naming the sample.
  DataLoader s2_only(no_s1, LoaderOptions().modalities(loom::data::Modalities::s2).batch_size(4));
  s2_only.start_epoch(0);
  const auto batch = s2_only.next();
  CHECK_FALSE(batch->s1.defined());
  CHECK(batch->s2.shape() == Shape{4, 12, 4, 4});
  DataLoader both(no_s1, LoaderOptions().batch_size(4));
  both.start_epoch(0);
  REQUIRE_THROWS_WITH(both.next(), Catch::Contains("no S1"));
  // An empty dataset gives an epoch without batches.
  FunctionDataset empty(0, [](int64_t i) { return pattern_sample(i, 4, 4); });
  DataLoader none(empty, LoaderOptions());
  CHECK(none.num_batches() == 0);
  none.start_epoch(0);
  CHECK_FALSE(none.next().has_value());
}
