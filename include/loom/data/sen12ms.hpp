#pragma once
// SEN12MS reader (Schmitt et al. 2019): Sentinel-1 / Sentinel-2 / MODIS land-cover triplets. Spec:
//
//   sen12ms:<dir>[?split=<list>&modalities=s1s2|s1|s2&s2_bands=10|12|13&threshold=0.1&clip=1&
//                 scale=0&size=256&strict_sizes=1&complete=0&validate=0&on_bad=error|skip]
//
// Layout: <dir>/ROIs<id>_<season>/{s1,s2,lc}_<scene>/ROIs<id>_<season>_{s1,s2,lc}_<scene>_p<n>.tif,
// 256 x 256 px; s1 = 2 bands (VV, VH) float32 dB, s2 = 13 bands uint16 (B01 ... B8A, B09, B10, B11,
// B12), lc = 4 bands (IGBP, LCCS_LC, LCCS_LU, LCCS_SH; uint8 in the real data, uint16 in torchgeo's
// fixture).
//
// Following the reference code (schmitt-muc/SEN12MS, classification/dataset.py):
// - s2_bands=10 (default): B02 B03 B04 B08 B05 B06 B07 B8A B11 B12, in that order (its HR + MR
//   bands); 13 = all bands in file order; 12 = BigEarthNet's 12 bands in kS2Bands order (no B10),
//   for models shared with BigEarthNet.
// - clip=1: S1 NaN -> 0 then clipped to [-25, 0] dB; S2 clipped to [0, 10000]. scale=1 additionally
//   maps them as the reference does without its normalization transform: S1 / 25 + 1, S2 / 10000.
//   With clip=0 values are kept as read and non-finite values are bad data.
// - Labels: the IGBP band (lc band 1) simplified to 10 classes (kSen12msClasses); a class is present
//   when its pixels make up at least `threshold` (0.1) of the patch.
// - split: a text file of patch file names (one per line; any of the s1/s2/lc names, with or without
//   .tif); without it every patch is used, ordered by season, scene and patch number.
// - A patch whose s1 or s2 file is missing becomes a single-modality sample (complete=1 makes it bad
//   data instead); a patch without an lc file has no labels and is bad data.
#include <algorithm>
#include <array>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "loom/data/dataset.hpp"
#include "loom/data/geotiff.hpp"
#include "loom/data/resample.hpp"
#include "loom/data/sample.hpp"

namespace loom::data {

// The simplified IGBP scheme of the SEN12MS reference code.
inline constexpr std::array<const char*, 10> kSen12msClasses = {
    "Forest", "Shrubland", "Savanna", "Grassland", "Wetlands", "Croplands", "Urban/Built-up", "Snow/Ice", "Barren",
    "Water"};

// Simplified class of each IGBP code 0..17 (-1: not a land-cover class).
inline constexpr std::array<int, 18> kIgbpToSen12ms = {-1, 0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 4, 5, 6, 5, 7, 8, 9};

// The 13 bands of a SEN12MS s2 file, in file order.
inline constexpr std::array<const char*, 13> kSen12msS2FileBands = {"B01", "B02", "B03", "B04", "B05", "B06", "B07",
                                                                    "B08", "B8A", "B09", "B10", "B11", "B12"};
// The reference code's 10 bands (S2_BANDS_HR + S2_BANDS_MR).
inline constexpr std::array<const char*, 10> kSen12msReferenceBands = {"B02", "B03", "B04", "B08", "B05",
                                                                       "B06", "B07", "B8A", "B11", "B12"};

struct Sen12msOptions {
  std::string root;
  std::string split;        // file of patch names; empty = every patch
  Modalities modalities = Modalities::both;
  int s2_band_set = 10;     // 10 | 12 | 13
  double threshold = 0.1;   // label presence: share of the patch's pixels
  bool clip = true;
  bool scale = false;
  int64_t size = 256;
  bool strict_sizes = true;
  bool complete = false;    // a missing s1/s2 file is bad data
  bool validate = false;
  BadDataPolicy bad;

