#pragma once
// Pictures for tools and trainers: an 8-bit RGB canvas with the few drawing primitives that plots
// and image grids need (rectangles, anti-aliasing-free lines, dashed lines, a built-in 5x7 pixel
// font), and PNG output through stb_image_write.
//
//   loom::io::RgbImage img(320, 200);                       // white
//   img.line(10, 190, 310, 10, loom::io::colors::kBlue, 2);
//   img.text(12, 12, "LOSS 0.42", loom::io::colors::kBlack, 2);
//   loom::io::write_png("plot.png", img);                    // atomic (tmp file + rename)
//
// Linking: this header only declares stb_image_write's functions. Their code comes from Debian's
// libstb (`-lstb`, CMake: find_library(... stb)), or from one .cpp of the program that defines
// STB_IMAGE_WRITE_IMPLEMENTATION before including <stb/stb_image_write.h> (a program may do both:
// its own definition wins). loom never defines the implementation itself, so it cannot clash with
// a program's own copy of stb.
#include <stb/stb_image_write.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "loom/core/error.hpp"
#include "loom/io/atomic_file.hpp"

namespace loom::io {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  friend bool operator==(const Rgb&, const Rgb&) = default;
};

namespace colors {
inline constexpr Rgb kWhite{255, 255, 255};
inline constexpr Rgb kBlack{0, 0, 0};
inline constexpr Rgb kGrey{128, 128, 128};
inline constexpr Rgb kLightGrey{220, 220, 220};
// A colour-blind-safe qualitative palette (Okabe–Ito) for curves.
inline constexpr std::array<Rgb, 7> kSeries = {{
    {0, 114, 178},    // blue
    {230, 159, 0},    // orange
    {0, 158, 115},    // green
    {204, 121, 167},  // purple
    {213, 94, 0},     // vermillion
    {86, 180, 233},   // sky blue
    {240, 228, 66},   // yellow
}};
inline constexpr Rgb kBlue = kSeries[0];
}  // namespace colors

// A value in [0, 1] as a byte (clamped, rounded; NaN gives 0).
inline uint8_t unit_to_byte(double v) {
  if (!(v > 0)) return 0;
  if (v >= 1) return 255;
  return uint8_t(std::lround(v * 255.0));
}

namespace detail {

// 5x7 glyphs, one byte per row, bit 4 = leftmost column. Lowercase letters are drawn as capitals.
struct Glyph {
  char c;
  std::array<uint8_t, 7> rows;
};
// clang-format off
inline constexpr Glyph kFont[] = {
    {'0', {0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110}},
    {'1', {0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110}},
    {'2', {0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111}},
    {'3', {0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110}},
    {'4', {0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010}},
    {'5', {0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110}},
    {'6', {0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110}},
    {'7', {0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000}},
    {'8', {0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110}},
    {'9', {0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100}},
    {'A', {0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001}},
    {'B', {0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110}},
    {'C', {0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110}},
    {'D', {0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100}},
    {'E', {0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111}},
    {'F', {0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000}},
    {'G', {0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111}},
    {'H', {0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001}},
    {'I', {0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110}},
    {'J', {0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100}},
    {'K', {0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001}},
    {'L', {0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111}},
    {'M', {0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001}},
    {'N', {0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001}},
    {'O', {0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110}},
    {'P', {0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000}},
    {'Q', {0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101}},
    {'R', {0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001}},
    {'S', {0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110}},
    {'T', {0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100}},
    {'U', {0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110}},
    {'V', {0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100}},
    {'W', {0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010}},
    {'X', {0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001}},
    {'Y', {0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100}},
    {'Z', {0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111}},
    {'.', {0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100}},
    {',', {0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b00100, 0b01000}},
    {'-', {0b00000, 0b00000, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000}},
    {'+', {0b00000, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0b00000}},
    {':', {0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00000}},
    {'=', {0b00000, 0b00000, 0b11111, 0b00000, 0b11111, 0b00000, 0b00000}},
    {'_', {0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b11111}},
    {'(', {0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010}},
    {')', {0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000}},
    {'/', {0b00000, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b00000}},
    {'%', {0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011}},
    {'?', {0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b00000, 0b00100}},
};
// clang-format on

inline const Glyph* find_glyph(char c) {
  if (c >= 'a' && c <= 'z') c = char(c - 'a' + 'A');
  for (const Glyph& g : kFont)
    if (g.c == c) return &g;
  return nullptr;
}

}  // namespace detail

class RgbImage {
 public:
  static constexpr int kGlyphWidth = 5, kGlyphHeight = 7, kGlyphAdvance = 6;  // in font pixels

  RgbImage(int width, int height, Rgb background = colors::kWhite) : width_(width), height_(height) {
    LOOM_CHECK(width > 0 && height > 0 && int64_t(width) * height <= (int64_t(1) << 28), "RgbImage: bad size ", width,
               " x ", height);
    pixels_.resize(size_t(width) * size_t(height) * 3);
    fill_rect(0, 0, width, height, background);
  }

  int width() const { return width_; }
  int height() const { return height_; }
  // Row-major RGB bytes, 3 per pixel.
  const std::vector<uint8_t>& pixels() const { return pixels_; }

