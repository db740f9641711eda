#pragma once
// Progress reporting for long work: a one-line bar redrawn in place on a terminal (step/total,
// a caller-supplied status such as loss and img/s, ETA), plain log lines when stdout is not a TTY
// (CI logs, files), at most one line per `every` updates.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

namespace loom::io {

class Progress {
 public:
  Progress(std::string label, int64_t total, int64_t every = 1)
      : label_(std::move(label)), total_(total), every_(every > 0 ? every : 1), tty_(isatty(fileno(stdout)) != 0),
        start_(std::chrono::steady_clock::now()) {}

  // Reports that `done` of `total` units are finished, with a status text.
  void update(int64_t done, const std::string& status = "") {
    const double elapsed = seconds();
    const double eta = done > 0 ? elapsed / double(done) * double(total_ - done) : 0.0;
    if (tty_) {
      const int width = 24;
      const int filled = total_ > 0 ? int(double(width) * double(done) / double(total_)) : width;
      std::string bar(size_t(filled), '#');
      bar.resize(size_t(width), '.');
      std::printf("\r%s [%s] %lld/%lld %s ETA %s   ", label_.c_str(), bar.c_str(), (long long)done, (long long)total_,
                  status.c_str(), format_time(eta).c_str());
      if (done >= total_) std::printf("\n");
      std::fflush(stdout);
    } else if (done % every_ == 0 || done >= total_) {
      std::printf("%s %lld/%lld %s elapsed %s ETA %s\n", label_.c_str(), (long long)done, (long long)total_,
                  status.c_str(), format_time(elapsed).c_str(), format_time(eta).c_str());
      std::fflush(stdout);
    }
  }
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }
  bool tty() const { return tty_; }

  static std::string format_time(double s) {
    char buf[32];
    const long long t = (long long)(s + 0.5);
    if (t >= 3600) std::snprintf(buf, sizeof buf, "%lldh%02lldm", t / 3600, (t / 60) % 60);
    else std::snprintf(buf, sizeof buf, "%lldm%02llds", t / 60, t % 60);
    return buf;
  }

 private:
  std::string label_;
  int64_t total_, every_;
  bool tty_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace loom::io
