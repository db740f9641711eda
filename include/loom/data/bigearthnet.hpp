#pragma once
// BigEarthNet-MM v1.0 (S1 + S2) and reBEN (BigEarthNet v2) reader. Spec:
//
//   bigearthnet:<dir>[?split=<csv>&exclude=<file>,<file>&modalities=s1s2|s1|s2&labels=auto|json|
//                     reference_map|<csv>&size=120&strict_sizes=1&min_label_fraction=0&
//                     validate=0&on_bad=error|skip]
//
// <dir> holds BigEarthNet-v1.0/ (S2 patch folders) and/or BigEarthNet-S1-v1.0/ (S1 patch folders);
// reBEN's BigEarthNet-S2/, BigEarthNet-S1/ and Reference_Maps/ (patch folders grouped in tile
// folders) are found as well. A patch folder holds one GeoTIFF per band, <patch>_<band>.tif.
//
// - Pairing: with a split CSV, each row names the pair ("s2_name,s1_name"; an S2-only row is paired
//   through the S1 metadata); without one, every patch is used and S1 patches pair with the S2 patch
//   their metadata JSON names in `corresponding_s2_patch`. A patch whose partner is missing (or not
//   asked for by `modalities`) becomes a single-modality sample.
// - exclude: files listing patch names (S1 or S2, one per line or in CSV cells), e.g. the official
//   seasonal-snow and cloud/shadow lists; a sample is left out when either of its names is listed.
// - Labels: the 43-class CORINE names of <patch>_labels_metadata.json mapped to the 19 classes
//   (S2's JSON, else S1's); for reBEN, a CSV export of its metadata (columns patch_id, labels and
//   optionally s1_name, split), or the reference map <patch>_reference_map.tif whose CLC codes
//   are mapped to the 19 classes (a class is present when it covers more than min_label_fraction
//   of the pixels; 0 = any pixel).
// - Bands: S2's 12 bands in kS2Bands order, uint16 reflectance x 10000 as float; 20 m and 60 m
//   bands are resized bilinearly (resample.hpp) to size x size (120 for real patches). S1: VV, VH
//   in dB. With strict_sizes=1 every band must have its native size (size x size at 10 m, size/2 at
//   20 m, size/6 at 60 m); with 0 any band size is resampled to size x size.
// - Quirks of the real data handled here: S2 names with 5-digit times (…T93020_…), S1 JSON spelling
//   `lly` for `lry` (coordinates are not used), JSON files without a trailing newline, S1 JSON keys
//   `acquisition_time`/`scene_source` vs S2's `acquisition_date`/`tile_source` (not used).
#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "loom/data/dataset.hpp"
#include "loom/data/geotiff.hpp"
#include "loom/data/resample.hpp"
#include "loom/data/sample.hpp"
#include "loom/io/json.hpp"

namespace loom::data {

struct BigEarthNetOptions {
  std::string root;
  std::string split;                 // CSV of s2_name,s1_name rows; or a split name of the labels CSV
  std::vector<std::string> exclude;  // files of patch names to leave out
  std::string labels = "auto";       // auto (JSON, else reference map) | json | reference_map | <csv>
  Modalities modalities = Modalities::both;
  int64_t size = 120;                // output height = width
  bool strict_sizes = true;          // bands must have their native size
  double min_label_fraction = 0;     // reference maps: share of pixels a class must exceed
  bool validate = false;             // read every sample while opening and drop (or refuse) bad ones
  BadDataPolicy bad;