  // Pixels outside the canvas are ignored (drawing is clipped).
  void set(int x, int y, Rgb c) {
    if (x < 0 || y < 0 || x >= width_ || y >= height_) return;
    uint8_t* p = &pixels_[(size_t(y) * size_t(width_) + size_t(x)) * 3];
    p[0] = c.r, p[1] = c.g, p[2] = c.b;
  }
  Rgb get(int x, int y) const {
    LOOM_CHECK(x >= 0 && y >= 0 && x < width_ && y < height_, "RgbImage::get: (", x, ", ", y, ") outside ", width_,
               " x ", height_);
    const uint8_t* p = &pixels_[(size_t(y) * size_t(width_) + size_t(x)) * 3];
    return {p[0], p[1], p[2]};
  }

  void fill_rect(int x, int y, int w, int h, Rgb c) {
    const int x0 = std::max(x, 0), y0 = std::max(y, 0);
    const int x1 = std::min(x + w, width_), y1 = std::min(y + h, height_);
    for (int yy = y0; yy < y1; ++yy)
      for (int xx = x0; xx < x1; ++xx) set(xx, yy, c);
  }
  void rect_outline(int x, int y, int w, int h, Rgb c) {
    fill_rect(x, y, w, 1, c);
    fill_rect(x, y + h - 1, w, 1, c);
    fill_rect(x, y, 1, h, c);
    fill_rect(x + w - 1, y, 1, h, c);
  }

  // A straight line of `thickness` pixels (square pen) from (x0, y0) to (x1, y1). With dash > 0,
  // dash pixels drawn then dash pixels skipped, measured along the line.
  void line(double x0, double y0, double x1, double y1, Rgb c, int thickness = 1, int dash = 0) {
    if (!std::isfinite(x0) || !std::isfinite(y0) || !std::isfinite(x1) || !std::isfinite(y1)) return;
    const double dx = x1 - x0, dy = y1 - y0;
    const double length = std::max(std::abs(dx), std::abs(dy));
    const int steps = int(std::ceil(std::min(length, 1e6)));
    const int lo = -(thickness - 1) / 2, hi = thickness / 2;
    for (int i = 0; i <= steps; ++i) {
      if (dash > 0 && (i / dash) % 2 == 1) continue;
      const double t = steps ? double(i) / steps : 0.0;
      const int x = int(std::lround(x0 + t * dx)), y = int(std::lround(y0 + t * dy));
      for (int oy = lo; oy <= hi; ++oy)
        for (int ox = lo; ox <= hi; ++ox) set(x + ox, y + oy, c);
    }
  }

  // Text in the built-in 5x7 font, top-left corner at (x, y), each font pixel scale x scale.
  // Characters without a glyph are drawn as '?'; a space advances. Returns the width drawn.
  int text(int x, int y, std::string_view s, Rgb c, int scale = 1) {
    int cx = x;
    for (char ch : s) {
      if (ch != ' ') {
        const detail::Glyph* g = detail::find_glyph(ch);
        if (!g) g = detail::find_glyph('?');
        for (int r = 0; r < kGlyphHeight; ++r)
          for (int col = 0; col < kGlyphWidth; ++col)
            if (g->rows[size_t(r)] & (1u << (kGlyphWidth - 1 - col))) fill_rect(cx + col * scale, y + r * scale, scale, scale, c);
      }
      cx += kGlyphAdvance * scale;
    }
    return cx - x;
  }
  static int text_width(std::string_view s, int scale = 1) {
    return s.empty() ? 0 : int(s.size()) * kGlyphAdvance * scale - scale;
  }
  static int text_height(int scale = 1) { return kGlyphHeight * scale; }

  // Copies `src` with its top-left corner at (x, y) (clipped).
  void blit(const RgbImage& src, int x, int y) {
    for (int yy = 0; yy < src.height(); ++yy)
      for (int xx = 0; xx < src.width(); ++xx) set(x + xx, y + yy, src.get(xx, yy));
  }

 private:
  int width_, height_;
  std::vector<uint8_t> pixels_;
};

// The PNG file content of an image.
inline std::vector<uint8_t> encode_png(const RgbImage& image) {
  std::vector<uint8_t> bytes;
  auto sink = [](void* context, void* data, int size) {
    auto* out = static_cast<std::vector<uint8_t>*>(context);
    const auto* p = static_cast<const uint8_t*>(data);
    out->insert(out->end(), p, p + size);
  };
  const int ok = stbi_write_png_to_func(sink, &bytes, image.width(), image.height(), 3, image.pixels().data(),
                                        image.width() * 3);
  LOOM_CHECK(ok != 0 && !bytes.empty(), "encode_png: stb_image_write failed for a ", image.width(), " x ",
             image.height(), " image");
  return bytes;
}

// Writes a PNG atomically (readers never see a partial file).
inline void write_png(const std::string& path, const RgbImage& image) {
  const std::vector<uint8_t> bytes = encode_png(image);
  AtomicFileWriter out(path);
  out.write(bytes.data(), bytes.size());
  out.commit();
}

}  // namespace loom::io
