#pragma once
// Packed shards: a whole dataset in one file that is read by mmap, so a loader decodes samples
// straight from the page cache instead of opening 14 GeoTIFFs per sample. Spec:
//
//   packed:<file>[?verify=1&on_bad=error|skip]
//
// Written from any Dataset by write_packed() (or the pack_dataset tool). The file, little-endian:
//
//   header   magic "LOOMPACK", version, header size, sample count and index capacity, image height
//            and width, channel counts, band names (S1 then S2), class names, per-band
//            normalization mean and std (float64), the byte offsets of index and data, the total
//            file size, and last a CRC32C of everything before it;
//   index    capacity x {u64 offset, u32 bytes, u32 crc32c of the record}, then its own CRC32C and
//            zero padding to a 64-byte boundary;
//   records  one per sample, each starting on a 64-byte boundary:
//              u32 flags (1 = has S1, 2 = has S2), u16 S1-name length, u16 S2-name length,
//              num_classes x u8 labels (0 or 1), the two names, zero padding to 64 bytes,
//              S2: [C2, H, W] uint16 reflectance x 10000 (rounded),
//              S1: [C1, H, W] IEEE float16 dB (rounded to nearest even),
//              zero padding to 64 bytes (inside the record, so the checksum covers every byte).
//
// Every byte of the file is covered by a checksum (or, for the index's zero padding, checked to be
// zero): a flipped bit anywhere is detected, in the
// header or index when the file is opened, in a record when that sample is read (a loom::Error
// naming the sample index; under on_bad=skip the sample is skipped instead). A record's checksum is
// checked the first time it is read in a process (later epochs only decode). A truncated file is
// detected when opened, naming the first sample that was cut off. verify=0 skips the record
// checksums (trusts the file).
//
// Precision: S2 values round to the nearest integer (the real data are integers already); S1 dB
// values keep 11 significant bits (|error| <= 2^-11 |x|, 0.015 dB at -30 dB).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LOOM_PACKED_X86 1
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "loom/core/error.hpp"
#include "loom/core/parallel.hpp"
#include "loom/core/tensor.hpp"
#include "loom/data/dataset.hpp"
#include "loom/data/sample.hpp"

namespace loom::data {

static_assert(std::endian::native == std::endian::little, "packed shards are little-endian");

namespace packed_format {

inline constexpr char kMagic[8] = {'L', 'O', 'O', 'M', 'P', 'A', 'C', 'K'};
inline constexpr uint32_t kVersion = 1;
inline constexpr uint64_t kAlignment = 64;
inline constexpr uint32_t kHasS1 = 1, kHasS2 = 2;
inline constexpr size_t kIndexEntryBytes = 16;
inline constexpr size_t kRecordHeadBytes = 8;  // flags, two name lengths

inline constexpr uint64_t align_up(uint64_t x) { return (x + kAlignment - 1) / kAlignment * kAlignment; }

// ---- CRC32C (Castagnoli, reflected polynomial 0x82F63B78) --------------------------------------

// Slicing-by-8 tables, built at compile time.
constexpr std::array<std::array<uint32_t, 256>, 8> make_crc_tables() {
  std::array<std::array<uint32_t, 256>, 8> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ ((c & 1u) ? 0x82F63B78u : 0u);
    t[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; ++i)
    for (size_t s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xffu];
  return t;
}
inline constexpr auto kCrcTables = make_crc_tables();

inline uint32_t crc32c_software(uint32_t crc, const uint8_t* p, size_t n) {
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    v ^= crc;
    crc = kCrcTables[7][v & 0xff] ^ kCrcTables[6][(v >> 8) & 0xff] ^ kCrcTables[5][(v >> 16) & 0xff] ^
          kCrcTables[4][(v >> 24) & 0xff] ^ kCrcTables[3][(v >> 32) & 0xff] ^ kCrcTables[2][(v >> 40) & 0xff] ^
          kCrcTables[1][(v >> 48) & 0xff] ^ kCrcTables[0][v >> 56];
    p += 8;
    n -= 8;
  }
  while (n--) crc = (crc >> 8) ^ kCrcTables[0][(crc ^ *p++) & 0xffu];
  return crc;
}

// Combining: CRC(A || B) = CRC(A) * x^(8 |B|) + CRC(B) in GF(2)[x] mod P (for final CRC values,
// B's taken from 0), as zlib's crc32_combine. Polynomials are 32-bit words in the reflected order
// (bit 31 = x^0).
inline constexpr uint32_t kCrcPolynomial = 0x82F63B78u;
constexpr uint32_t gf2_multiply(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (uint32_t m = 1u << 31; m != 0; m >>= 1) {
    if (a & m) product ^= b;
    b = (b & 1u) ? (b >> 1) ^ kCrcPolynomial : b >> 1;
  }
  return product;
}
// x^(2^k) mod P for k = 0..63.
constexpr std::array<uint32_t, 64> make_x_power_table() {
  std::array<uint32_t, 64> t{};
  t[0] = 1u << 30;  // x^1
  for (size_t k = 1; k < 64; ++k) t[k] = gf2_multiply(t[k - 1], t[k - 1]);
  return t;
}
inline constexpr auto kXPowers = make_x_power_table();
// x^(8 n) mod P: the shift of a CRC past n bytes.
constexpr uint32_t x_power_of_bytes(uint64_t n) {
  uint32_t p = 1u << 31;  // x^0
  for (size_t k = 3; n != 0; n >>= 1, ++k)
    if (n & 1) p = gf2_multiply(kXPowers[k & 63], p);
  return p;
}
constexpr uint32_t crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t bytes_b) {
  return gf2_multiply(x_power_of_bytes(bytes_b), crc_a) ^ crc_b;
}

