// Fuzz-style robustness of the data readers, built as its own executable (test_data_fuzz) with
// AddressSanitizer and UndefinedBehaviorSanitizer: hundreds of seeded, damaged copies of real
// GeoTIFFs (../shared/data, plus loom-written compressed and tiled ones), of a packed shard and of a
// PNG. Every read must either succeed or throw loom::Error; a crash, a sanitizer report (which
// aborts: -fno-sanitize-recover) or any other exception fails the test.
//
// The damage (tests/data/corrupt.hpp): byte flips, random bursts, truncations and fields
// overwritten with extreme values; plus format-aware edits that get past the checksums and reach
// the parsers: TIFF directory entries (type, count, value/offset) and packed header, index and
// record fields with their CRC32Cs recomputed.
#include <catch2/catch.hpp>

#include <cstdint>
#include <exception>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "data/corrupt.hpp"
#include "support/temp_dir.hpp"
#include "loom/data/dataset.hpp"
#include "loom/data/geotiff.hpp"
#include "loom/data/packed.hpp"
#include "support/check.hpp"
#if LOOM_FUZZ_IMAGES
#include <stb/stb_image_write.h>

#include "loom/data/image_folder.hpp"
#endif

namespace fs = std::filesystem;
using namespace loom;
using namespace loom::data;
using loom::test::Bytes;
using loom::test::Corruption;

