// Image-folder reader (loom/data/image_folder.hpp): PNGs written here with stb_image_write read back
// pixel for pixel, class folders and CSV multi-labels, channel modes, renaming and resizing, every
// bad-data path; the real EuroSAT-MS patches in ../shared/data against values read with rasterio
// (tests/golden/make_eurosat_spot_values.py).
#include <catch2/catch.hpp>
#include <stb/stb_image_write.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "data/corrupt.hpp"
#include "support/temp_dir.hpp"
#include "loom/data/dataset.hpp"
#include "loom/data/image_folder.hpp"
#include "loom/data/resample.hpp"
#include "support/check.hpp"

namespace fs = std::filesystem;
using namespace loom;
using namespace loom::data;
using loom::test::TempDir;

namespace {

// An interleaved [H, W, C] 8-bit picture, as stb_image_write takes it.
struct Picture {
  int width = 0, height = 0, channels = 0;
  std::vector<uint8_t> pixels;
  int at(int y, int x, int c) const { return pixels[size_t((y * width + x) * channels + c)]; }
};

Picture random_picture(int width, int height, int channels, unsigned seed) {
  std::mt19937 rng(seed);
  Picture p{width, height, channels, std::vector<uint8_t>(size_t(width * height * channels))};
  for (auto& v : p.pixels) v = uint8_t(rng() % 256);
  return p;
}

std::string write_png(const TempDir& dir, const std::string& relative, const Picture& p) {
  const std::string path = dir.write(relative, "");
  REQUIRE(stbi_write_png(path.c_str(), p.width, p.height, p.channels, p.pixels.data(), p.width * p.channels) != 0);
  return path;
}

// The band-major [C, H, W] values the reader should return for a picture: channel `pick(c)` of the
// file for output channel c (grey is replicated into R, G, B; alpha is dropped).
std::vector<double> expected_rgb(const Picture& p) {
  std::vector<double> out;
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < p.height; ++y)
      for (int x = 0; x < p.width; ++x) out.push_back(p.at(y, x, p.channels <= 2 ? 0 : c));
  return out;
}

}  // namespace

