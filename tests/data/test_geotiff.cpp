// GeoTIFF reading and writing: round trips of every sample type x layout x block shape x
// compression through our writer, the real sample files' headers, and every failure (missing,
// truncated, corrupt, unsupported, unrepresentable) as a loom::Error that names the file — with
// libtiff kept silent.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "loom/data/geotiff.hpp"
#include "data/corrupt.hpp"
#include "support/temp_dir.hpp"
#include "support/check.hpp"

namespace fs = std::filesystem;
using namespace loom;
using namespace loom::data;

namespace {

using loom::test::TempDir;

using loom::test::read_bytes;
using loom::test::write_bytes;

// Random values of sample type S, including both ends of its range, as doubles [C*H*W].
template <class S>
std::vector<double> random_values(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if constexpr (std::is_integral_v<S>) {
      std::uniform_int_distribution<int64_t> d(std::numeric_limits<S>::min(), std::numeric_limits<S>::max());
      v[size_t(i)] = double(d(rng));
    } else {
      std::normal_distribution<double> d(0.0, 1000.0);
      v[size_t(i)] = double(S(d(rng)));
    }
  }
  v[0] = double(std::numeric_limits<S>::lowest());
  v[size_t(n - 1)] = double(std::numeric_limits<S>::max());
  return v;
}

// Silences nothing: captures what is written to stderr (fd 2) while alive.
class StderrCapture {
 public:
  StderrCapture() {
    std::fflush(stderr);
    file_ = std::tmpfile();
    saved_ = ::dup(2);
    ::dup2(::fileno(file_), 2);
  }
  ~StderrCapture() { restore(); }
  std::string text() {
    restore();
    std::string out;
    std::rewind(file_);
    for (int c = std::fgetc(file_); c != EOF; c = std::fgetc(file_)) out += char(c);
    return out;
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    ::dup2(saved_, 2);
    ::close(saved_);
    saved_ = -1;
  }
  FILE* file_ = nullptr;
  int saved_ = -1;
};

template <class S>
void round_trip_type(RasterType type, const TempDir& dir) {
  struct Layout {
    const char* name;
    GeoTiffWriteOptions options;
  };
  const std::vector<Layout> layouts = {
      {"strips-auto", GeoTiffWriteOptions()},
      {"strips-7", GeoTiffWriteOptions().strips(7)},
      {"strips-1", GeoTiffWriteOptions().strips(1)},
      {"tiles-16", GeoTiffWriteOptions().tiles(16, 16)},
      {"tiles-32x16", GeoTiffWriteOptions().tiles(32, 16)},
  };
  const TiffCompression codecs[] = {TiffCompression::none, TiffCompression::deflate, TiffCompression::lzw,
                                    TiffCompression::packbits};
  const int64_t shapes[][3] = {{1, 37, 23}, {3, 7, 97}, {1, 1, 1}, {2, 17, 1}};
  uint32_t seed = 1;
  for (const auto& shape : shapes) {
    const int64_t C = shape[0], H = shape[1], W = shape[2];
    const std::vector<double> values = random_values<S>(C * H * W, seed++);
    const Tensor<double> source = Tensor<double>::from_vector({C, H, W}, values);  // [C, H, W]
    for (const auto& layout : layouts)
      for (bool planar : {false, true})
        for (TiffCompression codec : codecs)
          for (bool predictor : {false, true}) {
            if (predictor && codec == TiffCompression::none) continue;
            if (predictor && codec == TiffCompression::packbits) continue;
            GeoTiffWriteOptions options = layout.options;
            options.sample_type(type).band_separate(planar).compress(codec).use_predictor(predictor);
            const std::string path = dir.file("rt.tif");
            INFO(raster_type_name(type) << " " << C << "x" << H << "x" << W << " " << layout.name << " planar "
                                        << planar << " codec " << int(codec) << " predictor " << predictor);
            write_geotiff(path, source, options);

            const RasterBuffer raw = read_geotiff_raw(path);
            CHECK(raw.info.dtype == raster_type_name(type));
            CHECK(raw.info.bands == C);
            CHECK(raw.info.height == H);
            CHECK(raw.info.width == W);
            CHECK(raw.info.tiled == options.tiled);
            CHECK(raw.info.planar == planar);
            CHECK(raw.info.compression == int(codec));
            const auto samples = raw.values<S>();
            REQUIRE(int64_t(samples.size()) == C * H * W);
            bool exact = true;
            for (size_t i = 0; i < samples.size(); ++i)
              exact = exact && (double(samples[i]) == values[i] || (std::isnan(double(samples[i])) && std::isnan(values[i])));
            REQUIRE(exact);

            const GeoTiffImage image = read_geotiff(path);
            REQUIRE(image.data.shape() == Shape{C, H, W});
            std::vector<double> as_float;
            for (double v : values) as_float.push_back(double(float(v)));
            loom::test::require_close(image.data, as_float, {0, 0});
          }
  }
}

}  // namespace