namespace {

struct Tally {
  int cases = 0, errors = 0;
};

// Runs one read of a damaged file: success and loom::Error are both fine; anything else fails.
template <class Read>
void expect_read_or_error(const Corruption& c, const std::string& path, Tally& tally, Read&& read) {
  ++tally.cases;
  try {
    const std::string message = read();
    if (!message.empty()) {
      ++tally.errors;
      CHECK_THAT(message, Catch::Contains(fs::path(path).filename().string()));
    }
  } catch (const loom::Error& e) {
    ++tally.errors;
    CHECK_THAT(e.what(), Catch::Contains(fs::path(path).filename().string()));
  } catch (const std::exception& e) {
    FAIL("damage \"" << c.what << "\" of " << path << ": non-loom exception: " << e.what());
  }
}

// A classic little-endian TIFF with one of its first directory's entries damaged: the field type,
// the value count or the value/offset set to an extreme value. Falls back to a generic field change
// for files that are not classic little-endian TIFFs.
Corruption damage_tiff_directory(const Bytes& original, std::mt19937& rng) {
  using loom::test::get_le;
  using loom::test::put_le;
  if (original.size() < 16 || original[0] != 'I' || original[1] != 'I' || get_le<uint16_t>(original, 2) != 42)
    return loom::test::random_corruption(original, rng, 64);
  const uint32_t ifd = get_le<uint32_t>(original, 4);
  if (size_t(ifd) + 2 > original.size()) return loom::test::random_corruption(original, rng, 64);
  const uint16_t entries = get_le<uint16_t>(original, ifd);
  if (entries == 0 || size_t(ifd) + 2 + size_t(entries) * 12 > original.size())
    return loom::test::random_corruption(original, rng, 64);
  Corruption c{"", original};
  const size_t entry = ifd + 2 + size_t(rng() % entries) * 12;
  const uint16_t tag = get_le<uint16_t>(original, entry);
  switch (rng() % 3) {
    case 0:
      put_le(c.bytes, entry + 2, loom::test::extreme_value<uint16_t>(rng));
      c.what = "type of tag " + std::to_string(tag);
      break;
    case 1:
      put_le(c.bytes, entry + 4, loom::test::extreme_value<uint32_t>(rng));
      c.what = "count of tag " + std::to_string(tag);
      break;
    default:
      put_le(c.bytes, entry + 8, loom::test::extreme_value<uint32_t>(rng));
      c.what = "value of tag " + std::to_string(tag);
      break;
  }
  return c;
}

// The packed file's layout, read from an intact copy (see packed.hpp's format comment).
struct PackGeometry {
  uint32_t header_bytes = 0;
  uint64_t capacity = 0, data_offset = 0;
  std::vector<std::pair<uint64_t, uint32_t>> records;  // offset, bytes
};

PackGeometry pack_geometry(const Bytes& b) {
  using loom::test::get_le;
  PackGeometry g;
  g.header_bytes = get_le<uint32_t>(b, 12);
  const uint64_t count = get_le<uint64_t>(b, 16);
  g.capacity = get_le<uint64_t>(b, 24);
  g.data_offset = get_le<uint64_t>(b, 8 + 4 + 4 + 8 + 8 + 4 * 5 + 8);
  for (uint64_t i = 0; i < count; ++i)
    g.records.emplace_back(get_le<uint64_t>(b, g.header_bytes + 16 * i), get_le<uint32_t>(b, g.header_bytes + 16 * i + 8));
  return g;
}

// Recomputes every checksum of a pack: records (stored in the index), the index, the header.
void reseal_pack(Bytes& b, const PackGeometry& g) {
  using loom::data::packed_format::crc32c;
  using loom::test::put_le;
  for (size_t i = 0; i < g.records.size(); ++i) {
    const auto [offset, bytes] = g.records[i];
    if (offset + bytes <= b.size()) put_le(b, g.header_bytes + 16 * i + 12, crc32c(b.data() + offset, bytes));
  }
  put_le(b, g.header_bytes + 16 * g.capacity, crc32c(b.data() + g.header_bytes, size_t(16 * g.capacity)));
  put_le(b, g.header_bytes - 4, crc32c(b.data(), g.header_bytes - 4));
}

// A field of the header, the index or a record's fixed part overwritten, checksums recomputed so
// that the damage reaches the parser.
Corruption damage_pack_field(const Bytes& original, const PackGeometry& g, std::mt19937& rng) {
  Corruption c{"", original};
  size_t at = 0, width = size_t(1) << (1 + rng() % 3);  // 2, 4 or 8 bytes
  switch (rng() % 3) {
    case 0:  // header fields after the magic and version
      at = 12 + size_t(rng() % (g.header_bytes - 16));
      c.what = "header field at " + std::to_string(at);
      break;
    case 1:  // an index entry's offset or size
      at = g.header_bytes + 16 * size_t(rng() % g.records.size()) + (rng() % 2 ? 0 : 8);
      width = at % 16 == 0 ? 8 : 4;
      c.what = "index field at " + std::to_string(at);
      break;
    default: {  // a record's flags, name lengths, labels or names
      const auto& [offset, bytes] = g.records[rng() % g.records.size()];
      at = size_t(offset) + size_t(rng() % std::min<uint32_t>(bytes, 64));
      c.what = "record field at " + std::to_string(at);
    }
  }
  at = at / width * width;
  switch (width) {
    case 2: loom::test::put_le(c.bytes, at, loom::test::extreme_value<uint16_t>(rng)); break;
    case 4: loom::test::put_le(c.bytes, at, loom::test::extreme_value<uint32_t>(rng)); break;
    default: loom::test::put_le(c.bytes, at, loom::test::extreme_value<uint64_t>(rng)); break;
  }
  reseal_pack(c.bytes, g);
  return c;
}

}  // namespace

