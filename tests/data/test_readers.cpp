// Dataset readers: bilinear resize against PyTorch and a naive double loop; the BigEarthNet
// vocabularies, normalization and band statistics; spec parsing and the bad-data policy; the
// BigEarthNet and SEN12MS readers on small trees written here (pairing, splits, exclusions,
// reBEN labels, every bad-data path) and on the real samples in ../shared/data against values
// computed by tests/golden/make_data_goldens.py (rasterio + torch).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "support/temp_dir.hpp"
#include "loom/data/dataset.hpp"
#include "loom/data/geotiff.hpp"
#include "loom/data/resample.hpp"
#include "loom/data/sample.hpp"
#include "support/check.hpp"

namespace fs = std::filesystem;
using namespace loom;
using namespace loom::data;
using loom::test::TempDir;

namespace {

// ---- resize references ---------------------------------------------------------------------------

// Half-pixel bilinear resize written out in double, independently of loom's implementation. With
// float_scale the scale in/out is rounded to float first, as PyTorch (and loom) do for float
// tensors: the position error that rounding causes grows with the output index, so comparing a
// float resize against exact positions would measure PyTorch's convention, not loom's arithmetic.
std::vector<double> reference_resize(const std::vector<double>& in, int64_t C, int64_t h, int64_t w, int64_t H,
                                     int64_t W, bool float_scale = false) {
  std::vector<double> out;
  auto coord = [&](int64_t i, int64_t from, int64_t to) {
    const double scale = float_scale ? double(float(from) / float(to)) : double(from) / double(to);
    const double x = (double(i) + 0.5) * scale - 0.5;
    return x < 0 ? 0.0 : x;
  };
  for (int64_t c = 0; c < C; ++c)
    for (int64_t i = 0; i < H; ++i)
      for (int64_t j = 0; j < W; ++j) {
        const double y = coord(i, h, H), x = coord(j, w, W);
        const int64_t y0 = std::min<int64_t>(int64_t(std::floor(y)), h - 1), x0 = std::min<int64_t>(int64_t(std::floor(x)), w - 1);
        const int64_t y1 = std::min(y0 + 1, h - 1), x1 = std::min(x0 + 1, w - 1);
        const double ly = y - double(y0), lx = x - double(x0);
        auto at = [&](int64_t r, int64_t q) { return in[size_t((c * h + r) * w + q)]; };
        out.push_back((1 - ly) * ((1 - lx) * at(y0, x0) + lx * at(y0, x1)) + ly * ((1 - lx) * at(y1, x0) + lx * at(y1, x1)));
      }
  return out;
}

// The input formula of tests/golden/make_resample_goldens.py (exact in float).
std::vector<float> golden_input(int64_t C, int64_t h, int64_t w) {
  std::vector<float> v;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j) v.push_back(float((c * 131 + i * 31 + j * 17) % 97) / 8.0f - 5.0f);
  return v;
}

struct ResampleCase {
  int64_t C, h, w, H, W;
  std::vector<double> expected_f32, expected_f64;
};

std::vector<ResampleCase> load_resample_goldens() {
  std::ifstream in(std::string(LOOM_SOURCE_DIR) + "/tests/golden/resample_goldens.txt");
  REQUIRE(in.good());
  std::vector<ResampleCase> cases;
  std::string word;
  while (in >> word) {
    if (word[0] == '#') {
      std::getline(in, word);
      continue;
    }
    REQUIRE(word == "case");
    ResampleCase c;
    in >> c.C >> c.h >> c.w >> c.H >> c.W;
    std::vector<double>* target = nullptr;
    for (std::string v; in >> v && v != "end";) {
      if (v == "f32") target = &c.expected_f32;
      else if (v == "f64") target = &c.expected_f64;
      else target->push_back(std::stod(v));
    }
    cases.push_back(std::move(c));
  }
  return cases;
}

// ---- data goldens ------------------------------------------------------------------------------

struct GoldenSample {
  std::string folder, options, name;
  int64_t index = 0;
  std::vector<float> labels;
  struct Band {
    std::string modality;
    int64_t channel;
    double sum, sumsq;
  };
  struct Pixel {
    std::string modality;
    int64_t channel, row, col;
    double value;
  };
  std::vector<Band> bands;
  std::vector<Pixel> pixels;
};

std::vector<GoldenSample> load_data_goldens() {
  std::ifstream in(std::string(LOOM_SOURCE_DIR) + "/tests/golden/data_goldens.txt");
  REQUIRE(in.good());
  std::vector<GoldenSample> out;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream s(line);
    std::string kind;
    s >> kind;
    if (kind == "sample") {
      out.emplace_back();
      s >> out.back().folder >> out.back().options >> out.back().index >> out.back().name;
    } else if (kind == "labels") {
      for (float v; s >> v;) out.back().labels.push_back(v);
    } else if (kind == "band") {
      GoldenSample::Band b;
      s >> b.modality >> b.channel >> b.sum >> b.sumsq;
      out.back().bands.push_back(b);
    } else if (kind == "pixel") {
      GoldenSample::Pixel p;
      s >> p.modality >> p.channel >> p.row >> p.col >> p.value;
      out.back().pixels.push_back(p);
    } else {
      REQUIRE(kind == "end");
    }
  }
  return out;
}

// ---- an in-memory dataset for the policy and statistics tests -----------------------------------

class MemoryDataset : public Dataset {
 public:
  MemoryDataset(std::vector<Sample> samples, std::vector<bool> bad, BadDataPolicy policy)
      : Dataset(std::move(policy)), samples_(std::move(samples)), bad_(std::move(bad)) {}
  int64_t size() const override { return int64_t(samples_.size()); }
  std::string name(int64_t i) const override {
    char text[32];  // (not "m" + std::to_string(i): g++ 12 warns -Wrestrict on that, a known false positive)
    std::snprintf(text, sizeof text, "m%lld", static_cast<long long>(i));
    return text;
  }
  std::vector<std::string> class_names() const override { return {"a", "b"}; }
  mutable int loads = 0;

 protected:
  Sample load(int64_t i) const override {
    ++loads;
    LOOM_CHECK(!bad_[size_t(i)], "memory sample ", i, " is broken");
    return samples_[size_t(i)];
  }

 private:
  std::vector<Sample> samples_;
  std::vector<bool> bad_;
};

// ---- a small BigEarthNet tree written with loom's GeoTIFF writer ---------------------------------

// Patches of 12 x 12 px at 10 m (20 m bands 6 x 6, 60 m bands 2 x 2): read with size=12.
constexpr int64_t kMini = 12;

// Value of pixel (i, j) of band b of a band of n x n pixels, offset by `base`.
float mini_value(int base, size_t b, int64_t n, int64_t i, int64_t j) {
  return float(base + 100 * int(b) + (i * n + j) % 50);
}

std::string json_labels(const std::vector<std::string>& labels) {
  std::string out = "[";
  for (size_t i = 0; i < labels.size(); ++i) out += (i ? ", \"" : "\"") + labels[i] + "\"";
  return out + "]";
}

struct MiniBigEarthNet {
  TempDir dir{"ben"};

  std::string root() const { return dir.path.string(); }
  std::string spec(const std::string& query = "") const {
    return "bigearthnet:" + root() + "?size=12" + (query.empty() ? "" : "&" + query);
  }

  // An S2 patch folder; `folder` is relative to the root (reBEN nests tile folders).
  void s2(const std::string& name, const std::vector<std::string>& labels, int base = 1000,
          const std::string& folder = "BigEarthNet-v1.0", bool with_json = true) {
    const std::string patch = folder + "/" + name + "/";
    fs::create_directories(dir.path / patch);
    for (size_t b = 0; b < kS2Bands.size(); ++b) {
      const int64_t n = kMini * 10 / kS2BandResolution[b];
      std::vector<float> v;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) v.push_back(mini_value(base, b, n, i, j));
      write_geotiff(dir.file(patch + name + "_" + kS2Bands[b] + ".tif"), Tensor<float>::from_vector({1, n, n}, v),
                    GeoTiffWriteOptions().sample_type(RasterType::u16));
    }
    if (with_json)
      dir.write(patch + name + "_labels_metadata.json",
                "{\"labels\": " + json_labels(labels) +
                    ", \"coordinates\": {\"ulx\": 0, \"uly\": 0, \"lrx\": 0, \"lry\": 0}, \"projection\": \"\", "
                    "\"tile_source\": \"\", \"acquisition_date\": \"2017-06-13 10:10:31\"}");
  }
  void s1(const std::string& name, const std::string& partner, const std::vector<std::string>& labels,
          float base = -20.0f) {
    const std::string patch = "BigEarthNet-S1-v1.0/" + name + "/";
    fs::create_directories(dir.path / patch);
    for (size_t b = 0; b < kS1Bands.size(); ++b) {
      std::vector<float> v;
      for (int64_t i = 0; i < kMini * kMini; ++i) v.push_back(base + float(b) + float(i) * 0.125f);
      write_geotiff(dir.file(patch + name + "_" + kS1Bands[b] + ".tif"),
                    Tensor<float>::from_vector({1, kMini, kMini}, v));
    }
    // The real S1 JSON spells "lly" and has no trailing newline.
    dir.write(patch + name + "_labels_metadata.json",
              "{\"labels\": " + json_labels(labels) +
                  ", \"coordinates\": {\"ulx\": 0, \"uly\": 0, \"lrx\": 0, \"lly\": 0}, \"projection\": \"\", "
                  "\"corresponding_s2_patch\": \"" + partner +
                  "\", \"scene_source\": \"\", \"acquisition_time\": \"2017-06-13T16:50:43\"}");
  }
};