#if defined(LOOM_PACKED_X86) && defined(__x86_64__)
// The SSE4.2 crc32 instruction on the raw register `state` (pre-/post-inversion done by the caller).
__attribute__((target("sse4.2"))) inline uint32_t crc32c_hardware(uint32_t state, const uint8_t* p, size_t n) {
  uint64_t c = state;
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
  }
  uint32_t c32 = uint32_t(c);
  while (n--) c32 = _mm_crc32_u8(c32, *p++);
  return c32;
}
// Three interleaved streams over the thirds of the buffer hide the instruction's 3-cycle latency
// (about 3x the speed of one stream); the thirds' CRCs are then combined.
__attribute__((target("sse4.2"))) inline uint32_t crc32c_hardware_3way(uint32_t crc, const uint8_t* p, size_t n) {
  const size_t third = n / 24 * 8;
  const uint8_t *a = p, *b = p + third, *c = p + 2 * third;
  uint64_t sa = ~crc, sb = 0xffffffffu, sc = 0xffffffffu;
  for (size_t i = 0; i < third; i += 8) {
    uint64_t va, vb, vc;
    std::memcpy(&va, a + i, 8);
    std::memcpy(&vb, b + i, 8);
    std::memcpy(&vc, c + i, 8);
    sa = _mm_crc32_u64(sa, va);
    sb = _mm_crc32_u64(sb, vb);
    sc = _mm_crc32_u64(sc, vc);
  }
  const size_t rest = n - 3 * third;  // the tail joins the third stream
  const uint32_t crc_c = ~crc32c_hardware(uint32_t(sc), c + third, rest);
  const uint32_t crc_ab = crc32c_combine(~uint32_t(sa), ~uint32_t(sb), third);
  return crc32c_combine(crc_ab, crc_c, third + rest);
}
inline bool have_sse42() {
  static const bool yes = __builtin_cpu_supports("sse4.2");
  return yes;
}
#endif

// CRC32C of n bytes, continuing from `crc` (0 to start).
inline uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0) {
  const auto* p = static_cast<const uint8_t*>(data);
#if defined(LOOM_PACKED_X86) && defined(__x86_64__)
  if (have_sse42()) return n >= 4096 ? crc32c_hardware_3way(crc, p, n) : ~crc32c_hardware(~crc, p, n);
#endif
  return ~crc32c_software(~crc, p, n);
}

// ---- IEEE 754 half precision --------------------------------------------------------------------

// Rounds to nearest, ties to even; overflow gives +-inf, NaN stays NaN.
inline uint16_t float_to_half(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) return uint16_t(sign | (abs > 0x7f800000u ? 0x7e00u : 0x7c00u));  // NaN, inf
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {  // below 2^-14: a subnormal half (or zero)
    // The half's mantissa is |f| / 2^-24 rounded to nearest even (1024 carries into the smallest
    // normal, whose bits are exactly 0x0400).
    const float scaled = std::bit_cast<float>(abs) * 0x1p24f;  // exact: a power-of-two scale
    return uint16_t(sign | uint16_t(std::nearbyint(scaled)));  // default rounding: ties to even
  }
  // Normal: rebias the exponent (127 -> 15) and round the 13 dropped mantissa bits to nearest even.
  const uint32_t mantissa_odd = (abs >> 13) & 1u;
  const uint32_t rounded = abs + 0xfffu + mantissa_odd;
  return uint16_t(sign | uint16_t((rounded - 0x38000000u) >> 13));
}

inline float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  if (exponent == 0) {  // zero or subnormal: mantissa x 2^-24
    const float v = float(mantissa) * 0x1p-24f;
    return sign ? -v : v;
  }
  if (exponent == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

// ---- decoding with the normalization fused in: dst = (value - mean) * inv_std ------------------
// (the expression of sample.hpp's normalize(), so both paths give identical floats; mean 0 and
// inv_std 1 decode raw values exactly).

inline void decode_u16_plain(const uint16_t* src, float* dst, size_t n, float mean, float inv_std) {
  for (size_t i = 0; i < n; ++i) dst[i] = (float(src[i]) - mean) * inv_std;
}
inline void decode_f16_plain(const uint16_t* src, float* dst, size_t n, float mean, float inv_std) {
  for (size_t i = 0; i < n; ++i) dst[i] = (half_to_float(src[i]) - mean) * inv_std;
}

#if defined(LOOM_PACKED_X86)
// Large aligned outputs (batch buffers, read later by the training loop) are written with
// non-temporal stores, which skip reading the destination lines into the cache first.
inline constexpr size_t kStreamingBytes = size_t(1) << 14;

__attribute__((target("avx2"))) inline void decode_u16_avx2(const uint16_t* src, float* dst, size_t n, float mean,
                                                            float inv_std) {
  const __m256 m = _mm256_set1_ps(mean), s = _mm256_set1_ps(inv_std);
  const bool stream = n * sizeof(float) >= kStreamingBytes && reinterpret_cast<uintptr_t>(dst) % 32 == 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
    const __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(wide), m), s);
    if (stream) _mm256_stream_ps(dst + i, v);
    else _mm256_storeu_ps(dst + i, v);
  }
  if (stream) _mm_sfence();
  decode_u16_plain(src + i, dst + i, n - i, mean, inv_std);
}
__attribute__((target("avx,f16c"))) inline void decode_f16_f16c(const uint16_t* src, float* dst, size_t n, float mean,
                                                                 float inv_std) {
  const __m256 m = _mm256_set1_ps(mean), s = _mm256_set1_ps(inv_std);
  const bool stream = n * sizeof(float) >= kStreamingBytes && reinterpret_cast<uintptr_t>(dst) % 32 == 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))), m), s);
    if (stream) _mm256_stream_ps(dst + i, v);
    else _mm256_storeu_ps(dst + i, v);
  }
  if (stream) _mm_sfence();
  decode_f16_plain(src + i, dst + i, n - i, mean, inv_std);
}
inline bool have_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}
inline bool have_f16c() {
  static const bool yes = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
  return yes;
}
#endif

