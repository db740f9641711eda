#pragma once
// GeoTIFF rasters on libtiff: read any band count of uint8 / int8 / uint16 / int16 / uint32 / int32 /
// float32 / float64 samples, pixel-interleaved ("chunky") or band-separate ("planar"), in strips or
// tiles, with any compression this libtiff decodes (none, deflate, LZW, packbits, ...) and any
// predictor, into a [C, H, W] tensor. Only the first image (IFD) is read; georeferencing tags are
// ignored (the datasets loom reads are co-registered by construction).
//
//   read_geotiff(path)          -> GeoTiffImage { data: Tensor<float> [C, H, W], width, height, ... }
//   read_geotiff_as<T>(path)    -> Tensor<T> [C, H, W] (e.g. int32 keeps uint16 values exactly)
//   read_geotiff_raw(path)      -> RasterBuffer: the samples in their file type, [C, H, W] order
//   write_geotiff(path, t, opt) -> writes [C, H, W] (or [H, W]) in any of the layouts above
//
// Every failure — missing, truncated, corrupt or unsupported file — is a loom::Error that names the
// file and the reason, including libtiff's own message. libtiff's error and warning handlers are
// replaced by ones that capture into the message instead of printing, so reading a bad file never
// writes to stderr and never aborts.
//
// Without libtiff (LOOM_HAVE_TIFF undefined) the header still compiles and every call throws.
#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "loom/core/error.hpp"
#include "loom/core/tensor.hpp"

#if defined(LOOM_HAVE_TIFF) && LOOM_HAVE_TIFF
#include <tiffio.h>
#endif

namespace loom::data {

// Whether this build reads GeoTIFF (libtiff found at configure time: LOOM_HAVE_TIFF).
#if defined(LOOM_HAVE_TIFF) && LOOM_HAVE_TIFF
inline constexpr bool kGeoTiffSupported = true;
#else
inline constexpr bool kGeoTiffSupported = false;
#endif

// ---- sample types ------------------------------------------------------------------------------

enum class RasterType : uint8_t { u8, i8, u16, i16, u32, i32, f32, f64 };

// TIFF SampleFormat codes (tag 339).
inline constexpr int kSampleFormatUInt = 1;
inline constexpr int kSampleFormatInt = 2;
inline constexpr int kSampleFormatFloat = 3;

struct RasterTypeInfo {
  RasterType type;
  const char* name;  // numpy / rasterio spelling
  int sample_format;
  int bits;
};

inline constexpr RasterTypeInfo kRasterTypes[] = {
    {RasterType::u8, "uint8", kSampleFormatUInt, 8},      {RasterType::i8, "int8", kSampleFormatInt, 8},
    {RasterType::u16, "uint16", kSampleFormatUInt, 16},   {RasterType::i16, "int16", kSampleFormatInt, 16},
    {RasterType::u32, "uint32", kSampleFormatUInt, 32},   {RasterType::i32, "int32", kSampleFormatInt, 32},
    {RasterType::f32, "float32", kSampleFormatFloat, 32}, {RasterType::f64, "float64", kSampleFormatFloat, 64},
};

inline const RasterTypeInfo& raster_type_info(RasterType t) { return kRasterTypes[static_cast<int>(t)]; }
inline const char* raster_type_name(RasterType t) { return raster_type_info(t).name; }
inline size_t raster_type_size(RasterType t) { return size_t(raster_type_info(t).bits / 8); }

// Calls f(S{}) with S the C++ type of the samples.
template <class F>
decltype(auto) visit_raster_type(RasterType t, F&& f) {
  switch (t) {
    case RasterType::u8: return f(uint8_t{});
    case RasterType::i8: return f(int8_t{});
    case RasterType::u16: return f(uint16_t{});
    case RasterType::i16: return f(int16_t{});
    case RasterType::u32: return f(uint32_t{});
    case RasterType::i32: return f(int32_t{});
    case RasterType::f32: return f(float{});
    case RasterType::f64: return f(double{});
  }
  return f(uint8_t{});
}

template <class S> constexpr RasterType raster_type_of();
template <> constexpr RasterType raster_type_of<uint8_t>() { return RasterType::u8; }
template <> constexpr RasterType raster_type_of<int8_t>() { return RasterType::i8; }
template <> constexpr RasterType raster_type_of<uint16_t>() { return RasterType::u16; }
template <> constexpr RasterType raster_type_of<int16_t>() { return RasterType::i16; }
template <> constexpr RasterType raster_type_of<uint32_t>() { return RasterType::u32; }
template <> constexpr RasterType raster_type_of<int32_t>() { return RasterType::i32; }
template <> constexpr RasterType raster_type_of<float>() { return RasterType::f32; }
template <> constexpr RasterType raster_type_of<double>() { return RasterType::f64; }

// Compression codecs the writer offers (TIFF tag 259 codes); the reader accepts whatever libtiff
// was built with.
enum class TiffCompression : uint16_t { none = 1, lzw = 5, deflate = 8, packbits = 32773 };

inline const char* compression_name(int code) {
  switch (code) {
    case 1: return "none";
    case 5: return "lzw";
    case 7: return "jpeg";
    case 8: case 32946: return "deflate";
    case 32773: return "packbits";
    case 34887: return "lerc";
    case 34925: return "lzma";
    case 50000: return "zstd";
    case 50001: return "webp";
  }
  return "other";
}

// What a file holds, as read from its first image directory.
struct RasterInfo {
  int64_t width = 0;
  int64_t height = 0;
  int64_t bands = 0;                // SamplesPerPixel
  RasterType type = RasterType::u8;
  int sample_format = kSampleFormatUInt;  // TIFF SampleFormat: 1 uint, 2 int, 3 float
  int bits_per_sample = 8;
  std::string dtype;                // original sample type, "uint16", "float32", ...
  bool planar = false;              // band-separate (PlanarConfiguration 2) vs pixel-interleaved
  bool tiled = false;
  int64_t block_width = 0;          // tile width, or the image width for strips
  int64_t block_height = 0;         // tile height, or rows per strip
  int compression = 1;              // TIFF compression code
  std::string compression_name;
};

// A raster converted to float: data [C, H, W] plus what the file held.
struct GeoTiffImage : RasterInfo {
  Tensor<float> data;  // [bands, height, width]
};

// The samples in the file's own type, band-major: bytes holds [C, H, W] values of info.type.
struct RasterBuffer {
  RasterInfo info;
  std::vector<unsigned char> bytes;