TEST_CASE("fuzz: damaged GeoTIFFs read or raise loom::Error, never crash", "[data][fuzz]") {
#if !(defined(LOOM_HAVE_TIFF) && LOOM_HAVE_TIFF)
  LOOM_SKIP("loom built without libtiff");
#endif
  loom::test::TempDir dir("fuzz");
  std::vector<std::string> originals;
  const std::string shared = LOOM_SHARED_DATA_DIR;
  for (const char* real :
       {"/bigearthnet-mm/BigEarthNet-S1-v1.0/S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48/"
        "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48_VH.tif",
        "/eurosat-ms/EuroSAT_MS/Pasture/Pasture_300.tif"})
    if (fs::exists(shared + real)) originals.push_back(shared + real);
  if (originals.empty()) WARN("shared data absent: damaging loom-written GeoTIFFs only");
  // loom-written files cover the compressed, predicted, tiled and band-separate decoders.
  std::vector<float> values(3 * 37 * 45);
  for (size_t i = 0; i < values.size(); ++i) values[i] = float((i * 7919) % 4001);
  const Tensor<float> t = Tensor<float>::from_vector({3, 37, 45}, values);  // [C, H, W]
  write_geotiff(dir.file("deflate.tif"), t,
                GeoTiffWriteOptions().sample_type(RasterType::u16).compress(TiffCompression::deflate).use_predictor());
  write_geotiff(dir.file("lzw_tiled.tif"), t,
                GeoTiffWriteOptions().tiles(16, 16).band_separate().compress(TiffCompression::lzw));
  originals.push_back(dir.file("deflate.tif"));
  originals.push_back(dir.file("lzw_tiled.tif"));

  Tally tally;
  const std::string bad = dir.file("damaged.tif");
  uint32_t seed = 1;
  for (const std::string& original : originals) {
    const Bytes bytes = loom::test::read_bytes(original);
    REQUIRE_NOTHROW(read_geotiff(original));
    std::mt19937 rng(seed++);
    for (int k = 0; k < 120; ++k) {
      const Corruption c = k % 3 == 0 ? damage_tiff_directory(bytes, rng) : loom::test::random_corruption(bytes, rng, 512);
      loom::test::write_bytes(bad, c.bytes);
      INFO(original << ": " << c.what);
      expect_read_or_error(c, bad, tally, [&] {
        const GeoTiffImage image = read_geotiff(bad);
        // What reads must be self-consistent.
        CHECK(image.data.shape() == Shape{image.bands, image.height, image.width});
        return std::string();
      });
    }
  }
  INFO(tally.errors << " of " << tally.cases << " damaged GeoTIFFs rejected");
  CHECK(tally.cases >= 240);
  CHECK(tally.errors > tally.cases / 4);  // truncations alone are a quarter of the generic damage
}

TEST_CASE("fuzz: damaged packed files read or raise loom::Error, never crash", "[data][fuzz]") {
  loom::test::TempDir dir("fuzz");
  write_packed(*open_dataset("synthetic:train=6,val=0,test=0,size=24,seed=3"), dir.file("good.pack"));
  const Bytes good = loom::test::read_bytes(dir.file("good.pack"));
  REQUIRE(loom::test::read_everything("packed:" + dir.file("good.pack")).empty());
  const PackGeometry geometry = pack_geometry(good);
  REQUIRE(geometry.records.size() == 6);
  {  // resealing an intact file changes nothing
    Bytes copy = good;
    reseal_pack(copy, geometry);
    REQUIRE(copy == good);
  }

  Tally tally;
  const std::string bad = dir.file("damaged.pack");
  std::mt19937 rng(2024);
  for (int k = 0; k < 300; ++k) {
    const Corruption c = k % 2 == 0 ? damage_pack_field(good, geometry, rng)
                                    : loom::test::random_corruption(good, rng, size_t(geometry.data_offset));
    loom::test::write_bytes(bad, c.bytes);
    // Every other case trusts the record checksums (verify=0): then only structural checks stand
    // between the damage and the decoder.
    const std::string spec = "packed:" + bad + (k % 4 < 2 ? "?verify=0" : "");
    INFO(spec << ": " << c.what);
    expect_read_or_error(c, bad, tally, [&] { return loom::test::read_everything(spec); });
  }
  INFO(tally.errors << " of " << tally.cases << " damaged packs rejected");
  CHECK(tally.cases == 300);
  CHECK(tally.errors > 150);
}

#if LOOM_FUZZ_IMAGES
TEST_CASE("fuzz: damaged PNGs in an image folder read or raise loom::Error, never crash", "[data][fuzz]") {
  loom::test::TempDir dir("fuzz");
  std::vector<unsigned char> pixels(19 * 13 * 3);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<unsigned char>(i * 37 + i / 7);
  const std::string good = dir.write("source.png", "");
  REQUIRE(stbi_write_png(good.c_str(), 19, 13, 3, pixels.data(), 19 * 3) != 0);
  const Bytes bytes = loom::test::read_bytes(good);
  const std::string bad = dir.write("folder/class/damaged.png", "");
  Tally tally;
  std::mt19937 rng(77);
  for (int k = 0; k < 150; ++k) {
    const Corruption c = loom::test::random_corruption(bytes, rng, 64);
    loom::test::write_bytes(bad, c.bytes);
    INFO(c.what);
    expect_read_or_error(c, bad, tally, [&] { return loom::test::read_everything("images:" + dir.file("folder")); });
  }
  INFO(tally.errors << " of " << tally.cases << " damaged PNGs rejected");
  CHECK(tally.errors > 30);
}
#endif