// S2 names with 5-digit times, as in the real data.
const std::string kA = "S2A_MSIL2A_20170613T101031_1_1";
const std::string kB = "S2B_MSIL2A_20170924T93020_1_2";
const std::string kC = "S2A_MSIL2A_20170613T101031_1_3";
const std::string kD = "S2A_MSIL2A_20170613T101031_1_4";
const std::string ka = "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_1_1";
const std::string kb = "S1A_IW_GRDH_1SDV_20170925T043256_35VPK_1_2";
const std::string kd = "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_1_4";

// A: arable + coniferous, paired with a. B: pastures, paired with b. C: unpaired S2. d: S1 whose S2
// partner D does not exist.
void build_standard_tree(MiniBigEarthNet& ben) {
  ben.s2(kA, {"Non-irrigated arable land", "Coniferous forest", "Port areas"}, 1000);
  ben.s2(kB, {"Pastures"}, 2000);
  ben.s2(kC, {"Sea and ocean", "Estuaries"}, 3000);
  ben.s1(ka, kA, {"Non-irrigated arable land", "Coniferous forest", "Port areas"}, -20.0f);
  ben.s1(kb, kB, {"Pastures"}, -15.0f);
  ben.s1(kd, kD, {"Water bodies"}, -10.0f);
}

std::vector<float> hot19(std::initializer_list<int> on) {
  std::vector<float> v(19, 0.0f);
  for (int i : on) v[size_t(i)] = 1.0f;
  return v;
}

// ---- a small SEN12MS tree ----------------------------------------------------------------------

struct MiniSen12ms {
  TempDir dir{"sen12ms"};
  static constexpr int64_t kSize = 10;

  std::string spec(const std::string& query = "") const {
    return "sen12ms:" + dir.path.string() + "?size=10" + (query.empty() ? "" : "&" + query);
  }
  std::string path(const std::string& season, const std::string& m, int patch) const {
    return dir.file(season + "/" + m + "_1/" + season + "_" + m + "_1_p" + std::to_string(patch) + ".tif");
  }
  void s1(const std::string& season, int patch) {
    std::vector<float> v;
    for (int64_t i = 0; i < 2 * kSize * kSize; ++i) v.push_back(float(i % 40) - 32.0f);  // -32 .. 7 dB
    v[3] = NAN;
    fs::create_directories(fs::path(path(season, "s1", patch)).parent_path());
    write_geotiff(path(season, "s1", patch), Tensor<float>::from_vector({2, kSize, kSize}, v));
  }
  void s2(const std::string& season, int patch) {
    std::vector<float> v;
    for (int64_t b = 0; b < 13; ++b)
      for (int64_t i = 0; i < kSize * kSize; ++i) v.push_back(float(b * 1000 + i * 97));  // up to 21603
    fs::create_directories(fs::path(path(season, "s2", patch)).parent_path());
    write_geotiff(path(season, "s2", patch), Tensor<float>::from_vector({13, kSize, kSize}, v),
                  GeoTiffWriteOptions().sample_type(RasterType::u16).compress(TiffCompression::deflate));
  }
  // IGBP band: 45 px forest (code 1), 7 cropland (12) + 6 cropland mosaic (14), 10 water (17: exactly
  // 10%), 9 barren (16: below 10%), 23 savanna (9); the LCCS bands are zeros.
  void lc(const std::string& season, int patch, RasterType type = RasterType::u8) {
    std::vector<float> v(size_t(4 * kSize * kSize), 0.0f);
    size_t k = 0;
    for (auto [code, count] : std::vector<std::pair<int, int>>{{1, 45}, {12, 7}, {14, 6}, {17, 10}, {16, 9}, {9, 23}})
      for (int i = 0; i < count; ++i) v[k++] = float(code);
    fs::create_directories(fs::path(path(season, "lc", patch)).parent_path());
    write_geotiff(path(season, "lc", patch), Tensor<float>::from_vector({4, kSize, kSize}, v),
                  GeoTiffWriteOptions().sample_type(type));
  }
};

}  // namespace

// ================================================================================================
// resize_bilinear
// ================================================================================================

TEST_CASE("resize_bilinear: matches PyTorch interpolate(bilinear, align_corners=False)", "[data][resample]") {
  const auto cases = load_resample_goldens();
  REQUIRE(cases.size() >= 7);
  for (const auto& c : cases) {
    INFO("case " << c.C << "x" << c.h << "x" << c.w << " -> " << c.H << "x" << c.W);
    const std::vector<float> in = golden_input(c.C, c.h, c.w);
    const Tensor<float> x = Tensor<float>::from_vector({c.C, c.h, c.w}, in);  // [C, h, w]
    const Tensor<float> y = resize_bilinear(x, c.H, c.W);                     // [C, H, W]
    REQUIRE(y.shape() == Shape{c.C, c.H, c.W});
    // Same weights as PyTorch; the sums may round differently (FMA contraction, association) by a
    // few ulps of the largest input (|x| <= 7), which matters where neighbours cancel.
    const loom::test::Tol float_sum{8 * 1.2e-7 * 7, 1e-5};
    loom::test::require_close(y, c.expected_f32, float_sum);
    const Tensor<double> yd = resize_bilinear(x.to<double>(), c.H, c.W);
    loom::test::require_close(yd, c.expected_f64, loom::test::tol_for<double>());
  }
}

TEST_CASE("resize_bilinear: matches a naive double loop at odd sizes", "[data][resample]") {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> d(-100.0f, 100.0f);
  const int64_t sizes[][5] = {{1, 1, 7, 97, 1}, {2, 7, 7, 225, 97}, {1, 225, 97, 7, 1}, {3, 20, 20, 120, 120},
                              {1, 60, 60, 120, 120}, {1, 97, 1, 7, 225}, {2, 5, 3, 5, 3}};
  for (const auto& s : sizes) {
    const int64_t C = s[0], h = s[1], w = s[2], H = s[3], W = s[4];
    INFO(C << "x" << h << "x" << w << " -> " << H << "x" << W);
    std::vector<float> v(size_t(C * h * w));
    for (auto& x : v) x = d(rng);
    const Tensor<float> x = Tensor<float>::from_vector({C, h, w}, v);
    const std::vector<double> ref = reference_resize(loom::test::to_double(v), C, h, w, H, W);
    // float: exact arithmetic on float-rounded scales, up to a few roundings of the largest |input|
    const std::vector<double> ref_float_scale = reference_resize(loom::test::to_double(v), C, h, w, H, W, true);
    loom::test::require_close(resize_bilinear(x, H, W), ref_float_scale, {8 * 1.2e-7 * 100, 1e-5});
    loom::test::require_close(resize_bilinear(x.to<double>(), H, W), ref, {1e-10, 1e-10});
    loom::test::require_close(resize_bilinear(x.to<bf16>(), H, W),
                              reference_resize(loom::test::to_double(x.to<bf16>()), C, h, w, H, W, true),
                              loom::test::tol_for<bf16>());
  }
}