  template <class S>
  std::span<const S> values() const {
    LOOM_CHECK(raster_type_of<S>() == info.type, "RasterBuffer::values: raster holds ", info.dtype,
               ", asked for ", raster_type_name(raster_type_of<S>()));
    return {reinterpret_cast<const S*>(bytes.data()), bytes.size() / sizeof(S)};
  }
};

struct GeoTiffReadOptions {
  // Refuse rasters whose decoded size exceeds this (protects against corrupt headers that claim
  // gigapixel images).
  uint64_t max_bytes = uint64_t(4) << 30;
  GeoTiffReadOptions& max_decoded_bytes(uint64_t b) { max_bytes = b; return *this; }
};

struct GeoTiffWriteOptions {
  std::optional<RasterType> type;  // sample type in the file; default: the tensor's element type
  bool planar = false;             // band-separate layout instead of pixel-interleaved
  bool tiled = false;
  int64_t tile_width = 16;         // multiples of 16 (TIFF rule)
  int64_t tile_height = 16;
  int64_t rows_per_strip = 0;      // strips only; 0 = about 8 KiB per strip
  TiffCompression compression = TiffCompression::none;
  bool predictor = false;          // horizontal (integers) or floating-point predictor

  GeoTiffWriteOptions& sample_type(RasterType t) { type = t; return *this; }
  GeoTiffWriteOptions& band_separate(bool on = true) { planar = on; return *this; }
  GeoTiffWriteOptions& tiles(int64_t w, int64_t h) { tiled = true; tile_width = w; tile_height = h; return *this; }
  GeoTiffWriteOptions& strips(int64_t rows) { tiled = false; rows_per_strip = rows; return *this; }
  GeoTiffWriteOptions& compress(TiffCompression c) { compression = c; return *this; }
  GeoTiffWriteOptions& use_predictor(bool on = true) { predictor = on; return *this; }
};

#if defined(LOOM_HAVE_TIFF) && LOOM_HAVE_TIFF

namespace detail {

// ---- libtiff message capture -------------------------------------------------------------------
// libtiff reports through handlers that print to stderr by default. Each loom call owns a
// TiffMessages; the handlers append to it. Per-handle handlers (libtiff >= 4.5) catch messages of an
// open file; process-wide handlers, installed once, catch the rest on the calling thread and pass
// messages of other libtiff users on to whatever handler was installed before.
struct TiffMessages {
  std::string errors;
  std::string warnings;
  std::string text() const { return errors.empty() ? std::string("no message from libtiff") : errors; }
};

inline thread_local TiffMessages* tls_tiff_capture = nullptr;

inline void append_tiff_message(std::string& to, const char* module, const char* fmt, va_list ap) {
  char buffer[1024];
  std::vsnprintf(buffer, sizeof buffer, fmt, ap);
  if (!to.empty()) to += "; ";
  if (module && *module) {
    to += module;
    to += ": ";
  }
  to += buffer;
}

struct GlobalTiffHandlers {
  TIFFErrorHandler previous_error = nullptr;
  TIFFErrorHandler previous_warning = nullptr;
};
inline GlobalTiffHandlers& global_tiff_handlers() {
  static GlobalTiffHandlers h;
  return h;
}

inline void global_tiff_error(const char* module, const char* fmt, va_list ap) {
  if (TiffMessages* m = tls_tiff_capture) return append_tiff_message(m->errors, module, fmt, ap);
  if (auto prev = global_tiff_handlers().previous_error) prev(module, fmt, ap);
}
inline void global_tiff_warning(const char* module, const char* fmt, va_list ap) {
  if (TiffMessages* m = tls_tiff_capture) return append_tiff_message(m->warnings, module, fmt, ap);
  if (auto prev = global_tiff_handlers().previous_warning) prev(module, fmt, ap);
}

inline void install_global_tiff_handlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    global_tiff_handlers().previous_error = TIFFSetErrorHandler(&global_tiff_error);
    global_tiff_handlers().previous_warning = TIFFSetWarningHandler(&global_tiff_warning);
  });
}

