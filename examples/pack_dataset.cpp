// pack_dataset: writes any dataset into one packed shard (loom/data/packed.hpp), which the loader
// then reads by mmap, far faster than per-band GeoTIFFs.
//
//   pack_dataset --data "bigearthnet:/data/ben?split=/data/ben/train.csv" --out ben_train.pack
//   pack_dataset --data "synthetic:train=2048,size=120" --out synthetic_train.pack --verify
//   pack_dataset --data "bigearthnet:/data/ben?split=/data/ben/train.csv" --stats
//   pack_dataset --data "images:/data/eurosat_rgb" --stats --out eurosat.pack
//
// --stats computes per-band mean and standard deviation over the dataset (every pixel of every
// sample, or of the first --stats-samples; one sample in memory at a time, sums in double) and
// prints them, S1 bands then S2 bands. With --out, the pack then stores these statistics for
// normalization instead of BigEarthNet's published ones (needed for datasets with other bands,
// such as image folders' R, G, B). Without --out it only prints.
//
// Progress goes to stdout: a bar redrawn in place on a terminal, plain lines otherwise. Exit
// status: 0 done, 1 the data or the file failed (the message names the sample), 2 bad usage (the
// message names the flag).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

#include "loom/core/parallel.hpp"
#include "loom/data/dataset.hpp"
#include "loom/data/packed.hpp"
#include "loom/data/sample.hpp"
#if LOOM_PACK_IMAGES
#include "loom/data/image_folder.hpp"  // registers images:<dir> (links libstb)
#endif
#include "loom/io/cli.hpp"
#include "loom/io/progress.hpp"

int main(int argc, char** argv) {
  std::string data, out;
  int threads = 0;
  bool verify = false, stats = false;
  int64_t stats_samples = -1;
  loom::io::Cli cli("pack_dataset", "Packs a dataset (any loom data spec) into one checksummed file for fast loading.");
  cli.flag("data", data, "data spec, e.g. synthetic:train=2048 or bigearthnet:<dir>?split=<csv>")
      .flag("out", out, "output file (replaced atomically)")
      .flag("threads", threads, "threads reading and encoding samples (0 = all cores)")
      .toggle("verify", verify, "read the pack back and check every sample's checksum")
      .toggle("stats", stats, "compute and print per-band mean / std over the data (stored in the pack with --out)")
      .flag("stats-samples", stats_samples, "with --stats: use only the first N samples (-1 = all)");
  try {
    if (!cli.parse(argc, argv, std::cout)) return 0;
    if (data.empty()) throw loom::io::UsageError("--data is required (see --help)");
    if (out.empty() && !stats) throw loom::io::UsageError("--out is required (or --stats; see --help)");
    if (stats_samples < -1)
      throw loom::io::UsageError("--stats-samples: expected -1 (all) or a count >= 0, got " + std::to_string(stats_samples));
    if (threads < 0) throw loom::io::UsageError("--threads: expected a count >= 0, got " + std::to_string(threads));
  } catch (const loom::io::UsageError& e) {
    std::fprintf(stderr, "pack_dataset: %s\n", e.what());
    return 2;
  }
  try {
    if (threads > 0) loom::set_num_threads(threads);
    const auto dataset = loom::data::open_dataset(data);
    const int64_t total = dataset->size();
    loom::data::PackOptions options;
    if (stats) {
      const auto start = std::chrono::steady_clock::now();
      options.statistics = loom::data::compute_band_statistics(*dataset, stats_samples);
      const int64_t used = stats_samples < 0 ? total : std::min(stats_samples, total);
      std::printf("per-band statistics over %lld samples (%.1f s):\n", static_cast<long long>(used),
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      loom::data::print_band_statistics(std::cout, options.statistics);
      std::cout.flush();
      if (dataset->skipped() > 0)
        std::printf("(%lld bad samples skipped)\n", static_cast<long long>(dataset->skipped()));
      if (out.empty()) return 0;
    }
    loom::io::Progress progress("packing", total);
    int64_t next_line = 0;  // without a terminal: a line per 10% (and the last)
    options.progress = [&](int64_t done, int64_t) {
      if (!progress.tty() && done < next_line && done < total) return;
      next_line = done + std::max<int64_t>(1, total / 10);
      const double rate = double(done) / std::max(progress.seconds(), 1e-9);
      char status[64];
      std::snprintf(status, sizeof status, "%.0f samples/s", rate);
      progress.update(done, status);
    };
    const loom::data::PackReport report = loom::data::write_packed(*dataset, out, options);
    std::printf("wrote %s: %lld samples (%lld skipped), %.1f MB in %.1f s\n", out.c_str(),
                static_cast<long long>(report.written), static_cast<long long>(report.skipped),
                double(report.bytes) / 1e6, progress.seconds());
    if (verify) {
      const auto packed = loom::data::open_dataset("packed:" + out);
      for (int64_t i = 0; i < packed->size(); ++i) packed->get(i);
      std::printf("verified %lld samples\n", static_cast<long long>(packed->size()));
    }
  } catch (const loom::Error& e) {
    std::fprintf(stderr, "pack_dataset: %s\n", e.what());
    return 1;
  }
  return 0;
}