TEST_CASE("geotiff: round trip of every sample type, layout, block shape and codec", "[data][geotiff]") {
  if (!kGeoTiffSupported) LOOM_SKIP("loom built without libtiff");
  TempDir dir;
  round_trip_type<uint8_t>(RasterType::u8, dir);
  round_trip_type<int8_t>(RasterType::i8, dir);
  round_trip_type<uint16_t>(RasterType::u16, dir);
  round_trip_type<int16_t>(RasterType::i16, dir);
  round_trip_type<uint32_t>(RasterType::u32, dir);
  round_trip_type<int32_t>(RasterType::i32, dir);
  round_trip_type<float>(RasterType::f32, dir);
  round_trip_type<double>(RasterType::f64, dir);
}

TEST_CASE("geotiff: typed reads keep values exactly or refuse", "[data][geotiff]") {
  if (!kGeoTiffSupported) LOOM_SKIP("loom built without libtiff");
  TempDir dir;
  const std::vector<float> values = {0, 1, 65535, 40000, 12345, 7};
  const Tensor<float> t = Tensor<float>::from_vector({1, 2, 3}, values);
  const std::string u16 = dir.file("u16.tif");
  write_geotiff(u16, t, GeoTiffWriteOptions().sample_type(RasterType::u16).compress(TiffCompression::deflate));

  const Tensor<int32_t> as_int = read_geotiff_as<int32_t>(u16);  // [1, 2, 3]
  REQUIRE(as_int.shape() == Shape{1, 2, 3});
  const std::vector<int32_t> ints = as_int.to_vector();
  for (size_t i = 0; i < values.size(); ++i) CHECK(ints[i] == int32_t(values[i]));
  const Tensor<double> as_double = read_geotiff_as<double>(u16);
  loom::test::require_close(as_double, {0, 1, 65535, 40000, 12345, 7}, {0, 0});

  REQUIRE_THROWS_AS(read_geotiff_as<uint8_t>(u16), Error);
  REQUIRE_THROWS_WITH(read_geotiff_as<uint8_t>(u16), Catch::Contains("u16.tif") && Catch::Contains("uint16") &&
                                                          Catch::Contains("do not fit"));
  const std::string f32 = dir.file("f32.tif");
  write_geotiff(f32, t);
  REQUIRE_THROWS_WITH(read_geotiff_as<int32_t>(f32), Catch::Contains("f32.tif") && Catch::Contains("float32"));
  const RasterBuffer raw = read_geotiff_raw(f32);
  REQUIRE_THROWS_WITH(raw.values<uint16_t>(), Catch::Contains("float32") && Catch::Contains("uint16"));

  // [H, W] input is one band; int32 / uint8 / double tensors pick their own file type.
  const Tensor<uint8_t> bytes = Tensor<uint8_t>::from_vector({2, 2}, std::vector<uint8_t>{1, 2, 250, 255});
  write_geotiff(dir.file("u8.tif"), bytes);
  CHECK(read_geotiff_info(dir.file("u8.tif")).dtype == "uint8");
  CHECK(read_geotiff_info(dir.file("u8.tif")).bands == 1);
  write_geotiff(dir.file("f64.tif"), Tensor<double>::from_vector({1, 1, 2}, std::vector<double>{0.1, -1e300}));
  loom::test::require_close(read_geotiff_as<double>(dir.file("f64.tif")), {0.1, -1e300}, {0, 0});
}

TEST_CASE("geotiff: writing a non-contiguous tensor writes its logical values", "[data][geotiff]") {
  if (!kGeoTiffSupported) LOOM_SKIP("loom built without libtiff");
  TempDir dir;
  std::vector<float> v(2 * 5 * 3);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(i) * 1.5f - 7.0f;
  const Tensor<float> base = Tensor<float>::from_vector({2, 5, 3}, v);  // [C, W, H] in memory
  const Tensor<float> hw = base.transpose(1, 2);                          // [C, H=3, W=5], strided
  REQUIRE(!hw.is_contiguous());
  write_geotiff(dir.file("t.tif"), hw, GeoTiffWriteOptions().tiles(16, 16).band_separate());
  std::vector<double> expected;
  for (int64_t c = 0; c < 2; ++c)
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t j = 0; j < 5; ++j) expected.push_back(v[size_t((c * 5 + j) * 3 + i)]);
  loom::test::require_close(read_geotiff(dir.file("t.tif")).data, expected, {0, 0});

  // An expanded (stride-0) band.
  const Tensor<float> row = Tensor<float>::from_vector({1, 1, 4}, std::vector<float>{1, 2, 3, 4});
  write_geotiff(dir.file("e.tif"), row.expand({1, 3, 4}));
  loom::test::require_close(read_geotiff(dir.file("e.tif")).data, {1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4}, {0, 0});
}

