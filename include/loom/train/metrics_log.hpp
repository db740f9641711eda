#pragma once
// MetricsLog: a training run's metrics as JSON Lines (one compact JSON object per logged step,
// e.g. {"step":100,"epoch":3,"loss":0.41,...}), kept in memory too for plots.
//
//   loom::train::MetricsLog log("run/metrics.jsonl");          // a fresh log (truncates)
//   loom::train::MetricsLog log("run/metrics.jsonl", 400);     // resume: keeps records with step <= 400
//   log.append({{"step", 401}, {"loss", 0.4}});
//   std::vector<double> loss = log.series("loss");              // NaN where a record lacks the key
//
// Every record must hold an integer "step". Records are written and flushed one line at a time, so
// an interrupted run leaves whole lines (plus at most one partial last line, which a resume drops).
// On resume the kept part is rewritten atomically first: records logged after the checkpoint that
// is resumed from disappear, and the file never holds a step twice.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "loom/core/error.hpp"
#include "loom/io/atomic_file.hpp"
#include "loom/io/json.hpp"

namespace loom::train {

class MetricsLog {
 public:
  // A fresh log at `path` (an existing file is replaced).
  explicit MetricsLog(std::string path) : path_(std::move(path)) { rewrite(); }

  // Continues the log at `path` after step `keep_until`: records with a larger step are dropped.
  // A missing file starts an empty log; lines that do not parse (a partial last line) are dropped.
  MetricsLog(std::string path, int64_t keep_until) : path_(std::move(path)) {
    std::ifstream in(path_);
    std::string line;
    while (in && std::getline(in, line)) {
      if (line.empty()) continue;
      try {
        json::Value v = json::parse(line);
        if (v.is_object() && v.contains("step") && v["step"].is_int() && v["step"].as_int() <= keep_until)
          records_.push_back(std::move(v));
      } catch (const Error&) {
        // A line cut short by an interruption: dropped.
      }
    }
    rewrite();
  }
  ~MetricsLog() {
    if (file_) std::fclose(file_);
  }
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  void append(json::Value record) {
    LOOM_CHECK(record.is_object() && record.contains("step") && record["step"].is_int(),
               "MetricsLog: a record needs an integer \"step\", got ", record.dump());
    const std::string line = record.dump() + "\n";  // refuses NaN/inf, naming the key
    LOOM_CHECK(std::fwrite(line.data(), 1, line.size(), file_) == line.size() && std::fflush(file_) == 0,
               "MetricsLog: cannot write ", path_);
    records_.push_back(std::move(record));
  }

  const std::vector<json::Value>& records() const { return records_; }
  const std::string& path() const { return path_; }

  // The values of `key` over the records (NaN where a record lacks it or it is not a number).
  std::vector<double> series(const std::string& key) const {
    std::vector<double> out;
    out.reserve(records_.size());
    for (const auto& r : records_) {
      const json::Value* v = r.find(key);
      out.push_back(v && v->is_number() ? v->as_number() : std::numeric_limits<double>::quiet_NaN());
    }
    return out;
  }

 private:
  // Writes the kept records to the file atomically, then opens it for appending.
  void rewrite() {
    if (file_) std::fclose(file_);
    file_ = nullptr;
    {
      io::AtomicFileWriter out(path_);
      for (const auto& r : records_) out.write(r.dump() + "\n");
      out.commit();
    }
    file_ = std::fopen(path_.c_str(), "ab");
    LOOM_CHECK(file_ != nullptr, "MetricsLog: cannot open ", path_, " for appending");
  }

  std::string path_;
  std::vector<json::Value> records_;
  std::FILE* file_ = nullptr;
};

}  // namespace loom::train