  static Sen12msOptions from_spec(const DatasetSpec& spec) {
    Sen12msOptions o;
    o.root = spec.path();
    o.split = spec.get("split");
    o.modalities = parse_modalities(spec.get("modalities", "s1s2"));
    o.s2_band_set = int(spec.get_int("s2_bands", 10));
    o.threshold = spec.get_double("threshold", 0.1);
    o.clip = spec.get_bool("clip", true);
    o.scale = spec.get_bool("scale", false);
    o.size = spec.get_int("size", 256);
    o.strict_sizes = spec.get_bool("strict_sizes", true);
    o.complete = spec.get_bool("complete", false);
    o.validate = spec.get_bool("validate", false);
    o.bad = spec.bad_data_policy();
    return o;
  }
};

namespace detail {

// "ROIs1158_spring_s1_1_p30[.tif]" -> ("ROIs1158_spring", "s1", 1, 30); false if not of that form.
struct Sen12msFileName {
  std::string season;  // ROIs1158_spring
  std::string modality;
  int64_t scene = 0, patch = 0;
  std::string id() const { return season + "_" + std::to_string(scene) + "_p" + std::to_string(patch); }
};

inline bool parse_sen12ms_name(std::string_view name, Sen12msFileName& out) {
  if (name.size() > 4 && name.substr(name.size() - 4) == ".tif") name.remove_suffix(4);
  const size_t p = name.rfind("_p");
  if (p == std::string_view::npos) return false;
  const size_t scene_sep = name.rfind('_', p - 1);
  if (scene_sep == std::string_view::npos || scene_sep < 3) return false;
  const size_t mod_sep = name.rfind('_', scene_sep - 1);
  if (mod_sep == std::string_view::npos) return false;
  auto number = [](std::string_view s, int64_t& v) {
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc() && end == s.data() + s.size() && !s.empty();
  };
  out.season = std::string(name.substr(0, mod_sep));
  out.modality = std::string(name.substr(mod_sep + 1, scene_sep - mod_sep - 1));
  return out.season.rfind("ROIs", 0) == 0 && number(name.substr(scene_sep + 1, p - scene_sep - 1), out.scene) &&
         number(name.substr(p + 2), out.patch) &&
         (out.modality == "s1" || out.modality == "s2" || out.modality == "lc");
}

}  // namespace detail

class Sen12ms : public Dataset {
 public:
  explicit Sen12ms(Sen12msOptions options) : Dataset(options.bad), opt_(std::move(options)) {
    LOOM_CHECK(opt_.s2_band_set == 10 || opt_.s2_band_set == 12 || opt_.s2_band_set == 13, "SEN12MS: s2_bands=",
               opt_.s2_band_set, " (expected 10, 12 or 13)");
    LOOM_CHECK(opt_.threshold > 0 && opt_.threshold <= 1, "SEN12MS: threshold=", opt_.threshold, " outside (0, 1]");
    LOOM_CHECK(opt_.size > 0, "SEN12MS: size=", opt_.size, " must be positive");
    if (opt_.s2_band_set == 10) s2_bands_.assign(kSen12msReferenceBands.begin(), kSen12msReferenceBands.end());
    else if (opt_.s2_band_set == 12) s2_bands_ = s2_band_names();
    else s2_bands_.assign(kSen12msS2FileBands.begin(), kSen12msS2FileBands.end());
    for (const auto& band : s2_bands_)
      s2_file_index_.push_back(
          int(std::find(kSen12msS2FileBands.begin(), kSen12msS2FileBands.end(), band) - kSen12msS2FileBands.begin()));
    build_index();
    if (opt_.validate) keep_loadable(entries_);
  }

  int64_t size() const override { return int64_t(entries_.size()); }
  // The patch id, "ROIs1158_spring_1_p30".
  std::string name(int64_t i) const override { return entry(i).id; }
  std::vector<std::string> class_names() const override { return {kSen12msClasses.begin(), kSen12msClasses.end()}; }
  const std::vector<std::string>& s2_bands() const { return s2_bands_; }
  const Sen12msOptions& options() const { return opt_; }

 protected:
  Sample load(int64_t i) const override {
    const Entry& e = entry(i);
    if (opt_.complete) {
      LOOM_CHECK(!want(Modality::s1) || !e.s1.empty(), "SEN12MS: ", e.id, ": missing s1 file");
      LOOM_CHECK(!want(Modality::s2) || !e.s2.empty(), "SEN12MS: ", e.id, ": missing s2 file");
    }
    Sample s;
    s.s2_bands = s2_bands_;
    if (!e.s1.empty()) {
      s.s1_name = e.s1.stem().string();
      s.s1 = read_s1(e.s1);
    }
    if (!e.s2.empty()) {
      s.s2_name = e.s2.stem().string();
      s.s2 = read_s2(e.s2);
    }
    s.labels = read_labels(e.lc, e.id);
    return s;
  }