TEST_CASE("geotiff: the writer refuses what the file type cannot hold", "[data][geotiff]") {
  if (!kGeoTiffSupported) LOOM_SKIP("loom built without libtiff");
  TempDir dir;
  const std::string path = dir.file("bad.tif");
  auto one = [](float v) { return Tensor<float>::full({1, 1, 1}, v); };
  const auto u16 = GeoTiffWriteOptions().sample_type(RasterType::u16);
  REQUIRE_THROWS_AS(write_geotiff(path, one(1.5f), u16), Error);
  REQUIRE_THROWS_WITH(write_geotiff(path, one(1.5f), u16), Catch::Contains("bad.tif") && Catch::Contains("uint16") &&
                                                               Catch::Contains("1.5"));
  REQUIRE_THROWS_WITH(write_geotiff(path, one(-1.0f), u16), Catch::Contains("not representable as uint16"));
  REQUIRE_THROWS_WITH(write_geotiff(path, one(70000.0f), u16), Catch::Contains("not representable as uint16"));
  REQUIRE_THROWS_WITH(write_geotiff(path, one(NAN), GeoTiffWriteOptions().sample_type(RasterType::i32)),
                      Catch::Contains("not representable as int32"));
  REQUIRE_THROWS_WITH(write_geotiff(path, one(1.0f), GeoTiffWriteOptions().tiles(20, 16)),
                      Catch::Contains("bad.tif") && Catch::Contains("multiples of 16"));
  REQUIRE_THROWS_WITH(write_geotiff(path, Tensor<float>::zeros({4})),
                      Catch::Contains("[C, H, W] or [H, W]") && Catch::Contains("[4]"));
  REQUIRE_THROWS_WITH(write_geotiff(path, Tensor<float>::zeros({1, 2, 3, 4})), Catch::Contains("[1, 2, 3, 4]"));
  REQUIRE_THROWS_WITH(write_geotiff(path, Tensor<float>::zeros({1, 0, 3})), Catch::Contains("[1, 0, 3]"));
  REQUIRE_THROWS_WITH(write_geotiff(path, Tensor<float>()), Catch::Contains("bad.tif"));
  const std::string nowhere = dir.file("no/such/dir/x.tif");
  REQUIRE_THROWS_WITH(write_geotiff(nowhere, one(1.0f)), Catch::Contains(nowhere));
}

TEST_CASE("geotiff: missing, non-TIFF and empty files are errors naming the file", "[data][geotiff]") {
  if (!kGeoTiffSupported) LOOM_SKIP("loom built without libtiff");
  TempDir dir;
  const std::string missing = dir.file("missing.tif");
  REQUIRE_THROWS_AS(read_geotiff(missing), Error);
  REQUIRE_THROWS_WITH(read_geotiff(missing), Catch::Contains(missing) && Catch::Contains("file not found"));
  REQUIRE_THROWS_WITH(read_geotiff(dir.path.string()), Catch::Contains("not a regular file"));
  const std::string text = dir.file("text.tif");
  write_bytes(text, std::vector<unsigned char>{'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'}, 11);
  REQUIRE_THROWS_WITH(read_geotiff(text), Catch::Contains(text) && Catch::Contains("cannot open as TIFF") &&
                                               Catch::Contains("magic"));
  const std::string empty = dir.file("empty.tif");
  write_bytes(empty, {}, 0);
  REQUIRE_THROWS_WITH(read_geotiff(empty), Catch::Contains(empty) && Catch::Contains("cannot open as TIFF"));
  REQUIRE_THROWS_WITH(read_geotiff_info(missing), Catch::Contains("file not found"));
}

