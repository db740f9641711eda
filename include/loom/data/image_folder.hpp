#pragma once
// Image-folder reader: plain pictures (PNG, JPEG, and whatever else stb_image decodes) or GeoTIFFs,
// labelled by their sub-folder or by a CSV. For RGB datasets such as EuroSAT-RGB, users' own
// quick-looks, and multispectral folders such as EuroSAT-MS. Spec:
//
//   images:<dir>[?labels=<csv>&channels=rgb|grey&bands=<name,...>&size=0&on_bad=error|skip]
//
// Labels.
// - Without labels=: every sub-folder of <dir> is a class (class list = folder names, sorted);
//   each image file below a class folder (at any depth) is one sample whose label vector is
//   one-hot. Files directly in <dir> belong to no class and are ignored.
// - labels=<csv> (a path, relative to <dir> unless absolute): multi-label rows `file,label1;label2`
//   with `file` relative to <dir>; an optional header row whose first cell is file, filename,
//   image or path; an empty label list gives an all-zero vector. Class list = every label named,
//   sorted. A row naming a missing file is bad data (an error, or skipped under on_bad=skip).
// Image files are recognized by extension (.png .jpg .jpeg .bmp .gif .tga .ppm .pgm, and .tif
// .tiff for GeoTIFF); other files (README, PROVENANCE.md, ...) are ignored.
//
// The sample. An image folder is a single-group input: all channels go to the optical slot,
// Sample::s2 [C, H, W], with Sample::s2_bands naming them, and Sample::s1 stays undefined (no SAR).
// Values are the file's own: 0..255 for 8-bit pictures (no scaling, so normalization statistics
// computed over the folder apply), the stored values for GeoTIFFs.
// - Pictures: channels=rgb (default; grey pictures are replicated, alpha is dropped) gives 3
//   channels named R, G, B; channels=grey gives 1 channel named grey (stb's luma conversion).
// - GeoTIFFs: every band of the file, named band1 ... bandN (channels= does not apply).
// - bands=<n1,n2,...> renames the channels (count must match), e.g. the 13 Sentinel-2 names for
//   EuroSAT-MS so that per-band statistics can be looked up by name.
// - size=N resamples every image to N x N (bilinear, half-pixel centres); size=0 (default) keeps
//   each file's size, and loaders then need all files to share one size.
// Sample::s2_name is the file's path relative to <dir> ("AnnualCrop/AnnualCrop_1.tif").
//
// Bad data: a file that is missing, cannot be decoded (corrupt, truncated, not an image) or has the
// wrong channel count is a loom::Error naming the file, or skipped with a warning under
// on_bad=skip (see dataset.hpp).
//
// Linking: this header declares stb_image's functions (<stb/stb_image.h>, Debian libstb-dev); their
// code comes from libstb (`-lstb`, CMake: find_library(... stb)) or from one .cpp of the program
// that defines STB_IMAGE_IMPLEMENTATION. Because of that link dependency, dataset.hpp does not
// include this header: a program that includes it gets the images: scheme registered.
#include <stb/stb_image.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "loom/core/error.hpp"
#include "loom/core/tensor.hpp"
#include "loom/data/dataset.hpp"
#include "loom/data/geotiff.hpp"
#include "loom/data/resample.hpp"
#include "loom/data/sample.hpp"

namespace loom::data {

enum class ImageChannels { rgb, grey };

struct ImageFolderOptions {
  std::string root;
  std::string labels_csv;           // "" = labels from sub-folder names
  ImageChannels channels = ImageChannels::rgb;
  std::vector<std::string> bands;   // channel names; empty = R,G,B / grey / band1..N
  int64_t size = 0;                 // 0 = keep each file's size
  BadDataPolicy bad;