#if TIFFLIB_VERSION >= 20221213  // libtiff 4.5: per-handle handlers
inline int handle_tiff_error(TIFF*, void* user, const char* module, const char* fmt, va_list ap) {
  append_tiff_message(static_cast<TiffMessages*>(user)->errors, module, fmt, ap);
  return 1;  // handled: do not call the process-wide handler
}
inline int handle_tiff_warning(TIFF*, void* user, const char* module, const char* fmt, va_list ap) {
  append_tiff_message(static_cast<TiffMessages*>(user)->warnings, module, fmt, ap);
  return 1;
}
#endif

// An open TIFF that closes itself, with the messages of everything done through it.
class TiffFile {
 public:
  TiffFile(const std::string& path, const char* mode, const char* op) : path_(path), op_(op) {
    install_global_tiff_handlers();
    CaptureScope scope(messages_);
#if TIFFLIB_VERSION >= 20221213
    TIFFOpenOptions* opts = TIFFOpenOptionsAlloc();
    TIFFOpenOptionsSetErrorHandlerExtR(opts, &handle_tiff_error, &messages_);
    TIFFOpenOptionsSetWarningHandlerExtR(opts, &handle_tiff_warning, &messages_);
    TIFFOpenOptionsSetMaxSingleMemAlloc(opts, tmsize_t(1) << 31);
    tif_ = TIFFOpenExt(path.c_str(), mode, opts);
    TIFFOpenOptionsFree(opts);
#else
    tif_ = TIFFOpen(path.c_str(), mode);
#endif
    if (!tif_) fail("cannot open as TIFF (", messages_.text(), ")");
  }
  ~TiffFile() { close(); }
  TiffFile(const TiffFile&) = delete;
  TiffFile& operator=(const TiffFile&) = delete;

  // Closes (and for writers, flushes) the file; errors then are reported.
  void close() {
    if (!tif_) return;
    CaptureScope scope(messages_);
    TIFFClose(tif_);
    tif_ = nullptr;
  }

  TIFF* get() const { return tif_; }
  TiffMessages& messages() { return messages_; }

  template <class... Parts>
  [[noreturn]] void fail(const Parts&... parts) const {
    loom::detail::fail(op_, ": ", path_, ": ", parts...);
  }
  // Throws with libtiff's messages appended.
  template <class... Parts>
  [[noreturn]] void fail_tiff(const Parts&... parts) const {
    loom::detail::fail(op_, ": ", path_, ": ", parts..., " (libtiff: ", messages_.text(), ")");
  }

  // Routes process-wide libtiff messages of this thread into `m` while alive.
  class CaptureScope {
   public:
    explicit CaptureScope(TiffMessages& m) : previous_(tls_tiff_capture) { tls_tiff_capture = &m; }
    ~CaptureScope() { tls_tiff_capture = previous_; }
    CaptureScope(const CaptureScope&) = delete;
    CaptureScope& operator=(const CaptureScope&) = delete;