#if defined(LOOM_HAVE_TIFF) && LOOM_HAVE_TIFF
TEST_CASE("geotiff: unsupported sample layouts are refused with the reason", "[data][geotiff]") {
  TempDir dir;
  // Files loom's writer cannot produce, written with libtiff directly.
  auto write_raw = [&](const std::string& name, uint16_t bits, uint16_t format, uint16_t photometric, uint16_t spp) {
    const std::string path = dir.file(name);
    TIFF* tif = TIFFOpen(path.c_str(), "w");
    REQUIRE(tif != nullptr);
    TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, 8u);
    TIFFSetField(tif, TIFFTAG_IMAGELENGTH, 2u);
    TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, spp);
    TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, bits);
    TIFFSetField(tif, TIFFTAG_SAMPLEFORMAT, format);
    TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, photometric);
    TIFFSetField(tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, 2u);
    std::vector<unsigned char> strip(size_t(8 * 2 * spp * bits / 8 + 16), 0);
    TIFFWriteEncodedStrip(tif, 0, strip.data(), tmsize_t(8 * 2 * spp * bits / 8));
    TIFFClose(tif);
    return path;
  };
  const std::string bilevel = write_raw("bilevel.tif", 1, SAMPLEFORMAT_UINT, PHOTOMETRIC_MINISBLACK, 1);
  REQUIRE_THROWS_AS(read_geotiff(bilevel), Error);
  REQUIRE_THROWS_WITH(read_geotiff(bilevel), Catch::Contains("bilevel.tif") &&
                                                 Catch::Contains("unsupported sample type") && Catch::Contains("1 bits"));
  const std::string twelve = write_raw("twelve.tif", 12, SAMPLEFORMAT_UINT, PHOTOMETRIC_MINISBLACK, 1);
  REQUIRE_THROWS_WITH(read_geotiff(twelve), Catch::Contains("twelve.tif") && Catch::Contains("12 bits"));
  const std::string complex = write_raw("complex.tif", 32, SAMPLEFORMAT_COMPLEXINT, PHOTOMETRIC_MINISBLACK, 1);
  REQUIRE_THROWS_WITH(read_geotiff(complex), Catch::Contains("complex.tif") && Catch::Contains("SampleFormat 5"));
  const std::string half = write_raw("half.tif", 16, SAMPLEFORMAT_IEEEFP, PHOTOMETRIC_MINISBLACK, 1);
  REQUIRE_THROWS_WITH(read_geotiff(half), Catch::Contains("half.tif") && Catch::Contains("SampleFormat 3 with 16"));
  const std::string ycbcr = write_raw("ycbcr.tif", 8, SAMPLEFORMAT_UINT, PHOTOMETRIC_YCBCR, 3);
  REQUIRE_THROWS_WITH(read_geotiff(ycbcr), Catch::Contains("ycbcr.tif") && Catch::Contains("YCbCr"));
}
#endif