  static ImageFolderOptions from_spec(const DatasetSpec& spec) {
    ImageFolderOptions o;
    o.root = spec.path();
    o.labels_csv = spec.get("labels");
    const std::string ch = spec.get("channels", "rgb");
    LOOM_CHECK(ch == "rgb" || ch == "grey" || ch == "gray", "images: spec \"", spec.text(), "\": channels=", ch,
               " (expected rgb or grey)");
    o.channels = ch == "rgb" ? ImageChannels::rgb : ImageChannels::grey;
    o.bands = spec.get_list("bands");
    o.size = spec.get_int("size", 0);
    LOOM_CHECK(o.size >= 0, "images: spec \"", spec.text(), "\": size=", o.size, " (expected >= 0)");
    o.bad = spec.bad_data_policy();
    return o;
  }
};

namespace detail {

inline std::string lower_extension(const std::filesystem::path& p) {
  std::string ext = p.extension().string();
  for (char& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}
inline bool is_tiff_file(const std::filesystem::path& p) {
  const std::string ext = lower_extension(p);
  return ext == ".tif" || ext == ".tiff";
}
inline bool is_image_file(const std::filesystem::path& p) {
  static const std::set<std::string> picture = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tga", ".ppm", ".pgm"};
  return picture.count(lower_extension(p)) > 0 || is_tiff_file(p);
}

// Decodes a picture file with stb_image into [C, H, W] float (values 0..255), C = 3 or 1.
inline Tensor<float> read_picture(const std::filesystem::path& file, ImageChannels channels) {
  std::ifstream in(file, std::ios::binary);
  LOOM_CHECK(in.good(), "images: cannot open ", file.string());
  const std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  LOOM_CHECK(!in.bad(), "images: error reading ", file.string());
  LOOM_CHECK(!bytes.empty(), "images: ", file.string(), ": empty file");
  LOOM_CHECK(bytes.size() <= size_t(INT32_MAX), "images: ", file.string(), ": file too large for stb_image");
  const int want = channels == ImageChannels::rgb ? 3 : 1;
  int width = 0, height = 0, stored = 0;
  stbi_uc* pixels = stbi_load_from_memory(bytes.data(), int(bytes.size()), &width, &height, &stored, want);
  LOOM_CHECK(pixels != nullptr, "images: ", file.string(), ": cannot decode (",
             stbi_failure_reason() ? stbi_failure_reason() : "unknown reason", ")");
  // stb returns interleaved [H, W, C]; the sample wants band-major [C, H, W].
  Tensor<float> out = Tensor<float>::empty({int64_t(want), int64_t(height), int64_t(width)});  // [C, H, W]
  const int64_t plane = int64_t(width) * height;
  float* o = out.data();
  for (int64_t i = 0; i < plane; ++i)
    for (int c = 0; c < want; ++c) o[c * plane + i] = float(pixels[i * want + c]);
  stbi_image_free(pixels);
  return out;
}

}  // namespace detail

class ImageFolder final : public Dataset {
 public:
  explicit ImageFolder(ImageFolderOptions options) : Dataset(options.bad), opt_(std::move(options)) {
    namespace fs = std::filesystem;
    std::error_code ec;
    LOOM_CHECK(fs::is_directory(opt_.root, ec), "images: ", opt_.root, " is not a directory");
    try {
      if (opt_.labels_csv.empty()) index_class_folders();
      else index_csv();
    } catch (const fs::filesystem_error& e) {  // e.g. an unreadable sub-folder
      loom::detail::fail("images: cannot list ", opt_.root, ": ", e.what());
    }
  }

  int64_t size() const override { return int64_t(entries_.size()); }
  std::string name(int64_t i) const override { return entries_.at(size_t(i)).relative; }
  std::vector<std::string> class_names() const override { return classes_; }

 protected:
  Sample load(int64_t i) const override {
    const Entry& e = entries_.at(size_t(i));
    const std::filesystem::path file = std::filesystem::path(opt_.root) / e.relative;
    Tensor<float> pixels;  // [C, H, W]
    std::vector<std::string> names;
    if (detail::is_tiff_file(file)) {
      pixels = read_geotiff(file.string()).data;
      for (int64_t b = 0; b < pixels.size(0); ++b) names.push_back("band" + std::to_string(b + 1));
    } else {
      pixels = detail::read_picture(file, opt_.channels);
      names = opt_.channels == ImageChannels::rgb ? std::vector<std::string>{"R", "G", "B"}
                                                  : std::vector<std::string>{"grey"};
    }
    if (!opt_.bands.empty()) {
      LOOM_CHECK(int64_t(opt_.bands.size()) == pixels.size(0), "images: ", file.string(), ": ", pixels.size(0),
                 " channels, but bands= names ", opt_.bands.size());
      names = opt_.bands;
    }
    require_finite(pixels, "images: " + file.string());
    if (opt_.size > 0 && (pixels.size(1) != opt_.size || pixels.size(2) != opt_.size))
      pixels = resize_bilinear(pixels, opt_.size, opt_.size);
    Sample s;
    s.s2 = pixels;
    s.s2_bands = std::move(names);
    s.s2_name = e.relative;
    s.labels = Tensor<float>::zeros({int64_t(classes_.size())});  // [K]
    for (int c : e.classes) s.labels.data()[c] = 1.0f;
    return s;
  }