  static BigEarthNetOptions from_spec(const DatasetSpec& spec) {
    BigEarthNetOptions o;
    o.root = spec.path();
    o.split = spec.get("split");
    o.exclude = spec.get_list("exclude");
    o.labels = spec.get("labels", "auto");
    o.modalities = parse_modalities(spec.get("modalities", "s1s2"));
    o.size = spec.get_int("size", 120);
    o.strict_sizes = spec.get_bool("strict_sizes", true);
    o.min_label_fraction = spec.get_double("min_label_fraction", 0.0);
    o.validate = spec.get_bool("validate", false);
    o.bad = spec.bad_data_policy();
    return o;
  }
};

namespace detail {

inline bool is_s1_name(std::string_view s) { return s.size() > 4 && s.substr(0, 2) == "S1" && s.find('_') == 3; }
inline bool is_s2_name(std::string_view s) { return s.size() > 4 && s.substr(0, 2) == "S2" && s.find('_') == 3; }

// Patch folders under a modality root. A child folder is a patch when it holds <name>_<probe> or
// holds no folders (a patch with missing bands, reported when read); otherwise it is a tile folder
// (reBEN) whose children are patches.
inline void find_patch_folders(const std::filesystem::path& root, const std::string& probe,
                               std::map<std::string, std::filesystem::path>& out) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return;
  auto subfolders = [&](const fs::path& dir) {
    std::vector<fs::path> dirs;
    for (const auto& entry : fs::directory_iterator(dir, ec))
      if (entry.is_directory(ec)) dirs.push_back(entry.path());
    return dirs;
  };
  for (const auto& dir : subfolders(root)) {
    const std::string name = dir.filename().string();
    if (fs::exists(dir / (name + probe), ec)) {
      out[name] = dir;
      continue;
    }
    const auto inner = subfolders(dir);
    if (inner.empty()) out[name] = dir;
    for (const auto& patch : inner) out[patch.filename().string()] = patch;
  }
}

// Label names from a label field: a Python/JSON list ("['A', 'B, c']") or names separated by ';'.
inline std::vector<std::string> parse_label_field(std::string_view field) {
  std::vector<std::string> names;
  field = trim(field);
  if (!field.empty() && field.front() == '[') {
    for (size_t i = 0; i < field.size(); ++i) {
      const char q = field[i];
      if (q != '\'' && q != '"') continue;
      const size_t end = field.find(q, i + 1);
      LOOM_CHECK(end != std::string_view::npos, "BigEarthNet: unterminated label in ", field);
      names.emplace_back(field.substr(i + 1, end - i - 1));
      i = end;
    }
    return names;
  }
  while (!field.empty()) {
    const size_t sep = field.find_first_of(";|");
    if (const auto item = trim(field.substr(0, sep)); !item.empty()) names.emplace_back(item);
    field = sep == std::string_view::npos ? std::string_view() : field.substr(sep + 1);
  }
  return names;
}

}  // namespace detail

class BigEarthNet : public Dataset {
 public:
  explicit BigEarthNet(BigEarthNetOptions options) : Dataset(options.bad), opt_(std::move(options)) {
    LOOM_CHECK(opt_.size > 0, "BigEarthNet: size=", opt_.size, " must be positive");
    LOOM_CHECK(!opt_.strict_sizes || opt_.size % 6 == 0, "BigEarthNet: size=", opt_.size,
               " is not a multiple of 6, so 20 m / 60 m bands have no native size (use strict_sizes=0)");
    LOOM_CHECK(opt_.min_label_fraction >= 0 && opt_.min_label_fraction < 1, "BigEarthNet: min_label_fraction=",
               opt_.min_label_fraction, " outside [0, 1)");
    build_index();
    if (opt_.validate) keep_loadable(entries_);
  }

  int64_t size() const override { return int64_t(entries_.size()); }
  std::string name(int64_t i) const override {
    const Entry& e = entry(i);
    return e.s2_name.empty() ? e.s1_name : e.s2_name;
  }
  std::vector<std::string> class_names() const override {
    return {kBigEarthNet19Classes.begin(), kBigEarthNet19Classes.end()};
  }
  const BigEarthNetOptions& options() const { return opt_; }
  // Patch names of sample i ("" for an absent modality).
  const std::string& s1_name(int64_t i) const { return entry(i).s1_name; }
  const std::string& s2_name(int64_t i) const { return entry(i).s2_name; }

 protected:
  Sample load(int64_t i) const override {
    const Entry& e = entry(i);
    Sample s;
    s.s1_name = e.s1_name;
    s.s2_name = e.s2_name;
    if (!e.s2_dir.empty()) s.s2 = read_s2(e);
    if (!e.s1_dir.empty()) s.s1 = read_s1(e);
    s.labels = read_labels(e);
    return s;
  }

 private:
  struct Entry {
    std::string s2_name, s1_name;        // "" when absent
    std::filesystem::path s2_dir, s1_dir;  // empty when absent (or not asked for)
    std::filesystem::path reference_map;  // reBEN, may not exist
  };
  struct CsvLabels {
    std::vector<std::string> names;
    std::string s1_name, split;
  };