TEST_CASE("resize_bilinear: strided, expanded, 2-d and 4-d inputs", "[data][resample]") {
  std::vector<float> v(2 * 9 * 5);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float((i * 37) % 23) - 11.0f;
  const Tensor<float> base = Tensor<float>::from_vector({2, 9, 5}, v);  // [C, w=9, h=5] in memory
  const Tensor<float> x = base.transpose(1, 2);                         // [C, h=5, w=9], strided
  REQUIRE(!x.is_contiguous());
  const std::vector<double> xs = loom::test::to_double(x);
  loom::test::require_close(resize_bilinear(x, 11, 4), reference_resize(xs, 2, 5, 9, 11, 4), {1e-5, 1e-5});
  // A sliced view with a step.
  const Tensor<float> sliced = base.slice(1, 1, 9, 2);  // [2, 4, 5]
  loom::test::require_close(resize_bilinear(sliced, 3, 7),
                            reference_resize(loom::test::to_double(sliced), 2, 4, 5, 3, 7), {1e-5, 1e-5});
  // Stride-0 expanded input: every row equals the resized single row.
  const Tensor<float> row = Tensor<float>::from_vector({1, 1, 4}, std::vector<float>{1, 5, -2, 8});
  const Tensor<float> expanded = row.expand({3, 6, 4});
  loom::test::require_close(resize_bilinear(expanded, 2, 9),
                            reference_resize(loom::test::to_double(expanded), 3, 6, 4, 2, 9), {1e-5, 1e-5});
  // [h, w] and [N, C, h, w].
  const Tensor<float> plane = base.select(0, 1);  // [9, 5]
  loom::test::require_close(resize_bilinear(plane, 4, 4),
                            reference_resize(loom::test::to_double(plane), 1, 9, 5, 4, 4), {1e-5, 1e-5});
  const Tensor<float> batch = base.reshape({2, 1, 9, 5});
  REQUIRE(resize_bilinear(batch, 3, 3).shape() == Shape{2, 1, 3, 3});
  loom::test::require_close(resize_bilinear(batch, 3, 3), reference_resize(loom::test::to_double(v), 2, 9, 5, 3, 3),
                            {1e-5, 1e-5});
  // Same size: an equal copy.
  const Tensor<float> same = resize_bilinear(x, 5, 9);
  loom::test::require_close(same, xs, {0, 0});
  REQUIRE(same.is_contiguous());
}

TEST_CASE("resize_bilinear: argument errors name the shapes", "[data][resample]") {
  REQUIRE_THROWS_AS(resize_bilinear(Tensor<float>::zeros({5}), 2, 2), Error);
  REQUIRE_THROWS_WITH(resize_bilinear(Tensor<float>::zeros({5}), 2, 2),
                      Catch::Contains("resize_bilinear") && Catch::Contains("[5]"));
  REQUIRE_THROWS_WITH(resize_bilinear(Tensor<float>::zeros({1, 3, 3}), 0, 2),
                      Catch::Contains("0 x 2") && Catch::Contains("[1, 3, 3]"));
  REQUIRE_THROWS_WITH(resize_bilinear(Tensor<float>::zeros({1, 0, 3}), 2, 2),
                      Catch::Contains("empty") && Catch::Contains("[1, 0, 3]"));
  REQUIRE_THROWS_WITH(resize_bilinear(Tensor<float>(), 2, 2), Catch::Contains("resize_bilinear"));
}

// ================================================================================================
// vocabularies, normalization, statistics
// ================================================================================================

TEST_CASE("sample: the 43 -> 19 BigEarthNet mapping", "[data][sample]") {
  // Spot checks against DESIGN.md §4, entry by entry for the many-to-one and dropped labels.
  const std::map<std::string, int> expected = {
      {"Continuous urban fabric", 0}, {"Discontinuous urban fabric", 0}, {"Industrial or commercial units", 1},
      {"Road and rail networks and associated land", -1}, {"Port areas", -1}, {"Airports", -1},
      {"Mineral extraction sites", -1}, {"Dump sites", -1}, {"Construction sites", -1}, {"Green urban areas", -1},
      {"Sport and leisure facilities", -1}, {"Non-irrigated arable land", 2}, {"Permanently irrigated land", 2},
      {"Rice fields", 2}, {"Vineyards", 3}, {"Fruit trees and berry plantations", 3}, {"Olive groves", 3},
      {"Pastures", 4}, {"Annual crops associated with permanent crops", 3}, {"Complex cultivation patterns", 5},
      {"Land principally occupied by agriculture, with significant areas of natural vegetation", 6},
      {"Agro-forestry areas", 7}, {"Broad-leaved forest", 8}, {"Coniferous forest", 9}, {"Mixed forest", 10},
      {"Natural grassland", 11}, {"Moors and heathland", 12}, {"Sclerophyllous vegetation", 12},
      {"Transitional woodland/shrub", 13}, {"Beaches, dunes, sands", 14}, {"Bare rock", -1},
      {"Sparsely vegetated areas", 11}, {"Burnt areas", -1}, {"Inland marshes", 15}, {"Peatbogs", 15},
      {"Salt marshes", 16}, {"Salines", 16}, {"Intertidal flats", -1}, {"Water courses", 17}, {"Water bodies", 17},
      {"Coastal lagoons", 18}, {"Estuaries", 18}, {"Sea and ocean", 18}};
  REQUIRE(expected.size() == 43);
  for (const auto& [name, index] : expected) {
    INFO(name);
    const LabelLookup l = bigearthnet19_lookup(name);
    CHECK(l.known);
    CHECK(l.index19 == index);
  }
  for (int c = 0; c < 19; ++c) CHECK(bigearthnet19_lookup(kBigEarthNet19Classes[size_t(c)]).index19 == c);
  CHECK(std::string(kBigEarthNet19Classes[11]) == "Natural grassland and sparsely vegetated areas");
  CHECK(!bigearthnet19_lookup("Glaciers and perpetual snow").known);
  // CLC codes of the reference maps.
  CHECK(bigearthnet19_index_of_clc(111) == 0);
  CHECK(bigearthnet19_index_of_clc(243) == 6);
  CHECK(bigearthnet19_index_of_clc(324) == 13);
  CHECK(bigearthnet19_index_of_clc(523) == 18);
  CHECK(bigearthnet19_index_of_clc(122) == -1);
  CHECK(!bigearthnet19_index_of_clc(335).has_value());
  CHECK(!bigearthnet19_index_of_clc(0).has_value());

  loom::test::require_close(bigearthnet19_multi_hot({"Peatbogs", "Inland marshes", "Airports", "Mixed forest"}, "x"),
                            {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0}, {0, 0});
  REQUIRE_THROWS_AS(bigearthnet19_multi_hot({"Pastures", "Lava"}, "patch_7"), Error);
  REQUIRE_THROWS_WITH(bigearthnet19_multi_hot({"Lava"}, "patch_7"),
                      Catch::Contains("patch_7") && Catch::Contains("\"Lava\""));
}

TEST_CASE("sample: normalize uses the published BigEarthNet statistics by band name", "[data][sample]") {
  Sample s;
  s.s2_name = "p";
  s.s1 = Tensor<float>::from_vector({2, 1, 2}, std::vector<float>{-12.62f, 0.0f, -19.29f, -30.0f});  // [2, 1, 2]
  std::vector<float> s2(12);
  for (size_t b = 0; b < 12; ++b) s2[b] = 1000.0f + float(b);
  s.s2 = Tensor<float>::from_vector({12, 1, 1}, s2);
  const Sample n = normalize(s);
  // Values typed from DESIGN.md §4 independently of the table in sample.hpp.
  loom::test::require_close(n.s1, {0.0, 12.62 / 5.116, 0.0, (-30.0 + 19.29) / 5.464}, {1e-6, 1e-5});
  const double mean[12] = {340.77, 429.94, 614.22, 590.24, 950.68, 1792.46, 2075.47, 2218.95, 2266.46, 2246.06,
                           1594.43, 1009.33};
  const double stdv[12] = {554.81, 572.42, 582.88, 675.89, 729.90, 1096.01, 1273.45, 1365.46, 1356.14, 1302.33,
                           1079.19, 818.87};
  std::vector<double> expected;
  for (size_t b = 0; b < 12; ++b) expected.push_back((1000.0 + double(b) - mean[b]) / stdv[b]);
  loom::test::require_close(n.s2, expected, {1e-6, 1e-5});
  // The input is untouched; a strided s2 works as well.
  loom::test::require_close(s.s1, {-12.62f, 0.0f, -19.29f, -30.0f}, {0, 0});

  // A band without statistics (SEN12MS B10) and a tensor/name mismatch are errors.
  Sample b10 = s;
  b10.s2_bands[3] = "B10";
  REQUIRE_THROWS_AS(normalize(b10), Error);
  REQUIRE_THROWS_WITH(normalize(b10), Catch::Contains("B10") && Catch::Contains("no statistics"));
  Sample wrong = s;
  wrong.s2_bands.pop_back();
  REQUIRE_THROWS_WITH(normalize(wrong), Catch::Contains("[12, 1, 1]") && Catch::Contains("11 band names"));
  Sample only_s1;
  only_s1.s1 = s.s1;
  CHECK(!normalize(only_s1).has_s2());
}

