// synthetic_preview: draws Synthetic Earth scenes as a PNG grid, one scene per row:
//   Sentinel-2 true colour (B04, B03, B02) | Sentinel-1 false colour (VV, VH, VV/VH) | land cover
//
//   synthetic_preview [--out synthetic_preview.png] [--rows 5] [--size 120] [--seed 7]
//                     [--clouds 0.3] [--split train]
//
// Rows show different landscape types (the first scene of each type in index order). The PNG is
// written with stb_image_write: its implementation is compiled here, in this one .cpp (loom's
// headers never define STB_IMAGE_WRITE_IMPLEMENTATION, so programs that use stb themselves do not
// get duplicate symbols); the header comes from Debian's libstb-dev (/usr/include/stb).
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "loom/data/synthetic.hpp"
#include "loom/io/cli.hpp"

namespace {

using loom::data::synthetic::Scene;

// CORINE Land Cover legend colours of the classes (the level-3 colour of each class's main member).
constexpr std::array<std::array<uint8_t, 3>, 19> kClassColours = {{
    {230, 0, 77},    {204, 77, 242},  {255, 255, 168}, {230, 128, 0},   {230, 230, 77},
    {255, 230, 77},  {230, 204, 77},  {242, 204, 166}, {128, 255, 0},   {0, 166, 0},
    {77, 255, 0},    {204, 242, 77},  {166, 255, 128}, {166, 242, 0},   {230, 230, 230},
    {166, 166, 255}, {204, 204, 255}, {0, 204, 242},   {230, 242, 255},
}};

uint8_t to_byte(double v) { return uint8_t(std::clamp(std::lround(v * 255.0), 0L, 255L)); }

struct Canvas {
  int width, height;
  std::vector<uint8_t> rgb;
  Canvas(int w, int h) : width(w), height(h), rgb(size_t(w) * size_t(h) * 3, 255) {}
  void put(int x, int y, uint8_t r, uint8_t g, uint8_t b) {
    uint8_t* p = &rgb[(size_t(y) * size_t(width) + size_t(x)) * 3];
    p[0] = r, p[1] = g, p[2] = b;
  }
};

// One scene as three tiles at (x0, y0).
void draw_scene(Canvas& canvas, const Scene& scene, int x0, int y0, int size, int gap) {
  const size_t n = size_t(size) * size_t(size);
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      const size_t i = size_t(y) * size_t(size) + size_t(x);
      // S2 true colour: reflectance 0 .. 0.25 stretched, with a mild gamma as in quick-looks.
      auto tone = [](double reflectance) { return std::pow(std::clamp(reflectance / 2500.0, 0.0, 1.0), 1 / 1.6); };
      canvas.put(x0 + x, y0 + y, to_byte(tone(scene.s2[3 * n + i])), to_byte(tone(scene.s2[2 * n + i])),
                 to_byte(tone(scene.s2[1 * n + i])));
      // S1: VV in [-25, 0] dB, VH in [-32, -5] dB, VV - VH in [0, 15] dB.
      const double vv = scene.s1[i], vh = scene.s1[n + i];
      canvas.put(x0 + size + gap + x, y0 + y, to_byte((vv + 25) / 25), to_byte((vh + 32) / 27),
                 to_byte((vv - vh) / 15));
      const auto& c = kClassColours[scene.land.cls[i]];
      canvas.put(x0 + 2 * (size + gap) + x, y0 + y, c[0], c[1], c[2]);
    }
}

}  // namespace

int main(int argc, char** argv) {
  std::string out = "synthetic_preview.png";
  loom::data::SyntheticOptions options;
  int rows = 5;
  int64_t seed = int64_t(options.seed);
  std::string landscapes;
  loom::io::Cli cli("synthetic_preview",
                    "Writes a PNG grid of Synthetic Earth scenes, one per row: S2 true colour | S1 false colour "
                    "(VV, VH, VV/VH) | land cover.");
  cli.flag("out", out, "PNG file to write")
      .flag("rows", rows, "scenes (the first of each landscape type first)")
      .flag("size", options.size, "image size in pixels")
      .flag("seed", seed, "dataset seed")
      .flag("clouds", options.clouds, "share of cloudy images")
      .flag("split", options.split, "train, val or test")
      .flag("landscapes", landscapes, "comma-separated landscape types to show, in order (e.g. coast,peri-urban)");
  try {
    if (!cli.parse(argc, argv, std::cout)) return 0;
    if (rows < 1 || rows > 64) throw loom::io::UsageError("--rows: expected 1 to 64, got " + std::to_string(rows));
  } catch (const loom::io::UsageError& e) {
    std::fprintf(stderr, "synthetic_preview: %s\n", e.what());
    return 2;
  }
  try {
    options.seed = uint64_t(seed);
    options.train = options.val = options.test = 100000;
    const loom::data::SyntheticEarth earth(options);
    const int size = int(options.size), gap = 4;
    std::vector<Scene> scenes;
    if (!landscapes.empty()) {
      // The first scene of each requested type.
      for (size_t start = 0; start <= landscapes.size();) {
        const size_t comma = std::min(landscapes.find(',', start), landscapes.size());
        const std::string wanted = landscapes.substr(start, comma - start);
        start = comma + 1;
        int type = -1;
        for (size_t t = 0; t < loom::data::synthetic::kLandscapes.size(); ++t)
          if (wanted == loom::data::synthetic::kLandscapes[t].name) type = int(t);
        LOOM_CHECK(type >= 0, "synthetic_preview: unknown landscape type \"", wanted, "\"");
        for (int64_t i = 0;; ++i) {
          LOOM_CHECK(i < 10000, "synthetic_preview: no ", wanted, " scene among the first 10000");
          Scene s = earth.scene(i);
          if (s.land.landscape != type) continue;
          scenes.push_back(std::move(s));
          break;
        }
      }
    } else {
      // The first scene of each landscape type, then any scenes, until there are `rows`.
      std::set<int> seen;
      for (int64_t i = 0; i < earth.size() && int(scenes.size()) < rows; ++i) {
        Scene s = earth.scene(i);
        const bool new_type = seen.insert(s.land.landscape).second;
        if (new_type || i >= 200) scenes.push_back(std::move(s));
      }
    }
    Canvas canvas(3 * size + 2 * gap, int(scenes.size()) * (size + gap) - gap);
    for (size_t r = 0; r < scenes.size(); ++r) {
      draw_scene(canvas, scenes[r], 0, int(r) * (size + gap), size, gap);
      std::printf("row %zu: %s%s\n", r, loom::data::synthetic::kLandscapes[size_t(scenes[r].land.landscape)].name,
                  scenes[r].cloudy ? " (clouds)" : "");
    }
    stbi_write_png_compression_level = 9;
    LOOM_CHECK(stbi_write_png(out.c_str(), canvas.width, canvas.height, 3, canvas.rgb.data(), canvas.width * 3) != 0,
               "synthetic_preview: cannot write ", out);
    std::printf("wrote %s (%d x %d)\n", out.c_str(), canvas.width, canvas.height);
  } catch (const loom::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
