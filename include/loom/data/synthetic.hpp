#pragma once
// Synthetic Earth: a procedurally generated stand-in for BigEarthNet-MM, so that every part of loom
// (pre-training, fine-tuning, the loader, the benchmarks) runs without downloading anything. Spec:
//
//   synthetic[:train=2048,val=256,test=256,size=120,seed=7,clouds=0.3,split=train,modalities=s1s2]
//            [?on_bad=error|skip]
//
// (the options may also be given as ?key=value&...). Sample i of a split is a pure function of
// (seed, split, i): all of its randomness comes from Philox-4x32-10 (core/random.hpp) with the seed
// as key and (split, i, purpose, position) as counter, so samples can be generated in any order, on
// any number of threads, and come out bit-identical. The generative model, in short (docs/synthetic.md
// has the full story and a picture):
//   1. land cover over the 19 BigEarthNet classes: a landscape type (agricultural plain, forest,
//      Mediterranean, peri-urban, coast, uplands, lake district) picks class weights; regions are a
//      domain-warped, weighted Voronoi diagram; agricultural regions are cut into rotated rectangular
//      fields with hedges, urban regions into street grids; lakes are thresholded value noise; rivers
//      are thin meandering curves; coastlines are noisy lines with beaches and salt marshes;
//   2. each pixel is a linear mixture of up to three materials (canopy, crops, soil, sand, roofs,
//      water, ...) chosen by its class, its parcel and fine texture noise; a material has a
//      12-band Sentinel-2 reflectance spectrum (x 10000) and Sentinel-1 VV/VH backscatter (dB);
//   3. Sentinel-1: the mixture's backscatter (mixed in linear power) times gamma speckle of unit mean
//      and ENL 4.4, in dB;
//   4. Sentinel-2: illumination, then clouds (in a `clouds` share of the images) with haze and
//      cloud shadows, then the sensor: 20 m and 60 m bands lose resolution (box average, bilinear
//      back to the 10 m grid, as the reader resamples real patches), 1.5% noise, integer counts;
//   5. labels: every class covering at least 5% of the patch.
// Samples come in the real readers' units (S1 dB, S2 reflectance x 10000), so the loader normalizes
// them with the same function and BigEarthNet statistics as real data (sample.hpp: normalize()).
#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <numbers>
#include <string>
#include <vector>

#include "loom/core/error.hpp"
#include "loom/core/random.hpp"
#include "loom/core/tensor.hpp"
#include "loom/data/dataset.hpp"
#include "loom/data/sample.hpp"

namespace loom::data {

namespace synthetic {

// ---- vocabulary ---------------------------------------------------------------------------------

// The 19 BigEarthNet classes (kBigEarthNet19Classes order).
enum Class : uint8_t {
  kUrbanFabric, kIndustrial, kArableLand, kPermanentCrops, kPastures, kComplexCultivation, kAgricultureNatural,
  kAgroForestry, kBroadleavedForest, kConiferousForest, kMixedForest, kNaturalGrassland, kMoorsHeathland,
  kTransitionalWoodland, kBeachesDunes, kInlandWetlands, kCoastalWetlands, kInlandWaters, kMarineWaters,
  kNumClasses
};
static_assert(kNumClasses == kBigEarthNetNumClasses);

// Surface materials: what a pixel is a mixture of.
enum Material : uint8_t {
  kBroadleafCanopy, kConiferCanopy, kGrass, kGreenCrop, kDryVegetation, kBareSoil, kSand, kTiledRoof, kConcrete,
  kAsphalt, kClearWater, kTurbidWater, kSeaWater, kWetSoil, kShrub, kNumMaterials
};

struct MaterialSignature {
  const char* name;
  std::array<float, 12> s2;  // reflectance x 10000, bands in kS2Bands order (B01 ... B8A B09 B11 B12)
  float vv_db, vh_db;        // C-band backscatter sigma0
};

// Spectra follow the textbook shapes: vegetation is dark in blue/red, jumps at the red edge
// (B05-B07) to a bright NIR plateau (B08, B8A) and falls in the SWIR (B11, B12) with water
// absorption; conifers are darker than broadleaves; soil and sand rise steadily with wavelength;
// roofs and concrete are bright and flat; water is darkest in NIR/SWIR. Backscatter: smooth
// surfaces (water, asphalt, sand) are dark, volume scattering canopies bright in VH (a high VH/VV
// ratio), buildings bright by double bounce.
inline constexpr std::array<MaterialSignature, kNumMaterials> kMaterials = {{
    //                   B01   B02   B03   B04   B05   B06   B07   B08   B8A   B09   B11   B12     VV     VH
    {"broadleaf canopy", {230, 280, 520, 260, 850, 2700, 3300, 3500, 3600, 3550, 1650, 750}, -7.5f, -13.0f},
    {"conifer canopy", {180, 200, 380, 190, 600, 1700, 2100, 2300, 2400, 2350, 1050, 480}, -8.0f, -13.8f},
    {"grass", {280, 380, 700, 480, 1100, 2500, 3000, 3200, 3300, 3200, 2000, 1050}, -11.5f, -18.5f},
    {"green crop", {250, 320, 650, 330, 1000, 2900, 3700, 4000, 4100, 4000, 2000, 900}, -10.0f, -16.5f},
    {"dry vegetation", {650, 800, 1100, 1350, 1650, 2000, 2200, 2350, 2450, 2400, 3000, 2300}, -12.5f, -20.5f},
    {"bare soil", {900, 1050, 1350, 1650, 1850, 2000, 2150, 2250, 2350, 2350, 3100, 2650}, -11.0f, -19.5f},
    {"sand", {1700, 2000, 2450, 2850, 3050, 3200, 3300, 3400, 3500, 3450, 3900, 3300}, -17.0f, -26.0f},
    {"tiled roof", {900, 900, 1100, 1700, 1900, 2000, 2050, 2100, 2150, 2100, 2300, 2000}, -4.0f, -11.5f},
    {"concrete", {1500, 1650, 1800, 1900, 2000, 2100, 2150, 2200, 2250, 2200, 2400, 2200}, -5.0f, -12.5f},
    {"asphalt", {700, 750, 800, 850, 900, 950, 1000, 1050, 1100, 1050, 1200, 1100}, -18.0f, -26.0f},
    {"clear water", {420, 450, 520, 300, 220, 160, 140, 120, 100, 90, 40, 25}, -23.0f, -29.0f},
    {"turbid water", {430, 500, 720, 580, 540, 380, 320, 270, 240, 220, 80, 50}, -21.0f, -28.0f},
    {"sea water", {480, 430, 360, 180, 130, 100, 90, 80, 70, 60, 30, 20}, -19.0f, -27.0f},
    {"wet soil", {450, 520, 650, 780, 880, 950, 1000, 1050, 1100, 1100, 1400, 1100}, -9.0f, -17.0f},
    {"shrub", {250, 330, 520, 480, 800, 1500, 1800, 1950, 2050, 2000, 1500, 850}, -9.5f, -16.0f},
}};

// Top of atmosphere over opaque cloud, and the path radiance of haze (strongest in blue).
inline constexpr std::array<float, 12> kCloudSpectrum = {5200, 5400, 5500, 5600, 5600, 5700,
                                                         5700, 5800, 5800, 4800, 4200, 3200};
inline constexpr std::array<float, 12> kHazeSpectrum = {1500, 1400, 1200, 1050, 950, 900, 850, 800, 800, 700, 450, 350};

// Ground sampling distance divided by 10 m of each band (kS2BandResolution / 10).
inline constexpr std::array<int, 12> kBandCoarsening = {6, 1, 1, 1, 2, 2, 2, 1, 2, 6, 2, 2};

inline constexpr double kSpeckleLooks = 4.4;        // equivalent number of looks of BigEarthNet's S1 GRD
inline constexpr double kLabelMinFraction = 0.05;   // a class is a label when it covers >= 5% of the patch

// ---- randomness ---------------------------------------------------------------------------------

// What a random stream is used for (low byte of the counter's stream word; the upper 24 bits hold
// a sub-stream: a row, a noise field and octave, ...).
enum Purpose : uint32_t {
  kLayout = 1, kNoiseLattice = 2, kParcel = 3, kTexture = 4, kSpeckle = 5, kSensorNoise = 6, kAtmosphere = 7,
};

// All randomness of one sample: Philox keyed by the dataset seed, the counter
//   {position, (sub << 8) | purpose, sample index, split}
// so that sample (split, index) is a pure function of the seed.
class SceneRandom {
 public:
  SceneRandom(uint64_t seed, uint32_t split, uint32_t index)
      : key_(philox::key_for_seed(seed)), split_(split), index_(index) {}
  philox::Counter block(uint32_t purpose, uint32_t sub, uint32_t position) const {
    return philox::philox4x32_10(philox::Counter{{position, (sub << 8) | purpose, index_, split_}}, key_);
  }