   private:
    TiffMessages* previous_;
  };

 private:
  std::string path_;
  const char* op_;
  TIFF* tif_ = nullptr;
  TiffMessages messages_;
};

inline bool find_raster_type(int sample_format, int bits, RasterType& out) {
  for (const auto& t : kRasterTypes)
    if (t.sample_format == sample_format && t.bits == bits) {
      out = t.type;
      return true;
    }
  return false;
}

// Copies `count` samples of `elem` bytes each between buffers with element strides (in samples).
inline void copy_samples(unsigned char* dst, int64_t dst_stride, const unsigned char* src, int64_t src_stride,
                         int64_t count, size_t elem) {
  auto run = [&](auto word) {
    using W = decltype(word);
    for (int64_t i = 0; i < count; ++i) {
      W v;
      std::memcpy(&v, src + size_t(i * src_stride) * sizeof(W), sizeof(W));
      std::memcpy(dst + size_t(i * dst_stride) * sizeof(W), &v, sizeof(W));
    }
  };
  switch (elem) {
    case 1: run(uint8_t{}); break;
    case 2: run(uint16_t{}); break;
    case 4: run(uint32_t{}); break;
    default: run(uint64_t{}); break;
  }
}

// Reads the first directory's tags and checks that loom can decode the image.
inline RasterInfo read_raster_info(TiffFile& file, const GeoTiffReadOptions& options) {
  TIFF* tif = file.get();
  TiffFile::CaptureScope scope(file.messages());
  uint32_t width = 0, height = 0;
  uint16_t spp = 1, bps = 1, format = kSampleFormatUInt, planar = PLANARCONFIG_CONTIG, compression = 1;
  uint16_t photometric = PHOTOMETRIC_MINISBLACK;
  if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &width) || !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &height))
    file.fail_tiff("corrupt header: no image width/height");
  TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &spp);
  TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &bps);
  TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &format);
  TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &planar);
  TIFFGetFieldDefaulted(tif, TIFFTAG_COMPRESSION, &compression);
  TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &photometric);

  RasterInfo info;
  info.width = width;
  info.height = height;
  info.bands = spp;
  info.sample_format = format;
  info.bits_per_sample = bps;
  info.planar = planar == PLANARCONFIG_SEPARATE;
  info.compression = compression;
  info.compression_name = compression_name(compression);
  if (width == 0 || height == 0 || spp == 0)
    file.fail("corrupt header: empty image (", width, " x ", height, " pixels, ", spp, " bands)");
  if (!find_raster_type(format, bps, info.type))
    file.fail("unsupported sample type: SampleFormat ", format, " with ", bps,
              " bits per sample (supported: 8/16/32-bit integers, 32/64-bit floats)");
  info.dtype = raster_type_name(info.type);
  if (photometric == PHOTOMETRIC_YCBCR)
    file.fail("unsupported photometric interpretation YCbCr (subsampled colour)");
  if (!TIFFIsCODECConfigured(compression))
    file.fail("unsupported compression ", compression, " (", info.compression_name,
              "): not available in this libtiff build");

  info.tiled = TIFFIsTiled(tif);
  if (info.tiled) {
    uint32_t tw = 0, th = 0;
    if (!TIFFGetField(tif, TIFFTAG_TILEWIDTH, &tw) || !TIFFGetField(tif, TIFFTAG_TILELENGTH, &th) || tw == 0 || th == 0)
      file.fail_tiff("corrupt header: tiled image without a valid tile size");
    info.block_width = tw;
    info.block_height = th;
  } else {
    uint32_t rps = height;
    TIFFGetFieldDefaulted(tif, TIFFTAG_ROWSPERSTRIP, &rps);
    info.block_width = width;
    info.block_height = std::clamp<int64_t>(rps, 1, height);
  }
  const double decoded = double(width) * double(height) * double(spp) * double(bps / 8);
  if (decoded > double(options.max_bytes))
    file.fail("image of ", width, " x ", height, " pixels x ", spp, " bands (", info.dtype, ") exceeds the ",
              options.max_bytes, "-byte limit; the header is probably corrupt");
  const double block = double(info.block_width) * double(info.block_height) * double(info.planar ? 1 : spp) *
                       double(bps / 8);
  if (block > double(options.max_bytes))
    file.fail("block of ", info.block_width, " x ", info.block_height, " pixels exceeds the ", options.max_bytes,
              "-byte limit; the header is probably corrupt");
  return info;
}