// True when no half in src[0..n) is an infinity or a NaN (exponent bits all ones).
inline bool halves_finite(const uint16_t* src, size_t n) {
  uint16_t all_ones = 0;
  for (size_t i = 0; i < n; ++i) all_ones |= uint16_t((src[i] & 0x7c00u) == 0x7c00u);
  return all_ones == 0;
}

inline void decode_u16(const uint16_t* src, float* dst, size_t n, float mean = 0, float inv_std = 1) {
#if defined(LOOM_PACKED_X86)
  if (have_avx2()) return decode_u16_avx2(src, dst, n, mean, inv_std);
#endif
  decode_u16_plain(src, dst, n, mean, inv_std);
}
inline void decode_f16(const uint16_t* src, float* dst, size_t n, float mean = 0, float inv_std = 1) {
#if defined(LOOM_PACKED_X86)
  if (have_f16c()) return decode_f16_f16c(src, dst, n, mean, inv_std);
#endif
  decode_f16_plain(src, dst, n, mean, inv_std);
}

// ---- byte buffers -------------------------------------------------------------------------------

class ByteWriter {
 public:
  template <class T>
  void put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    const size_t at = bytes.size();
    bytes.resize(at + sizeof(T));
    std::memcpy(bytes.data() + at, &v, sizeof(T));
  }
  void put_string(const std::string& s, const char* what) {
    LOOM_CHECK(s.size() <= 0xffff, "write_packed: ", what, " \"", s.substr(0, 40), "...\" is longer than 65535 bytes");
    put(uint16_t(s.size()));
    bytes.insert(bytes.end(), s.begin(), s.end());
  }
  void pad_to(uint64_t alignment) {
    while (bytes.size() % alignment) bytes.push_back(0);
  }
  std::vector<uint8_t> bytes;
};

// Reads with bounds checks; `what` names the part of the file in messages.
class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size, std::string what) : p_(data), size_(size), what_(std::move(what)) {}
  template <class T>
  T get() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, p_ + at_, sizeof(T));
    at_ += sizeof(T);
    return v;
  }
  std::string get_string() {
    const uint16_t n = get<uint16_t>();
    need(n);
    std::string s(reinterpret_cast<const char*>(p_ + at_), n);
    at_ += n;
    return s;
  }
  size_t position() const { return at_; }

 private:
  void need(size_t n) const {
    LOOM_CHECK(n <= size_ - at_, what_, ": ends after ", size_, " bytes, but more data was expected at byte ", at_);
  }
  const uint8_t* p_;
  size_t size_, at_ = 0;
  std::string what_;
};

}  // namespace packed_format

// ---- what the header describes ------------------------------------------------------------------

struct PackedLayout {
  int64_t height = 0, width = 0;
  std::vector<std::string> s1_bands;  // empty when no sample has S1
  std::vector<std::string> s2_bands;  // empty when no sample has S2
  std::vector<std::string> class_names;
  BandStatistics statistics;          // mean / std of every band, S1 then S2
};

// ---- a read-only memory map ---------------------------------------------------------------------

class ReadOnlyMap {
 public:
  explicit ReadOnlyMap(const std::string& path) : path_(path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    LOOM_CHECK(fd >= 0, "packed: cannot open ", path, ": ", std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      loom::detail::fail("packed: ", path, ": not a regular file");
    }
    size_ = size_t(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
      const int err = errno;
      ::close(fd);
      LOOM_CHECK(p != MAP_FAILED, "packed: cannot map ", path, " (", size_, " bytes): ", std::strerror(err));
      data_ = static_cast<const uint8_t*>(p);
      // Samples are read in shuffled order: ask for read-ahead of the whole file up front (when it
      // is small enough to be worth keeping in the page cache).
      if (size_ <= (size_t(4) << 30)) ::madvise(const_cast<uint8_t*>(data_), size_, MADV_WILLNEED);
    } else {
      ::close(fd);
    }
  }
  ~ReadOnlyMap() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  }
  ReadOnlyMap(const ReadOnlyMap&) = delete;
  ReadOnlyMap& operator=(const ReadOnlyMap&) = delete;
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// ---- reading ------------------------------------------------------------------------------------

struct PackedOptions {
  std::string path;
  bool verify = true;  // check each record's CRC32C when it is read
  BadDataPolicy bad;
  static PackedOptions from_spec(const DatasetSpec& spec) {
    PackedOptions o;
    o.path = spec.path();
    o.verify = spec.get_bool("verify", true);
    o.bad = spec.bad_data_policy();
    return o;
  }
};

// A record checked and parsed, its payloads still in the map (zero-copy).
struct PackedRecord {
  bool has_s1 = false, has_s2 = false;
  std::string_view s1_name, s2_name;
  const uint8_t* labels = nullptr;  // [num_classes] 0/1
  const uint16_t* s2 = nullptr;     // [C2, H, W] uint16
  const uint16_t* s1 = nullptr;     // [C1, H, W] float16
};

