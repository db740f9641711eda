#pragma once
// Dataset: random access to Samples, and open_dataset(spec) which builds one from a spec string.
//
//   auto ds = loom::data::open_dataset("bigearthnet:/data/ben?split=/data/ben/train.csv");
//   for (int64_t i = 0; i < ds->size(); ++i) { Sample s = ds->get(i); ... }
//
// Spec strings are  <scheme>:<path>[?key=value&key=value...]  Each scheme documents its keys (see
// docs/data.md); a misspelt key is an error listing the keys the scheme knows, an unknown scheme an
// error listing the known schemes. Schemes register themselves with register_dataset_scheme(): a
// new reader is a header that calls it, plus one #include at the bottom of this file.
//
// Bad data. Readers validate what they read: a sample with a missing or unreadable band file, a band
// of the wrong size or non-finite values is bad. With on_bad=error (the default) get() throws a
// loom::Error naming the patch and the problem. With on_bad=skip it warns once per bad sample
// (through BadDataPolicy::warn, stderr by default), remembers it and returns the next good sample
// instead (i+1, i+2, ... wrapping around), so size() stays fixed and loaders need no special case;
// skipped() reports how many were skipped so far. Readers also drop entries found bad while
// indexing (e.g. a split row naming no existing patch) the same way, counted in skipped().
#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "loom/core/error.hpp"
#include "loom/data/sample.hpp"

namespace loom::data {

// ---- bad-data policy ---------------------------------------------------------------------------

enum class OnBadSample { error, skip };

struct BadDataPolicy {
  OnBadSample on_bad = OnBadSample::error;
  // Receives one message per skipped sample; default prints "loom: warning: ..." to stderr.
  std::function<void(const std::string&)> warn;
};

// Which sensors a multi-modal reader loads.
enum class Modalities { s1, s2, both };

inline Modalities parse_modalities(const std::string& v) {
  if (v == "s1") return Modalities::s1;
  if (v == "s2") return Modalities::s2;
  LOOM_CHECK(v == "s1s2" || v == "both" || v == "s1+s2", "dataset: modalities=", v, " (expected s1, s2 or s1s2)");
  return Modalities::both;
}

// ---- spec strings ------------------------------------------------------------------------------

// A parsed "<scheme>:<path>?k=v&k=v". Options are read through the typed getters, which remember
// which keys were used; finish() then refuses any key nobody asked for (a typo).
class DatasetSpec {
 public:
  static DatasetSpec parse(std::string_view text) {
    DatasetSpec spec;
    spec.text_ = std::string(text);
    if (text.find_first_of(":/?.=") == std::string_view::npos && !text.empty()) {  // a bare scheme: "synthetic"
      spec.scheme_ = spec.text_;
      return spec;
    }
    const size_t colon = text.find(':');
    LOOM_CHECK(colon != std::string_view::npos && colon > 0, "open_dataset: spec \"", text,
               "\" is not of the form <scheme>:<path>[?key=value&...]");
    spec.scheme_ = std::string(text.substr(0, colon));
    std::string_view rest = text.substr(colon + 1);
    const size_t query = rest.find('?');
    spec.path_ = std::string(rest.substr(0, query));
    if (query != std::string_view::npos) {
      std::string_view q = rest.substr(query + 1);
      while (!q.empty()) {
        const size_t amp = q.find('&');
        const std::string_view item = q.substr(0, amp);
        q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
        if (item.empty()) continue;
        const size_t eq = item.find('=');
        LOOM_CHECK(eq != std::string_view::npos && eq > 0, "open_dataset: spec \"", text, "\": option \"", item,
                   "\" is not key=value");
        const std::string key(item.substr(0, eq));
        LOOM_CHECK(!spec.options_.count(key), "open_dataset: spec \"", text, "\": option ", key, " given twice");
        spec.options_[key] = std::string(item.substr(eq + 1));
      }
    }
    return spec;
  }

  const std::string& scheme() const { return scheme_; }
  const std::string& path() const { return path_; }
  const std::string& text() const { return text_; }
  bool has(const std::string& key) const {
    known_.insert(key);
    return options_.count(key) > 0;
  }

