#pragma once
// One training example of a Sentinel-1 + Sentinel-2 dataset, the band and class vocabularies of
// BigEarthNet (DESIGN §4), its published normalization statistics, and per-band statistics over a
// dataset.
//
//   Sample::s1      [2, H, W]  VV, VH backscatter in dB                    (undefined if absent)
//   Sample::s2      [C, H, W]  bands named by s2_bands, reflectance x 1e4  (undefined if absent)
//   Sample::labels  [K]        multi-hot; K = 19 for BigEarthNet, 10 for SEN12MS
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ostream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "loom/core/error.hpp"
#include "loom/core/parallel.hpp"
#include "loom/core/tensor.hpp"

namespace loom::data {

// ---- bands -------------------------------------------------------------------------------------

inline constexpr std::array<const char*, 2> kS1Bands = {"VV", "VH"};

// The 12 Sentinel-2 L2A bands of BigEarthNet (no B10), in loom's channel order.
inline constexpr std::array<const char*, 12> kS2Bands = {"B01", "B02", "B03", "B04", "B05", "B06",
                                                         "B07", "B08", "B8A", "B09", "B11", "B12"};
// Ground sampling distance in metres of each band of kS2Bands.
inline constexpr std::array<int, 12> kS2BandResolution = {60, 10, 10, 10, 20, 20, 20, 10, 20, 60, 20, 20};

inline std::vector<std::string> s2_band_names() { return {kS2Bands.begin(), kS2Bands.end()}; }
inline std::vector<std::string> s1_band_names() { return {kS1Bands.begin(), kS1Bands.end()}; }

// ---- BigEarthNet classes -----------------------------------------------------------------------

inline constexpr std::array<const char*, 19> kBigEarthNet19Classes = {
    "Urban fabric",
    "Industrial or commercial units",
    "Arable land",
    "Permanent crops",
    "Pastures",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland and sparsely vegetated areas",
    "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland, shrub",
    "Beaches, dunes, sands",
    "Inland wetlands",
    "Coastal wetlands",
    "Inland waters",
    "Marine waters",
};

// The original 43 CORINE Land Cover level-3 labels of BigEarthNet v1, in CLC code order.
inline constexpr std::array<const char*, 43> kBigEarthNet43Classes = {
    "Continuous urban fabric",
    "Discontinuous urban fabric",
    "Industrial or commercial units",
    "Road and rail networks and associated land",
    "Port areas",
    "Airports",
    "Mineral extraction sites",
    "Dump sites",
    "Construction sites",
    "Green urban areas",
    "Sport and leisure facilities",
    "Non-irrigated arable land",
    "Permanently irrigated land",
    "Rice fields",
    "Vineyards",
    "Fruit trees and berry plantations",
    "Olive groves",
    "Pastures",
    "Annual crops associated with permanent crops",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland",
    "Moors and heathland",
    "Sclerophyllous vegetation",
    "Transitional woodland/shrub",
    "Beaches, dunes, sands",
    "Bare rock",
    "Sparsely vegetated areas",
    "Burnt areas",
    "Inland marshes",
    "Peatbogs",
    "Salt marshes",
    "Salines",
    "Intertidal flats",
    "Water courses",
    "Water bodies",
    "Coastal lagoons",
    "Estuaries",
    "Sea and ocean",
};

// 19-class index of each of the 43 labels; -1 = not part of the 19-class nomenclature.
inline constexpr std::array<int, 43> kBigEarthNet43To19 = {
    0,  0,  1,  -1, -1, -1, -1, -1, -1, -1, -1,  // urban, industrial, artificial non-agricultural
    2,  2,  2,  3,  3,  3,  4,  3,  5,  6,  7,   // agricultural areas
    8,  9,  10, 11, 12, 12, 13, 14, -1, 11, -1,  // forests and semi-natural areas
    15, 15, 16, 16, -1, 17, 17, 18, 18, 18,      // wetlands and water bodies
};

// CORINE Land Cover code of each of the 43 labels: the values of reBEN's reference maps.
// (CLC 335 "Glaciers and perpetual snow" is not among BigEarthNet's labels.)
inline constexpr std::array<int, 43> kBigEarthNet43ClcCodes = {
    111, 112, 121, 122, 123, 124, 131, 132, 133, 141, 142, 211, 212, 213, 221,
    222, 223, 231, 241, 242, 243, 244, 311, 312, 313, 321, 322, 323, 324, 331,
    332, 333, 334, 411, 412, 421, 422, 423, 511, 512, 521, 522, 523,
};

inline constexpr int kBigEarthNetNumClasses = 19;

// How a label name maps to the 19 classes: known (a 43-class or a 19-class name) and its index,
// -1 when the label is dropped from the 19-class nomenclature.
struct LabelLookup {
  bool known = false;
  int index19 = -1;
};

inline LabelLookup bigearthnet19_lookup(std::string_view name) {
  for (size_t i = 0; i < kBigEarthNet43Classes.size(); ++i)
    if (name == kBigEarthNet43Classes[i]) return {true, kBigEarthNet43To19[i]};
  for (size_t i = 0; i < kBigEarthNet19Classes.size(); ++i)
    if (name == kBigEarthNet19Classes[i]) return {true, int(i)};
  return {};
}

// 19-class index of a CLC code; nullopt for codes that are not BigEarthNet labels (e.g. 0 = no
// data, 335 = glaciers, 999 = unclassified), -1 for labels outside the 19-class nomenclature.
inline std::optional<int> bigearthnet19_index_of_clc(int code) {
  for (size_t i = 0; i < kBigEarthNet43ClcCodes.size(); ++i)
    if (kBigEarthNet43ClcCodes[i] == code) return kBigEarthNet43To19[i];
  return std::nullopt;
}

// Multi-hot [19] from label names (43- or 19-class); an unknown name is an error naming it.
inline Tensor<float> bigearthnet19_multi_hot(const std::vector<std::string>& names, const std::string& where) {
  Tensor<float> hot = Tensor<float>::zeros({kBigEarthNetNumClasses});  // [19]
  for (const auto& name : names) {
    const LabelLookup l = bigearthnet19_lookup(name);
    LOOM_CHECK(l.known, "BigEarthNet: ", where, ": unknown label \"", name, "\"");
    if (l.index19 >= 0) hot.data()[l.index19] = 1.0f;
  }
  return hot;
}

// ---- the sample --------------------------------------------------------------------------------

struct Sample {
  Tensor<float> s1;      // [2, H, W] VV, VH in dB, or undefined when the sample has no SAR
  Tensor<float> s2;      // [C, H, W] Sentinel-2 bands named by s2_bands, or undefined
  Tensor<float> labels;  // [K] multi-hot
  std::vector<std::string> s2_bands = s2_band_names();  // names of s2's channels
  std::string s1_name;   // patch names in the dataset's own naming ("" when absent)
  std::string s2_name;