 private:
  philox::Key key_;
  uint32_t split_, index_;
};

// Successive numbers of one stream, four lanes per Philox block.
class RandomStream {
 public:
  RandomStream(const SceneRandom& random, uint32_t purpose, uint32_t sub = 0)
      : random_(&random), purpose_(purpose), sub_(sub) {}

  uint32_t bits() {
    if (lane_ == 4) {
      block_ = random_->block(purpose_, sub_, position_++);
      lane_ = 0;
    }
    return block_.x[lane_++];
  }
  float uniform() { return philox::uniform_float(bits()); }                    // [0, 1)
  float uniform(float lo, float hi) { return lo + (hi - lo) * uniform(); }      // [lo, hi)
  float uniform_nonzero() { return philox::uniform_float_nonzero(bits()); }     // (0, 1]
  int below(int n) { return std::min(n - 1, int(uniform() * float(n))); }        // [0, n)
  bool chance(double p) { return uniform() < p; }
  // Standard normal by Box-Muller; the second value of each pair is kept for the next call.
  float normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const float r = std::sqrt(-2.0f * std::log(uniform_nonzero()));
    const float theta = 2.0f * std::numbers::pi_v<float> * uniform();
    spare_ = r * std::sin(theta);
    has_spare_ = true;
    return r * std::cos(theta);
  }
  // Gamma(shape, scale 1/shape): unit mean, variance 1/shape (Marsaglia & Tsang 2000, shape >= 1).
  float gamma_unit_mean(float shape) {
    const float d = shape - 1.0f / 3.0f, c = 1.0f / std::sqrt(9.0f * d);
    for (;;) {
      const float x = normal();
      float v = 1.0f + c * x;
      if (v <= 0) continue;
      v = v * v * v;
      const float u = uniform_nonzero();
      if (u < 1.0f - 0.0331f * x * x * x * x || std::log(u) < 0.5f * x * x + d * (1.0f - v + std::log(v)))
        return d * v / shape;
    }
  }
  // Index drawn with probability proportional to weights[i].
  template <size_t N>
  int weighted(const std::array<float, N>& weights) {
    float total = 0;
    for (float w : weights) total += w;
    float u = uniform() * total;
    for (size_t i = 0; i < N; ++i) {
      if (u < weights[i]) return int(i);
      u -= weights[i];
    }
    for (size_t i = N; i-- > 0;)
      if (weights[i] > 0) return int(i);
    return 0;
  }

 private:
  const SceneRandom* random_;
  uint32_t purpose_, sub_, position_ = 0;
  philox::Counter block_{};
  int lane_ = 4;
  float spare_ = 0;
  bool has_spare_ = false;
};

// Four uniforms of a parcel (a field, a block, a region): random access by its id.
struct ParcelTraits {
  float q[4];
};
inline ParcelTraits parcel_traits(const SceneRandom& random, uint32_t parcel) {
  const philox::Counter b = random.block(kParcel, parcel >> 24, parcel & 0xffffffu);
  return {{philox::uniform_float(b.x[0]), philox::uniform_float(b.x[1]), philox::uniform_float(b.x[2]),
           philox::uniform_float(b.x[3])}};
}

// Multi-octave value noise (fBm): lattices of uniform values in [-1, 1], smoothstep-interpolated;
// octave k has cells of cell / 2^k pixels and weight gain^k. Values lie in [-1, 1], most within
// +-0.5. Covers [-margin, H + margin) x [-margin, W + margin) (domain warps look outside the image).
class NoiseField {
 public:
  NoiseField(const SceneRandom& random, uint32_t field, float cell, int octaves, float gain, int64_t height,
             int64_t width, float margin = 0) {
    LOOM_CHECK(octaves >= 1 && octaves <= 8 && cell > 0, "NoiseField: bad octaves/cell");
    float amplitude = 1, total = 0;
    for (int k = 0; k < octaves; ++k) {
      Octave o;
      o.inv_cell = float(1 << k) / cell;
      o.amplitude = amplitude;
      o.origin = margin + cell;  // keeps lattice coordinates positive
      o.nx = int64_t(std::ceil((float(width) + 2 * margin + cell) * o.inv_cell)) + 2;
      o.ny = int64_t(std::ceil((float(height) + 2 * margin + cell) * o.inv_cell)) + 2;
      RandomStream values(random, kNoiseLattice, field * 8 + uint32_t(k));
      o.lattice.resize(size_t(o.nx * o.ny));
      for (float& v : o.lattice) v = values.uniform(-1.0f, 1.0f);
      total += amplitude;
      amplitude *= gain;
      octaves_.push_back(std::move(o));
    }
    for (Octave& o : octaves_) o.amplitude /= total;
  }

  // The field on the pixel grid [0, H) x [0, W), row-major, into out[H * W]: the same values as
  // at(y, x), with the interpolation weights of each row and column computed once.
  void render(int64_t height, int64_t width, float* out) const {
    std::fill(out, out + height * width, 0.0f);
    std::vector<int64_t> col_index(static_cast<size_t>(width));
    std::vector<float> col_weight(static_cast<size_t>(width));
    for (const Octave& o : octaves_) {
      for (int64_t x = 0; x < width; ++x) {
        const Tap t = tap(float(x), o, o.nx);
        col_index[size_t(x)] = t.index;
        col_weight[size_t(x)] = t.weight;
      }
      for (int64_t y = 0; y < height; ++y) {
        const Tap ty = tap(float(y), o, o.ny);
        const float* row0 = o.lattice.data() + ty.index * o.nx;
        const float* row1 = row0 + o.nx;
        float* dst = out + y * width;
        for (int64_t x = 0; x < width; ++x) {
          const int64_t ix = col_index[size_t(x)];
          const float fx = col_weight[size_t(x)];
          const float top = row0[ix] + fx * (row0[ix + 1] - row0[ix]);
          const float bottom = row1[ix] + fx * (row1[ix + 1] - row1[ix]);
          dst[x] += o.amplitude * (top + ty.weight * (bottom - top));
        }
      }
    }
  }
  std::vector<float> render(int64_t height, int64_t width) const {
    std::vector<float> out(size_t(height * width));
    render(height, width, out.data());
    return out;
  }