class PackedDataset : public Dataset {
 public:
  explicit PackedDataset(PackedOptions options)
      : Dataset(options.bad), opt_(std::move(options)), map_(std::make_shared<ReadOnlyMap>(opt_.path)) {
    read_header();
  }

  int64_t size() const override { return count_; }
  std::string name(int64_t i) const override {
    const PackedRecord r = record(i);
    return std::string(r.s2_name.empty() ? r.s1_name : r.s2_name);
  }
  std::vector<std::string> class_names() const override { return layout_.class_names; }
  const PackedLayout& layout() const { return layout_; }
  const std::string& path() const { return opt_.path; }

  // Sample i checked (CRC, structure) and parsed; its payloads point into the map.
  PackedRecord record(int64_t i) const {
    LOOM_CHECK(i >= 0 && i < count_, "packed: ", opt_.path, ": index ", i, " out of range for ", count_, " samples");
    const Entry& e = index_[size_t(i)];
    LOOM_CHECK(e.offset + e.bytes <= map_->size(), "packed: ", opt_.path, ": sample ", i, " is truncated: its record [",
               e.offset, ", ", e.offset + e.bytes, ") extends past the end of the file (", map_->size(), " bytes)");
    const uint8_t* p = map_->data() + e.offset;
    // Each record's checksum is checked the first time it is read; the mapping cannot change
    // under us afterwards (writers replace pack files by rename, and the map keeps the old file).
    if (opt_.verify && !verified_[size_t(i)].load(std::memory_order_acquire)) {
      const uint32_t crc = packed_format::crc32c(p, e.bytes);
      LOOM_CHECK(crc == e.crc, "packed: ", opt_.path, ": sample ", i, " is corrupt: checksum ", crc,
                 " != stored ", e.crc, " (record at byte ", e.offset, ", ", e.bytes, " bytes)");
      verified_[size_t(i)].store(true, std::memory_order_release);
    }
    return parse_record(i, p, e.bytes);
  }

  // Decodes sample i's present payloads into caller buffers: s1_out [C1, H, W], s2_out [C2, H, W],
  // labels_out [K] (each may be null to skip it), normalized per band by `stats` when given (the
  // arithmetic of normalize()), else raw. Returns the record (names, which modalities it has).
  PackedRecord decode_into(int64_t i, float* s1_out, float* s2_out, float* labels_out,
                           const BandStatistics* stats = nullptr) const {
    const PackedRecord r = record(i);
    const size_t plane = size_t(layout_.height * layout_.width);
    auto band_params = [&](const std::string& band, float& mean, float& inv_std) {
      mean = 0, inv_std = 1;
      if (!stats) return;
      const auto k = stats->find(band);
      LOOM_CHECK(k.has_value(), "packed: ", opt_.path, ": no normalization statistics for band ", band);
      LOOM_CHECK(stats->stddev[*k] > 0, "packed: band ", band, " has standard deviation ", stats->stddev[*k]);
      mean = float(stats->mean[*k]);
      inv_std = float(1.0 / stats->stddev[*k]);
    };
    float mean = 0, inv_std = 1;
    if (r.has_s2 && s2_out)
      for (size_t c = 0; c < layout_.s2_bands.size(); ++c) {
        band_params(layout_.s2_bands[c], mean, inv_std);
        packed_format::decode_u16(r.s2 + c * plane, s2_out + c * plane, plane, mean, inv_std);
      }
    if (r.has_s1 && s1_out)
      for (size_t c = 0; c < layout_.s1_bands.size(); ++c) {
        band_params(layout_.s1_bands[c], mean, inv_std);
        packed_format::decode_f16(r.s1 + c * plane, s1_out + c * plane, plane, mean, inv_std);
      }
    if (labels_out)
      for (size_t k = 0; k < layout_.class_names.size(); ++k) labels_out[k] = float(r.labels[k]);
    return r;
  }

 protected:
  Sample load(int64_t i) const override {
    const int64_t H = layout_.height, W = layout_.width;
    Sample s;
    Tensor<float> s1 = layout_.s1_bands.empty() ? Tensor<float>() : Tensor<float>::empty({int64_t(layout_.s1_bands.size()), H, W});
    Tensor<float> s2 = layout_.s2_bands.empty() ? Tensor<float>() : Tensor<float>::empty({int64_t(layout_.s2_bands.size()), H, W});
    Tensor<float> labels = Tensor<float>::empty({int64_t(layout_.class_names.size())});  // [K]
    const PackedRecord r = decode_into(i, s1.defined() ? s1.data() : nullptr, s2.defined() ? s2.data() : nullptr,
                                       labels.data());
    if (r.has_s1) s.s1 = s1;  // [C1, H, W] dB
    if (r.has_s2) s.s2 = s2;  // [C2, H, W] reflectance x 10000
    s.labels = labels;
    s.s2_bands = layout_.s2_bands;
    s.s1_name = std::string(r.s1_name);
    s.s2_name = std::string(r.s2_name);
    return s;
  }

 private:
  struct Entry {
    uint64_t offset;
    uint32_t bytes, crc;
  };

