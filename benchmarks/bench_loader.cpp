// Data-loading throughput: the DataLoader (2 workers, batches of 32, shuffled, normalized) reading
// BigEarthNet-MM patches from their GeoTIFF folders (14 files per sample, through the
// bigearthnet: reader) against the same samples from a packed shard (packed:, mmap), in samples
// per second, with the ratio; plus Synthetic Earth generated on the fly, for reference.
//
//   bench_loader [--data DIR] [--samples N] [--workers 2] [--batch 32] [--epochs 3] [--csv FILE]
//
// DIR holds BigEarthNet-v1.0/ and BigEarthNet-S1-v1.0/ (default: the repository's
// ../shared/data/bigearthnet-mm, 6 real patch pairs); its patches are repeated to N samples (the
// files then sit in the page cache, so this measures decoding, not the disk). Without DIR, a folder
// in the same layout is written from Synthetic Earth with the GeoTIFF writer. Each source gets one
// warm-up epoch, then `epochs` timed ones; the median epoch is reported, and the CPU time this
// process spent per sample (all threads; what the rate would be on otherwise idle cores is
// about workers / that). "busy" is the CPU time other processes used meanwhile, in cores (0 = the
// machine was ours alone): on a shared machine, read the rates with it.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "loom/core/parallel.hpp"
#include "loom/data/dataset.hpp"
#include "loom/data/geotiff.hpp"
#include "loom/data/loader.hpp"
#include "loom/data/packed.hpp"
#include "loom/data/synthetic.hpp"
#include "loom/io/cli.hpp"

#ifndef LOOM_SHARED_DATA_DIR
#define LOOM_SHARED_DATA_DIR "../shared/data"
#endif

namespace {

namespace fs = std::filesystem;
using loom::data::Dataset;
using loom::data::Sample;

// The first `n` samples of an endless repetition of `inner`.
class RepeatDataset : public Dataset {
 public:
  RepeatDataset(const Dataset& inner, int64_t n) : inner_(inner), n_(n) {}
  int64_t size() const override { return n_; }
  std::string name(int64_t i) const override { return inner_.name(i % inner_.size()); }
  std::vector<std::string> class_names() const override { return inner_.class_names(); }

 protected:
  Sample load(int64_t i) const override { return inner_.get(i % inner_.size()); }