  bool has_s1() const { return s1.defined(); }
  bool has_s2() const { return s2.defined(); }
  // The patch name used in messages: the S2 name, else the S1 name.
  const std::string& name() const { return s2_name.empty() ? s1_name : s2_name; }
};

// ---- normalization -----------------------------------------------------------------------------

// Per-band mean and standard deviation, looked up by band name.
struct BandStatistics {
  std::vector<std::string> bands;
  std::vector<double> mean;
  std::vector<double> stddev;

  std::optional<size_t> find(std::string_view band) const {
    for (size_t i = 0; i < bands.size(); ++i)
      if (bands[i] == band) return i;
    return std::nullopt;
  }
};

// BigEarthNet's published statistics (from its authors): S1 in dB, S2 in reflectance x 10000.
inline BandStatistics bigearthnet_statistics() {
  return {{"VV", "VH", "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"},
          {-12.620, -19.290, 340.77, 429.94, 614.22, 590.24, 950.68, 1792.46, 2075.47, 2218.95, 2266.46, 2246.06,
           1594.43, 1009.33},
          {5.116, 5.464, 554.81, 572.42, 582.88, 675.89, 729.90, 1096.01, 1273.45, 1365.46, 1356.14, 1302.33,
           1079.19, 818.87}};
}

namespace detail {

// (x[c] - mean[band c]) / std[band c] into a new [C, H, W] tensor.
inline Tensor<float> normalize_bands(const Tensor<float>& x, const std::vector<std::string>& names,
                                     const BandStatistics& stats, const std::string& sample) {
  LOOM_CHECK(x.dim() == 3 && x.size(0) == int64_t(names.size()), "normalize: sample ", sample, ": tensor of shape ",
             x.shape(), " does not match its ", names.size(), " band names");
  const Tensor<float> src = x.contiguous();  // [C, H, W]
  Tensor<float> out = Tensor<float>::empty(src.shape());
  const int64_t plane = src.size(1) * src.size(2);
  for (int64_t c = 0; c < src.size(0); ++c) {
    const auto k = stats.find(names[size_t(c)]);
    LOOM_CHECK(k.has_value(), "normalize: sample ", sample, ": no statistics for band ", names[size_t(c)]);
    LOOM_CHECK(stats.stddev[*k] > 0, "normalize: band ", names[size_t(c)], " has standard deviation ", stats.stddev[*k]);
    const float mean = float(stats.mean[*k]), inv_std = float(1.0 / stats.stddev[*k]);
    const float* in = src.data() + c * plane;
    float* o = out.data() + c * plane;
    for (int64_t i = 0; i < plane; ++i) o[i] = (in[i] - mean) * inv_std;
  }
  return out;
}

}  // namespace detail

// A copy of the sample with every present band standardized by the statistics of its name.
inline Sample normalize(const Sample& sample, const BandStatistics& stats = bigearthnet_statistics()) {
  Sample out = sample;
  if (sample.has_s1()) out.s1 = detail::normalize_bands(sample.s1, s1_band_names(), stats, sample.name());
  if (sample.has_s2()) out.s2 = detail::normalize_bands(sample.s2, sample.s2_bands, stats, sample.name());
  return out;
}

// Per-band mean and (population) standard deviation over every pixel of the first `max_samples`
// samples (all when negative) of any dataset with size() and get(i) -> Sample. Sums are kept per
// sample in double and merged with Chan's formula, so large datasets lose no precision. Every
// sample must name its S2 bands identically.
template <class DatasetLike>
BandStatistics compute_band_statistics(const DatasetLike& dataset, int64_t max_samples = -1) {
  const int64_t n = max_samples < 0 ? int64_t(dataset.size()) : std::min<int64_t>(max_samples, int64_t(dataset.size()));
  struct Acc {
    double count = 0, mean = 0, m2 = 0;
    void merge(double c, double m, double s2) {  // s2: sum of squared deviations from m
      if (c == 0) return;
      const double total = count + c, delta = m - mean;
      mean += delta * c / total;
      m2 += s2 + delta * delta * count * c / total;
      count = total;
    }
  };
  std::vector<std::string> names;
  std::vector<Acc> acc;
  auto add_bands = [&](const Tensor<float>& x, const std::vector<std::string>& band_names) {
    const Tensor<float> t = x.contiguous();  // [C, H, W]
    const int64_t plane = t.size(1) * t.size(2);
    for (int64_t c = 0; c < t.size(0); ++c) {
      size_t k = 0;
      while (k < names.size() && names[k] != band_names[size_t(c)]) ++k;
      if (k == names.size()) {
        names.push_back(band_names[size_t(c)]);
        acc.emplace_back();
      }
      const float* p = t.data() + c * plane;
      double sum = 0;
      for (int64_t i = 0; i < plane; ++i) sum += p[i];
      const double m = plane ? sum / double(plane) : 0.0;
      double ss = 0;
      for (int64_t i = 0; i < plane; ++i) ss += (p[i] - m) * (p[i] - m);
      acc[k].merge(double(plane), m, ss);
    }
  };
  for (int64_t i = 0; i < n; ++i) {
    const Sample s = dataset.get(i);
    if (s.has_s1()) add_bands(s.s1, s1_band_names());
    if (s.has_s2()) add_bands(s.s2, s.s2_bands);
  }
  BandStatistics stats;
  stats.bands = names;
  for (const Acc& a : acc) {
    stats.mean.push_back(a.mean);
    stats.stddev.push_back(a.count > 0 ? std::sqrt(a.m2 / a.count) : 0.0);
  }
  return stats;
}

// Prints statistics as a table, one band per line: "<group> <band> <mean> <std>" with group
// S1 for the SAR bands (VV, VH) and S2 for the rest (for image folders: their channels), columns
// aligned, full double precision so the numbers can be pasted into a BandStatistics.
inline void print_band_statistics(std::ostream& out, const BandStatistics& stats) {
  char line[160];
  std::snprintf(line, sizeof line, "%-6s %-10s %-24s %s\n", "group", "band", "mean", "std");
  out << line;
  for (const bool sar : {true, false})
    for (size_t b = 0; b < stats.bands.size(); ++b) {
      const bool is_sar = stats.bands[b] == kS1Bands[0] || stats.bands[b] == kS1Bands[1];
      if (is_sar != sar) continue;
      std::snprintf(line, sizeof line, "%-6s %-10s %-24.17g %.17g\n", sar ? "S1" : "S2", stats.bands[b].c_str(),
                    stats.mean[b], stats.stddev[b]);
      out << line;
    }
}

}  // namespace loom::data