TEST_CASE("images: class folders give one-hot labels and exact pixels", "[data][images]") {
  TempDir dir("images");
  const Picture cat_a = random_picture(7, 5, 3, 1);   // RGB
  const Picture cat_b = random_picture(7, 5, 4, 2);   // RGBA: alpha dropped
  const Picture dog = random_picture(7, 5, 1, 3);     // grey: replicated into R, G, B
  const Picture emu = random_picture(1, 1, 2, 4);     // grey + alpha, 1 x 1, one folder deeper
  write_png(dir, "cat/b.png", cat_b);
  write_png(dir, "cat/a.png", cat_a);
  write_png(dir, "dog/x.PNG", dog);
  write_png(dir, "emu/nested/e.png", emu);
  write_png(dir, "at_root.png", cat_a);  // in no class folder: ignored
  dir.write("dog/README.txt", "not an image, ignored");
  dir.write("PROVENANCE.md", "ignored");

  const auto ds = open_dataset("images:" + dir.path.string());
  REQUIRE(ds->size() == 4);
  CHECK(ds->class_names() == std::vector<std::string>{"cat", "dog", "emu"});
  CHECK(ds->name(0) == "cat/a.png");
  CHECK(ds->name(1) == "cat/b.png");
  CHECK(ds->name(2) == "dog/x.PNG");
  CHECK(ds->name(3) == "emu/nested/e.png");

  const Picture* pictures[] = {&cat_a, &cat_b, &dog, &emu};
  const std::vector<std::vector<double>> labels = {{1, 0, 0}, {1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
  for (int64_t i = 0; i < 4; ++i) {
    INFO(ds->name(i));
    const Sample s = ds->get(i);
    CHECK_FALSE(s.has_s1());
    REQUIRE(s.has_s2());
    CHECK(s.s2_bands == std::vector<std::string>{"R", "G", "B"});
    CHECK(s.s2_name == ds->name(i));
    const Picture& p = *pictures[i];
    REQUIRE(s.s2.shape() == Shape{3, p.height, p.width});
    loom::test::require_close(s.s2, expected_rgb(p), {0.0, 0.0});  // lossless: exact
    loom::test::require_close(s.labels, labels[size_t(i)], {0.0, 0.0});
  }
}

TEST_CASE("images: channels=grey keeps grey pictures and converts colour by stb's luma", "[data][images]") {
  TempDir dir("images");
  const Picture grey = random_picture(9, 4, 1, 5);
  const Picture rgb = random_picture(9, 4, 3, 6);
  write_png(dir, "a/grey.png", grey);
  write_png(dir, "b/rgb.png", rgb);
  const auto ds = open_dataset("images:" + dir.path.string() + "?channels=grey");
  REQUIRE(ds->size() == 2);
  const Sample g = ds->get(0);
  CHECK(g.s2_bands == std::vector<std::string>{"grey"});
  REQUIRE(g.s2.shape() == Shape{1, 4, 9});
  loom::test::require_close(g.s2, std::vector<double>(grey.pixels.begin(), grey.pixels.end()), {0.0, 0.0});
  // stb_image's documented RGB -> Y conversion: (77 r + 150 g + 29 b) >> 8.
  std::vector<double> luma;
  for (int y = 0; y < rgb.height; ++y)
    for (int x = 0; x < rgb.width; ++x)
      luma.push_back((77 * rgb.at(y, x, 0) + 150 * rgb.at(y, x, 1) + 29 * rgb.at(y, x, 2)) >> 8);
  const Sample c = ds->get(1);
  REQUIRE(c.s2.shape() == Shape{1, 4, 9});
  loom::test::require_close(c.s2, luma, {0.0, 0.0});
}

TEST_CASE("images: JPEG files decode (lossy, so within a few grey levels)", "[data][images]") {
  TempDir dir("images");
  Picture flat{16, 8, 3, {}};
  for (int i = 0; i < 16 * 8; ++i) flat.pixels.insert(flat.pixels.end(), {200, 40, 90});
  const std::string path = dir.write("c/flat.jpg", "");
  REQUIRE(stbi_write_jpg(path.c_str(), flat.width, flat.height, 3, flat.pixels.data(), 100) != 0);
  const Sample s = open_dataset("images:" + dir.path.string())->get(0);
  REQUIRE(s.s2.shape() == Shape{3, 8, 16});
  // A flat colour at quality 100 survives JPEG's colour conversion and quantization to +-3 levels.
  loom::test::require_close(s.s2, expected_rgb(flat), {3.0, 0.0});
}

TEST_CASE("images: CSV multi-labels", "[data][images]") {
  TempDir dir("images");
  const Picture a = random_picture(5, 5, 3, 7), b = random_picture(5, 5, 3, 8), c = random_picture(5, 5, 3, 9);
  write_png(dir, "a.png", a);
  write_png(dir, "sub/b.png", b);
  write_png(dir, "c.png", c);
  dir.write("labels.csv", "file,labels\r\na.png,water;forest\nsub/b.png,\n\"c.png\",\"forest\"\n");
  const auto ds = open_dataset("images:" + dir.path.string() + "?labels=labels.csv");
  REQUIRE(ds->size() == 3);
  CHECK(ds->class_names() == std::vector<std::string>{"forest", "water"});
  CHECK(ds->name(1) == "sub/b.png");
  loom::test::require_close(ds->get(0).labels, {1, 1}, {0.0, 0.0});
  loom::test::require_close(ds->get(1).labels, {0, 0}, {0.0, 0.0});
  loom::test::require_close(ds->get(2).labels, {1, 0}, {0.0, 0.0});
  loom::test::require_close(ds->get(1).s2, expected_rgb(b), {0.0, 0.0});

  // An absolute CSV path works too, and a header is optional.
  const std::string csv = dir.write("other/no_header.csv", "c.png,b;a\n");
  const auto abs = open_dataset("images:" + dir.path.string() + "?labels=" + csv);
  REQUIRE(abs->size() == 1);
  CHECK(abs->class_names() == std::vector<std::string>{"a", "b"});
  loom::test::require_close(abs->get(0).labels, {1, 1}, {0.0, 0.0});

  // A row naming a missing file: an error naming it, or skipped and counted.
  dir.write("missing.csv", "a.png,x\nghost.png,y\n");
  const std::string spec = "images:" + dir.path.string() + "?labels=missing.csv";
  REQUIRE_THROWS_WITH(open_dataset(spec), Catch::Contains("ghost.png") && Catch::Contains("missing.csv"));
  std::vector<std::string> warnings;
  ImageFolderOptions options;
  options.root = dir.path.string();
  options.labels_csv = "missing.csv";
  options.bad = {OnBadSample::skip, [&](const std::string& m) { warnings.push_back(m); }};
  const ImageFolder lenient(options);
  CHECK(lenient.size() == 1);
  CHECK(lenient.skipped() == 1);
  REQUIRE(warnings.size() == 1);
  CHECK_THAT(warnings[0], Catch::Contains("ghost.png"));
  CHECK(lenient.class_names() == std::vector<std::string>{"x", "y"});

  dir.write("bad_row.csv", "a.png,x,extra\n");
  REQUIRE_THROWS_WITH(open_dataset("images:" + dir.path.string() + "?labels=bad_row.csv"),
                      Catch::Contains("bad_row.csv line 1"));
  REQUIRE_THROWS_WITH(open_dataset("images:" + dir.path.string() + "?labels=nope.csv"),
                      Catch::Contains("cannot open") && Catch::Contains("nope.csv"));
}

TEST_CASE("images: size= resamples, bands= renames", "[data][images]") {
  TempDir dir("images");
  const Picture p = random_picture(7, 5, 3, 10);
  write_png(dir, "k/p.png", p);
  const Sample resized = open_dataset("images:" + dir.path.string() + "?size=3")->get(0);
  REQUIRE(resized.s2.shape() == Shape{3, 3, 3});
  const std::vector<double> pixels = expected_rgb(p);
  const Tensor<float> original = Tensor<float>::from_vector({3, 5, 7}, std::vector<float>(pixels.begin(), pixels.end()));
  loom::test::require_close(resized.s2, loom::test::to_double(resize_bilinear(original, 3, 3).to_vector()), {1e-6, 1e-6});

  const Sample named = open_dataset("images:" + dir.path.string() + "?bands=B04,B03,B02")->get(0);
  CHECK(named.s2_bands == std::vector<std::string>{"B04", "B03", "B02"});
  REQUIRE_THROWS_WITH(open_dataset("images:" + dir.path.string() + "?bands=B04,B03")->get(0),
                      Catch::Contains("p.png") && Catch::Contains("3 channels"));
}

TEST_CASE("images: corrupt, truncated and non-image files name the file", "[data][images]") {
  TempDir dir("images");
  const Picture p = random_picture(6, 6, 3, 11);
  const std::string good = write_png(dir, "k/a_good.png", p);
  const loom::test::Bytes good_bytes = loom::test::read_bytes(good);
  const std::string bytes(good_bytes.begin(), good_bytes.end());
  dir.write("k/b_truncated.png", bytes.substr(0, bytes.size() / 2));
  dir.write("k/c_text.png", "this is not a PNG at all");
  dir.write("k/d_empty.jpg", "");
  std::string flipped = bytes;
  flipped[1] = 'X';  // the PNG signature
  dir.write("k/e_signature.png", flipped);
  dir.write("k/f_not_a_tiff.tif", "II*\0garbage");

  const auto strict = open_dataset("images:" + dir.path.string());
  REQUIRE(strict->size() == 6);
  CHECK_NOTHROW(strict->get(0));
  for (int64_t i = 1; i < 6; ++i) {
    INFO(strict->name(i));
    REQUIRE_THROWS_AS(strict->get(i), loom::Error);
    REQUIRE_THROWS_WITH(strict->get(i), Catch::Contains(strict->name(i).substr(2)));
  }
  REQUIRE_THROWS_WITH(strict->get(1), Catch::Contains("cannot decode"));
  REQUIRE_THROWS_WITH(strict->get(3), Catch::Contains("empty file"));

  std::vector<std::string> warnings;
  ImageFolderOptions options;
  options.root = dir.path.string();
  options.bad = {OnBadSample::skip, [&](const std::string& m) { warnings.push_back(m); }};
  const ImageFolder lenient(options);
  const Sample next = lenient.get(2);  // bad: the next good sample wraps around to 0
  CHECK(next.s2_name == "k/a_good.png");
  CHECK(lenient.skipped() == 4);
  REQUIRE(warnings.size() == 4);
  CHECK_THAT(warnings[0], Catch::Contains("c_text.png"));
}

TEST_CASE("images: spec and folder errors", "[data][images]") {
  TempDir dir("images");
  REQUIRE_THROWS_WITH(open_dataset("images:" + dir.file("nowhere")), Catch::Contains("is not a directory"));
  REQUIRE_THROWS_WITH(open_dataset("images:" + dir.path.string()), Catch::Contains("no class sub-folders"));
  dir.write("empty_class/readme.txt", "x");
  REQUIRE_THROWS_WITH(open_dataset("images:" + dir.path.string()), Catch::Contains("no image files"));
  write_png(dir, "k/a.png", random_picture(2, 2, 3, 12));
  CHECK(open_dataset("images:" + dir.path.string())->class_names() == std::vector<std::string>{"empty_class", "k"});
  REQUIRE_THROWS_WITH(open_dataset("images:" + dir.path.string() + "?channels=cmyk"),
                      Catch::Contains("channels=cmyk"));
  REQUIRE_THROWS_WITH(open_dataset("images:" + dir.path.string() + "?size=-1"), Catch::Contains("size=-1"));
  REQUIRE_THROWS_WITH(open_dataset("images:" + dir.path.string() + "?sise=3"),
                      Catch::Contains("unknown option sise") && Catch::Contains("size"));
}

TEST_CASE("images: the real EuroSAT-MS patches (class folders of GeoTIFFs)", "[data][images][shared]") {
  const std::string root = std::string(LOOM_SHARED_DATA_DIR) + "/eurosat-ms/EuroSAT_MS";
  if (!fs::is_directory(root)) LOOM_SKIP("EuroSAT-MS sample not found at " + root);
#if !(defined(LOOM_HAVE_TIFF) && LOOM_HAVE_TIFF)
  LOOM_SKIP("built without libtiff");
#endif
  // The files' band order is B01 ... B08, B09, B10, B11, B12, B8A (B8A last, as in EuroSAT's
  // distribution), not the order PROVENANCE.md lists: see the cirrus and NIR checks below.
  const std::string names = "B01,B02,B03,B04,B05,B06,B07,B08,B09,B10,B11,B12,B8A";
  const auto ds = open_dataset("images:" + root + "?bands=" + names);
  REQUIRE(ds->size() == 3);
  CHECK(ds->class_names() == std::vector<std::string>{"AnnualCrop", "Pasture", "SeaLake"});
  CHECK(ds->name(0) == "AnnualCrop/AnnualCrop_1.tif");
  CHECK(ds->name(1) == "Pasture/Pasture_300.tif");
  CHECK(ds->name(2) == "SeaLake/SeaLake_3000.tif");
  for (int64_t i = 0; i < 3; ++i) {
    const Sample s = ds->get(i);
    CHECK(s.s2.shape() == Shape{13, 64, 64});
    CHECK(s.s2_bands.size() == 13);
    CHECK(s.s2_bands[12] == "B8A");
    // Physical sanity of the names: B10 (cirrus, 1375 nm) is near zero in clear-sky TOA
    // reflectance x 1e4, and over vegetation B8A (865 nm) is close to B08 (842 nm).
    auto band_mean = [&](int64_t c) {
      double sum = 0;
      for (int64_t y = 0; y < 64; ++y)
        for (int64_t x = 0; x < 64; ++x) sum += s.s2.at({c, y, x});
      return sum / (64.0 * 64.0);
    };
    CHECK(band_mean(9) < 50.0);
    if (ds->name(i).rfind("Pasture", 0) == 0) CHECK(std::abs(band_mean(12) / band_mean(7) - 1.0) < 0.25);
    std::vector<double> hot(3, 0.0);
    hot[size_t(i)] = 1.0;
    loom::test::require_close(s.labels, hot, {0.0, 0.0});
  }
  // Spot values read with rasterio (tests/golden/make_eurosat_spot_values.py): file, band, row, col.
  struct Spot {
    const char* file;
    int64_t band, row, col;
    double value;
  };
  const Spot spots[] = {
      {"AnnualCrop/AnnualCrop_1.tif", 0, 0, 0, 1420},    {"AnnualCrop/AnnualCrop_1.tif", 0, 63, 63, 1311},
      {"AnnualCrop/AnnualCrop_1.tif", 3, 17, 40, 1118},  {"AnnualCrop/AnnualCrop_1.tif", 12, 63, 63, 1589},
      {"Pasture/Pasture_300.tif", 0, 17, 40, 1121},      {"Pasture/Pasture_300.tif", 3, 0, 0, 429},
      {"Pasture/Pasture_300.tif", 12, 17, 40, 5452},     {"SeaLake/SeaLake_3000.tif", 0, 63, 63, 1091},
      {"SeaLake/SeaLake_3000.tif", 3, 17, 40, 339},      {"SeaLake/SeaLake_3000.tif", 12, 0, 0, 157},
  };
  for (const Spot& spot : spots) {
    INFO(spot.file << " band " << spot.band << " (" << spot.row << ", " << spot.col << ")");
    int64_t i = 0;
    while (ds->name(i) != spot.file) ++i;
    const Sample s = ds->get(i);
    CHECK(double(s.s2.at({spot.band, spot.row, spot.col})) == spot.value);
  }
}