  const Entry& entry(int64_t i) const {
    LOOM_CHECK(i >= 0 && i < size(), "BigEarthNet: index ", i, " out of range for ", size(), " samples");
    return entries_[size_t(i)];
  }
  bool want_s1() const { return opt_.modalities != Modalities::s2; }
  bool want_s2() const { return opt_.modalities != Modalities::s1; }
  bool labels_from_csv() const {
    return opt_.labels != "auto" && opt_.labels != "json" && opt_.labels != "reference_map";
  }

  // ---- indexing --------------------------------------------------------------------------------
  void build_index() {
    namespace fs = std::filesystem;
    const fs::path root(opt_.root);
    std::error_code ec;
    LOOM_CHECK(fs::is_directory(root, ec), "BigEarthNet: ", opt_.root, ": not a directory");
    std::map<std::string, fs::path> s2_dirs, s1_dirs;
    for (const char* sub : {"BigEarthNet-v1.0", "BigEarthNet-S2"})
      detail::find_patch_folders(root / sub, "_B02.tif", s2_dirs);
    for (const char* sub : {"BigEarthNet-S1-v1.0", "BigEarthNet-S1"})
      detail::find_patch_folders(root / sub, "_VV.tif", s1_dirs);
    LOOM_CHECK(!want_s2() || !s2_dirs.empty() || want_s1(), "BigEarthNet: ", opt_.root,
               ": modalities=s2 but no S2 patch folders in BigEarthNet-v1.0/ or BigEarthNet-S2/");
    LOOM_CHECK(!want_s1() || !s1_dirs.empty() || want_s2(), "BigEarthNet: ", opt_.root,
               ": modalities=s1 but no S1 patch folders in BigEarthNet-S1-v1.0/ or BigEarthNet-S1/");
    LOOM_CHECK(!s2_dirs.empty() || !s1_dirs.empty(), "BigEarthNet: ", opt_.root,
               ": no patch folders in BigEarthNet-v1.0/, BigEarthNet-S2/, BigEarthNet-S1-v1.0/ or BigEarthNet-S1/");

    if (labels_from_csv()) load_labels_csv();
    std::set<std::string> excluded;
    for (const auto& file : opt_.exclude)
      for (const auto& line : detail::text_lines(detail::read_text_file(file, "BigEarthNet: exclude list")))
        for (const auto& cell : detail::csv_cells(line))
          if (detail::is_s1_name(cell) || detail::is_s2_name(cell)) excluded.insert(cell);

    // The (s2, s1) rows to use; an empty name is filled by pairing below.
    std::vector<std::pair<std::string, std::string>> rows;
    const bool split_is_file = !opt_.split.empty() && fs::is_regular_file(opt_.split, ec);
    if (split_is_file) {
      rows = read_split_rows();
    } else if (!opt_.split.empty()) {
      LOOM_CHECK(has_split_column_, "BigEarthNet: split=", opt_.split,
                 " is neither a file nor a split name of a labels CSV with a split column");
      for (const auto& [s2, rec] : csv_labels_)
        if (rec.split == opt_.split) rows.emplace_back(s2, rec.s1_name);
    }

    // S2 -> S1 pairing, needed when both modalities are wanted and some S2 patch lacks its partner:
    // from the labels CSV, else from each S1 JSON's corresponding_s2_patch.
    std::map<std::string, std::string> s1_of_s2;
    for (const auto& [s2, rec] : csv_labels_)
      if (!rec.s1_name.empty()) s1_of_s2[s2] = rec.s1_name;
    const bool rows_lack_s1 = opt_.split.empty() || std::any_of(rows.begin(), rows.end(), [](const auto& r) {
                                return r.second.empty();
                              });
    std::set<std::string> unpairable_s1;  // S1 patches whose metadata could not be read
    if (want_s1() && want_s2() && s1_of_s2.empty() && rows_lack_s1) {
      for (const auto& [s1, dir] : s1_dirs) {
        try {
          const json::Value meta = read_metadata(dir, s1);
          const json::Value* partner = meta.find("corresponding_s2_patch");
          LOOM_CHECK(partner && partner->is_string(), "BigEarthNet: ", s1,
                     ": metadata has no corresponding_s2_patch string");
          s1_of_s2[partner->as_string()] = s1;
        } catch (const Error& e) {
          reject(e.what());
          unpairable_s1.insert(s1);
        }
      }
    }

    if (opt_.split.empty()) {  // every patch: S2 patches with their partner, then unpaired S1 patches
      std::set<std::string> paired_s1;
      if (want_s2())
        for (const auto& [s2, dir] : s2_dirs) {
          const auto it = s1_of_s2.find(s2);
          const std::string s1 = it == s1_of_s2.end() ? std::string() : it->second;
          if (s1_dirs.count(s1)) paired_s1.insert(s1);
          rows.emplace_back(s2, s1);
        }
      if (want_s1())
        for (const auto& [s1, dir] : s1_dirs)
          if (!paired_s1.count(s1) && !unpairable_s1.count(s1)) rows.emplace_back(std::string(), s1);
    }

    for (auto [s2, s1] : rows) {
      if (s1.empty() && s1_of_s2.count(s2)) s1 = s1_of_s2[s2];
      if (!want_s2()) s2.clear();
      if (!want_s1()) s1.clear();
      if ((!s2.empty() && excluded.count(s2)) || (!s1.empty() && excluded.count(s1))) continue;
      Entry e;
      if (const auto d = s2_dirs.find(s2); d != s2_dirs.end()) e.s2_dir = d->second, e.s2_name = s2;
      if (const auto d = s1_dirs.find(s1); d != s1_dirs.end()) e.s1_dir = d->second, e.s1_name = s1;
      if (e.s2_dir.empty() && e.s1_dir.empty()) {
        reject("BigEarthNet: no patch folder for " + (s2.empty() ? std::string() : "S2 " + s2) +
               (s2.empty() || s1.empty() ? "" : " / ") + (s1.empty() ? std::string() : "S1 " + s1) + " under " +
               opt_.root);
        continue;
      }
      if (!e.s2_dir.empty()) e.reference_map = reference_map_path(e.s2_dir, e.s2_name);
      entries_.push_back(std::move(e));
    }
  }