  void read_header() {
    using namespace packed_format;
    const std::string& path = opt_.path;
    const uint8_t* base = map_->data();
    const size_t size = map_->size();
    LOOM_CHECK(size >= 16, "packed: ", path, ": truncated header (", size, " bytes; not a loom pack?)");
    LOOM_CHECK(std::memcmp(base, kMagic, 8) == 0, "packed: ", path, ": bad magic (not a loom packed file)");
    ByteReader head(base, size, "packed: " + path + ": header");
    head.get<uint64_t>();  // magic
    const uint32_t version = head.get<uint32_t>();
    LOOM_CHECK(version == kVersion, "packed: ", path, ": format version ", version, ", this loom reads version ",
               kVersion);
    const uint32_t header_bytes = head.get<uint32_t>();
    LOOM_CHECK(header_bytes >= 24 && header_bytes <= size, "packed: ", path, ": truncated or corrupt header (header of ",
               header_bytes, " bytes in a file of ", size, ")");
    uint32_t stored_crc = 0;
    std::memcpy(&stored_crc, base + header_bytes - 4, 4);
    LOOM_CHECK(crc32c(base, header_bytes - 4) == stored_crc, "packed: ", path, ": header is corrupt (checksum mismatch)");

    ByteReader h(base, header_bytes - 4, "packed: " + path + ": header");
    h.get<uint64_t>(), h.get<uint32_t>(), h.get<uint32_t>();  // magic, version, size
    count_ = int64_t(h.get<uint64_t>());
    const uint64_t capacity = h.get<uint64_t>();
    layout_.height = h.get<uint32_t>();
    layout_.width = h.get<uint32_t>();
    const uint32_t c1 = h.get<uint32_t>(), c2 = h.get<uint32_t>(), classes = h.get<uint32_t>();
    const uint64_t index_offset = h.get<uint64_t>(), data_offset = h.get<uint64_t>(), file_bytes = h.get<uint64_t>();
    LOOM_CHECK(c1 <= 64 && c2 <= 64 && classes <= 4096 && count_ >= 0 && uint64_t(count_) <= capacity &&
                   layout_.height > 0 && layout_.width > 0,
               "packed: ", path, ": header holds an impossible layout");
    for (uint32_t c = 0; c < c1; ++c) layout_.s1_bands.push_back(h.get_string());
    for (uint32_t c = 0; c < c2; ++c) layout_.s2_bands.push_back(h.get_string());
    for (uint32_t c = 0; c < classes; ++c) layout_.class_names.push_back(h.get_string());
    layout_.statistics.bands = layout_.s1_bands;
    layout_.statistics.bands.insert(layout_.statistics.bands.end(), layout_.s2_bands.begin(), layout_.s2_bands.end());
    for (size_t b = 0; b < layout_.statistics.bands.size(); ++b) {
      layout_.statistics.mean.push_back(h.get<double>());
      layout_.statistics.stddev.push_back(h.get<double>());
    }
    LOOM_CHECK(index_offset == header_bytes && capacity <= (size - index_offset) / kIndexEntryBytes + 1,
               "packed: ", path, ": truncated file: the index of ", capacity, " entries at byte ", index_offset,
               " does not fit in ", size, " bytes");
    const uint64_t index_bytes = capacity * kIndexEntryBytes;
    LOOM_CHECK(index_offset + index_bytes + 4 <= size && data_offset == align_up(index_offset + index_bytes + 4),
               "packed: ", path, ": truncated file: the index ends past the end of the file (", size, " bytes)");
    std::memcpy(&stored_crc, base + index_offset + index_bytes, 4);
    LOOM_CHECK(crc32c(base + index_offset, index_bytes) == stored_crc, "packed: ", path,
               ": index is corrupt (checksum mismatch)");
    // The padding up to the data is zeros (no checksum covers it, so it is checked here).
    for (uint64_t b = index_offset + index_bytes + 4; b < std::min<uint64_t>(data_offset, size); ++b)
      LOOM_CHECK(base[b] == 0, "packed: ", path, ": index padding is corrupt (byte ", b, ")");
    index_.resize(size_t(count_));
    verified_ = std::make_unique<std::atomic<bool>[]>(size_t(count_));
    ByteReader ix(base + index_offset, index_bytes, "packed: " + path + ": index");
    for (Entry& e : index_) {
      e.offset = ix.get<uint64_t>();
      e.bytes = ix.get<uint32_t>();
      e.crc = ix.get<uint32_t>();
    }
    // Truncation: name the first sample that lost bytes. Records are in file order.
    if (size < file_bytes) {
      int64_t first_lost = count_;
      for (int64_t i = 0; i < count_; ++i)
        if (index_[size_t(i)].offset + index_[size_t(i)].bytes > size) {
          first_lost = i;
          break;
        }
      // Under on_bad=skip the intact samples stay readable and the lost ones are skipped one by
      // one when read (record() reports each).
      LOOM_CHECK(policy().on_bad == OnBadSample::skip, "packed: ", path, ": truncated file (", size, " of ",
                 file_bytes, " bytes): sample ", first_lost, " and the ", count_ - 1 - first_lost,
                 " after it are cut off");
    }
    LOOM_CHECK(size <= file_bytes, "packed: ", path, ": ", size - file_bytes, " unexpected bytes after the last sample");
    for (int64_t i = 0; i < count_; ++i) {
      const Entry& e = index_[size_t(i)];
      LOOM_CHECK(e.offset >= data_offset && e.offset % kAlignment == 0 && e.bytes <= file_bytes - e.offset,
                 "packed: ", path, ": index entry of sample ", i, " points outside the data");
    }
  }