  float at(float y, float x) const {
    float sum = 0;
    for (const Octave& o : octaves_) {
      const float gx = std::clamp((x + o.origin) * o.inv_cell, 0.0f, float(o.nx - 2));
      const float gy = std::clamp((y + o.origin) * o.inv_cell, 0.0f, float(o.ny - 2));
      const int64_t ix = int64_t(gx), iy = int64_t(gy);
      float fx = gx - float(ix), fy = gy - float(iy);
      fx = fx * fx * (3 - 2 * fx);
      fy = fy * fy * (3 - 2 * fy);
      const float* row0 = o.lattice.data() + iy * o.nx + ix;
      const float* row1 = row0 + o.nx;
      const float top = row0[0] + fx * (row0[1] - row0[0]);
      const float bottom = row1[0] + fx * (row1[1] - row1[0]);
      sum += o.amplitude * (top + fy * (bottom - top));
    }
    return sum;
  }

 private:
  struct Octave;
  struct Tap {
    int64_t index;
    float weight;  // smoothstep-shaped weight of index + 1
  };
  static Tap tap(float coordinate, const Octave& o, int64_t n) {
    const float g = std::clamp((coordinate + o.origin) * o.inv_cell, 0.0f, float(n - 2));
    const int64_t i = int64_t(g);
    const float f = g - float(i);
    return {i, f * f * (3 - 2 * f)};
  }
  struct Octave {
    std::vector<float> lattice;
    int64_t nx = 0, ny = 0;
    float inv_cell = 1, amplitude = 1, origin = 0;
  };
  std::vector<Octave> octaves_;
};

// Noise field ids (the sub-stream of kNoiseLattice).
enum Field : uint32_t {
  kWarpX, kWarpY, kLakeField, kCoastWarp, kFineTexture, kMediumTexture, kCloudField, kHazeField, kRiverWobble,
  kFieldWarp,
};

// ---- land cover ---------------------------------------------------------------------------------

enum Overlay : uint8_t { kNoOverlay, kRoad, kHedge };

struct LandCover {
  int64_t height = 0, width = 0;
  std::vector<uint8_t> cls;       // [H * W] Class
  std::vector<uint32_t> parcel;   // [H * W] id of the field / block / region (per-parcel variation)
  std::vector<uint8_t> overlay;   // [H * W] Overlay: appearance only, the class stays
  std::vector<float> row_phase;   // [H * W] position across crop rows (permanent crops), in rows
  int landscape = 0;
};

struct Landscape {
  const char* name;
  float weight;
  std::array<float, kNumClasses> classes;  // weights of the classes of Voronoi regions
  float lakes, rivers, coast, roads;        // probabilities of the features
};

// clang-format off
inline constexpr std::array<Landscape, 7> kLandscapes = {{
  //                         urb  ind  ara  per  pas  cpx  agn  agf  brl  con  mix  gra  moo  tra  bea  iwe  cwe  iwa  mar
  {"agricultural plain", 3, {.05f,.02f,.40f,.03f,.16f,.10f,.10f,  0 ,.05f,.02f,.03f,  0 ,  0 ,.04f,  0 ,  0 ,  0 ,  0 ,  0 }, .12f, .30f, .03f, .45f},
  {"forest",             2, {  0 ,  0 ,.03f,  0 ,.04f,  0 ,.05f,  0 ,.18f,.30f,.22f,  0 ,.03f,.12f,  0 ,.03f,  0 ,  0 ,  0 }, .25f, .20f, .02f, .15f},
  {"mediterranean",      1.5f, {.03f,  0 ,.10f,.28f,.03f,.15f,.06f,.12f,.04f,.03f,  0 ,.06f,.20f,.04f,  0 ,  0 ,  0 ,  0 ,  0 }, .05f, .10f, .15f, .30f},
  {"peri-urban",         1.5f, {.35f,.18f,.14f,  0 ,.10f,.08f,.03f,  0 ,.08f,  0 ,.02f,  0 ,  0 ,.02f,  0 ,  0 ,  0 ,  0 ,  0 }, .08f, .30f, .10f, .80f},
  {"coast",              1.2f, {.06f,.02f,.18f,.04f,.20f,.06f,.04f,  0 ,.04f,.10f,.04f,.14f,.04f,.04f,  0 ,  0 ,  0 ,  0 ,  0 }, .05f, .10f, 1.0f, .30f},
  {"uplands",            1.2f, {  0 ,  0 ,  0 ,  0 ,.10f,  0 ,.04f,.02f,.04f,.16f,.06f,.26f,.20f,.12f,  0 ,.05f,  0 ,  0 ,  0 }, .15f, .15f, .03f, .10f},
  {"lake district",      1,  {  0 ,  0 ,.03f,  0 ,.14f,.02f,.06f,  0 ,.10f,.20f,.16f,.04f,.04f,.10f,  0 ,.20f,  0 ,.02f,  0 }, .85f, .30f, .03f, .15f},
}};
// clang-format on

inline bool is_fielded(uint8_t c) {
  return c == kArableLand || c == kPermanentCrops || c == kPastures || c == kComplexCultivation ||
         c == kAgricultureNatural;
}
inline bool is_built(uint8_t c) { return c == kUrbanFabric || c == kIndustrial; }
inline bool is_water(uint8_t c) { return c == kInlandWaters || c == kMarineWaters; }

// Parcel ids: regions 1..255 << 24 | cell; lakes, rivers and the sea get fixed ids.
inline constexpr uint32_t kLakeParcel = 0xffffff01u, kRiverParcel = 0xffffff02u, kSeaParcel = 0xffffff03u,
                          kShoreParcel = 0xffffff04u;

inline void paint_coast(const SceneRandom& random, RandomStream& layout, LandCover& map) {
  const int64_t H = map.height, W = map.width;
  const float scale = float(std::max(H, W));
  const float angle = layout.uniform(0, 2 * std::numbers::pi_v<float>);
  const float nx = std::cos(angle), ny = std::sin(angle);
  // The coastline passes at a random distance from the centre, so the sea covers 10-70%.
  const float shift = layout.uniform(-0.3f, 0.3f) * scale;
  const float beach = layout.chance(0.8) ? layout.uniform(2, 8) : 0.0f;
  const float marsh = layout.chance(0.4) ? layout.uniform(6, 25) : 0.0f;
  const std::vector<float> warp = NoiseField(random, kCoastWarp, 40, 3, 0.5f, H, W).render(H, W);
  const float amplitude = layout.uniform(6, 20);
  const float cy = float(H) / 2, cx = float(W) / 2;
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) {
      const float s = (float(x) - cx) * nx + (float(y) - cy) * ny - shift + amplitude * 2 * warp[size_t(y * W + x)];
      const size_t i = size_t(y * W + x);
      if (s < 0) {
        map.cls[i] = kMarineWaters;
        map.parcel[i] = kSeaParcel;
        map.overlay[i] = kNoOverlay;
      } else if (s < beach) {
        map.cls[i] = kBeachesDunes;
        map.parcel[i] = kShoreParcel;
        map.overlay[i] = kNoOverlay;
      } else if (s < beach + marsh && map.cls[i] != kUrbanFabric && map.cls[i] != kIndustrial) {
        map.cls[i] = kCoastalWetlands;
        map.parcel[i] = kShoreParcel;
        map.overlay[i] = kNoOverlay;
      }
    }
}