  std::string get(const std::string& key, const std::string& fallback = "") const {
    known_.insert(key);
    const auto it = options_.find(key);
    return it == options_.end() ? fallback : it->second;
  }
  int64_t get_int(const std::string& key, int64_t fallback) const {
    const std::string v = get(key);
    if (v.empty()) return fallback;
    int64_t out = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
    LOOM_CHECK(ec == std::errc() && end == v.data() + v.size(), "open_dataset: spec \"", text_, "\": option ", key,
               "=", v, " is not an integer");
    return out;
  }
  double get_double(const std::string& key, double fallback) const {
    const std::string v = get(key);
    if (v.empty()) return fallback;
    double out = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
    LOOM_CHECK(ec == std::errc() && end == v.data() + v.size() && std::isfinite(out), "open_dataset: spec \"", text_,
               "\": option ", key, "=", v, " is not a number");
    return out;
  }
  bool get_bool(const std::string& key, bool fallback) const {
    const std::string v = get(key);
    if (v.empty()) return fallback;
    if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
    if (v == "0" || v == "false" || v == "no" || v == "off") return false;
    loom::detail::fail("open_dataset: spec \"", text_, "\": option ", key, "=", v, " is not a boolean (1/0, true/false)");
  }
  // A comma-separated list ("" gives an empty list).
  std::vector<std::string> get_list(const std::string& key) const {
    std::vector<std::string> out;
    const std::string all = get(key);
    std::string_view rest = all;
    while (!rest.empty()) {
      const size_t comma = rest.find(',');
      if (const auto item = rest.substr(0, comma); !item.empty()) out.emplace_back(item);
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
    return out;
  }
  // The on_bad=error|skip option shared by every reader.
  BadDataPolicy bad_data_policy() const {
    BadDataPolicy p;
    const std::string v = get("on_bad", "error");
    LOOM_CHECK(v == "error" || v == "skip", "open_dataset: spec \"", text_, "\": on_bad=", v,
               " (expected error or skip)");
    p.on_bad = v == "skip" ? OnBadSample::skip : OnBadSample::error;
    return p;
  }
  // Throws if an option was given that no getter asked for.
  void finish() const {
    for (const auto& [key, value] : options_) {
      if (known_.count(key)) continue;
      std::string keys;
      for (const auto& k : known_) keys += (keys.empty() ? "" : ", ") + k;
      loom::detail::fail("open_dataset: spec \"", text_, "\": unknown option ", key, " for scheme ", scheme_,
                   " (known: ", keys, ")");
    }
  }

 private:
  std::string text_, scheme_, path_;
  std::map<std::string, std::string> options_;
  mutable std::set<std::string> known_;
};

// ---- the interface -----------------------------------------------------------------------------

class Dataset {
 public:
  explicit Dataset(BadDataPolicy policy = {}) : policy_(std::move(policy)) {}
  virtual ~Dataset() = default;
  Dataset(const Dataset&) = delete;
  Dataset& operator=(const Dataset&) = delete;

  virtual int64_t size() const = 0;
  // A stable, human-readable identifier of sample i (its patch name).
  virtual std::string name(int64_t i) const = 0;
  // The names of the label vector's entries.
  virtual std::vector<std::string> class_names() const = 0;
  int64_t num_classes() const { return int64_t(class_names().size()); }

  // Sample i, under the bad-data policy (see the top of this file). Safe to call from several
  // threads at once.
  Sample get(int64_t i) const {
    const int64_t n = size();
    LOOM_CHECK(i >= 0 && i < n, "Dataset::get: index ", i, " out of range for a dataset of ", n, " samples");
    for (int64_t step = 0; step < n; ++step) {
      const int64_t j = (i + step) % n;
      if (policy_.on_bad == OnBadSample::skip && is_bad(j)) continue;
      try {
        return load(j);
      } catch (const Error& e) {
        if (policy_.on_bad == OnBadSample::error) throw;
        mark_bad(j, e.what());
      }
    }
    loom::detail::fail("Dataset::get: all ", n, " samples are bad (", skipped(), " skipped)");
  }

  // Samples skipped under on_bad=skip so far: entries dropped while indexing plus samples found bad
  // by get().
  int64_t skipped() const { return skipped_.load(); }
  // The warnings issued for them (the first 1000).
  std::vector<std::string> skip_messages() const {
    std::lock_guard lock(mutex_);
    return messages_;
  }
  const BadDataPolicy& policy() const { return policy_; }

 protected:
  // Reads sample i; throws loom::Error on bad data.
  virtual Sample load(int64_t i) const = 0;

  // For readers while indexing: a bad entry is an error, or (on_bad=skip) a counted warning.
  void reject(const std::string& message) const {
    if (policy_.on_bad == OnBadSample::error) throw Error(message);
    record_skip(message);
  }

  // For readers with validate=1: loads every sample once and keeps the entries that load (the
  // reader's index, one entry per sample); a bad one is rejected as above.
  template <class Entry>
  void keep_loadable(std::vector<Entry>& entries) const {
    std::vector<Entry> good;
    for (int64_t i = 0; i < int64_t(entries.size()); ++i) {
      try {
        load(i);
        good.push_back(entries[size_t(i)]);
      } catch (const Error& e) {
        reject(e.what());
      }
    }
    entries = std::move(good);
  }