TEST_CASE("sample: compute_band_statistics over a dataset", "[data][sample]") {
  std::mt19937 rng(3);
  std::normal_distribution<float> d(500.0f, 80.0f);
  std::vector<Sample> samples;
  std::map<std::string, std::vector<double>> pixels;  // band -> every pixel value
  for (int k = 0; k < 4; ++k) {
    Sample s;
    const int64_t side = 3 + k;  // different sizes per sample
    std::vector<float> s1(size_t(2 * side * side)), s2(size_t(12 * side * side));
    for (auto& v : s1) v = d(rng) / 50.0f - 20.0f;
    for (auto& v : s2) v = d(rng) * float(k + 1);
    if (k != 2) {  // sample 2 has no SAR
      s.s1 = Tensor<float>::from_vector({2, side, side}, s1);
      for (size_t i = 0; i < s1.size(); ++i) pixels[kS1Bands[i / size_t(side * side)]].push_back(s1[i]);
    }
    s.s2 = Tensor<float>::from_vector({12, side, side}, s2);
    for (size_t i = 0; i < s2.size(); ++i) pixels[kS2Bands[i / size_t(side * side)]].push_back(s2[i]);
    samples.push_back(s);
  }
  const MemoryDataset ds(samples, std::vector<bool>(4, false), {});
  const BandStatistics stats = compute_band_statistics(ds);
  REQUIRE(stats.bands.size() == 14);
  for (const auto& [band, values] : pixels) {
    INFO(band);
    double mean = 0;
    for (double v : values) mean += v;
    mean /= double(values.size());
    double var = 0;
    for (double v : values) var += (v - mean) * (v - mean);
    const auto k = stats.find(band);
    REQUIRE(k.has_value());
    loom::test::require_close(std::vector<double>{stats.mean[*k], stats.stddev[*k]},
                              {mean, std::sqrt(var / double(values.size()))}, {1e-9, 1e-9});
  }
  const BandStatistics first = compute_band_statistics(ds, 1);
  CHECK(first.find("VV").has_value());
  CHECK(compute_band_statistics(ds, 0).bands.empty());
}

// ================================================================================================
// spec strings and the bad-data policy
// ================================================================================================

TEST_CASE("dataset: spec parsing and errors", "[data][dataset]") {
  const DatasetSpec spec = DatasetSpec::parse("bigearthnet:/data/ben?split=/x/train.csv&size=60&strict_sizes=0");
  CHECK(spec.scheme() == "bigearthnet");
  CHECK(spec.path() == "/data/ben");
  CHECK(spec.get("split") == "/x/train.csv");
  CHECK(spec.get_int("size", 120) == 60);
  CHECK(spec.get_bool("strict_sizes", true) == false);
  CHECK(spec.get_int("absent", 7) == 7);
  REQUIRE_NOTHROW(spec.finish());
  const DatasetSpec unused = DatasetSpec::parse("x:/p?a=1&b=2");
  unused.get("a");
  REQUIRE_THROWS_WITH(unused.finish(), Catch::Contains("unknown option b") && Catch::Contains("known: a"));
  const DatasetSpec typed = DatasetSpec::parse("x:/p?n=12x&f=abc&b=maybe&l=a,,b,c");
  REQUIRE_THROWS_WITH(typed.get_int("n", 0), Catch::Contains("n=12x") && Catch::Contains("not an integer"));
  REQUIRE_THROWS_WITH(typed.get_double("f", 0), Catch::Contains("f=abc") && Catch::Contains("not a number"));
  REQUIRE_THROWS_WITH(typed.get_bool("b", false), Catch::Contains("b=maybe") && Catch::Contains("not a boolean"));
  CHECK(typed.get_list("l") == std::vector<std::string>{"a", "b", "c"});
  CHECK(DatasetSpec::parse("synthetic").scheme() == "synthetic");  // a bare scheme, no path
  REQUIRE_THROWS_WITH(DatasetSpec::parse("data/ben"), Catch::Contains("<scheme>:<path>"));
  REQUIRE_THROWS_WITH(DatasetSpec::parse(":/p"), Catch::Contains("<scheme>:<path>"));
  REQUIRE_THROWS_WITH(DatasetSpec::parse("x:/p?novalue"), Catch::Contains("\"novalue\" is not key=value"));
  REQUIRE_THROWS_WITH(DatasetSpec::parse("x:/p?a=1&a=2"), Catch::Contains("option a given twice"));
  REQUIRE_THROWS_WITH(DatasetSpec::parse("x:/p?on_bad=ignore").bad_data_policy(),
                      Catch::Contains("on_bad=ignore"));

  // Unknown schemes list the known ones; built-in schemes are registered.
  const auto names = dataset_scheme_names();
  CHECK(std::find(names.begin(), names.end(), "bigearthnet") != names.end());
  CHECK(std::find(names.begin(), names.end(), "sen12ms") != names.end());
  REQUIRE_THROWS_AS(open_dataset("imagenet:/data"), Error);
  REQUIRE_THROWS_WITH(open_dataset("imagenet:/data"), Catch::Contains("unknown scheme \"imagenet\"") &&
                                                          Catch::Contains("bigearthnet:<dir>") &&
                                                          Catch::Contains("sen12ms:<dir>"));
  REQUIRE_THROWS_WITH(open_dataset("bigearthnet:/nonexistent/loom/dir"),
                      Catch::Contains("/nonexistent/loom/dir") && Catch::Contains("not a directory"));
  REQUIRE_THROWS_WITH(open_dataset("sen12ms:/nonexistent/loom/dir"), Catch::Contains("not a directory"));
  REQUIRE_THROWS_WITH(open_dataset("bigearthnet:/nonexistent?splitt=a.csv"),
                      Catch::Contains("unknown option splitt") && Catch::Contains("split"));
  REQUIRE_THROWS_WITH(open_dataset("bigearthnet:/x?modalities=sar"), Catch::Contains("modalities=sar"));

  // A scheme registered from outside (as the synthetic / packed readers will).
  register_dataset_scheme({"test-memory", "test-memory:<n>", [](const DatasetSpec& s) -> std::unique_ptr<Dataset> {
                             std::vector<Sample> samples(size_t(std::stoi(s.path())));
                             for (auto& x : samples) x.labels = Tensor<float>::zeros({2});
                             return std::make_unique<MemoryDataset>(samples, std::vector<bool>(samples.size()),
                                                                    s.bad_data_policy());
                           }});
  CHECK(open_dataset("test-memory:3")->size() == 3);
  REQUIRE_THROWS_WITH(open_dataset("test-memory:3?bogus=1"), Catch::Contains("unknown option bogus"));
}

TEST_CASE("dataset: bad samples are an error, or skipped with a warning and counted", "[data][dataset]") {
  std::vector<Sample> samples(5);
  for (size_t i = 0; i < samples.size(); ++i) samples[i].labels = Tensor<float>::full({2}, float(i));
  const std::vector<bool> bad = {false, true, true, false, true};

  const MemoryDataset strict(samples, bad, {});
  CHECK(strict.get(0).labels.at({0}) == 0.0f);
  REQUIRE_THROWS_AS(strict.get(1), Error);
  REQUIRE_THROWS_WITH(strict.get(1), Catch::Contains("memory sample 1 is broken"));
  REQUIRE_THROWS_WITH(strict.get(5), Catch::Contains("index 5 out of range") && Catch::Contains("5 samples"));
  REQUIRE_THROWS_WITH(strict.get(-1), Catch::Contains("index -1"));
  CHECK(strict.skipped() == 0);

  std::vector<std::string> warnings;
  BadDataPolicy skip{OnBadSample::skip, [&](const std::string& m) { warnings.push_back(m); }};
  const MemoryDataset lenient(samples, bad, skip);
  CHECK(lenient.get(1).labels.at({0}) == 3.0f);  // 1 and 2 are bad: the next good one is 3
  CHECK(lenient.skipped() == 2);
  CHECK(lenient.get(2).labels.at({0}) == 3.0f);
  CHECK(lenient.skipped() == 2);  // known bad samples are not re-read or re-counted
  CHECK(lenient.get(4).labels.at({0}) == 0.0f);  // wraps around
  CHECK(lenient.skipped() == 3);
  REQUIRE(warnings.size() == 3);
  CHECK_THAT(warnings[0], Catch::Contains("skipping sample 1") && Catch::Contains("broken"));
  CHECK(lenient.skip_messages() == warnings);

  const MemoryDataset hopeless(samples, std::vector<bool>(5, true), skip);
  REQUIRE_THROWS_WITH(hopeless.get(0), Catch::Contains("all 5 samples are bad"));
}