inline void paint_lakes(const SceneRandom& random, RandomStream& layout, LandCover& map, bool wetland_rims) {
  const int64_t H = map.height, W = map.width;
  const std::vector<float> v = NoiseField(random, kLakeField, layout.uniform(30, 70), 3, 0.5f, H, W).render(H, W);
  // Threshold at the quantile that gives the drawn lake share.
  const float share = layout.uniform(0.04f, 0.25f);
  std::vector<float> sorted = v;
  const size_t k = std::min(sorted.size() - 1, size_t(double(sorted.size()) * (1.0 - share)));
  std::nth_element(sorted.begin(), sorted.begin() + std::ptrdiff_t(k), sorted.end());
  const float threshold = sorted[k];
  const float rim = wetland_rims ? 0.05f : 0.0f;
  for (size_t i = 0; i < v.size(); ++i) {
    if (map.cls[i] == kMarineWaters) continue;
    if (v[i] >= threshold) {
      map.cls[i] = kInlandWaters;
      map.parcel[i] = kLakeParcel;
      map.overlay[i] = kNoOverlay;
    } else if (v[i] >= threshold - rim && !is_built(map.cls[i])) {
      map.cls[i] = kInlandWetlands;
    }
  }
}

inline void paint_river(const SceneRandom& random, RandomStream& layout, LandCover& map) {
  const int64_t H = map.height, W = map.width;
  const float size = float(std::max(H, W));
  // A line through a random point at a random angle, meandering sideways.
  const float angle = layout.uniform(0, std::numbers::pi_v<float>);
  const float dx = std::cos(angle), dy = std::sin(angle);
  const float px = layout.uniform(0.2f, 0.8f) * float(W), py = layout.uniform(0.2f, 0.8f) * float(H);
  const float width = layout.uniform(1.5f, 5.0f);
  const float meander = layout.uniform(1, 6), wavelength = layout.uniform(50, 150), phase = layout.uniform(0, 6.3f);
  const NoiseField wobble(random, kRiverWobble, 35, 3, 0.5f, 1, int64_t(3 * size));
  const float half = width / 2;
  for (float t = -size; t <= size; t += 0.5f) {
    const float side = meander * std::sin(2 * std::numbers::pi_v<float> * t / wavelength + phase) +
                       25 * wobble.at(0, t + size);
    const float cx = px + t * dx - side * dy, cy = py + t * dy + side * dx;
    const int64_t x0 = int64_t(std::floor(cx - half)), x1 = int64_t(std::ceil(cx + half));
    const int64_t y0 = int64_t(std::floor(cy - half)), y1 = int64_t(std::ceil(cy + half));
    for (int64_t y = std::max<int64_t>(y0, 0); y <= std::min(y1, H - 1); ++y)
      for (int64_t x = std::max<int64_t>(x0, 0); x <= std::min(x1, W - 1); ++x) {
        const float ex = float(x) - cx, ey = float(y) - cy;
        const size_t i = size_t(y * W + x);
        if (ex * ex + ey * ey <= half * half && map.cls[i] != kMarineWaters) {
          map.cls[i] = kInlandWaters;
          map.parcel[i] = kRiverParcel;
          map.overlay[i] = kNoOverlay;
        }
      }
  }
}

inline void paint_road(RandomStream& layout, LandCover& map) {
  const int64_t H = map.height, W = map.width;
  const float angle = layout.uniform(0, std::numbers::pi_v<float>);
  const float nx = -std::sin(angle), ny = std::cos(angle);
  const float px = layout.uniform(0.1f, 0.9f) * float(W), py = layout.uniform(0.1f, 0.9f) * float(H);
  const float bend = layout.uniform(-1.5f, 1.5f) / float(std::max(H, W));
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) {
      const float ex = float(x) - px, ey = float(y) - py;
      const float along = ex * ny - ey * nx;
      const float across = ex * nx + ey * ny - bend * along * along;
      const size_t i = size_t(y * W + x);
      if (std::abs(across) < 0.75f && !is_water(map.cls[i])) map.overlay[i] = kRoad;
    }
}

// The land-cover map of a scene.
inline LandCover generate_land_cover(const SceneRandom& random, int64_t H, int64_t W) {
  LandCover map;
  map.height = H;
  map.width = W;
  const size_t n = size_t(H * W);
  map.cls.assign(n, kPastures);
  map.parcel.assign(n, 0);
  map.overlay.assign(n, kNoOverlay);
  map.row_phase.assign(n, 0.0f);
  RandomStream layout(random, kLayout);

  std::array<float, kLandscapes.size()> landscape_weights{};
  for (size_t i = 0; i < kLandscapes.size(); ++i) landscape_weights[i] = kLandscapes[i].weight;
  map.landscape = layout.weighted(landscape_weights);
  const Landscape& land = kLandscapes[size_t(map.landscape)];

  // Regions: a weighted Voronoi diagram (power distance |p - s|^2 - w) of domain-warped positions.
  const double area = double(H * W) / (120.0 * 120.0);
  const int regions = int(std::clamp(std::lround(layout.uniform(2, 7.5f) * std::sqrt(area) * std::sqrt(area)), 1L, 200L));
  struct Region {
    float x, y, weight;
    uint8_t cls;
    float angle, field_w, field_h;
  };
  std::vector<Region> seeds(static_cast<size_t>(regions));
  const float scene_angle = layout.uniform(0, std::numbers::pi_v<float>);  // fields and streets share it
  for (Region& r : seeds) {
    r.x = layout.uniform(-0.1f, 1.1f) * float(W);
    r.y = layout.uniform(-0.1f, 1.1f) * float(H);
    r.weight = layout.uniform(0, 1) * 40 * 40;
    r.cls = uint8_t(layout.weighted(land.classes));
    r.angle = scene_angle + layout.uniform(-0.3f, 0.3f) + (layout.chance(0.25) ? std::numbers::pi_v<float> / 2 : 0);
    switch (r.cls) {
      case kArableLand: case kPastures:
        r.field_w = layout.uniform(14, 45), r.field_h = layout.uniform(10, 30); break;
      case kPermanentCrops: r.field_w = layout.uniform(12, 30), r.field_h = layout.uniform(8, 20); break;
      case kComplexCultivation: r.field_w = layout.uniform(5, 12), r.field_h = layout.uniform(4, 9); break;
      case kAgricultureNatural: r.field_w = layout.uniform(8, 22), r.field_h = layout.uniform(6, 16); break;
      case kUrbanFabric: r.field_w = layout.uniform(7, 13), r.field_h = layout.uniform(6, 11); break;
      case kIndustrial: r.field_w = layout.uniform(14, 28), r.field_h = layout.uniform(10, 22); break;
      default: r.field_w = r.field_h = 1; break;
    }
  }
  const bool hedges = layout.chance(0.5);
  const float warp_amplitude = layout.uniform(8, 24);
  const std::vector<float> warp_x = NoiseField(random, kWarpX, 48, 3, 0.5f, H, W).render(H, W);
  const std::vector<float> warp_y = NoiseField(random, kWarpY, 48, 3, 0.5f, H, W).render(H, W);
  const std::vector<float> field_warp = NoiseField(random, kFieldWarp, 30, 2, 0.5f, H, W).render(H, W);
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) {
      const size_t i = size_t(y * W + x);
      const float wx = float(x) + 2 * warp_amplitude * warp_x[i];
      const float wy = float(y) + 2 * warp_amplitude * warp_y[i];
      int best = 0;
      float best_d = INFINITY;
      for (int r = 0; r < regions; ++r) {
        const Region& s = seeds[size_t(r)];
        const float d = (wx - s.x) * (wx - s.x) + (wy - s.y) * (wy - s.y) - s.weight;
        if (d < best_d) best_d = d, best = r;
      }
      const Region& s = seeds[size_t(best)];
      map.cls[i] = s.cls;
      uint32_t parcel = uint32_t(best + 1) << 24;
      if (is_fielded(s.cls) || is_built(s.cls)) {
        // A rotated grid of fields / blocks; every other row of fields is staggered, and the grid is
        // gently warped so that fields are not perfect rectangles.
        const float c = std::cos(s.angle), sn = std::sin(s.angle);
        const float bend = is_built(s.cls) ? 0.0f : 3 * field_warp[i];
        const float u0 = (float(x) * c + float(y) * sn) + bend, v0 = (-float(x) * sn + float(y) * c) - bend;
        const float v = v0 / s.field_h;
        const float iv = std::floor(v);
        const float stagger = (iv * 0.6180339f - std::floor(iv * 0.6180339f)) * s.field_w;
        const float u = (u0 + stagger) / s.field_w;
        const float iu = std::floor(u);
        parcel |= (uint32_t(int64_t(iu) & 0xfff) << 12) | uint32_t(int64_t(iv) & 0xfff);
        const float eu = (u - iu) * s.field_w, ev = (v - iv) * s.field_h;  // position inside, in pixels
        if (is_built(s.cls)) {
          if (eu < 1 || ev < 1) map.overlay[i] = kRoad;  // streets around each block
        } else if (hedges && (eu < 0.8f || ev < 0.8f)) {
          map.overlay[i] = kHedge;
        }
        map.row_phase[i] = eu;
      }
      map.parcel[i] = parcel;
    }

  if (layout.chance(land.coast)) paint_coast(random, layout, map);
  if (layout.chance(land.lakes)) paint_lakes(random, layout, map, map.landscape == 6 || layout.chance(0.3));
  if (layout.chance(land.rivers)) paint_river(random, layout, map);
  if (layout.chance(land.roads)) paint_road(layout, map);
  return map;
}