 private:
  bool is_bad(int64_t i) const {
    std::lock_guard lock(mutex_);
    return bad_.count(i) > 0;
  }
  void mark_bad(int64_t i, const std::string& message) const {
    {
      std::lock_guard lock(mutex_);
      if (!bad_.insert(i).second) return;
    }
    record_skip("skipping sample " + std::to_string(i) + ": " + message);
  }
  void record_skip(const std::string& message) const {
    skipped_.fetch_add(1);
    {
      std::lock_guard lock(mutex_);
      if (messages_.size() < 1000) messages_.push_back(message);
    }
    if (policy_.warn) policy_.warn(message);
    else std::cerr << "loom: warning: " << message << '\n';
  }

  BadDataPolicy policy_;
  mutable std::mutex mutex_;
  mutable std::set<int64_t> bad_;
  mutable std::vector<std::string> messages_;
  mutable std::atomic<int64_t> skipped_{0};
};

// Checks a band just read: finite everywhere (bad data otherwise). `what` names the file.
inline void require_finite(const Tensor<float>& x, const std::string& what) {
  const Tensor<float> t = x.contiguous();
  const float* p = t.data();
  for (int64_t i = 0; i < t.numel(); ++i)
    LOOM_CHECK(std::isfinite(p[i]), what, ": non-finite value ", p[i], " at element ", i, " of shape ", x.shape());
}

// ---- small text-file helpers for the readers --------------------------------------------------

namespace detail {

inline std::string read_text_file(const std::filesystem::path& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  LOOM_CHECK(in.good(), what, ": cannot open ", path.string());
  std::ostringstream text;
  text << in.rdbuf();
  LOOM_CHECK(!in.bad(), what, ": error reading ", path.string());
  return text.str();
}

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

// Non-empty lines, trimmed ("\r\n" line ends welcome).
inline std::vector<std::string> text_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string_view line = trim(std::string_view(text).substr(start, end - start));
    if (!line.empty()) lines.emplace_back(line);
    start = end + 1;
  }
  return lines;
}

// Cells of one CSV row: comma-separated, double-quoted cells may hold commas and "" for a quote.
inline std::vector<std::string> csv_cells(std::string_view line) {
  std::vector<std::string> cells(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        cells.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        cells.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      cells.emplace_back();
    } else {
      cells.back() += c;
    }
  }
  for (auto& cell : cells) cell = std::string(trim(cell));
  return cells;
}

}  // namespace detail

// ---- the scheme registry -----------------------------------------------------------------------

using DatasetFactory = std::function<std::unique_ptr<Dataset>(const DatasetSpec&)>;

struct DatasetScheme {
  std::string name;   // "bigearthnet"
  std::string usage;  // "bigearthnet:<dir>[?split=<csv>&...]", shown in error messages
  DatasetFactory open;
};

namespace detail {
struct SchemeRegistry {
  std::mutex mutex;
  std::vector<DatasetScheme> schemes;
};
inline SchemeRegistry& scheme_registry() {
  static SchemeRegistry registry;
  return registry;
}
}  // namespace detail

// Adds (or replaces) a scheme. Returns true so that a header can register at static
// initialization: `inline const bool registered = register_dataset_scheme({...});`
inline bool register_dataset_scheme(DatasetScheme scheme) {
  auto& r = detail::scheme_registry();
  std::lock_guard lock(r.mutex);
  for (auto& s : r.schemes)
    if (s.name == scheme.name) {
      s = std::move(scheme);
      return true;
    }
  r.schemes.push_back(std::move(scheme));
  return true;
}

inline std::vector<std::string> dataset_scheme_names() {
  auto& r = detail::scheme_registry();
  std::lock_guard lock(r.mutex);
  std::vector<std::string> names;
  for (const auto& s : r.schemes) names.push_back(s.name);
  return names;
}

// Opens the dataset a spec string describes.
inline std::unique_ptr<Dataset> open_dataset(const std::string& spec_text) {
  const DatasetSpec spec = DatasetSpec::parse(spec_text);
  DatasetFactory open;
  std::string known;
  {
    auto& r = detail::scheme_registry();
    std::lock_guard lock(r.mutex);
    for (const auto& s : r.schemes) {
      known += "\n  " + s.usage;
      if (s.name == spec.scheme()) open = s.open;
    }
  }
  LOOM_CHECK(open != nullptr, "open_dataset: unknown scheme \"", spec.scheme(), "\" in \"", spec_text,
             "\"; known schemes:", known,
             spec.scheme() == "images" ? "\n(images: is registered by #include \"loom/data/image_folder.hpp\", "
                                         "which links libstb)"
                                       : "");
  std::unique_ptr<Dataset> ds = open(spec);
  spec.finish();
  return ds;
}

}  // namespace loom::data

// The built-in readers register their schemes.
#include "loom/data/bigearthnet.hpp"
#include "loom/data/sen12ms.hpp"
#include "loom/data/synthetic.hpp"
#include "loom/data/packed.hpp"