// Refuses a header whose strips or tiles cannot hold the pixels it claims, before anything large is
// allocated (a flipped bit in the width must not cost gigabytes): every block must lie inside the
// file, an uncompressed block must store at least its decoded size, and a deflate / LZW / packbits
// block at least 1/2000 of it (their best ratios are about 1:1032, 1:1365 and 1:64).
inline void check_stored_blocks(TiffFile& file, const RasterInfo& info, uint64_t file_bytes) {
  TIFF* tif = file.get();
  const size_t elem = raster_type_size(info.type);
  const int64_t planes = info.planar ? info.bands : 1;
  const int64_t per_pixel = info.planar ? 1 : info.bands;
  const int64_t across = (info.width + info.block_width - 1) / info.block_width;
  const int64_t down = (info.height + info.block_height - 1) / info.block_height;
  const int64_t needed = across * down * planes;
  const int64_t present = info.tiled ? int64_t(TIFFNumberOfTiles(tif)) : int64_t(TIFFNumberOfStrips(tif));
  const char* kind = info.tiled ? "tile" : "strip";
  if (present < needed) file.fail("corrupt header: ", present, " ", kind, "s, the image needs ", needed);
  const bool bounded_codec = info.compression == COMPRESSION_ADOBE_DEFLATE || info.compression == COMPRESSION_DEFLATE ||
                             info.compression == COMPRESSION_LZW || info.compression == COMPRESSION_PACKBITS;
  for (int64_t b = 0; b < needed; ++b) {
    int err = 0;
    const uint64_t offset = TIFFGetStrileOffsetWithErr(tif, uint32_t(b), &err);
    const uint64_t stored = err ? 0 : TIFFGetStrileByteCountWithErr(tif, uint32_t(b), &err);
    if (err) file.fail_tiff("corrupt header: no offset or size for ", kind, " ", b);
    const int64_t rows = info.tiled ? info.block_height : std::min(info.block_height, info.height - (b % down) * info.block_height);
    const uint64_t decoded = uint64_t(info.block_width * rows * per_pixel) * elem;
    if (offset > file_bytes || stored > file_bytes - offset)
      file.fail("truncated or corrupt: ", kind, " ", b, " ends at byte ", offset + stored, " of a ", file_bytes,
                "-byte file");
    if (info.compression == COMPRESSION_NONE && stored < decoded)
      file.fail("truncated or corrupt: ", kind, " ", b, " stores ", stored, " bytes, the header implies ", decoded);
    if (bounded_codec && decoded > stored * 2000 + 4096)
      file.fail("corrupt header: ", kind, " ", b, " stores ", stored, " compressed bytes, too few for the ", decoded,
                " bytes the header implies");
  }
}

// Decodes every strip or tile of the first image into band-major [C, H, W] samples.
inline std::vector<unsigned char> decode_raster(TiffFile& file, const RasterInfo& info, uint64_t file_bytes) {
  TIFF* tif = file.get();
  TiffFile::CaptureScope scope(file.messages());
  check_stored_blocks(file, info, file_bytes);
  const size_t elem = raster_type_size(info.type);
  const int64_t W = info.width, H = info.height, C = info.bands;
  const int64_t planes = info.planar ? C : 1;
  const int64_t per_pixel = info.planar ? 1 : C;  // samples per pixel inside one block
  std::vector<unsigned char> out(size_t(C * H * W) * elem);
  std::vector<unsigned char> block(size_t(info.block_width * info.block_height * per_pixel) * elem);

  // Scatters a decoded block whose top-left pixel is (x0, y0) into out; `rows`/`cols` are the part
  // of it inside the image.
  auto scatter = [&](int64_t plane, int64_t x0, int64_t y0, int64_t cols, int64_t rows) {
    for (int64_t c = 0; c < per_pixel; ++c) {
      const int64_t band = info.planar ? plane : c;
      for (int64_t r = 0; r < rows; ++r) {
        const unsigned char* src = block.data() + size_t((r * info.block_width) * per_pixel + c) * elem;
        unsigned char* dst = out.data() + size_t((band * H + y0 + r) * W + x0) * elem;
        copy_samples(dst, 1, src, per_pixel, cols, elem);
      }
    }
  };

  if (info.tiled) {
    for (int64_t p = 0; p < planes; ++p)
      for (int64_t y = 0; y < H; y += info.block_height)
        for (int64_t x = 0; x < W; x += info.block_width) {
          const uint32_t index = TIFFComputeTile(tif, uint32_t(x), uint32_t(y), 0, uint16_t(p));
          const tmsize_t want = tmsize_t(block.size());
          const tmsize_t got = TIFFReadEncodedTile(tif, index, block.data(), want);
          if (got != want)
            file.fail_tiff("truncated or corrupt tile ", index, " (decoded ", got < 0 ? 0 : got, " of ", want,
                           " bytes)");
          scatter(p, x, y, std::min(info.block_width, W - x), std::min(info.block_height, H - y));
        }
  } else {
    const int64_t strips_per_plane = (H + info.block_height - 1) / info.block_height;
    for (int64_t p = 0; p < planes; ++p)
      for (int64_t s = 0; s < strips_per_plane; ++s) {
        const int64_t y = s * info.block_height;
        const int64_t rows = std::min(info.block_height, H - y);
        const tmsize_t want = tmsize_t(size_t(rows * W * per_pixel) * elem);
        const uint32_t index = uint32_t(p * strips_per_plane + s);
        const tmsize_t got = TIFFReadEncodedStrip(tif, index, block.data(), want);
        if (got != want)
          file.fail_tiff("truncated or corrupt strip ", index, " (decoded ", got < 0 ? 0 : got, " of ", want,
                         " bytes)");
        scatter(p, 0, y, W, rows);
      }
  }
  return out;
}