// ---- appearance ---------------------------------------------------------------------------------

// Up to three materials with weights summing to 1, plus per-pixel modifiers.
struct PixelMix {
  Material material[3] = {kGrass, kGrass, kGrass};
  float weight[3] = {1, 0, 0};
  int count = 1;
  float brightness = 1;     // multiplies the S2 spectrum
  float backscatter_db = 0;  // added to both polarisations
  void set(Material a) { material[0] = a, weight[0] = 1, count = 1; }
  void set(Material a, float wa, Material b) {
    wa = std::clamp(wa, 0.0f, 1.0f);
    material[0] = a, weight[0] = wa, material[1] = b, weight[1] = 1 - wa, count = 2;
  }
  void set(Material a, float wa, Material b, float wb, Material c) {
    wa = std::clamp(wa, 0.0f, 1.0f);
    wb = std::clamp(wb, 0.0f, 1.0f - wa);
    material[0] = a, weight[0] = wa, material[1] = b, weight[1] = wb, material[2] = c, weight[2] = 1 - wa - wb,
    count = 3;
  }
};

// Crops of a field, from the field's traits: green crop, bare soil (wet or dry) or stubble.
inline void cropland_mix(const ParcelTraits& p, float fine, PixelMix& m) {
  if (p.q[0] < 0.4f) {
    m.set(kGreenCrop, 0.55f + 0.45f * p.q[1] + 0.1f * fine, kBareSoil);
  } else if (p.q[0] < 0.75f) {
    m.set(kBareSoil, 1 - 0.6f * p.q[1], kWetSoil);
    m.backscatter_db = (p.q[2] - 0.5f) * 6;  // soil moisture and roughness
  } else {
    m.set(kDryVegetation, 0.6f + 0.3f * p.q[1], kBareSoil);
  }
}

// The material mixture of one pixel. fine, medium: texture noise at ~3 px and ~12 px, in [-1, 1];
// r0, r1: per-pixel uniforms.
inline PixelMix pixel_mix(uint8_t cls, const ParcelTraits& p, float row_phase, float fine, float medium, float r0,
                          float r1) {
  PixelMix m;
  switch (cls) {
    case kUrbanFabric:
      if (r0 < 0.55f + 0.3f * medium) {  // a building
        m.set(p.q[0] < 0.55f ? kTiledRoof : kConcrete);
        m.backscatter_db = 8 * p.q[1] + (r1 < 0.04f ? 10.0f : 0.0f);  // double bounce, point targets
      } else {
        m.set(kGrass, 0.6f + 0.4f * fine, kBroadleafCanopy);
      }
      break;
    case kIndustrial:
      if (medium > -0.25f + 0.3f * (p.q[2] - 0.5f)) {
        m.set(kConcrete);
        m.brightness = 1.0f + 0.35f * p.q[0];
        m.backscatter_db = 6 * p.q[1] + (r1 < 0.05f ? 12.0f : 0.0f);
      } else {
        m.set(kAsphalt, 0.7f, kGrass);
      }
      break;
    case kArableLand:
      cropland_mix(p, fine, m);
      m.brightness = 1 + 0.04f * std::sin(2.3f * row_phase);  // tillage lines
      break;
    case kPermanentCrops: {
      const float period = 2.5f + 2 * p.q[1];
      const float row = 0.5f + 0.5f * std::sin(2 * std::numbers::pi_v<float> * row_phase / period);
      m.set(kBroadleafCanopy, 0.15f + 0.55f * row * row, p.q[0] < 0.5f ? kGrass : kDryVegetation);
      break;
    }
    case kPastures:
      m.set(kGrass, 0.75f + 0.25f * p.q[0] + 0.15f * medium, kDryVegetation);
      m.backscatter_db = (p.q[1] - 0.5f) * 2;
      break;
    case kComplexCultivation:
      if (p.q[3] < 0.3f) {
        m.set(kBroadleafCanopy, 0.5f, kGrass);  // small orchards
      } else if (p.q[3] < 0.55f) {
        m.set(kGrass, 0.8f + 0.2f * fine, kDryVegetation);
      } else {
        cropland_mix(p, fine, m);
      }
      break;
    case kAgricultureNatural:
      if (p.q[3] < 0.45f) {
        m.set(p.q[1] < 0.6f ? kBroadleafCanopy : kShrub, 0.8f + 0.2f * fine, kGrass);
      } else if (p.q[3] < 0.7f) {
        m.set(kGrass, 0.85f, kDryVegetation);
      } else {
        cropland_mix(p, fine, m);
      }
      break;
    case kAgroForestry:
      if (fine > 0.2f - 0.3f * p.q[0]) m.set(kBroadleafCanopy, 0.85f, kGrass);
      else m.set(kDryVegetation, 0.5f + 0.4f * p.q[1], kGrass);
      break;
    case kBroadleavedForest:
      m.set(kBroadleafCanopy, 0.85f + 0.15f * fine, kGrass);
      m.brightness = 0.9f + 0.2f * p.q[0] + 0.08f * fine;
      break;
    case kConiferousForest:
      m.set(kConiferCanopy, 0.88f + 0.12f * fine, kShrub);
      m.brightness = 0.9f + 0.15f * p.q[0] + 0.08f * fine;
      break;
    case kMixedForest: {
      const float t = std::clamp(2.5f * (fine + 0.5f * medium + 0.5f * (p.q[0] - 0.5f)) + 0.5f, 0.0f, 1.0f);
      m.set(kConiferCanopy, t * 0.95f, kBroadleafCanopy, (1 - t) * 0.95f, kGrass);
      break;
    }
    case kNaturalGrassland:
      m.set(kGrass, 0.5f + 0.4f * medium - 0.3f * p.q[0], kDryVegetation, 0.35f, kBareSoil);
      break;
    case kMoorsHeathland:
      m.set(kShrub, 0.55f + 0.3f * fine, kDryVegetation, 0.3f + 0.2f * p.q[0], kGrass);
      break;
    case kTransitionalWoodland:
      if (fine > 0.15f) m.set(kBroadleafCanopy, 0.6f + 0.3f * p.q[0], kShrub);
      else m.set(kShrub, 0.5f + 0.3f * medium, kGrass);
      break;
    case kBeachesDunes:
      m.set(kSand, 0.85f + 0.15f * medium, kWetSoil);
      m.brightness = 0.92f + 0.16f * p.q[0];
      break;
    case kInlandWetlands:
      m.set(kTurbidWater, 0.25f + 0.5f * medium, kGrass, 0.5f, kShrub);
      m.backscatter_db = 2.5f * p.q[1];  // flooded vegetation: extra double bounce
      break;
    case kCoastalWetlands:
      if (fine > 0.35f) m.set(kSeaWater, 0.8f, kWetSoil);  // tidal channels
      else m.set(kWetSoil, 0.4f + 0.3f * medium, kGrass, 0.5f, kShrub);
      break;
    case kInlandWaters:
      m.set(kClearWater, p.q[0], kTurbidWater);
      m.brightness = 1 + 0.03f * fine;
      break;
    case kMarineWaters:
      m.set(kSeaWater);
      m.brightness = 1 + 0.05f * medium;
      m.backscatter_db = -3 + 7 * p.q[0] + 1.5f * medium;  // wind roughening
      break;
    default: break;
  }
  return m;
}