  // The split CSV's rows as (s2, s1); cells are told apart by their S1/S2 prefix, and a first row
  // without patch names (a header) is skipped.
  std::vector<std::pair<std::string, std::string>> read_split_rows() const {
    std::vector<std::pair<std::string, std::string>> rows;
    const auto lines = detail::text_lines(detail::read_text_file(opt_.split, "BigEarthNet: split"));
    for (size_t k = 0; k < lines.size(); ++k) {
      std::string s2, s1;
      for (const auto& cell : detail::csv_cells(lines[k])) {
        if (detail::is_s2_name(cell)) s2 = cell;
        else if (detail::is_s1_name(cell)) s1 = cell;
      }
      if (s2.empty() && s1.empty()) {
        LOOM_CHECK(k == 0, "BigEarthNet: split ", opt_.split, " line ", k + 1, " names no S1/S2 patch: ", lines[k]);
        continue;
      }
      rows.emplace_back(s2, s1);
    }
    return rows;
  }

  // reBEN metadata as CSV: a header naming patch_id (or s2_name), labels, and optionally s1_name
  // and split.
  void load_labels_csv() {
    const auto lines = detail::text_lines(detail::read_text_file(opt_.labels, "BigEarthNet: labels CSV"));
    LOOM_CHECK(!lines.empty(), "BigEarthNet: labels CSV ", opt_.labels, " is empty");
    const auto header = detail::csv_cells(lines[0]);
    int patch = -1, labels = -1, s1 = -1, split = -1;
    for (int c = 0; c < int(header.size()); ++c) {
      if (header[size_t(c)] == "patch_id" || header[size_t(c)] == "s2_name") patch = c;
      else if (header[size_t(c)] == "labels") labels = c;
      else if (header[size_t(c)] == "s1_name") s1 = c;
      else if (header[size_t(c)] == "split") split = c;
    }
    LOOM_CHECK(patch >= 0 && labels >= 0, "BigEarthNet: labels CSV ", opt_.labels,
               ": header needs patch_id (or s2_name) and labels columns, got: ", lines[0]);
    has_split_column_ = split >= 0;
    for (size_t k = 1; k < lines.size(); ++k) {
      const auto cells = detail::csv_cells(lines[k]);
      LOOM_CHECK(int(cells.size()) == int(header.size()), "BigEarthNet: labels CSV ", opt_.labels, " line ", k + 1,
                 ": ", cells.size(), " cells, header has ", header.size());
      CsvLabels rec;
      rec.names = detail::parse_label_field(cells[size_t(labels)]);
      if (s1 >= 0) rec.s1_name = cells[size_t(s1)];
      if (split >= 0) rec.split = cells[size_t(split)];
      csv_labels_[cells[size_t(patch)]] = std::move(rec);
    }
  }