 private:
  enum class Modality { s1, s2 };
  struct Entry {
    std::string id;
    std::filesystem::path s1, s2, lc;  // empty when absent or not asked for
  };

  bool want(Modality m) const {
    return opt_.modalities == Modalities::both || (m == Modality::s1) == (opt_.modalities == Modalities::s1);
  }
  const Entry& entry(int64_t i) const {
    LOOM_CHECK(i >= 0 && i < size(), "SEN12MS: index ", i, " out of range for ", size(), " samples");
    return entries_[size_t(i)];
  }

  void build_index() {
    namespace fs = std::filesystem;
    std::error_code ec;
    LOOM_CHECK(fs::is_directory(opt_.root, ec), "SEN12MS: ", opt_.root, ": not a directory");
    // (season, scene, patch) -> files, so that the order is season, then numeric scene and patch.
    std::map<std::tuple<std::string, int64_t, int64_t>, Entry> found;
    for (const auto& season : fs::directory_iterator(opt_.root, ec)) {
      if (!season.is_directory(ec) || season.path().filename().string().rfind("ROIs", 0) != 0) continue;
      for (const auto& folder : fs::directory_iterator(season.path(), ec)) {
        if (!folder.is_directory(ec)) continue;
        for (const auto& file : fs::directory_iterator(folder.path(), ec)) {
          detail::Sen12msFileName n;
          if (!file.is_regular_file(ec) || file.path().extension() != ".tif" ||
              !detail::parse_sen12ms_name(file.path().filename().string(), n))
            continue;
          Entry& e = found[{n.season, n.scene, n.patch}];
          e.id = n.id();
          (n.modality == "s1" ? e.s1 : n.modality == "s2" ? e.s2 : e.lc) = file.path();
        }
      }
    }
    LOOM_CHECK(!found.empty(), "SEN12MS: ", opt_.root,
               ": no ROIs*/{s1,s2,lc}_<scene>/ROIs*_{s1,s2,lc}_<scene>_p<n>.tif files");

    std::vector<std::string> wanted;  // patch ids of the split, in its order
    if (!opt_.split.empty()) {
      std::set<std::string> seen;
      for (const auto& line : detail::text_lines(detail::read_text_file(opt_.split, "SEN12MS: split"))) {
        detail::Sen12msFileName n;
        LOOM_CHECK(detail::parse_sen12ms_name(line, n), "SEN12MS: split ", opt_.split, ": \"", line,
                   "\" is not a SEN12MS patch file name");
        if (seen.insert(n.id()).second) wanted.push_back(n.id());
      }
    }
    std::map<std::string, Entry> by_id;
    for (auto& [key, e] : found) {
      // A patch with imagery of the other modality only is simply not part of this dataset.
      const bool has_imagery = !e.s1.empty() || !e.s2.empty();
      if (!want(Modality::s1)) e.s1.clear();
      if (!want(Modality::s2)) e.s2.clear();
      if (has_imagery && e.s1.empty() && e.s2.empty()) continue;
      if (opt_.split.empty()) add(e);
      else by_id[e.id] = e;
    }
    for (const auto& id : wanted) {
      const auto it = by_id.find(id);
      if (it == by_id.end()) reject("SEN12MS: split patch " + id + " has no files under " + opt_.root);
      else add(it->second);
    }
  }

  void add(const Entry& e) {
    if (e.s1.empty() && e.s2.empty()) return reject("SEN12MS: " + e.id + ": no s1 or s2 file");
    if (e.lc.empty()) return reject("SEN12MS: " + e.id + ": no lc file, so no labels");
    entries_.push_back(e);
  }