inline void check_readable_file(const std::string& path, const char* op) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  LOOM_CHECK(std::filesystem::exists(status), op, ": ", path, ": file not found");
  LOOM_CHECK(std::filesystem::is_regular_file(status), op, ": ", path, ": not a regular file");
}

// Converts samples of type S to T: exact for every integer pair whose range fits, else refused.
template <class T, class S>
void convert_samples(const S* src, T* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = convert_element<T>(src[i]);
}

template <class T, class S>
constexpr bool integer_range_fits() {
  if constexpr (!std::is_integral_v<T> || !std::is_integral_v<S>) return true;
  else return std::cmp_greater_equal(std::numeric_limits<S>::min(), std::numeric_limits<T>::min()) &&
              std::cmp_less_equal(std::numeric_limits<S>::max(), std::numeric_limits<T>::max());
}

}  // namespace detail

// ---- reading -----------------------------------------------------------------------------------

// Only the header: size, bands, sample type, layout.
inline RasterInfo read_geotiff_info(const std::string& path, const GeoTiffReadOptions& options = {}) {
  detail::check_readable_file(path, "read_geotiff");
  detail::TiffFile file(path, "r", "read_geotiff");
  return detail::read_raster_info(file, options);
}

inline RasterBuffer read_geotiff_raw(const std::string& path, const GeoTiffReadOptions& options = {}) {
  detail::check_readable_file(path, "read_geotiff");
  detail::TiffFile file(path, "r", "read_geotiff");
  RasterBuffer raster;
  raster.info = detail::read_raster_info(file, options);
  std::error_code ec;
  const uint64_t file_bytes = std::filesystem::file_size(path, ec);
  if (ec) file.fail("cannot get the file size: ", ec.message());
  raster.bytes = detail::decode_raster(file, raster.info, file_bytes);
  return raster;
}

// A decoded raster as Tensor<T> [C, H, W]. Floating-point T takes every sample type; an integer T
// only sample types whose whole range it holds (int32 for uint16, uint8 for uint8), so no value
// changes.
template <Element T>
Tensor<T> raster_to_tensor(const RasterBuffer& raster, const std::string& path) {
  const RasterInfo& info = raster.info;
  Tensor<T> out = Tensor<T>::empty({info.bands, info.height, info.width});  // [C, H, W]
  visit_raster_type(info.type, [&](auto sample) {
    using S = decltype(sample);
    if constexpr (std::is_floating_point_v<S> && std::is_integral_v<T>) {
      loom::detail::fail("read_geotiff: ", path, ": cannot read ", info.dtype, " samples as ",
                         dtype_traits<T>::name);
    } else if constexpr (!detail::integer_range_fits<T, S>()) {
      loom::detail::fail("read_geotiff: ", path, ": ", info.dtype, " samples do not fit ", dtype_traits<T>::name);
    } else {
      detail::convert_samples<T, S>(raster.values<S>().data(), out.data(), size_t(out.numel()));
    }
  });
  return out;
}

template <Element T>
Tensor<T> read_geotiff_as(const std::string& path, const GeoTiffReadOptions& options = {}) {
  return raster_to_tensor<T>(read_geotiff_raw(path, options), path);
}