  // Beside the bands, else reBEN's Reference_Maps/<tile>/<patch>/, which mirrors BigEarthNet-S2/.
  std::filesystem::path reference_map_path(const std::filesystem::path& s2_dir, const std::string& s2) const {
    namespace fs = std::filesystem;
    const fs::path beside = s2_dir / (s2 + "_reference_map.tif");
    std::error_code ec;
    if (fs::exists(beside, ec)) return beside;
    const fs::path root(opt_.root);
    for (const char* sub : {"BigEarthNet-S2", "BigEarthNet-v1.0"}) {
      const fs::path relative = s2_dir.lexically_relative(root / sub);
      if (!relative.empty() && *relative.begin() != "..")
        return root / "Reference_Maps" / relative / (s2 + "_reference_map.tif");
    }
    return beside;
  }

  // ---- reading ---------------------------------------------------------------------------------
  static json::Value read_metadata(const std::filesystem::path& dir, const std::string& patch) {
    const std::filesystem::path file = dir / (patch + "_labels_metadata.json");
    std::error_code ec;
    LOOM_CHECK(std::filesystem::exists(file, ec), "BigEarthNet: ", patch, ": missing metadata file ", file.string());
    try {
      return json::parse(detail::read_text_file(file, "BigEarthNet"));
    } catch (const Error& e) {
      loom::detail::fail("BigEarthNet: ", file.string(), ": ", e.what());
    }
  }

  // One single-band file resized to size x size; `native` is its expected size (0 = any).
  Tensor<float> read_band(const std::filesystem::path& file, const std::string& patch, int64_t native) const {
    std::error_code ec;
    LOOM_CHECK(std::filesystem::exists(file, ec), "BigEarthNet: ", patch, ": missing band file ", file.string());
    const GeoTiffImage image = read_geotiff(file.string());
    LOOM_CHECK(image.bands == 1, "BigEarthNet: ", file.string(), ": ", image.bands, " bands, expected 1");
    LOOM_CHECK(!opt_.strict_sizes || (image.width == native && image.height == native), "BigEarthNet: ",
               file.string(), ": wrong size ", image.width, "x", image.height, ", expected ", native, "x", native,
               " (use strict_sizes=0 to resample any size)");
    require_finite(image.data, "BigEarthNet: " + file.string());
    Tensor<float> band = image.data.squeeze(0);  // [h, w]
    if (band.size(0) != opt_.size || band.size(1) != opt_.size) band = resize_bilinear(band, opt_.size, opt_.size);
    return band;
  }

  Tensor<float> read_s2(const Entry& e) const {
    Tensor<float> s2 = Tensor<float>::empty({int64_t(kS2Bands.size()), opt_.size, opt_.size});  // [12, S, S]
    const int64_t plane = opt_.size * opt_.size;
    for (size_t b = 0; b < kS2Bands.size(); ++b) {
      const auto file = e.s2_dir / (e.s2_name + "_" + kS2Bands[b] + ".tif");
      const Tensor<float> band = read_band(file, e.s2_name, opt_.size * 10 / kS2BandResolution[b]).contiguous();
      std::copy(band.data(), band.data() + plane, s2.data() + int64_t(b) * plane);
    }
    return s2;
  }

  Tensor<float> read_s1(const Entry& e) const {
    Tensor<float> s1 = Tensor<float>::empty({int64_t(kS1Bands.size()), opt_.size, opt_.size});  // [2, S, S]
    const int64_t plane = opt_.size * opt_.size;
    for (size_t b = 0; b < kS1Bands.size(); ++b) {
      const auto file = e.s1_dir / (e.s1_name + "_" + kS1Bands[b] + ".tif");
      const Tensor<float> band = read_band(file, e.s1_name, opt_.size).contiguous();
      std::copy(band.data(), band.data() + plane, s1.data() + int64_t(b) * plane);
    }
    return s1;
  }