  // Reads a file with the given band count and brings it to size x size.
  Tensor<float> read_checked(const std::filesystem::path& file, int64_t bands) const {
    std::error_code ec;
    LOOM_CHECK(std::filesystem::exists(file, ec), "SEN12MS: missing file ", file.string());
    GeoTiffImage image = read_geotiff(file.string());
    LOOM_CHECK(image.bands == bands, "SEN12MS: ", file.string(), ": ", image.bands, " bands, expected ", bands);
    LOOM_CHECK(!opt_.strict_sizes || (image.width == opt_.size && image.height == opt_.size), "SEN12MS: ",
               file.string(), ": wrong size ", image.width, "x", image.height, ", expected ", opt_.size, "x",
               opt_.size, " (set size=, or strict_sizes=0 to resample)");
    if (!opt_.clip) require_finite(image.data, "SEN12MS: " + file.string());
    if (image.width != opt_.size || image.height != opt_.size)
      image.data = resize_bilinear(image.data, opt_.size, opt_.size);
    return image.data;  // [bands, size, size]
  }

  Tensor<float> read_s1(const std::filesystem::path& file) const {
    Tensor<float> s1 = read_checked(file, 2);  // [2, S, S] VV, VH dB
    if (opt_.clip) {
      float* p = s1.data();
      for (int64_t i = 0; i < s1.numel(); ++i) {
        const float v = std::isnan(p[i]) ? 0.0f : p[i];
        p[i] = std::clamp(v, -25.0f, 0.0f);
        if (opt_.scale) p[i] = p[i] / 25.0f + 1.0f;
      }
    }
    return s1;
  }

  Tensor<float> read_s2(const std::filesystem::path& file) const {
    const Tensor<float> all = read_checked(file, int64_t(kSen12msS2FileBands.size()));  // [13, S, S]
    const int64_t plane = opt_.size * opt_.size;
    Tensor<float> s2 = Tensor<float>::empty({int64_t(s2_bands_.size()), opt_.size, opt_.size});  // [C, S, S]
    for (size_t b = 0; b < s2_file_index_.size(); ++b) {
      const float* src = all.data() + int64_t(s2_file_index_[b]) * plane;
      float* dst = s2.data() + int64_t(b) * plane;
      for (int64_t i = 0; i < plane; ++i) {
        float v = src[i];
        if (opt_.clip) {
          v = std::clamp(std::isnan(v) ? 0.0f : v, 0.0f, 10000.0f);
          if (opt_.scale) v /= 10000.0f;
        }
        dst[i] = v;
      }
    }
    return s2;
  }

  Tensor<float> read_labels(const std::filesystem::path& file, const std::string& id) const {
    std::error_code ec;
    LOOM_CHECK(std::filesystem::exists(file, ec), "SEN12MS: ", id, ": missing lc file ", file.string());
    const Tensor<int32_t> lc = read_geotiff_as<int32_t>(file.string());  // [4, H, W]
    LOOM_CHECK(lc.size(0) == 4, "SEN12MS: ", file.string(), ": ", lc.size(0), " bands, expected 4");
    const int64_t pixels = lc.size(1) * lc.size(2);
    std::array<int64_t, kSen12msClasses.size()> counts{};
    const int32_t* igbp = lc.data();  // band 1
    for (int64_t i = 0; i < pixels; ++i)
      if (igbp[i] >= 0 && igbp[i] < int32_t(kIgbpToSen12ms.size()) && kIgbpToSen12ms[size_t(igbp[i])] >= 0)
        ++counts[size_t(kIgbpToSen12ms[size_t(igbp[i])])];
    Tensor<float> hot = Tensor<float>::zeros({int64_t(kSen12msClasses.size())});  // [10]
    for (size_t c = 0; c < counts.size(); ++c)
      if (double(counts[c]) >= opt_.threshold * double(pixels)) hot.data()[c] = 1.0f;
    return hot;
  }

  Sen12msOptions opt_;
  std::vector<Entry> entries_;
  std::vector<std::string> s2_bands_;
  std::vector<int> s2_file_index_;  // band index in the s2 file of each output band
};

inline std::unique_ptr<Dataset> open_sen12ms(const DatasetSpec& spec) {
  Sen12msOptions options = Sen12msOptions::from_spec(spec);
  spec.finish();
  return std::make_unique<Sen12ms>(std::move(options));
}

namespace detail {
inline const bool sen12ms_scheme_registered = register_dataset_scheme(
    {"sen12ms",
     "sen12ms:<dir>[?split=<list>&modalities=s1s2|s1|s2&s2_bands=10|12|13&threshold=0.1&clip=1&scale=0"
     "&size=256&strict_sizes=1&complete=0&validate=0&on_bad=error|skip]",
     &open_sen12ms});
}  // namespace detail

}  // namespace loom::data