// ================================================================================================
// BigEarthNet on trees written here
// ================================================================================================

TEST_CASE("bigearthnet: pairing by metadata, single-modality samples, bands and labels", "[data][bigearthnet]") {
  if (!kGeoTiffSupported) LOOM_SKIP("loom built without libtiff");
  MiniBigEarthNet ben;
  build_standard_tree(ben);
  const auto ds = open_dataset(ben.spec());
  REQUIRE(ds->size() == 4);
  REQUIRE(ds->num_classes() == 19);
  // S2 patches by name (A, C, B: "S2A..." < "S2B..."), then S1 patches without an S2 folder.
  CHECK(ds->name(0) == kA);
  CHECK(ds->name(1) == kC);
  CHECK(ds->name(2) == kB);
  CHECK(ds->name(3) == kd);

  const Sample a = ds->get(0);
  CHECK(a.s2_name == kA);
  CHECK(a.s1_name == ka);
  REQUIRE(a.s2.shape() == Shape{12, 12, 12});
  REQUIRE(a.s1.shape() == Shape{2, 12, 12});
  CHECK(a.s2_bands == s2_band_names());
  loom::test::require_close(a.labels, loom::test::to_double(hot19({2, 9})), {0, 0});
  // 10 m bands unchanged; 20 m and 60 m bands resized from 6x6 and 2x2 like the reference loop.
  for (size_t b = 0; b < 12; ++b) {
    INFO("band " << kS2Bands[b]);
    const int64_t n = kMini * 10 / kS2BandResolution[b];
    std::vector<double> native;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) native.push_back(mini_value(1000, b, n, i, j));
    loom::test::require_close(a.s2.select(0, int64_t(b)), reference_resize(native, 1, n, n, kMini, kMini),
                              {1e-4, 1e-6});
  }
  std::vector<double> vh;
  for (int64_t i = 0; i < kMini * kMini; ++i) vh.push_back(-20.0 + 1.0 + double(i) * 0.125);
  loom::test::require_close(a.s1.select(0, 1), vh, {0, 0});

  const Sample c = ds->get(1);  // S2 without a partner
  CHECK(c.has_s2());
  CHECK(!c.has_s1());
  CHECK(c.s1_name.empty());
  loom::test::require_close(c.labels, loom::test::to_double(hot19({18})), {0, 0});
  const Sample d = ds->get(3);  // S1 whose partner folder is missing: labels from its own JSON
  CHECK(!d.has_s2());
  CHECK(d.has_s1());
  CHECK(d.s2_name.empty());
  CHECK(d.name() == kd);
  loom::test::require_close(d.labels, loom::test::to_double(hot19({17})), {0, 0});

  // One modality only.
  const auto s2_only = open_dataset(ben.spec("modalities=s2"));
  REQUIRE(s2_only->size() == 3);
  CHECK(!s2_only->get(0).has_s1());
  const auto s1_only = open_dataset(ben.spec("modalities=s1"));
  REQUIRE(s1_only->size() == 3);
  CHECK(s1_only->name(0) == ka);
  CHECK(s1_only->name(1) == kd);
  CHECK(s1_only->name(2) == kb);
  CHECK(!s1_only->get(0).has_s2());
  loom::test::require_close(s1_only->get(2).labels, loom::test::to_double(hot19({4})), {0, 0});

  // strict_sizes=0 resamples every band to any size.
  const auto small = open_dataset("bigearthnet:" + ben.root() + "?size=5&strict_sizes=0");
  CHECK(small->get(0).s2.shape() == Shape{12, 5, 5});
  CHECK(small->get(0).s1.shape() == Shape{2, 5, 5});
  REQUIRE_THROWS_WITH(open_dataset("bigearthnet:" + ben.root() + "?size=10"),
                      Catch::Contains("size=10") && Catch::Contains("multiple of 6"));
  REQUIRE_THROWS_WITH(open_dataset("bigearthnet:" + ben.root())->get(0),
                      Catch::Contains(kA + "_B01.tif") && Catch::Contains("wrong size 2x2, expected 20x20"));
}

TEST_CASE("bigearthnet: split CSVs and exclusion lists", "[data][bigearthnet]") {
  if (!kGeoTiffSupported) LOOM_SKIP("loom built without libtiff");
  MiniBigEarthNet ben;
  build_standard_tree(ben);
  TempDir lists;
  // Header, an explicit pair (in file order, columns either way round), an S2-only row paired
  // through the S1 metadata, and a row whose patches do not exist.
  const std::string split = lists.write("split.csv", "s2_name,s1_name\r\n" + kb + "," + kB + "\r\n" + kA + "\r\n\r\n");
  const auto ds = open_dataset(ben.spec("split=" + split));
  REQUIRE(ds->size() == 2);
  CHECK(ds->name(0) == kB);
  CHECK(ds->get(0).s1_name == kb);
  CHECK(ds->get(1).s1_name == ka);

  const std::string missing = lists.write("missing.csv", kC + "\nS2A_MSIL2A_20991231T000000_9_9,S1A_IW_GRDH_1SDV_x_9_9\n");
  REQUIRE_THROWS_AS(open_dataset(ben.spec("split=" + missing)), Error);
  REQUIRE_THROWS_WITH(open_dataset(ben.spec("split=" + missing)),
                      Catch::Contains("no patch folder") && Catch::Contains("S2A_MSIL2A_20991231T000000_9_9"));
  std::vector<std::string> warnings;
  BigEarthNetOptions options;
  options.root = ben.root();
  options.size = kMini;
  options.split = missing;
  options.bad = {OnBadSample::skip, [&](const std::string& m) { warnings.push_back(m); }};
  const BigEarthNet lenient(options);
  CHECK(lenient.size() == 1);
  CHECK(lenient.skipped() == 1);
  REQUIRE(warnings.size() == 1);
  CHECK_THAT(warnings[0], Catch::Contains("S2A_MSIL2A_20991231T000000_9_9"));

  const std::string bad_row = lists.write("bad_row.csv", kA + "\nnot a patch\n");
  REQUIRE_THROWS_WITH(open_dataset(ben.spec("split=" + bad_row)),
                      Catch::Contains("line 2") && Catch::Contains("not a patch"));
  REQUIRE_THROWS_WITH(open_dataset(ben.spec("split=train")),
                      Catch::Contains("split=train") && Catch::Contains("neither a file"));

  // Exclusion lists name S1 or S2 patches (one per line or as CSV cells); listing either drops
  // the pair.
  const std::string snow = lists.write("snow.csv", kb + "\n");
  const std::string cloud = lists.write("cloud.csv", "patch,reason\n" + kC + ",cloud\n");
  const auto kept = open_dataset(ben.spec("exclude=" + snow + "," + cloud));
  REQUIRE(kept->size() == 2);
  CHECK(kept->name(0) == kA);
  CHECK(kept->name(1) == kd);
  REQUIRE_THROWS_WITH(open_dataset(ben.spec("exclude=" + lists.file("nope.csv"))),
                      Catch::Contains("exclude list") && Catch::Contains("nope.csv"));
}