// ---- the scene ----------------------------------------------------------------------------------

// Everything a scene is made of: the sample plus the truths behind it (for tests and pictures).
struct Scene {
  LandCover land;
  std::vector<float> s1;            // [2, H, W] dB
  std::vector<float> s1_clean_db;   // [2, H, W] backscatter before speckle, dB
  std::vector<float> s2;            // [12, H, W] reflectance x 10000 (integers)
  std::vector<float> cloud;         // [H, W] cloud opacity in [0, 1] (all 0 for a clear image)
  bool cloudy = false;
  std::array<int64_t, kNumClasses> class_pixels{};  // pixels of each class
};

struct SceneRequest {
  uint64_t seed = 7;
  uint32_t split = 0;  // 0 train, 1 val, 2 test
  uint32_t index = 0;
  int64_t size = 120;
  double clouds = 0.3;  // probability that an image has clouds
  bool s1 = true, s2 = true;
  bool truths = true;  // also fill Scene::s1_clean_db (tests, pictures); the dataset does not need it
};

// Clouds: an fBm field thresholded at the quantile of the drawn cover, soft-edged; haze: a thin
// low-frequency veil. Returns the cloud opacity [H*W] and fills haze [H*W].
inline std::vector<float> cloud_cover(const SceneRandom& random, RandomStream& atmosphere, int64_t H, int64_t W,
                                      std::vector<float>& haze, float& shadow_dx, float& shadow_dy) {
  const size_t n = size_t(H * W);
  const float cover = atmosphere.uniform(0.05f, 0.7f);
  const NoiseField field(random, kCloudField, atmosphere.uniform(30, 70), 4, 0.55f, H, W);
  const NoiseField veil(random, kHazeField, 80, 2, 0.5f, H, W);
  const float haze_level = atmosphere.uniform(0.0f, 0.3f);
  const float sun = atmosphere.uniform(0, 2 * std::numbers::pi_v<float>), height = atmosphere.uniform(4, 12);
  shadow_dx = height * std::cos(sun);
  shadow_dy = height * std::sin(sun);
  const std::vector<float> value = field.render(H, W);
  std::vector<float> sorted = value;
  const size_t k = std::min(n - 1, size_t(double(n) * (1.0 - cover)));
  std::nth_element(sorted.begin(), sorted.begin() + std::ptrdiff_t(k), sorted.end());
  const float threshold = sorted[k], edge = 0.12f;
  std::vector<float> opacity(n);
  for (size_t i = 0; i < n; ++i) {
    const float t = std::clamp((value[i] - threshold) / edge + 0.5f, 0.0f, 1.0f);
    opacity[i] = t * t * (3 - 2 * t);
  }
  haze = veil.render(H, W);
  for (float& h : haze) h = std::clamp(haze_level * (1 + h), 0.0f, 0.6f);
  return opacity;
}

// Box average over f x f blocks (partial blocks at the edges average what they have), then bilinear
// back to h x w: a 20 m or 60 m band seen on the 10 m grid.
inline void coarsen_band(float* band, int64_t h, int64_t w, int f) {
  if (f == 1) return;
  const int64_t ch = (h + f - 1) / f, cw = (w + f - 1) / f;
  std::vector<float> coarse(size_t(ch * cw));  // [h/f, w/f]
  float* c = coarse.data();
  for (int64_t by = 0; by < ch; ++by)
    for (int64_t bx = 0; bx < cw; ++bx) {
      double sum = 0;
      int count = 0;
      for (int64_t y = by * f; y < std::min(h, (by + 1) * f); ++y)
        for (int64_t x = bx * f; x < std::min(w, (bx + 1) * f); ++x) sum += band[y * w + x], ++count;
      c[by * cw + bx] = float(sum / count);
    }
  // Bilinear back to h x w with half-pixel centres (resample.hpp's convention: source coordinate
  // (i + 0.5) * in / out - 0.5, clamped), on this thread: loader workers call this, and the compute
  // pool stays free.
  struct Tap {
    int64_t lo, hi;
    float weight_hi;
  };
  auto taps = [](int64_t in, int64_t out) {
    std::vector<Tap> t(static_cast<size_t>(out));
    for (int64_t i = 0; i < out; ++i) {
      const float src = std::max(float((double(i) + 0.5) * double(in) / double(out) - 0.5), 0.0f);
      const int64_t lo = std::min<int64_t>(int64_t(src), in - 1);
      t[size_t(i)] = {lo, std::min(lo + 1, in - 1), src - float(lo)};
    }
    return t;
  };
  const std::vector<Tap> rows = taps(ch, h), cols = taps(cw, w);
  for (int64_t y = 0; y < h; ++y) {
    const float* top = c + rows[size_t(y)].lo * cw;
    const float* bottom = c + rows[size_t(y)].hi * cw;
    const float wy = rows[size_t(y)].weight_hi;
    for (int64_t x = 0; x < w; ++x) {
      const Tap& col = cols[size_t(x)];
      const float t = (1 - col.weight_hi) * top[col.lo] + col.weight_hi * top[col.hi];
      const float b = (1 - col.weight_hi) * bottom[col.lo] + col.weight_hi * bottom[col.hi];
      band[y * w + x] = (1 - wy) * t + wy * b;
    }
  }
}