  PackedRecord parse_record(int64_t i, const uint8_t* p, uint32_t bytes) const {
    using namespace packed_format;
    const std::string where = "packed: " + opt_.path + ": sample " + std::to_string(i);
    ByteReader r(p, bytes, where);
    PackedRecord out;
    const uint32_t flags = r.get<uint32_t>();
    const uint16_t n1 = r.get<uint16_t>(), n2 = r.get<uint16_t>();
    LOOM_CHECK((flags & ~(kHasS1 | kHasS2)) == 0, where, ": unknown record flags ", flags);
    out.has_s1 = flags & kHasS1;
    out.has_s2 = flags & kHasS2;
    LOOM_CHECK(!(out.has_s1 && layout_.s1_bands.empty()) && !(out.has_s2 && layout_.s2_bands.empty()), where,
               ": holds a modality the file's layout does not have");
    const size_t classes = layout_.class_names.size();
    const size_t head = kRecordHeadBytes + classes + n1 + n2;
    const size_t plane = size_t(layout_.height * layout_.width);
    const size_t s2_bytes = out.has_s2 ? layout_.s2_bands.size() * plane * 2 : 0;
    const size_t s1_bytes = out.has_s1 ? layout_.s1_bands.size() * plane * 2 : 0;
    LOOM_CHECK(bytes == align_up(align_up(head) + s2_bytes + s1_bytes), where, ": record of ", bytes,
               " bytes does not match its layout");
    out.labels = p + kRecordHeadBytes;
    for (size_t k = 0; k < classes; ++k)
      LOOM_CHECK(out.labels[k] <= 1, where, ": label ", k, " is ", int(out.labels[k]), ", not 0 or 1");
    out.s1_name = std::string_view(reinterpret_cast<const char*>(p + kRecordHeadBytes + classes), n1);
    out.s2_name = std::string_view(reinterpret_cast<const char*>(p + kRecordHeadBytes + classes + n1), n2);
    const uint8_t* payload = p + align_up(head);
    if (out.has_s2) out.s2 = reinterpret_cast<const uint16_t*>(payload);
    if (out.has_s1) out.s1 = reinterpret_cast<const uint16_t*>(payload + s2_bytes);
    return out;
  }

  PackedOptions opt_;
  std::shared_ptr<ReadOnlyMap> map_;
  PackedLayout layout_;
  int64_t count_ = 0;
  std::vector<Entry> index_;
  std::unique_ptr<std::atomic<bool>[]> verified_;  // [count] record checksum already checked
};

inline std::unique_ptr<Dataset> open_packed(const DatasetSpec& spec) {
  PackedOptions options = PackedOptions::from_spec(spec);
  spec.finish();
  return std::make_unique<PackedDataset>(std::move(options));
}

// ---- writing ------------------------------------------------------------------------------------

struct PackOptions {
  // Normalization statistics stored in the header (every band must be found by name).
  BandStatistics statistics = bigearthnet_statistics();
  // Samples encoded in parallel per window (written in order); 0 = 8 per thread.
  int64_t window = 0;
  // Called after each window with (samples done, samples total).
  std::function<void(int64_t, int64_t)> progress;
};

struct PackReport {
  int64_t written = 0;
  int64_t skipped = 0;  // bad samples left out (the dataset's on_bad=skip)
  uint64_t bytes = 0;
};