  Tensor<float> read_labels(const Entry& e) const {
    const std::string& patch = e.s2_name.empty() ? e.s1_name : e.s2_name;
    if (labels_from_csv()) {
      auto it = csv_labels_.find(e.s2_name);
      if (it == csv_labels_.end())
        it = std::find_if(csv_labels_.begin(), csv_labels_.end(),
                          [&](const auto& kv) { return !e.s1_name.empty() && kv.second.s1_name == e.s1_name; });
      LOOM_CHECK(it != csv_labels_.end(), "BigEarthNet: ", patch, ": not in labels CSV ", opt_.labels);
      return bigearthnet19_multi_hot(it->second.names, patch);
    }
    // JSON metadata (v1), else (labels=auto) the reference map (reBEN).
    const auto& dir = e.s2_dir.empty() ? e.s1_dir : e.s2_dir;
    std::error_code ec;
    const bool json_exists = std::filesystem::exists(dir / (patch + "_labels_metadata.json"), ec);
    if (opt_.labels == "json" || (opt_.labels == "auto" && (json_exists || e.s2_dir.empty()))) {
      const json::Value meta = read_metadata(dir, patch);
      const json::Value* labels = meta.find("labels");
      LOOM_CHECK(labels && labels->is_array(), "BigEarthNet: ", patch, ": metadata has no labels array");
      std::vector<std::string> names;
      for (const auto& v : labels->as_array()) {
        LOOM_CHECK(v.is_string(), "BigEarthNet: ", patch, ": metadata label is not a string");
        names.push_back(v.as_string());
      }
      return bigearthnet19_multi_hot(names, patch);
    }
    LOOM_CHECK(!e.s2_dir.empty(), "BigEarthNet: ", patch, ": labels=reference_map needs the S2 patch");
    return labels_from_reference_map(e.reference_map, patch);
  }

  Tensor<float> labels_from_reference_map(const std::filesystem::path& file, const std::string& patch) const {
    std::error_code ec;
    LOOM_CHECK(std::filesystem::exists(file, ec), "BigEarthNet: ", patch, ": no labels metadata JSON and no ",
               "reference map ", file.string());
    const Tensor<int32_t> codes = read_geotiff_as<int32_t>(file.string());  // [1, H, W] CLC codes
    LOOM_CHECK(codes.size(0) == 1, "BigEarthNet: ", file.string(), ": ", codes.size(0), " bands, expected 1");
    std::map<int, int64_t> counts;
    const int32_t* p = codes.data();
    for (int64_t i = 0; i < codes.numel(); ++i) ++counts[p[i]];
    Tensor<float> hot = Tensor<float>::zeros({kBigEarthNetNumClasses});  // [19]
    std::vector<int64_t> per_class(kBigEarthNetNumClasses, 0);
    for (const auto& [code, count] : counts) {
      const auto index = bigearthnet19_index_of_clc(code);
      if (index && *index >= 0) per_class[size_t(*index)] += count;
    }
    for (int c = 0; c < kBigEarthNetNumClasses; ++c)
      if (per_class[size_t(c)] > 0 && double(per_class[size_t(c)]) > opt_.min_label_fraction * double(codes.numel()))
        hot.data()[c] = 1.0f;
    return hot;
  }

  BigEarthNetOptions opt_;
  std::vector<Entry> entries_;
  std::map<std::string, CsvLabels> csv_labels_;
  bool has_split_column_ = false;
};

inline std::unique_ptr<Dataset> open_bigearthnet(const DatasetSpec& spec) {
  BigEarthNetOptions options = BigEarthNetOptions::from_spec(spec);
  spec.finish();
  return std::make_unique<BigEarthNet>(std::move(options));
}

namespace detail {
inline const bool bigearthnet_scheme_registered = register_dataset_scheme(
    {"bigearthnet",
     "bigearthnet:<dir>[?split=<csv>&exclude=<files>&modalities=s1s2|s1|s2&labels=auto|json|reference_map|<csv>"
     "&size=120&strict_sizes=1&min_label_fraction=0&validate=0&on_bad=error|skip]",
     &open_bigearthnet});
}  // namespace detail

}  // namespace loom::data