inline Scene generate_scene(const SceneRequest& request) {
  LOOM_CHECK(request.size >= 8 && request.size <= 4096, "synthetic: size=", request.size, " outside [8, 4096]");
  const int64_t H = request.size, W = request.size;
  const size_t n = size_t(H * W);
  const SceneRandom random(request.seed, request.split, request.index);
  Scene scene;
  scene.land = generate_land_cover(random, H, W);
  const LandCover& land = scene.land;
  for (uint8_t c : land.cls) ++scene.class_pixels[c];

  // Material mixture of every pixel, shared by both sensors.
  const std::vector<float> fine = NoiseField(random, kFineTexture, 3, 2, 0.5f, H, W).render(H, W);
  const std::vector<float> medium = NoiseField(random, kMediumTexture, 12, 2, 0.5f, H, W).render(H, W);
  std::vector<PixelMix> mix(n);
  {
    uint32_t cached_id = ~0u;
    ParcelTraits traits{};
    for (int64_t y = 0; y < H; ++y) {
      RandomStream texture(random, kTexture, uint32_t(y));
      for (int64_t x = 0; x < W; ++x) {
        const size_t i = size_t(y * W + x);
        if (land.parcel[i] != cached_id) cached_id = land.parcel[i], traits = parcel_traits(random, cached_id);
        const float f = 2 * fine[i], m = 2 * medium[i];
        const float r0 = texture.uniform(), r1 = texture.uniform();
        PixelMix px = pixel_mix(land.cls[i], traits, land.row_phase[i], f, m, r0, r1);
        if (land.overlay[i] == kRoad) {
          px.set(kAsphalt, 0.85f, kConcrete);
          px.brightness = 1, px.backscatter_db = 0;
        } else if (land.overlay[i] == kHedge) {
          px.set(kBroadleafCanopy, 0.7f, kGrass);
          px.brightness = 1, px.backscatter_db = 0;
        }
        mix[i] = px;
      }
    }
  }

  if (request.s1) {
    // Backscatter mixed in linear power, then speckle: intensity x Gamma(ENL, 1/ENL).
    std::array<float, kNumMaterials> vv_power{}, vh_power{};
    for (size_t k = 0; k < kNumMaterials; ++k) {
      vv_power[k] = std::pow(10.0f, kMaterials[k].vv_db / 10);
      vh_power[k] = std::pow(10.0f, kMaterials[k].vh_db / 10);
    }
    const float db_per_ln = 10.0f / std::numbers::ln10_v<float>;
    scene.s1.resize(2 * n);
    if (request.truths) scene.s1_clean_db.resize(2 * n);
    for (int64_t y = 0; y < H; ++y) {
      RandomStream speckle(random, kSpeckle, uint32_t(y));
      for (int64_t x = 0; x < W; ++x) {
        const size_t i = size_t(y * W + x);
        const PixelMix& px = mix[i];
        float vv = 0, vh = 0;
        for (int k = 0; k < px.count; ++k) {
          vv += px.weight[k] * vv_power[px.material[k]];
          vh += px.weight[k] * vh_power[px.material[k]];
        }
        const float gain = px.backscatter_db == 0 ? 1.0f : std::exp(px.backscatter_db / db_per_ln);
        vv *= gain;
        vh *= gain;
        const float looks = float(kSpeckleLooks);
        const float speckled_vv = vv * speckle.gamma_unit_mean(looks);
        const float speckled_vh = vh * speckle.gamma_unit_mean(looks);
        if (request.truths) {
          scene.s1_clean_db[i] = db_per_ln * std::log(vv);
          scene.s1_clean_db[n + i] = db_per_ln * std::log(vh);
        }
        scene.s1[i] = db_per_ln * std::log(std::max(speckled_vv, 1e-6f));
        scene.s1[n + i] = db_per_ln * std::log(std::max(speckled_vh, 1e-6f));
      }
    }
  }

  RandomStream atmosphere(random, kAtmosphere);
  scene.cloudy = atmosphere.chance(request.clouds);
  scene.cloud.assign(n, 0.0f);
  if (request.s2) {
    // Surface reflectance under this scene's illumination.
    const float illumination = atmosphere.uniform(0.88f, 1.12f);
    scene.s2.resize(12 * n);
    for (size_t i = 0; i < n; ++i) {
      const PixelMix& px = mix[i];
      for (int b = 0; b < 12; ++b) {
        float r = 0;
        for (int k = 0; k < px.count; ++k) r += px.weight[k] * kMaterials[px.material[k]].s2[size_t(b)];
        scene.s2[size_t(b) * n + i] = r * px.brightness * illumination;
      }
    }
    if (scene.cloudy) {
      std::vector<float> haze;
      float sdx = 0, sdy = 0;
      scene.cloud = cloud_cover(random, atmosphere, H, W, haze, sdx, sdy);
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x) {
          const size_t i = size_t(y * W + x);
          // The shadow of the cloud that stands (sdx, sdy) away towards the sun.
          const int64_t sy = std::clamp<int64_t>(y + int64_t(std::lround(sdy)), 0, H - 1);
          const int64_t sx = std::clamp<int64_t>(x + int64_t(std::lround(sdx)), 0, W - 1);
          const float shade = 1 - 0.65f * scene.cloud[size_t(sy * W + sx)];
          const float a = scene.cloud[i], h = haze[i];
          for (int b = 0; b < 12; ++b) {
            float& r = scene.s2[size_t(b) * n + i];
            const float ground = (1 - h) * r * shade + h * kHazeSpectrum[size_t(b)];
            r = (1 - a) * ground + a * kCloudSpectrum[size_t(b)];
          }
        }
    }
    // The sensor: coarser bands, noise, integer counts.
    for (int b = 0; b < 12; ++b) coarsen_band(scene.s2.data() + size_t(b) * n, H, W, kBandCoarsening[size_t(b)]);
    for (int64_t y = 0; y < H; ++y) {
      RandomStream noise(random, kSensorNoise, uint32_t(y));
      for (int64_t x = 0; x < W; ++x)
        for (int b = 0; b < 12; b += 2) {
          // One lane gives two bands two pairs of 8-bit uniforms: each pair sums to a triangular
          // variate in (-1, 1) with sd 0.41.
          const uint32_t bits = noise.bits();
          for (int half = 0; half < 2; ++half) {
            const uint32_t pair = bits >> (16 * half);
            const float u = (float(pair & 0xffu) + float((pair >> 8) & 0xffu) + 1) * 0x1p-8f - 1;
            float& r = scene.s2[size_t(b + half) * n + size_t(y * W + x)];
            const float noisy = std::clamp(r * (1 + 0.037f * u) + 8 * u, 0.0f, 65535.0f);
            r = float(int32_t(noisy + 0.5f));  // rounded to integer counts (noisy >= 0)
          }
        }
    }
  }
  return scene;
}

// Multi-hot [19]: the classes covering at least 5% (kLabelMinFraction) of the patch's pixels,
// compared in integers (pixels * 20 >= total) so that no rounding decides a label.
inline Tensor<float> labels_from_class_pixels(const std::array<int64_t, kNumClasses>& class_pixels) {
  static_assert(kLabelMinFraction == 0.05, "the integer comparison below encodes 1/20");
  int64_t total = 0;
  for (int64_t p : class_pixels) total += p;
  Tensor<float> hot = Tensor<float>::zeros({kNumClasses});  // [19]
  for (int c = 0; c < kNumClasses; ++c)
    if (class_pixels[size_t(c)] > 0 && class_pixels[size_t(c)] * 20 >= total) hot.data()[c] = 1.0f;
  return hot;
}

}  // namespace synthetic