// The raster converted to float32 [C, H, W] (exact for 8/16-bit integers and float32).
inline GeoTiffImage read_geotiff(const std::string& path, const GeoTiffReadOptions& options = {}) {
  RasterBuffer raster = read_geotiff_raw(path, options);
  GeoTiffImage image;
  image.data = raster_to_tensor<float>(raster, path);
  static_cast<RasterInfo&>(image) = std::move(raster.info);
  return image;
}

// ---- writing -----------------------------------------------------------------------------------

// Writes data [C, H, W] (or [H, W], one band) to a new TIFF. Integer file types require integral
// values in range; anything else is refused rather than silently rounded or clamped.
template <Element T>
void write_geotiff(const std::string& path, const Tensor<T>& data, const GeoTiffWriteOptions& options = {}) {
  LOOM_CHECK(data.defined() && (data.dim() == 3 || data.dim() == 2), "write_geotiff: ", path,
             ": expected a [C, H, W] or [H, W] tensor, got shape ", data.defined() ? data.shape() : Shape{});
  const Tensor<T> chw = data.dim() == 2 ? data.unsqueeze(0).contiguous() : data.contiguous();  // [C, H, W]
  const int64_t C = chw.size(0), H = chw.size(1), W = chw.size(2);
  LOOM_CHECK(C >= 1 && C <= 65535 && H >= 1 && W >= 1 && H <= INT32_MAX && W <= INT32_MAX, "write_geotiff: ",
             path, ": cannot write shape ", data.shape());
  RasterType type = RasterType::f32;
  if (options.type) type = *options.type;
  else if constexpr (std::is_same_v<T, double>) type = RasterType::f64;
  else if constexpr (std::is_same_v<T, uint8_t>) type = RasterType::u8;
  else if constexpr (std::is_same_v<T, int32_t>) type = RasterType::i32;
  else if constexpr (std::is_same_v<T, int64_t>) type = RasterType::i32;
  const RasterTypeInfo& tinfo = raster_type_info(type);
  const size_t elem = raster_type_size(type);
  if (options.tiled)
    LOOM_CHECK(options.tile_width > 0 && options.tile_height > 0 && options.tile_width % 16 == 0 &&
                   options.tile_height % 16 == 0,
               "write_geotiff: ", path, ": tile size ", options.tile_width, " x ", options.tile_height,
               " must be positive multiples of 16");

  // Band-major samples in the file type.
  std::vector<unsigned char> samples(size_t(C * H * W) * elem);
  const T* src = chw.data();
  visit_raster_type(type, [&](auto sample) {
    using S = decltype(sample);
    S* dst = reinterpret_cast<S*>(samples.data());
    for (int64_t i = 0; i < C * H * W; ++i) {
      const double v = double(compute_t<T>(src[i]));
      if constexpr (std::is_integral_v<S>) {
        LOOM_CHECK(std::isfinite(v) && v == std::floor(v) && v >= double(std::numeric_limits<S>::min()) &&
                       v <= double(std::numeric_limits<S>::max()),
                   "write_geotiff: ", path, ": value ", v, " at flat index ", i, " of shape ", data.shape(),
                   " is not representable as ", tinfo.name);
        dst[i] = static_cast<S>(v);
      } else {
        dst[i] = static_cast<S>(v);
      }
    }
  });

  std::filesystem::remove(path);
  detail::TiffFile file(path, "w", "write_geotiff");
  TIFF* tif = file.get();
  {
    detail::TiffFile::CaptureScope scope(file.messages());
    bool ok = TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, uint32_t(W)) && TIFFSetField(tif, TIFFTAG_IMAGELENGTH, uint32_t(H)) &&
              TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, uint16_t(C)) &&
              TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, uint16_t(tinfo.bits)) &&
              TIFFSetField(tif, TIFFTAG_SAMPLEFORMAT, uint16_t(tinfo.sample_format)) &&
              TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, uint16_t(PHOTOMETRIC_MINISBLACK)) &&
              TIFFSetField(tif, TIFFTAG_PLANARCONFIG, uint16_t(options.planar ? PLANARCONFIG_SEPARATE : PLANARCONFIG_CONTIG)) &&
              TIFFSetField(tif, TIFFTAG_COMPRESSION, uint16_t(options.compression));
    if (ok && C > 1) {  // the other bands are plain data, not alpha (as GDAL writes them)
      std::vector<uint16_t> extra(size_t(C - 1), EXTRASAMPLE_UNSPECIFIED);
      ok = TIFFSetField(tif, TIFFTAG_EXTRASAMPLES, uint16_t(C - 1), extra.data());
    }
    if (ok && options.predictor && options.compression != TiffCompression::none)
      ok = TIFFSetField(tif, TIFFTAG_PREDICTOR,
                        uint16_t(tinfo.sample_format == kSampleFormatFloat ? PREDICTOR_FLOATINGPOINT : PREDICTOR_HORIZONTAL));
    int64_t block_w = W, block_h = 0;
    if (options.tiled) {
      block_w = options.tile_width;
      block_h = options.tile_height;
      ok = ok && TIFFSetField(tif, TIFFTAG_TILEWIDTH, uint32_t(block_w)) &&
           TIFFSetField(tif, TIFFTAG_TILELENGTH, uint32_t(block_h));
    } else {
      const int64_t row_bytes = W * (options.planar ? 1 : C) * int64_t(elem);
      block_h = options.rows_per_strip > 0 ? options.rows_per_strip : std::max<int64_t>(1, 8192 / row_bytes);
      block_h = std::min(block_h, H);
      ok = ok && TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, uint32_t(block_h));
    }
    if (!ok) file.fail_tiff("cannot set the TIFF tags");

    const int64_t per_pixel = options.planar ? 1 : C;
    const int64_t planes = options.planar ? C : 1;
    std::vector<unsigned char> block(size_t(block_w * block_h * per_pixel) * elem);
    // Gathers the image part of the block at (x0, y0) into `block`, zero-padding the rest.
    auto gather = [&](int64_t plane, int64_t x0, int64_t y0, int64_t cols, int64_t rows) {
      std::fill(block.begin(), block.end(), 0);
      for (int64_t c = 0; c < per_pixel; ++c) {
        const int64_t band = options.planar ? plane : c;
        for (int64_t r = 0; r < rows; ++r)
          detail::copy_samples(block.data() + size_t(r * block_w * per_pixel + c) * elem, per_pixel,
                               samples.data() + size_t((band * H + y0 + r) * W + x0) * elem, 1, cols, elem);
      }
    };
    if (options.tiled) {
      for (int64_t p = 0; p < planes; ++p)
        for (int64_t y = 0; y < H; y += block_h)
          for (int64_t x = 0; x < W; x += block_w) {
            gather(p, x, y, std::min(block_w, W - x), std::min(block_h, H - y));
            const uint32_t index = TIFFComputeTile(tif, uint32_t(x), uint32_t(y), 0, uint16_t(p));
            if (TIFFWriteEncodedTile(tif, index, block.data(), tmsize_t(block.size())) < 0)
              file.fail_tiff("cannot write tile ", index);
          }
    } else {
      const int64_t strips = (H + block_h - 1) / block_h;
      for (int64_t p = 0; p < planes; ++p)
        for (int64_t s = 0; s < strips; ++s) {
          const int64_t rows = std::min(block_h, H - s * block_h);
          gather(p, 0, s * block_h, W, rows);
          const tmsize_t bytes = tmsize_t(size_t(rows * W * per_pixel) * elem);
          if (TIFFWriteEncodedStrip(tif, uint32_t(p * strips + s), block.data(), bytes) < 0)
            file.fail_tiff("cannot write strip ", p * strips + s);
        }
    }
    if (!TIFFWriteDirectory(tif)) file.fail_tiff("cannot write the image directory");
  }
  file.close();
  LOOM_CHECK(file.messages().errors.empty(), "write_geotiff: ", path, ": ", file.messages().errors);
}

#else  // no libtiff

namespace detail {
[[noreturn]] inline void no_tiff(const std::string& path) {
  loom::detail::fail("GeoTIFF: ", path, ": loom was built without libtiff (install libtiff-dev and reconfigure)");
}
}  // namespace detail

inline RasterInfo read_geotiff_info(const std::string& path, const GeoTiffReadOptions& = {}) { detail::no_tiff(path); }
inline RasterBuffer read_geotiff_raw(const std::string& path, const GeoTiffReadOptions& = {}) { detail::no_tiff(path); }
template <Element T>
Tensor<T> read_geotiff_as(const std::string& path, const GeoTiffReadOptions& = {}) { detail::no_tiff(path); }
inline GeoTiffImage read_geotiff(const std::string& path, const GeoTiffReadOptions& = {}) { detail::no_tiff(path); }
template <Element T>
void write_geotiff(const std::string& path, const Tensor<T>&, const GeoTiffWriteOptions& = {}) { detail::no_tiff(path); }

#endif

}  // namespace loom::data