TEST_CASE("bigearthnet: bad patches are errors or skipped per on_bad", "[data][bigearthnet]") {
  if (!kGeoTiffSupported) LOOM_SKIP("loom built without libtiff");
  MiniBigEarthNet ben;
  build_standard_tree(ben);
  const std::string a_dir = "BigEarthNet-v1.0/" + kA + "/";
  const std::string b_dir = "BigEarthNet-v1.0/" + kB + "/";
  const std::string c_dir = "BigEarthNet-v1.0/" + kC + "/";
  fs::remove(ben.dir.file(a_dir + kA + "_B05.tif"));                                      // A: missing band
  write_geotiff(ben.dir.file(c_dir + kC + "_B03.tif"), Tensor<float>::ones({1, 20, 20}),  // C: wrong size
                GeoTiffWriteOptions().sample_type(RasterType::u16));
  std::vector<float> vv(size_t(kMini * kMini), -12.0f);
  vv[17] = INFINITY;  // b: non-finite backscatter
  write_geotiff(ben.dir.file("BigEarthNet-S1-v1.0/" + kb + "/" + kb + "_VV.tif"),
                Tensor<float>::from_vector({1, kMini, kMini}, vv));
  ben.dir.write("BigEarthNet-S1-v1.0/" + kd + "/" + kd + "_labels_metadata.json",
                "{\"labels\": [\"Lava fields\"], \"corresponding_s2_patch\": \"" + kD + "\"}");  // d: unknown label

  const auto strict = open_dataset(ben.spec());
  REQUIRE(strict->size() == 4);
  REQUIRE_THROWS_AS(strict->get(0), Error);
  REQUIRE_THROWS_WITH(strict->get(0), Catch::Contains("missing band file") && Catch::Contains(kA + "_B05.tif"));
  REQUIRE_THROWS_WITH(strict->get(1), Catch::Contains(kC + "_B03.tif") &&
                                          Catch::Contains("wrong size 20x20, expected 12x12"));
  REQUIRE_THROWS_WITH(strict->get(2), Catch::Contains(kb + "_VV.tif") && Catch::Contains("non-finite value inf"));
  REQUIRE_THROWS_WITH(strict->get(3), Catch::Contains(kd) && Catch::Contains("unknown label \"Lava fields\""));
  CHECK(strict->skipped() == 0);

  // Every sample bad: skip reports all of them.
  const auto lenient = open_dataset(ben.spec("on_bad=skip"));
  REQUIRE_THROWS_WITH(lenient->get(0), Catch::Contains("all 4 samples are bad"));
  CHECK(lenient->skipped() == 4);

  // Repair B's S1 band: skipping now lands on B.
  vv[17] = -12.0f;
  write_geotiff(ben.dir.file("BigEarthNet-S1-v1.0/" + kb + "/" + kb + "_VV.tif"),
                Tensor<float>::from_vector({1, kMini, kMini}, vv));
  std::vector<std::string> warnings;
  BigEarthNetOptions options;
  options.root = ben.root();
  options.size = kMini;
  options.bad = {OnBadSample::skip, [&](const std::string& m) { warnings.push_back(m); }};
  const BigEarthNet skipping(options);
  CHECK(skipping.get(0).s2_name == kB);
  CHECK(skipping.skipped() == 2);  // A and C
  CHECK(skipping.get(3).s2_name == kB);  // d is bad; wraps past A and C (known bad) to B
  CHECK(skipping.skipped() == 3);
  CHECK(warnings.size() == 3);
  // validate=1 reads everything while opening and keeps only good samples.
  options.validate = true;
  const BigEarthNet validated(options);
  REQUIRE(validated.size() == 1);
  CHECK(validated.name(0) == kB);
  CHECK(validated.skipped() == 3);

  // Metadata problems while pairing are bad entries too.
  ben.dir.write("BigEarthNet-S1-v1.0/" + ka + "/" + ka + "_labels_metadata.json", "{\"labels\": [\"Pastures\",");
  REQUIRE_THROWS_WITH(open_dataset(ben.spec()), Catch::Contains(ka + "_labels_metadata.json"));
  fs::remove(ben.dir.file("BigEarthNet-S1-v1.0/" + ka + "/" + ka + "_labels_metadata.json"));
  REQUIRE_THROWS_WITH(open_dataset(ben.spec()), Catch::Contains("missing metadata file"));
  const auto without_a = open_dataset(ben.spec("on_bad=skip"));
  CHECK(without_a->skipped() == 1);
  CHECK(without_a->size() == 4);  // A stays as an S2-only sample, a is dropped
}

TEST_CASE("bigearthnet: reBEN layout with reference maps and a metadata CSV", "[data][bigearthnet]") {
  if (!kGeoTiffSupported) LOOM_SKIP("loom built without libtiff");
  MiniBigEarthNet ben;
  const std::string tile = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP";
  const std::string p1 = tile + "_26_57", p2 = tile + "_26_58";
  ben.s2(p1, {}, 1000, "BigEarthNet-S2/" + tile, false);
  ben.s2(p2, {}, 2000, "BigEarthNet-S2/" + tile, false);
  // p1's map: 211 arable 50%, 312 coniferous 30%, 523 sea 5%, 122 roads (dropped) 10%, 999 unknown 5%.
  std::vector<float> codes;
  for (auto [code, count] : std::vector<std::pair<int, int>>{{211, 72}, {312, 43}, {523, 7}, {122, 15}, {999, 7}})
    for (int i = 0; i < count; ++i) codes.push_back(float(code));
  REQUIRE(codes.size() == 144);
  fs::create_directories(ben.dir.path / "Reference_Maps" / tile / p1);
  write_geotiff(ben.dir.file("Reference_Maps/" + tile + "/" + p1 + "/" + p1 + "_reference_map.tif"),
                Tensor<float>::from_vector({1, 12, 12}, codes), GeoTiffWriteOptions().sample_type(RasterType::u16));
  // p2's map sits beside its bands.
  write_geotiff(ben.dir.file("BigEarthNet-S2/" + tile + "/" + p2 + "/" + p2 + "_reference_map.tif"),
                Tensor<float>::full({1, 12, 12}, 411.0f), GeoTiffWriteOptions().sample_type(RasterType::u16));

  const auto ds = open_dataset(ben.spec());
  REQUIRE(ds->size() == 2);
  CHECK(ds->name(0) == p1);
  loom::test::require_close(ds->get(0).labels, loom::test::to_double(hot19({2, 9, 18})), {0, 0});
  loom::test::require_close(ds->get(1).labels, loom::test::to_double(hot19({15})), {0, 0});
  const auto dominant = open_dataset(ben.spec("min_label_fraction=0.1&labels=reference_map"));
  loom::test::require_close(dominant->get(0).labels, loom::test::to_double(hot19({2, 9})), {0, 0});
  REQUIRE_THROWS_WITH(open_dataset(ben.spec("labels=json"))->get(0), Catch::Contains("missing metadata file"));
  REQUIRE_THROWS_WITH(open_dataset(ben.spec("min_label_fraction=1.5")), Catch::Contains("min_label_fraction"));
  fs::remove(ben.dir.file("Reference_Maps/" + tile + "/" + p1 + "/" + p1 + "_reference_map.tif"));
  REQUIRE_THROWS_WITH(ds->get(0), Catch::Contains(p1) && Catch::Contains("no labels metadata JSON and no reference map"));

  // reBEN metadata exported to CSV: Python-list label cells (19-class names, with commas inside),
  // an s1_name column and a split column.
  TempDir lists;
  const std::string csv = lists.write(
      "metadata.csv",
      "patch_id,labels,split,s1_name\n" + p1 +
          ",\"['Arable land', 'Land principally occupied by agriculture, with significant areas of natural "
          "vegetation']\",train,\n" +
          p2 + ",\"['Marine waters']\",test,\n");
  const auto from_csv = open_dataset(ben.spec("labels=" + csv));
  REQUIRE(from_csv->size() == 2);
  loom::test::require_close(from_csv->get(0).labels, loom::test::to_double(hot19({2, 6})), {0, 0});
  const auto test_split = open_dataset(ben.spec("labels=" + csv + "&split=test"));
  REQUIRE(test_split->size() == 1);
  CHECK(test_split->name(0) == p2);
  loom::test::require_close(test_split->get(0).labels, loom::test::to_double(hot19({18})), {0, 0});
  const std::string no_labels = lists.write("bad.csv", "patch_id,tags\n" + p1 + ",x\n");
  REQUIRE_THROWS_WITH(open_dataset(ben.spec("labels=" + no_labels)),
                      Catch::Contains("patch_id (or s2_name) and labels"));
  const std::string ragged = lists.write("ragged.csv", "patch_id,labels\n" + p1 + ",Pastures,extra\n");
  REQUIRE_THROWS_WITH(open_dataset(ben.spec("labels=" + ragged)), Catch::Contains("line 2") && Catch::Contains("3 cells"));
  const std::string partial = lists.write("partial.csv", "patch_id,labels\n" + p1 + ",Pastures;Peatbogs\n");
  const auto partial_ds = open_dataset(ben.spec("labels=" + partial));
  loom::test::require_close(partial_ds->get(0).labels, loom::test::to_double(hot19({4, 15})), {0, 0});
  REQUIRE_THROWS_WITH(partial_ds->get(1), Catch::Contains(p2) && Catch::Contains("not in labels CSV"));
}

// ================================================================================================
// SEN12MS on a tree written here
// ================================================================================================

