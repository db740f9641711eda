#pragma once
// The evaluation report of a multi-label classifier: from predicted probabilities and 0/1 targets
// ([n, c] row-major) to report.json, report.md, a per-class AP bar chart and predictions.csv.
//
//   loom::train::Predictions p;  // names, probs, targets, n, c (filled by an evaluation pass)
//   json::Value r = loom::train::evaluation_report(p, class_names, "val", 64);
//   loom::train::write_report_files(dir, r, p, class_names);   // report.json, report.md, per_class_ap.png
//
// Every number comes from include/loom/metrics (scikit-learn semantics): mAP micro and macro over
// the whole set, the batch-averaged micro mAP of the DINO-MM / SSL4EO-S12 evaluation code (labelled
// map_micro_batchavg, with its batch size), and P/R/F1 at threshold 0.5.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "loom/io/atomic_file.hpp"
#include "loom/io/image.hpp"
#include "loom/io/json.hpp"
#include "loom/metrics/average_precision.hpp"
#include "loom/metrics/classification.hpp"

namespace loom::train {

struct Predictions {
  std::vector<std::string> names;  // [n] patch names
  std::vector<float> probs;        // [n, c] sigmoid probabilities
  std::vector<float> targets;      // [n, c] 0/1
  int64_t n = 0, c = 0;
};

// report.json's content. `batch_size` is the batch of map_micro_batchavg.
inline json::Value evaluation_report(const Predictions& p, const std::vector<std::string>& class_names,
                                     const std::string& split, int64_t batch_size) {
  LOOM_CHECK(int64_t(class_names.size()) == p.c, "evaluation_report: ", class_names.size(), " class names for ", p.c,
             " classes");
  LOOM_CHECK(p.n >= 1, "evaluation_report: no samples to evaluate (split ", split, ")");
  const size_t n = size_t(p.n), c = size_t(p.c);
  const std::vector<double> ap = metrics::average_precision_per_class(p.probs, p.targets, n, c);
  const metrics::ClassificationMetrics m = metrics::classification_metrics(p.probs, p.targets, n, c, 0.5);
  json::Value per_class = json::Value::object(), support = json::Value::object();
  for (size_t k = 0; k < c; ++k) {
    per_class.set(class_names[k], ap[k]);
    support.set(class_names[k], int64_t(m.support[k]));
  }
  return json::Value::object({
      {"split", split},
      {"samples", p.n},
      {"classes", p.c},
      {"map_micro", metrics::map_micro(p.probs, p.targets, n, c)},
      {"map_macro", metrics::map_macro(p.probs, p.targets, n, c)},
      {"map_micro_batchavg", metrics::map_micro_batch_averaged(p.probs, p.targets, n, c, size_t(batch_size))},
      {"map_micro_batchavg_batch_size", batch_size},
      {"threshold", 0.5},
      {"precision_micro", m.micro.precision},
      {"recall_micro", m.micro.recall},
      {"f1_micro", m.micro.f1},
      {"precision_macro", m.macro.precision},
      {"recall_macro", m.macro.recall},
      {"f1_macro", m.macro.f1},
      {"precision_weighted", m.weighted.precision},
      {"recall_weighted", m.weighted.recall},
      {"f1_weighted", m.weighted.f1},
      {"f1_samples", m.samples.f1},
      {"per_class_ap", std::move(per_class)},
      {"support", std::move(support)},
  });
}

// report.md: the summary and the per-class table, readable as plain text too.
inline std::string report_markdown(const json::Value& r, const std::string& title) {
  std::ostringstream md;
  char buf[256];
  md << "# " << title << "\n\nSplit `" << r["split"].as_string() << "`, " << r["samples"].as_int() << " samples, "
     << r["classes"].as_int() << " classes.\n\n| metric | value |\n|---|---|\n";
  const char* keys[] = {"map_micro",      "map_macro",      "map_micro_batchavg", "f1_micro",       "f1_macro",
                        "f1_weighted",    "f1_samples",     "precision_micro",    "recall_micro",   "precision_macro",
                        "recall_macro",   "precision_weighted", "recall_weighted"};
  for (const char* k : keys) {
    std::snprintf(buf, sizeof buf, "| %s | %.4f |\n", k, r[k].as_number());
    md << buf;
  }
  md << "\n(map_micro_batchavg: micro AP per batch of " << r["map_micro_batchavg_batch_size"].as_int()
     << " in evaluation order, averaged over batches — the DINO-MM / SSL4EO-S12 number; P/R/F1 at threshold "
     << r["threshold"].as_number() << ".)\n\n| class | AP | positives |\n|---|---|---|\n";
  for (const auto& [name, ap] : r["per_class_ap"].as_object()) {
    std::snprintf(buf, sizeof buf, " | %.4f | %lld |\n", ap.as_number(), (long long)r["support"][name].as_int());
    md << "| " << name << buf;
  }
  return md.str();
}

// A horizontal bar per class (AP on a 0..1 axis with grid lines every 0.2), the value printed at
// the bar's end, the micro and macro mAP in the title.
inline io::RgbImage draw_per_class_ap(const json::Value& r, const std::string& title) {
  const auto& per_class = r["per_class_ap"].as_object();
  const int rows = int(per_class.size()), label_w = 6 * 34 + 8, bar_w = 360, row_h = 14, top = 34, left = 8;
  io::RgbImage img(left + label_w + bar_w + 56, top + rows * row_h + 24);
  char buf[128];
  std::snprintf(buf, sizeof buf, " (MAP MICRO %.3f, MACRO %.3f)", r["map_micro"].as_number(), r["map_macro"].as_number());
  img.text(left, 8, title + buf, io::colors::kBlack);
  const int x0 = left + label_w;
  for (int t = 0; t <= 5; ++t) {
    const int x = x0 + bar_w * t / 5;
    img.line(x, top - 4, x, top + rows * row_h, io::colors::kLightGrey);
    std::snprintf(buf, sizeof buf, "%.1f", 0.2 * t);
    img.text(x - 8, top + rows * row_h + 6, buf, io::colors::kGrey);
  }
  int row = 0;
  for (const auto& [name, ap] : per_class) {
    const int y = top + row * row_h;
    img.text(left, y + 3, name.size() > 34 ? name.substr(0, 32) + ".." : name, io::colors::kBlack);
    const double v = std::clamp(ap.as_number(), 0.0, 1.0);
    const int w = int(v * bar_w + 0.5);
    if (w > 0) img.fill_rect(x0, y + 2, w, row_h - 4, io::colors::kSeries[0]);
    std::snprintf(buf, sizeof buf, "%.2f", ap.as_number());
    img.text(x0 + w + 4, y + 3, buf, io::colors::kBlack);
    ++row;
  }
  return img;
}

// A CSV cell, quoted when it holds a comma, quote or line break.
inline std::string csv_cell(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"') out += '"';
    out += ch;
  }
  out += '"';
  return out;
}