 private:
  struct Entry {
    std::string relative;     // path below root, '/'-separated
    std::vector<int> classes;  // indices into classes_
  };

  void index_class_folders() {
    namespace fs = std::filesystem;
    std::vector<fs::path> folders;
    for (const auto& d : fs::directory_iterator(opt_.root))
      if (d.is_directory()) folders.push_back(d.path());
    std::sort(folders.begin(), folders.end());
    LOOM_CHECK(!folders.empty(), "images: ", opt_.root,
               " has no class sub-folders (put images in <dir>/<class>/, or pass labels=<csv>)");
    for (const auto& folder : folders) {
      const int label = int(classes_.size());
      classes_.push_back(folder.filename().string());
      std::vector<std::string> files;
      for (const auto& f : fs::recursive_directory_iterator(folder))
        if (f.is_regular_file() && detail::is_image_file(f.path()))
          files.push_back(fs::relative(f.path(), opt_.root).generic_string());
      std::sort(files.begin(), files.end());
      for (auto& f : files) entries_.push_back({std::move(f), {label}});
    }
    LOOM_CHECK(!entries_.empty(), "images: no image files (.png, .jpg, .tif, ...) in the class folders of ",
               opt_.root);
  }

  void index_csv() {
    namespace fs = std::filesystem;
    fs::path csv = opt_.labels_csv;
    if (csv.is_relative()) csv = fs::path(opt_.root) / csv;
    const std::vector<std::string> lines = detail::text_lines(detail::read_text_file(csv, "images"));
    std::vector<std::pair<std::string, std::vector<std::string>>> rows;
    std::set<std::string> names;
    for (size_t r = 0; r < lines.size(); ++r) {
      const std::vector<std::string> cells = detail::csv_cells(lines[r]);
      if (r == 0) {
        std::string first = cells[0];
        for (char& c : first) c = char(std::tolower(static_cast<unsigned char>(c)));
        if (first == "file" || first == "filename" || first == "image" || first == "path") continue;
      }
      LOOM_CHECK(cells.size() <= 2 && !cells[0].empty(), "images: ", csv.string(), " line ", r + 1, ": \"",
                 lines[r], "\" is not a row file,label1;label2");
      std::vector<std::string> labels;
      if (cells.size() == 2) {
        std::string_view rest = cells[1];
        while (!rest.empty()) {
          const size_t semi = rest.find(';');
          if (const auto l = detail::trim(rest.substr(0, semi)); !l.empty()) labels.emplace_back(l);
          rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
        }
      }
      names.insert(labels.begin(), labels.end());
      rows.emplace_back(cells[0], std::move(labels));
    }
    classes_.assign(names.begin(), names.end());
    std::error_code ec;
    for (auto& [file, labels] : rows) {
      if (!fs::is_regular_file(fs::path(opt_.root) / file, ec)) {
        reject("images: " + csv.string() + " names " + file + ", which is not a file in " + opt_.root);
        continue;
      }
      Entry e{file, {}};
      for (const auto& l : labels)
        e.classes.push_back(int(std::lower_bound(classes_.begin(), classes_.end(), l) - classes_.begin()));
      entries_.push_back(std::move(e));
    }
    LOOM_CHECK(!entries_.empty(), "images: ", csv.string(), " lists no readable image files");
  }

  ImageFolderOptions opt_;
  std::vector<std::string> classes_;
  std::vector<Entry> entries_;
};

inline std::unique_ptr<Dataset> open_image_folder(const DatasetSpec& spec) {
  ImageFolderOptions options = ImageFolderOptions::from_spec(spec);
  spec.finish();
  return std::make_unique<ImageFolder>(std::move(options));
}

namespace detail {
inline const bool image_folder_scheme_registered = register_dataset_scheme(
    {"images", "images:<dir>[?labels=<csv>&channels=rgb|grey&bands=<n1,n2,...>&size=0&on_bad=error|skip]",
     &open_image_folder});
}  // namespace detail

}  // namespace loom::data