// ---- the dataset --------------------------------------------------------------------------------

struct SyntheticOptions {
  int64_t train = 2048, val = 256, test = 256;  // samples per split
  int64_t size = 120;                           // height = width in pixels (10 m)
  uint64_t seed = 7;
  double clouds = 0.3;                          // share of images with clouds
  std::string split = "train";                  // train | val | test
  Modalities modalities = Modalities::both;
  BadDataPolicy bad;

  // Keys come from the spec's path ("synthetic:train=64,size=96") or its query ("?size=96").
  static SyntheticOptions from_spec(const DatasetSpec& spec) {
    static const std::vector<std::string> keys = {"train", "val", "test", "size", "seed", "clouds", "split", "modalities"};
    std::map<std::string, std::string> inline_options;
    std::string_view rest = spec.path();
    while (!rest.empty()) {
      const size_t comma = rest.find(',');
      const std::string_view item = rest.substr(0, comma);
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      if (item.empty()) continue;
      const size_t eq = item.find('=');
      std::string known;
      for (const auto& k : keys) known += (known.empty() ? "" : ", ") + k;
      LOOM_CHECK(eq != std::string_view::npos && eq > 0, "synthetic: spec \"", spec.text(), "\": \"", item,
                 "\" is not key=value (keys: ", known, ")");
      const std::string key(item.substr(0, eq));
      LOOM_CHECK(std::find(keys.begin(), keys.end(), key) != keys.end(), "synthetic: spec \"", spec.text(),
                 "\": unknown option ", key, " (known: ", known, ")");
      LOOM_CHECK(!inline_options.count(key), "synthetic: spec \"", spec.text(), "\": option ", key, " given twice");
      inline_options[key] = std::string(item.substr(eq + 1));
    }
    auto value = [&](const std::string& key) -> std::string {
      const bool in_query = spec.has(key);
      const auto it = inline_options.find(key);
      LOOM_CHECK(!(in_query && it != inline_options.end()), "synthetic: spec \"", spec.text(), "\": option ", key,
                 " given twice");
      return it != inline_options.end() ? it->second : spec.get(key);
    };
    auto integer = [&](const std::string& key, int64_t fallback) {
      const std::string v = value(key);
      if (v.empty()) return fallback;
      int64_t out = 0;
      const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
      LOOM_CHECK(ec == std::errc() && end == v.data() + v.size(), "synthetic: spec \"", spec.text(), "\": ", key,
                 "=", v, " is not an integer");
      return out;
    };
    SyntheticOptions o;
    o.train = integer("train", o.train);
    o.val = integer("val", o.val);
    o.test = integer("test", o.test);
    o.size = integer("size", o.size);
    o.seed = uint64_t(integer("seed", int64_t(o.seed)));
    if (const std::string v = value("clouds"); !v.empty()) {
      double c = 0;
      const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), c);
      LOOM_CHECK(ec == std::errc() && end == v.data() + v.size(), "synthetic: spec \"", spec.text(), "\": clouds=", v,
                 " is not a number");
      o.clouds = c;
    }
    if (const std::string v = value("split"); !v.empty()) o.split = v;
    if (const std::string v = value("modalities"); !v.empty()) o.modalities = parse_modalities(v);
    o.bad = spec.bad_data_policy();
    return o;
  }
};

class SyntheticEarth : public Dataset {
 public:
  explicit SyntheticEarth(SyntheticOptions options = {}) : Dataset(options.bad), opt_(std::move(options)) {
    LOOM_CHECK(opt_.train >= 0 && opt_.val >= 0 && opt_.test >= 0, "synthetic: split sizes train=", opt_.train,
               " val=", opt_.val, " test=", opt_.test, " must not be negative");
    LOOM_CHECK(std::max({opt_.train, opt_.val, opt_.test}) <= (int64_t(1) << 32), "synthetic: at most 2^32 samples per split");
    LOOM_CHECK(opt_.size >= 8 && opt_.size <= 4096, "synthetic: size=", opt_.size, " outside [8, 4096]");
    LOOM_CHECK(opt_.clouds >= 0 && opt_.clouds <= 1, "synthetic: clouds=", opt_.clouds, " outside [0, 1]");
    if (opt_.split == "train") split_id_ = 0, count_ = opt_.train;
    else if (opt_.split == "val") split_id_ = 1, count_ = opt_.val;
    else if (opt_.split == "test") split_id_ = 2, count_ = opt_.test;
    else loom::detail::fail("synthetic: split=", opt_.split, " (expected train, val or test)");
  }

  int64_t size() const override { return count_; }
  std::string name(int64_t i) const override {
    check_index(i);
    char buf[48];
    std::snprintf(buf, sizeof buf, "synthetic_%s_%06lld", opt_.split.c_str(), static_cast<long long>(i));
    return buf;
  }
  std::vector<std::string> class_names() const override {
    return {kBigEarthNet19Classes.begin(), kBigEarthNet19Classes.end()};
  }
  const SyntheticOptions& options() const { return opt_; }

  // Sample i with the truths behind it (land cover, clouds, speckle-free backscatter).
  synthetic::Scene scene(int64_t i) const { return make_scene(i, true); }

 protected:
  Sample load(int64_t i) const override {
    synthetic::Scene sc = make_scene(i, false);
    const int64_t s = opt_.size;
    Sample out;
    out.s1_name = out.s2_name = name(i);
    if (!sc.s1.empty()) out.s1 = Tensor<float>::from_vector({2, s, s}, sc.s1);    // [2, H, W] dB
    if (!sc.s2.empty()) out.s2 = Tensor<float>::from_vector({12, s, s}, sc.s2);  // [12, H, W]
    if (!out.has_s1()) out.s1_name.clear();
    if (!out.has_s2()) out.s2_name.clear();
    out.labels = synthetic::labels_from_class_pixels(sc.class_pixels);  // [19]
    return out;
  }

 private:
  synthetic::Scene make_scene(int64_t i, bool truths) const {
    check_index(i);
    synthetic::SceneRequest r;
    r.seed = opt_.seed;
    r.split = split_id_;
    r.index = uint32_t(i);
    r.size = opt_.size;
    r.clouds = opt_.clouds;
    r.s1 = opt_.modalities != Modalities::s2;
    r.s2 = opt_.modalities != Modalities::s1;
    r.truths = truths;
    return synthetic::generate_scene(r);
  }
  void check_index(int64_t i) const {
    LOOM_CHECK(i >= 0 && i < count_, "synthetic: index ", i, " out of range for the ", opt_.split, " split of ",
               count_, " samples");
  }
  SyntheticOptions opt_;
  uint32_t split_id_ = 0;
  int64_t count_ = 0;
};

inline std::unique_ptr<Dataset> open_synthetic(const DatasetSpec& spec) {
  SyntheticOptions options = SyntheticOptions::from_spec(spec);
  spec.finish();
  return std::make_unique<SyntheticEarth>(std::move(options));
}

namespace detail {
inline const bool synthetic_scheme_registered = register_dataset_scheme(
    {"synthetic",
     "synthetic[:train=2048,val=256,test=256,size=120,seed=7,clouds=0.3,split=train|val|test,"
     "modalities=s1s2|s1|s2][?on_bad=error|skip]",
     &open_synthetic});
}  // namespace detail

}  // namespace loom::data