namespace detail {

// One sample's record bytes; throws loom::Error on data the format cannot hold faithfully.
inline std::vector<uint8_t> encode_packed_record(const Sample& s, const PackedLayout& layout, int64_t index) {
  using namespace packed_format;
  const std::string where = "write_packed: sample " + std::to_string(index) + " (" + s.name() + ")";
  const int64_t H = layout.height, W = layout.width;
  auto check_shape = [&](const Tensor<float>& t, size_t channels, const char* what) {
    LOOM_CHECK(t.dim() == 3 && t.size(0) == int64_t(channels) && t.size(1) == H && t.size(2) == W, where, ": ", what,
               " has shape ", t.shape(), ", the pack holds [", channels, ", ", H, ", ", W, "]");
  };
  LOOM_CHECK(s.has_s1() || s.has_s2(), where, ": has neither S1 nor S2");
  LOOM_CHECK(!s.has_s1() || !layout.s1_bands.empty(), where, ": has S1, but the pack's first sample had none");
  LOOM_CHECK(!s.has_s2() || !layout.s2_bands.empty(), where, ": has S2, but the pack's first sample had none");
  if (s.has_s1()) check_shape(s.s1, layout.s1_bands.size(), "S1");
  if (s.has_s2()) {
    check_shape(s.s2, layout.s2_bands.size(), "S2");
    LOOM_CHECK(s.s2_bands == layout.s2_bands, where, ": S2 bands differ from the first sample's");
  }
  LOOM_CHECK(s.labels.defined() && s.labels.numel() == int64_t(layout.class_names.size()), where, ": labels of shape ",
             s.labels.defined() ? s.labels.shape() : Shape{}, ", expected [", layout.class_names.size(), "]");
  ByteWriter w;
  w.put(uint32_t((s.has_s1() ? kHasS1 : 0) | (s.has_s2() ? kHasS2 : 0)));
  LOOM_CHECK(s.s1_name.size() <= 0xffff && s.s2_name.size() <= 0xffff, where, ": name longer than 65535 bytes");
  w.put(uint16_t(s.s1_name.size()));
  w.put(uint16_t(s.s2_name.size()));
  for (float v : s.labels.to_vector()) {
    LOOM_CHECK(v == 0.0f || v == 1.0f, where, ": label value ", v, " is not 0 or 1");
    w.put(uint8_t(v));
  }
  w.bytes.insert(w.bytes.end(), s.s1_name.begin(), s.s1_name.end());
  w.bytes.insert(w.bytes.end(), s.s2_name.begin(), s.s2_name.end());
  w.pad_to(kAlignment);
  const size_t plane = size_t(H * W);
  if (s.has_s2()) {
    const Tensor<float> x = s.s2.contiguous();  // [C2, H, W]
    const float* v = x.data();
    const size_t n = layout.s2_bands.size() * plane, at = w.bytes.size();
    w.bytes.resize(at + 2 * n);
    auto* dst = reinterpret_cast<uint16_t*>(w.bytes.data() + at);
    for (size_t i = 0; i < n; ++i) {
      LOOM_CHECK(std::isfinite(v[i]) && v[i] >= -0.5f && v[i] < 65535.5f, where, ": S2 band ",
                 layout.s2_bands[i / plane], " value ", v[i], " at pixel ", i % plane,
                 " does not fit uint16 reflectance");
      dst[i] = uint16_t(std::nearbyint(v[i]));
    }
  }
  if (s.has_s1()) {
    const Tensor<float> x = s.s1.contiguous();  // [C1, H, W]
    const float* v = x.data();
    const size_t n = layout.s1_bands.size() * plane, at = w.bytes.size();
    w.bytes.resize(at + 2 * n);
    auto* dst = reinterpret_cast<uint16_t*>(w.bytes.data() + at);
    for (size_t i = 0; i < n; ++i) {
      LOOM_CHECK(std::isfinite(v[i]) && std::abs(v[i]) <= 65504.0f, where, ": S1 band ", layout.s1_bands[i / plane],
                 " value ", v[i], " at pixel ", i % plane, " is not a finite float16");
      dst[i] = float_to_half(v[i]);
    }
  }
  w.pad_to(kAlignment);
  return std::move(w.bytes);
}

inline std::vector<uint8_t> encode_packed_header(const PackedLayout& layout, uint64_t count, uint64_t capacity,
                                                 uint64_t file_bytes) {
  using namespace packed_format;
  // Two passes: the header's size is part of the header.
  uint32_t header_bytes = 0;
  for (int pass = 0; pass < 2; ++pass) {
    ByteWriter w;
    w.bytes.insert(w.bytes.end(), kMagic, kMagic + 8);
    w.put(kVersion);
    w.put(header_bytes);
    w.put(count);
    w.put(capacity);
    w.put(uint32_t(layout.height));
    w.put(uint32_t(layout.width));
    w.put(uint32_t(layout.s1_bands.size()));
    w.put(uint32_t(layout.s2_bands.size()));
    w.put(uint32_t(layout.class_names.size()));
    const uint64_t index_offset = header_bytes;
    w.put(index_offset);
    w.put(align_up(index_offset + capacity * kIndexEntryBytes + 4));  // data offset
    w.put(file_bytes);
    for (const auto& b : layout.s1_bands) w.put_string(b, "band name");
    for (const auto& b : layout.s2_bands) w.put_string(b, "band name");
    for (const auto& c : layout.class_names) w.put_string(c, "class name");
    for (size_t b = 0; b < layout.statistics.bands.size(); ++b) {
      w.put(layout.statistics.mean[b]);
      w.put(layout.statistics.stddev[b]);
    }
    w.pad_to(8);
    header_bytes = uint32_t(w.bytes.size() + 4);
    if (pass == 1) {
      w.put(crc32c(w.bytes.data(), w.bytes.size()));
      return std::move(w.bytes);
    }
  }
  return {};
}

// The pack under construction: a temporary file next to the destination, written at explicit
// offsets (the header and index are filled in last), then fsync'ed and renamed over the
// destination, so readers see the old file or the complete new one. Removed if never committed.
class PackFileWriter {
 public:
  explicit PackFileWriter(std::string path) : path_(std::move(path)) {
    static std::atomic<uint64_t> counter{0};
    const std::filesystem::path target(path_);
    const std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
    dir_ = dir.string();
    for (int attempt = 0; attempt < 100 && fd_ < 0; ++attempt) {
      // Built by appending: g++ 12 warns falsely (-Wrestrict) on "." + std::string.
      std::string name = ".";
      name += target.filename().string();
      name += ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
      temp_ = (dir / name).string();
      fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd_ < 0 && errno != EEXIST) break;
    }
    LOOM_CHECK(fd_ >= 0, "write_packed: cannot create a temporary file in ", dir_, ": ", std::strerror(errno));
  }
  ~PackFileWriter() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(temp_.c_str());
  }
  PackFileWriter(const PackFileWriter&) = delete;
  PackFileWriter& operator=(const PackFileWriter&) = delete;

  void write_at(uint64_t offset, const void* data, size_t bytes) {
    const char* p = static_cast<const char*>(data);
    while (bytes > 0) {
      const ssize_t n = ::pwrite(fd_, p, std::min<size_t>(bytes, size_t(1) << 30), off_t(offset));
      if (n < 0 && errno == EINTR) continue;
      LOOM_CHECK(n > 0, "write_packed: writing ", temp_, " failed: ", std::strerror(errno));
      p += n, bytes -= size_t(n), offset += uint64_t(n);
    }
  }

  void commit() {
    LOOM_CHECK(::fsync(fd_) == 0, "write_packed: fsync of ", temp_, " failed: ", std::strerror(errno));
    const int fd = fd_;
    fd_ = -1;
    LOOM_CHECK(::close(fd) == 0, "write_packed: closing ", temp_, " failed: ", std::strerror(errno));
    LOOM_CHECK(::rename(temp_.c_str(), path_.c_str()) == 0, "write_packed: renaming ", temp_, " to ", path_,
               " failed: ", std::strerror(errno));
    committed_ = true;
    if (const int dir_fd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dir_fd >= 0) {
      ::fsync(dir_fd);  // makes the rename durable; some filesystems refuse, which is harmless
      ::close(dir_fd);
    }
  }

 private:
  std::string path_, dir_, temp_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace detail