TEST_CASE("sen12ms: bands, clipping, scaling and IGBP labels", "[data][sen12ms]") {
  if (!kGeoTiffSupported) LOOM_SKIP("loom built without libtiff");
  MiniSen12ms s12;
  s12.s1("ROIs1158_spring", 2);
  s12.s2("ROIs1158_spring", 2);
  s12.lc("ROIs1158_spring", 2);
  s12.s1("ROIs1158_spring", 10);  // scene order is numeric: p2 before p10
  s12.lc("ROIs1158_spring", 10, RasterType::u16);
  s12.s2("ROIs1868_summer", 1);   // s2 + lc only
  s12.lc("ROIs1868_summer", 1);

  const auto ds = open_dataset(s12.spec());
  REQUIRE(ds->size() == 3);
  REQUIRE(ds->num_classes() == 10);
  CHECK(ds->class_names()[5] == "Croplands");
  CHECK(ds->name(0) == "ROIs1158_spring_1_p2");
  CHECK(ds->name(1) == "ROIs1158_spring_1_p10");
  CHECK(ds->name(2) == "ROIs1868_summer_1_p1");

  const Sample s = ds->get(0);
  CHECK(s.s1_name == "ROIs1158_spring_s1_1_p2");
  CHECK(s.s2_name == "ROIs1158_spring_s2_1_p2");
  // Forest 45%, Savanna 23%, Croplands 7% + 6% = 13%, Water exactly 10% (counts), Barren 9% (not).
  loom::test::require_close(s.labels, {1, 0, 1, 0, 0, 1, 0, 0, 0, 1}, {0, 0});
  // s1: NaN -> 0, then clipped to [-25, 0] dB.
  REQUIRE(s.s1.shape() == Shape{2, 10, 10});
  std::vector<double> s1;
  for (int64_t i = 0; i < 200; ++i) s1.push_back(i == 3 ? 0.0 : std::clamp(double(i % 40) - 32.0, -25.0, 0.0));
  loom::test::require_close(s.s1, s1, {0, 0});
  // s2: the reference code's 10 bands in its order, clipped to [0, 10000].
  REQUIRE(s.s2.shape() == Shape{10, 10, 10});
  const std::vector<std::string> reference = {"B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11", "B12"};
  CHECK(s.s2_bands == reference);
  const int file_band[10] = {1, 2, 3, 7, 4, 5, 6, 8, 11, 12};  // 0-based in B01..B12 with B10
  std::vector<double> s2;
  for (int b : file_band)
    for (int64_t i = 0; i < 100; ++i) s2.push_back(std::min(double(b * 1000 + i * 97), 10000.0));
  loom::test::require_close(s.s2, s2, {0, 0});

  const Sample only_s1 = ds->get(1);  // lc stored as uint16 reads the same
  CHECK(!only_s1.has_s2());
  loom::test::require_close(only_s1.labels, {1, 0, 1, 0, 0, 1, 0, 0, 0, 1}, {0, 0});
  CHECK(!ds->get(2).has_s1());

  // 13 and 12 bands; reference scaling; a higher threshold; no clipping makes NaN bad data.
  const Sample all = open_dataset(s12.spec("s2_bands=13"))->get(0);
  REQUIRE(all.s2.shape() == Shape{13, 10, 10});
  CHECK(all.s2_bands[10] == "B10");
  CHECK(all.s2.at({10, 0, 1}) == 10000.0f);
  const Sample twelve = open_dataset(s12.spec("s2_bands=12"))->get(0);
  CHECK(twelve.s2_bands == s2_band_names());
  CHECK(twelve.s2.at({10, 0, 0}) == 10000.0f);  // B11 = file band 11: 11000 clipped
  CHECK(twelve.s2.at({0, 0, 3}) == float(3 * 97));
  const Sample scaled = open_dataset(s12.spec("scale=1"))->get(0);
  CHECK(scaled.s1.at({0, 0, 0}) == 0.0f);                       // -32 dB -> -25 -> 0
  CHECK(scaled.s1.at({0, 3, 0}) == Approx(1.0f - 2.0f / 25));  // -2 dB
  CHECK(scaled.s2.at({0, 0, 1}) == Approx((1000.0f + 97.0f) / 10000.0f));
  loom::test::require_close(open_dataset(s12.spec("threshold=0.2"))->get(0).labels, {1, 0, 1, 0, 0, 0, 0, 0, 0, 0},
                            {0, 0});
  REQUIRE_THROWS_WITH(open_dataset(s12.spec("clip=0"))->get(0),
                      Catch::Contains("ROIs1158_spring_s1_1_p2.tif") && Catch::Contains("non-finite value nan"));
  REQUIRE_THROWS_WITH(open_dataset(s12.spec("s2_bands=11")), Catch::Contains("s2_bands=11"));
  REQUIRE_THROWS_WITH(open_dataset(s12.spec("threshold=0")), Catch::Contains("threshold=0"));
  CHECK(open_dataset(s12.spec("modalities=s2"))->size() == 2);
  CHECK(open_dataset(s12.spec("modalities=s1"))->size() == 2);
  const auto resized = open_dataset("sen12ms:" + s12.dir.path.string() + "?size=4&strict_sizes=0");
  CHECK(resized->get(0).s2.shape() == Shape{10, 4, 4});
  REQUIRE_THROWS_WITH(open_dataset("sen12ms:" + s12.dir.path.string())->get(0),
                      Catch::Contains("wrong size 10x10, expected 256x256"));
}

TEST_CASE("sen12ms: split lists, missing files and the bad-data policy", "[data][sen12ms]") {
  if (!kGeoTiffSupported) LOOM_SKIP("loom built without libtiff");
  MiniSen12ms s12;
  for (int p : {1, 2, 3}) {
    s12.s1("ROIs2017_winter", p);
    s12.s2("ROIs2017_winter", p);
  }
  s12.lc("ROIs2017_winter", 1);
  s12.lc("ROIs2017_winter", 2);  // p3 has no land cover
  s12.lc("ROIs2017_winter", 4);  // p4 has only land cover
  REQUIRE_THROWS_AS(open_dataset(s12.spec()), Error);
  REQUIRE_THROWS_WITH(open_dataset(s12.spec()), Catch::Contains("ROIs2017_winter_1_p3") && Catch::Contains("no lc file"));
  const auto lenient = open_dataset(s12.spec("on_bad=skip"));
  CHECK(lenient->size() == 2);
  CHECK(lenient->skipped() == 2);  // p3 (no labels) and p4 (no imagery)

  TempDir lists;
  // Names of any modality, with or without .tif, in the list's order; duplicates collapse.
  const std::string split = lists.write("train_list.txt", "ROIs2017_winter_s2_1_p2.tif\nROIs2017_winter_s1_1_p1\n"
                                                          "ROIs2017_winter_lc_1_p2.tif\n");
  const auto ds = open_dataset(s12.spec("split=" + split));
  REQUIRE(ds->size() == 2);
  CHECK(ds->name(0) == "ROIs2017_winter_1_p2");
  CHECK(ds->name(1) == "ROIs2017_winter_1_p1");
  const std::string unknown = lists.write("unknown.txt", "ROIs2017_winter_s2_1_p9.tif\n");
  REQUIRE_THROWS_WITH(open_dataset(s12.spec("split=" + unknown)),
                      Catch::Contains("ROIs2017_winter_1_p9") && Catch::Contains("no files"));
  const std::string garbage = lists.write("garbage.txt", "hello.tif\n");
  REQUIRE_THROWS_WITH(open_dataset(s12.spec("split=" + garbage)),
                      Catch::Contains("\"hello.tif\" is not a SEN12MS patch file name"));

  // complete=1: a missing modality is bad data.
  fs::remove(s12.path("ROIs2017_winter", "s2", 1));
  const auto single = open_dataset(s12.spec("split=" + split));
  CHECK(!single->get(1).has_s2());
  REQUIRE_THROWS_WITH(open_dataset(s12.spec("split=" + split + "&complete=1"))->get(1),
                      Catch::Contains("ROIs2017_winter_1_p1") && Catch::Contains("missing s2 file"));
  // A corrupt lc file is bad data naming the file.
  std::ofstream(s12.path("ROIs2017_winter", "lc", 2), std::ios::trunc) << "garbage";
  REQUIRE_THROWS_WITH(ds->get(0), Catch::Contains("ROIs2017_winter_lc_1_p2.tif"));
  REQUIRE_THROWS_WITH(open_dataset("sen12ms:" + lists.path.string()), Catch::Contains("no ROIs"));
}

// ================================================================================================
// the real samples in ../shared/data
// ================================================================================================