 private:
  const Dataset& inner_;
  int64_t n_;
};

// CPU seconds used by the whole machine and by this process (for the "busy" column).
struct CpuClock {
  double machine = 0, self = 0;
  static CpuClock now() {
    CpuClock c;
    std::ifstream stat("/proc/stat");
    std::string cpu;
    long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
    stat >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
    c.machine = double(user + nice + system + irq + softirq) / double(sysconf(_SC_CLK_TCK));
    rusage r{};
    getrusage(RUSAGE_SELF, &r);
    c.self = double(r.ru_utime.tv_sec + r.ru_stime.tv_sec) + 1e-6 * double(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
    return c;
  }
};

struct Result {
  std::string source;
  double samples_per_second = 0;
  double busy_cores = 0;
  double cpu_us_per_sample = 0;  // CPU time of this process (all threads) per sample
};

// One warm-up epoch, then `epochs` timed ones; the median rate.
Result measure(const std::string& source, const Dataset& dataset, const loom::data::LoaderOptions& options, int epochs) {
  loom::data::DataLoader loader(dataset, options);
  std::vector<double> rates;
  double busy = 0, cpu = 0;
  int64_t timed_samples = 0;
  for (int e = 0; e <= epochs; ++e) {
    const CpuClock c0 = CpuClock::now();
    const auto t0 = std::chrono::steady_clock::now();
    loader.start_epoch(e);
    int64_t samples = 0;
    while (auto batch = loader.next()) samples += batch->size();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const CpuClock c1 = CpuClock::now();
    if (e == 0) continue;  // warm-up
    rates.push_back(double(samples) / seconds);
    busy += std::max(0.0, (c1.machine - c0.machine) - (c1.self - c0.self)) / seconds;
    cpu += c1.self - c0.self;
    timed_samples += samples;
  }
  std::sort(rates.begin(), rates.end());
  return {source, rates[rates.size() / 2], busy / double(epochs), cpu / double(timed_samples) * 1e6};
}

// A BigEarthNet-layout folder of `count` Synthetic Earth patch pairs: S2 bands at their native
// resolution (uint16), S1 VV/VH float32 dB, label JSONs.
void write_geotiff_folder(const std::string& root, int64_t count) {
  const loom::data::SyntheticEarth earth(loom::data::SyntheticOptions{});
  for (int64_t i = 0; i < count; ++i) {
    const Sample s = earth.get(i);
    const std::string s2_name = "S2A_MSIL2A_20170613T101031_" + std::to_string(i) + "_0";
    const std::string s1_name = "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_" + std::to_string(i) + "_0";
    const fs::path s2_dir = fs::path(root) / "BigEarthNet-v1.0" / s2_name;
    const fs::path s1_dir = fs::path(root) / "BigEarthNet-S1-v1.0" / s1_name;
    fs::create_directories(s2_dir);
    fs::create_directories(s1_dir);
    std::string labels;
    const std::vector<float> hot = s.labels.to_vector();
    for (size_t c = 0; c < hot.size(); ++c)
      if (hot[c] > 0) labels += std::string(labels.empty() ? "" : ", ") + "\"" + loom::data::kBigEarthNet19Classes[c] + "\"";
    std::ofstream(s2_dir / (s2_name + "_labels_metadata.json")) << "{\"labels\": [" << labels << "]}";
    std::ofstream(s1_dir / (s1_name + "_labels_metadata.json"))
        << "{\"labels\": [" << labels << "], \"corresponding_s2_patch\": \"" << s2_name << "\"}";
    for (size_t b = 0; b < 12; ++b) {
      const int f = loom::data::kS2BandResolution[b] / 10;
      // Box average to the band's own grid.
      const int64_t n = 120 / f;
      loom::Tensor<float> band = loom::Tensor<float>::zeros({n, n});
      const std::vector<float> full = s.s2.select(0, int64_t(b)).contiguous().to_vector();
      for (int64_t y = 0; y < 120; ++y)
        for (int64_t x = 0; x < 120; ++x) band.data()[(y / f) * n + x / f] += full[size_t(y * 120 + x)] / float(f * f);
      for (int64_t k = 0; k < n * n; ++k) band.data()[k] = std::round(band.data()[k]);
      loom::data::write_geotiff((s2_dir / (s2_name + "_" + loom::data::kS2Bands[b] + ".tif")).string(), band,
                                loom::data::GeoTiffWriteOptions().sample_type(loom::data::RasterType::u16));
    }
    for (int64_t c = 0; c < 2; ++c)
      loom::data::write_geotiff((s1_dir / (s1_name + "_" + loom::data::kS1Bands[size_t(c)] + ".tif")).string(),
                                s.s1.select(0, c).contiguous());
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string data = std::string(LOOM_SHARED_DATA_DIR) + "/bigearthnet-mm", csv = "bench_loader.csv";
  int64_t samples = 480, batch = 32;
  int workers = 2, epochs = 3;
  loom::io::Cli cli("bench_loader", "DataLoader throughput: GeoTIFF folders vs a packed shard vs Synthetic Earth.");
  cli.flag("data", data, "BigEarthNet-MM folder (written from Synthetic Earth when missing)")
      .flag("samples", samples, "samples per epoch (the folder's patches repeated)")
      .flag("workers", workers, "loader worker threads")
      .flag("batch", batch, "batch size")
      .flag("epochs", epochs, "timed epochs per source (after one warm-up epoch)")
      .flag("csv", csv, "CSV output file");
  try {
    if (!cli.parse(argc, argv, std::cout)) return 0;
    if (samples < 1 || epochs < 1) throw loom::io::UsageError("--samples and --epochs must be positive");
  } catch (const loom::io::UsageError& e) {
    std::fprintf(stderr, "bench_loader: %s\n", e.what());
    return 2;
  }
  try {
    const fs::path scratch = fs::temp_directory_path() / ("loom_bench_loader_" + std::to_string(::getpid()));
    fs::create_directories(scratch);
    std::string folder = data;
    if (!fs::exists(fs::path(data) / "BigEarthNet-v1.0")) {
      folder = (scratch / "geotiff").string();
      std::printf("%s has no BigEarthNet-v1.0/: writing 12 Synthetic Earth patch pairs as GeoTIFFs to %s\n",
                  data.c_str(), folder.c_str());
      write_geotiff_folder(folder, 12);
    }
    const auto geotiff = loom::data::open_dataset("bigearthnet:" + folder);
    const RepeatDataset repeated(*geotiff, samples);
    std::printf("GeoTIFF source: %s (%lld patch pairs, repeated to %lld samples)\n", folder.c_str(),
                static_cast<long long>(geotiff->size()), static_cast<long long>(samples));

    const std::string pack = (scratch / "bench.pack").string();
    const auto t0 = std::chrono::steady_clock::now();
    const loom::data::PackReport report = loom::data::write_packed(repeated, pack);
    const double pack_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("packed %lld samples (%.0f MB) in %.2f s\n", static_cast<long long>(report.written),
                double(report.bytes) / 1e6, pack_seconds);
    const auto packed = loom::data::open_dataset("packed:" + pack);
    const auto synthetic = loom::data::open_dataset("synthetic:train=" + std::to_string(samples));

    const auto options = loom::data::LoaderOptions().batch_size(batch).workers(workers).seed(1);
    std::vector<Result> results;
    results.push_back(measure("geotiff (bigearthnet:)", repeated, options, epochs));
    results.push_back(measure("packed (packed:, mmap)", *packed, options, std::max(epochs, 5)));
    results.push_back(measure("synthetic (generated)", *synthetic, options, epochs));

    const double base = results[0].samples_per_second;
    std::printf("\n%d workers, batch %lld, 120 x 120 x 14 samples, normalized\n", workers, static_cast<long long>(batch));
    std::printf("%-26s %12s %9s %14s %9s %6s\n", "source", "samples/s", "vs tiff", "cpu us/sample", "vs tiff",
                "busy");
    std::ofstream out(csv);
    out << "source,workers,batch,samples_per_second,ratio_vs_geotiff,cpu_us_per_sample,cpu_ratio_vs_geotiff,busy_cores\n";
    for (const Result& r : results) {
      const double cpu_ratio = results[0].cpu_us_per_sample / r.cpu_us_per_sample;
      std::printf("%-26s %12.0f %8.1fx %14.0f %8.1fx %6.2f\n", r.source.c_str(), r.samples_per_second,
                  r.samples_per_second / base, r.cpu_us_per_sample, cpu_ratio, r.busy_cores);
      out << r.source << ',' << workers << ',' << batch << ',' << r.samples_per_second << ','
          << r.samples_per_second / base << ',' << r.cpu_us_per_sample << ',' << cpu_ratio << ',' << r.busy_cores
          << '\n';
    }
    std::printf("\nCSV: %s\n", csv.c_str());
    fs::remove_all(scratch);
  } catch (const loom::Error& e) {
    std::fprintf(stderr, "bench_loader: %s\n", e.what());
    return 1;
  }
  return 0;
}