// Packs every sample of `dataset` into `path` (replaced atomically: readers see the old file or the
// complete new one). Samples are read and encoded in parallel, written in index order. A bad sample
// (wrong layout, values the format cannot hold, or a read error) is an error naming it, or under the
// dataset's on_bad=skip it is left out and counted. The layout comes from the first good sample.
inline PackReport write_packed(const Dataset& dataset, const std::string& path, const PackOptions& options = {}) {
  using namespace packed_format;
  const int64_t total = dataset.size();
  const bool skip_bad = dataset.policy().on_bad == OnBadSample::skip;
  PackReport report;
  const int64_t skipped_before = dataset.skipped();

  // Samples the dataset substitutes under on_bad=skip (get(i) returns a later good one) are
  // recognized by their name and left out, so no sample is packed twice.
  auto fetch = [&](int64_t i) -> Sample {
    Sample s = dataset.get(i);
    if (skip_bad && s.name() != dataset.name(i)) return Sample{};
    return s;
  };

  PackedLayout layout;
  layout.class_names = dataset.class_names();
  {
    Sample first;
    for (int64_t i = 0; i < total && !first.labels.defined(); ++i) first = fetch(i);
    LOOM_CHECK(total == 0 || first.labels.defined(), "write_packed: no good sample in the dataset");
    if (first.labels.defined()) {
      const Tensor<float>& any = first.has_s2() ? first.s2 : first.s1;
      LOOM_CHECK(any.defined() && any.dim() == 3, "write_packed: first sample has no [C, H, W] image");
      layout.height = any.size(1);
      layout.width = any.size(2);
      if (first.has_s1()) layout.s1_bands = s1_band_names();
      if (first.has_s2()) layout.s2_bands = first.s2_bands;
    } else {
      layout.height = layout.width = 1;
    }
  }
  for (const auto& bands : {layout.s1_bands, layout.s2_bands})
    for (const auto& b : bands) {
      const auto k = options.statistics.find(b);
      LOOM_CHECK(k.has_value(), "write_packed: no normalization statistics for band ", b,
                 " (pass PackOptions::statistics, e.g. from compute_band_statistics)");
      layout.statistics.bands.push_back(b);
      layout.statistics.mean.push_back(options.statistics.mean[*k]);
      layout.statistics.stddev.push_back(options.statistics.stddev[*k]);
    }

  const uint64_t capacity = uint64_t(total);
  const std::vector<uint8_t> provisional = detail::encode_packed_header(layout, 0, capacity, 0);
  const uint64_t header_bytes = provisional.size();
  const uint64_t index_bytes = capacity * kIndexEntryBytes;
  const uint64_t data_offset = align_up(header_bytes + index_bytes + 4);

  detail::PackFileWriter file(path);  // header and index are written last, at offset 0
  std::vector<uint8_t> index(size_t(index_bytes), 0);
  uint64_t offset = data_offset;

  const int64_t window = options.window > 0 ? options.window : 8 * int64_t(num_threads());
  std::vector<std::vector<uint8_t>> encoded;
  std::vector<std::string> errors;
  for (int64_t begin = 0; begin < total; begin += window) {
    const int64_t end = std::min(total, begin + window);
    encoded.assign(size_t(end - begin), {});
    errors.assign(size_t(end - begin), {});
    parallel_tasks(end - begin, [&](int64_t k) {
      try {
        const Sample s = fetch(begin + k);
        if (s.labels.defined()) encoded[size_t(k)] = detail::encode_packed_record(s, layout, begin + k);
      } catch (const Error& e) {
        errors[size_t(k)] = e.what();
      }
    });
    for (int64_t k = 0; k < end - begin; ++k) {
      if (!errors[size_t(k)].empty()) {
        if (!skip_bad) throw Error(errors[size_t(k)]);
        if (dataset.policy().warn) dataset.policy().warn(errors[size_t(k)]);
        else std::cerr << "loom: warning: " << errors[size_t(k)] << '\n';
        ++report.skipped;
        continue;
      }
      const std::vector<uint8_t>& rec = encoded[size_t(k)];
      if (rec.empty()) continue;  // substituted by the dataset's skip policy (counted below)
      ByteWriter entry;
      entry.put(offset);
      entry.put(uint32_t(rec.size()));
      entry.put(crc32c(rec.data(), rec.size()));
      std::memcpy(index.data() + size_t(report.written) * kIndexEntryBytes, entry.bytes.data(), kIndexEntryBytes);
      file.write_at(offset, rec.data(), rec.size());
      offset += rec.size();
      ++report.written;
    }
    if (options.progress) options.progress(end, total);
  }
  report.skipped += dataset.skipped() - skipped_before;

  const std::vector<uint8_t> header =
      detail::encode_packed_header(layout, uint64_t(report.written), capacity, offset);
  LOOM_CHECK(header.size() == header_bytes, "write_packed: header size changed while writing");
  const uint32_t index_crc = crc32c(index.data(), index.size());
  file.write_at(0, header.data(), header.size());
  file.write_at(header_bytes, index.data(), index.size());
  file.write_at(header_bytes + index_bytes, &index_crc, 4);
  // Zero padding up to the data offset (present as a hole already; written for an empty pack).
  const std::vector<uint8_t> pad(size_t(data_offset - (header_bytes + index_bytes + 4)), 0);
  file.write_at(header_bytes + index_bytes + 4, pad.data(), pad.size());
  file.commit();
  report.bytes = offset;
  return report;
}

namespace detail {
inline const bool packed_scheme_registered = register_dataset_scheme(
    {"packed", "packed:<file>[?verify=1&on_bad=error|skip]", &open_packed});
}  // namespace detail

}  // namespace loom::data