TEST_CASE("shared data: readers match rasterio + torch on every real and fixture sample", "[data][shared]") {
  if (!kGeoTiffSupported) LOOM_SKIP("loom built without libtiff");
  const std::string data = loom::test::shared_data_dir();
  if (data.empty()) LOOM_SKIP("shared data absent");
  const auto goldens = load_data_goldens();
  REQUIRE(goldens.size() >= 17);
  std::map<std::string, std::unique_ptr<Dataset>> opened;
  for (const auto& g : goldens) {
    const std::string folder = data + "/" + g.folder;
    std::string options = g.options == "-" ? "" : g.options;
    if (const size_t at = options.find("split="); at != std::string::npos) options.insert(at + 6, folder + "/");
    const std::string scheme = g.folder.find("sen12ms") != std::string::npos ? "sen12ms" : "bigearthnet";
    const std::string spec = scheme + ":" + folder + (options.empty() ? "" : "?" + options);
    auto& ds = opened[spec];
    if (!ds) ds = open_dataset(spec);
    INFO(spec << " sample " << g.index << " " << g.name);
    REQUIRE(g.index < ds->size());
    CHECK(ds->name(g.index) == g.name);
    const Sample s = ds->get(g.index);
    loom::test::require_close(s.labels, loom::test::to_double(g.labels), {0, 0});
    for (const auto& b : g.bands) {
      INFO(b.modality << " channel " << b.channel);
      const Tensor<float>& t = b.modality == "s1" ? s.s1 : s.s2;
      REQUIRE(t.defined());
      double sum = 0, sumsq = 0;
      for (float v : t.select(0, b.channel).to_vector()) sum += v, sumsq += double(v) * double(v);
      loom::test::require_close(std::vector<double>{sum, sumsq}, {b.sum, b.sumsq}, {1e-6, 2e-6});
    }
    std::vector<double> ours, ref;
    for (const auto& p : g.pixels) {
      const Tensor<float>& t = p.modality == "s1" ? s.s1 : s.s2;
      ours.push_back(t.at({p.channel, p.row, p.col}));
      ref.push_back(p.value);
    }
    loom::test::require_close(ours, ref, loom::test::tol_for<float>());
  }
}

TEST_CASE("shared data: BigEarthNet-MM pairs, splits, exclusions and normalization", "[data][shared]") {
  if (!kGeoTiffSupported) LOOM_SKIP("loom built without libtiff");
  const std::string data = loom::test::shared_data_dir();
  if (data.empty()) LOOM_SKIP("shared data absent");
  const std::string root = data + "/bigearthnet-mm";
  // The pairs of PROVENANCE.md.
  const std::map<std::string, std::string> pairs = {
      {"S2A_MSIL2A_20170613T101031_87_48", "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48"},
      {"S2A_MSIL2A_20170617T113321_36_85", "S1A_IW_GRDH_1SDV_20170617T064724_29UPU_36_85"},
      {"S2A_MSIL2A_20170617T113321_4_55", "S1A_IW_GRDH_1SDV_20170617T064724_29UPU_4_55"},
      {"S2B_MSIL2A_20170924T93020_69_24", "S1A_IW_GRDH_1SDV_20170925T043256_35VPK_69_24"},
      {"S2A_MSIL2A_20171221T112501_56_35", "S1A_IW_GRDH_1SDV_20171221T064238_29SND_56_35"},
      {"S2B_MSIL2A_20180204T94161_57_38", "S1A_IW_GRDH_1SDV_20180204T043253_35VPK_57_38"}};
  const auto ds = open_dataset("bigearthnet:" + root);
  REQUIRE(ds->size() == 6);
  for (int64_t i = 0; i < ds->size(); ++i) {
    const Sample s = ds->get(i);
    INFO(s.s2_name);
    REQUIRE(pairs.count(s.s2_name));
    CHECK(s.s1_name == pairs.at(s.s2_name));
    CHECK(s.s2.shape() == Shape{12, 120, 120});
    CHECK(s.s1.shape() == Shape{2, 120, 120});
  }

  // The official split of 29UPU_36_85 is train; 35VPK_57_38 is on the seasonal-snow list.
  TempDir lists;
  const std::string train = lists.write("train.csv", "S2A_MSIL2A_20170617T113321_36_85,"
                                                     "S1A_IW_GRDH_1SDV_20170617T064724_29UPU_36_85\n");
  const auto one = open_dataset("bigearthnet:" + root + "?split=" + train);
  REQUIRE(one->size() == 1);
  loom::test::require_close(one->get(0).labels, loom::test::to_double(hot19({2, 4})), {0, 0});
  const std::string snow = lists.write("snow.csv", "S2B_MSIL2A_20180204T94161_57_38\n");
  const auto no_snow = open_dataset("bigearthnet:" + root + "?exclude=" + snow);
  CHECK(no_snow->size() == 5);
  for (int64_t i = 0; i < no_snow->size(); ++i) CHECK(no_snow->name(i) != "S2B_MSIL2A_20180204T94161_57_38");

  // Normalized values follow from the raw ones and the published statistics; the dataset's own
  // statistics are finite and in the expected units.
  const Sample raw = ds->get(3);
  const Sample normalized = normalize(raw);
  const double vv = raw.s1.at({0, 60, 60}), b08 = raw.s2.at({7, 10, 20});
  loom::test::require_close(std::vector<double>{normalized.s1.at({0, 60, 60}), normalized.s2.at({7, 10, 20})},
                            {(vv + 12.620) / 5.116, (b08 - 2218.95) / 1365.46}, {1e-5, 1e-5});
  const BandStatistics stats = compute_band_statistics(*ds);
  REQUIRE(stats.bands.size() == 14);
  const auto vv_index = stats.find("VV");
  REQUIRE(vv_index.has_value());
  CHECK(stats.mean[*vv_index] < -5.0);
  CHECK(stats.mean[*vv_index] > -25.0);
  CHECK(stats.mean[*stats.find("B02")] > 100.0);
}

TEST_CASE("shared data: torchgeo fixtures read or fail with clear errors", "[data][shared]") {
  if (!kGeoTiffSupported) LOOM_SKIP("loom built without libtiff");
  const std::string data = loom::test::shared_data_dir();
  if (data.empty()) LOOM_SKIP("shared data absent");
  const std::string ben = data + "/synthetic-torchgeo-bigearthnet-v1";
  // Without a split: the S1 folder 33UUP_61_42 holds files named ..._61_42_41_*, so its metadata is
  // missing and pairing fails naming it; skipping keeps S2 61_42 as an S2-only sample.
  REQUIRE_THROWS_AS(open_dataset("bigearthnet:" + ben), Error);
  REQUIRE_THROWS_WITH(open_dataset("bigearthnet:" + ben),
                      Catch::Contains("S1A_IW_GRDH_1SDV_20170613T165043_33UUP_61_42_labels_metadata.json"));
  const auto lenient = open_dataset("bigearthnet:" + ben + "?on_bad=skip&strict_sizes=0&size=2");
  CHECK(lenient->size() == 4);
  CHECK(lenient->skipped() == 1);
  // Default sizes: the 2x2 rasters are refused with the expected size.
  const auto strict = open_dataset("bigearthnet:" + ben + "?split=" + ben + "/bigearthnet-test.csv");
  REQUIRE(strict->size() == 1);
  REQUIRE_THROWS_WITH(strict->get(0), Catch::Contains("wrong size 2x2, expected 20x20"));
  // The test split names 61_42, whose S1 band files do not match the folder name.
  const auto test_split = open_dataset("bigearthnet:" + ben + "?split=" + ben + "/bigearthnet-test.csv&size=2&strict_sizes=0");
  REQUIRE_THROWS_WITH(test_split->get(0), Catch::Contains("missing band file") &&
                                              Catch::Contains("S1A_IW_GRDH_1SDV_20170613T165043_33UUP_61_42_VV.tif"));
  CHECK(open_dataset("bigearthnet:" + ben + "?split=" + ben + "/bigearthnet-test.csv&size=2&strict_sizes=0"
                     "&modalities=s2")->get(0).s2.shape() == Shape{12, 2, 2});
  const auto val = open_dataset("bigearthnet:" + ben + "?split=" + ben + "/bigearthnet-val.csv&size=2&strict_sizes=0");
  const Sample v = val->get(0);
  CHECK(v.s1.at({0, 1, 1}) == 123.0f);  // the fixture's 1x1 uint16 VV, spread by the resize

  // SEN12MS fixture: 64x64 with random values; default size refuses, size=64 reads, its split
  // lists name s2 files.
  const std::string s12 = data + "/synthetic-torchgeo-sen12ms";
  REQUIRE_THROWS_WITH(open_dataset("sen12ms:" + s12)->get(0), Catch::Contains("wrong size 64x64"));
  const auto split = open_dataset("sen12ms:" + s12 + "?size=64&split=" + s12 + "/train_list.txt");
  REQUIRE(split->size() == 8);
  CHECK(split->get(7).s2.shape() == Shape{10, 64, 64});
  // The real SEN12MS patch has no s2 file: a single-modality sample, or bad data with complete=1.
  const auto real = open_dataset("sen12ms:" + data + "/sen12ms");
  CHECK(!real->get(0).has_s2());
  REQUIRE_THROWS_WITH(open_dataset("sen12ms:" + data + "/sen12ms?complete=1")->get(0),
                      Catch::Contains("missing s2 file"));
}