TEST_CASE("geotiff: truncated and corrupted files give loom::Error, silently, never a crash", "[data][geotiff]") {
  if (!kGeoTiffSupported) LOOM_SKIP("loom built without libtiff");
  TempDir dir;
  // Our own files in several layouts, plus a real GeoTIFF when the shared samples are present.
  std::vector<std::string> originals;
  std::vector<float> values(3 * 40 * 50);
  for (size_t i = 0; i < values.size(); ++i) values[i] = float((i * 7919) % 4001);
  const Tensor<float> t = Tensor<float>::from_vector({3, 40, 50}, values);
  write_geotiff(dir.file("plain.tif"), t, GeoTiffWriteOptions().sample_type(RasterType::u16));
  write_geotiff(dir.file("deflate.tif"), t,
                GeoTiffWriteOptions().sample_type(RasterType::u16).compress(TiffCompression::deflate).use_predictor());
  write_geotiff(dir.file("lzw_tiled.tif"), t,
                GeoTiffWriteOptions().tiles(16, 16).band_separate().compress(TiffCompression::lzw));
  originals = {dir.file("plain.tif"), dir.file("deflate.tif"), dir.file("lzw_tiled.tif")};
  const std::string data = loom::test::shared_data_dir();
  if (!data.empty())
    originals.push_back(data +
                        "/bigearthnet-mm/BigEarthNet-S1-v1.0/S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48/"
                        "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48_VH.tif");
  else
    WARN("shared data absent: corrupting only loom-written files");

  StderrCapture stderr_capture;
  int64_t cases = 0, errors = 0;
  for (const auto& original : originals) {
    const std::vector<unsigned char> bytes = read_bytes(original);
    REQUIRE(bytes.size() > 200);
    REQUIRE_NOTHROW(read_geotiff(original));
    const std::string bad = dir.file("bad.tif");
    // Truncations: inside the header, inside the directory, inside the pixel data, one byte short.
    for (size_t keep : {size_t(0), size_t(3), size_t(8), size_t(20), size_t(100), bytes.size() / 2, bytes.size() - 1}) {
      write_bytes(bad, bytes, keep);
      ++cases;
      try {
        read_geotiff(bad);
        FAIL("truncated copy (" << keep << " of " << bytes.size() << " bytes) of " << original << " was accepted");
      } catch (const Error& e) {
        ++errors;
        CHECK_THAT(e.what(), Catch::Contains(bad));
      }
    }
    // Byte corruptions across the header, directory and data: either read or a loom::Error.
    std::mt19937 rng(42);
    for (int k = 0; k < 300; ++k) {
      std::vector<unsigned char> corrupt = bytes;
      const size_t at = k < 200 ? size_t(k) : size_t(rng() % bytes.size());
      corrupt[at] = static_cast<unsigned char>(corrupt[at] ^ (k % 2 ? 0xFF : 0x80));
      write_bytes(bad, corrupt, corrupt.size());
      ++cases;
      try {
        read_geotiff(bad);
      } catch (const Error& e) {
        ++errors;
        CHECK_THAT(e.what(), Catch::Contains(bad));
      }
    }
    // A compressed strip whose zlib header is broken must fail to decode. (Garbage further inside a
    // deflate stream may decode to wrong pixels unnoticed: the checksum sits after the data.)
    if (original == dir.file("deflate.tif")) {
      std::vector<unsigned char> garbled = bytes;
      garbled[8] = garbled[9] = 0xFF;  // libtiff writes the first strip right after the 8-byte header
      write_bytes(bad, garbled, garbled.size());
      REQUIRE_THROWS_WITH(read_geotiff(bad), Catch::Contains(bad) && Catch::Contains("libtiff"));
    }
  }
  const std::string printed = stderr_capture.text();
  INFO("stderr: " << printed);
  CHECK(printed.empty());
  CHECK(errors > int64_t(originals.size()) * 7);  // at least every truncation
  INFO(errors << " of " << cases << " corrupted files rejected");
}

TEST_CASE("geotiff: the real sample files' headers", "[data][geotiff]") {
  if (!kGeoTiffSupported) LOOM_SKIP("loom built without libtiff");
  const std::string data = loom::test::shared_data_dir();
  if (data.empty()) LOOM_SKIP("shared data absent");
  const std::string ben = data + "/bigearthnet-mm/BigEarthNet-v1.0/S2A_MSIL2A_20170613T101031_87_48/";
  const GeoTiffImage b01 = read_geotiff(ben + "S2A_MSIL2A_20170613T101031_87_48_B01.tif");
  CHECK(b01.dtype == "uint16");
  CHECK(b01.sample_format == kSampleFormatUInt);
  CHECK(b01.bits_per_sample == 16);
  CHECK(b01.width == 20);
  CHECK(b01.height == 20);
  CHECK(b01.bands == 1);
  CHECK(b01.data.shape() == Shape{1, 20, 20});
  CHECK(read_geotiff_info(ben + "S2A_MSIL2A_20170613T101031_87_48_B05.tif").width == 60);
  CHECK(read_geotiff_info(ben + "S2A_MSIL2A_20170613T101031_87_48_B02.tif").width == 120);

  // SEN12MS: pixel-interleaved multi-band files, uint8 land cover (RGB + alpha photometric) and
  // float32 SAR.
  const std::string s12 = data + "/sen12ms/ROIs1158_spring/";
  const GeoTiffImage lc = read_geotiff(s12 + "lc_1/ROIs1158_spring_lc_1_p30.tif");
  CHECK(lc.dtype == "uint8");
  CHECK(lc.bands == 4);
  CHECK(!lc.planar);
  CHECK(lc.data.shape() == Shape{4, 256, 256});
  const GeoTiffImage s1 = read_geotiff(s12 + "s1_1/ROIs1158_spring_s1_1_p30.tif");
  CHECK(s1.dtype == "float32");
  CHECK(s1.sample_format == kSampleFormatFloat);
  CHECK(s1.bands == 2);
  CHECK(s1.block_height == 4);
  CHECK(s1.compression_name == "none");
  // EuroSAT: 13 interleaved uint16 bands.
  const GeoTiffImage eurosat = read_geotiff(data + "/eurosat-ms/EuroSAT_MS/Pasture/Pasture_300.tif");
  CHECK(eurosat.data.shape() == Shape{13, 64, 64});
  CHECK(eurosat.dtype == "uint16");
}