// predictions.csv: a header (name, then the class names), then per sample its name and one
// probability per class in class order, printed with 9 significant digits (exact float round trip).
inline void write_predictions_csv(const std::string& path, const Predictions& p, const std::vector<std::string>& class_names) {
  std::string text = "name";
  for (const auto& c : class_names) {
    text += ',';
    text += csv_cell(c);
  }
  text += "\n";
  char buf[32];
  for (int64_t i = 0; i < p.n; ++i) {
    text += csv_cell(p.names[size_t(i)]);
    for (int64_t k = 0; k < p.c; ++k) {
      std::snprintf(buf, sizeof buf, ",%.9g", double(p.probs[size_t(i * p.c + k)]));
      text += buf;
    }
    text += "\n";
  }
  io::AtomicFileWriter out(path);
  out.write(text);
  out.commit();
}

// report.json, report.md and per_class_ap.png in `dir` (names prefixed by `stem`, e.g. "" or "val_").
inline void write_report_files(const std::string& dir, const json::Value& report, const std::string& title,
                               const std::string& stem = "") {
  const std::filesystem::path d(dir);
  {
    io::AtomicFileWriter out((d / (stem + "report.json")).string());
    out.write(report.dump(2) + "\n");
    out.commit();
  }
  {
    io::AtomicFileWriter out((d / (stem + "report.md")).string());
    out.write(report_markdown(report, title));
    out.commit();
  }
  io::write_png((d / (stem + "per_class_ap.png")).string(), draw_per_class_ap(report, title));
}

}  // namespace loom::train
