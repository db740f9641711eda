// fp32 GEMM: loom::blas::gemm against Eigen, OpenBLAS (cblas_sgemm) and oneDNN (dnnl_sgemm) on
// transformer-sized shapes, at 1 and 2 threads. Prints GFLOP/s (2*M*N*K / median time) per
// library, the ratio loom / best comparator, and writes CSV.
//
//   bench_gemm [--csv FILE] [--reps N] [--threads 1,2] [--min-ms T] [--libs loom,eigen,openblas,onednn]
//              [--shapes 0,1,...] [--mc N --kc N --nc N] [--variant NAME] [--no-reexec]
//
// The repeats of the libraries are interleaved (round r times every library once, with a pause
// before each so the previous library's spinning threads have gone to sleep), so that load from
// other processes on a shared machine hits all columns alike. The "busy" column is the CPU time
// other processes used during the timed repeats, in cores (0 = the machine was ours alone).
//
// OpenBLAS reads OPENBLAS_CORETYPE once, when it loads. When the variable is set, the benchmark
// re-runs itself with it unset (OpenBLAS only) and reports both columns. To measure by hand:
//   env -u OPENBLAS_CORETYPE ./bench_gemm      and      OPENBLAS_CORETYPE=Haswell ./bench_gemm
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>
#include <sys/wait.h>

#include <Eigen/Core>

#include "loom/core/gemm.hpp"
#include "loom/core/parallel.hpp"

#if LOOM_BENCH_HAVE_OPENMP
#include <omp.h>
#endif
#if LOOM_BENCH_HAVE_OPENBLAS
#include <cblas.h>
extern "C" void openblas_set_num_threads(int);
#endif
#if LOOM_BENCH_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#endif

extern char** environ;

namespace {

struct Shape {
  const char* name;
  int64_t M, N, K;
  bool ta = false, tb = false;  // op(A) = A^T (A stored K x M), op(B) = B^T (B stored N x K)
};

struct Options {
  std::string csv = "bench_gemm.csv";
  int reps = 9;
  double min_ms = 40;  // each repeat runs the GEMM enough times to last at least this long
  std::vector<int> threads = {1, 2};
  std::vector<std::string> libs = {"loom", "eigen", "openblas", "onednn"};
  std::string variant;  // tag for the CSV (e.g. coretype-unset)
  bool reexec = true;
  std::string self;
  std::vector<int> shapes;  // indices into the shape list; empty = all
  int64_t mc = 0, kc = 0, nc = 0;  // loom blocking overrides (0 = default)
  int pause_ms = 150;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, sep);)
    if (!item.empty()) out.push_back(item);
  return out;
}

bool has(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Warm-up (packing buffers, JIT, thread start), then how many calls make one repeat.
int calibrate(const std::function<void()>& f, const Options& opt) {
  for (int i = 0; i < 3; ++i) f();
  const double t0 = now_s();
  f();
  const double one = std::max(now_s() - t0, 1e-7);
  return std::max(1, int(std::ceil(opt.min_ms * 1e-3 / one)));
}

// CPU time (seconds) used by the whole machine, and by this process, so far.
double machine_busy_s() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  double user = 0, nice = 0, sys = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  in >> cpu >> user >> nice >> sys >> idle >> iowait >> irq >> softirq >> steal;
  return (user + nice + sys + irq + softirq) / double(sysconf(_SC_CLK_TCK));
}
double process_cpu_s() {
  std::ifstream in("/proc/self/stat");
  std::string line;
  std::getline(in, line);
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::atof(field.c_str());
    if (i == 15) stime = std::atof(field.c_str());
  }
  return (utime + stime) / double(sysconf(_SC_CLK_TCK));
}

void set_threads(int t) {
  loom::set_num_threads(t);
  Eigen::setNbThreads(t);
#if LOOM_BENCH_HAVE_OPENMP
  omp_set_num_threads(t);
#endif
#if LOOM_BENCH_HAVE_OPENBLAS
  openblas_set_num_threads(t);
#endif
}

struct Result {
  std::string shape, lib;
  int64_t M, N, K;
  int threads;
  double median_s, min_s, gflops;
  double busy = 0;  // other processes' CPU use during the repeats, in cores
};

// Runs this executable again with OPENBLAS_CORETYPE removed from the environment, OpenBLAS only,
// and reads its CSV back.
std::vector<Result> run_coretype_unset(const Options& opt) {
  std::vector<Result> out;
  const std::string tmp = opt.csv + ".coretype-unset.tmp";
  std::vector<std::string> args = {opt.self, "--no-reexec", "--libs", "openblas", "--variant",
                                   "coretype-unset", "--csv", tmp, "--reps", std::to_string(opt.reps),
                                   "--min-ms", std::to_string(opt.min_ms)};
  std::string th;
  for (int t : opt.threads) {
    if (!th.empty()) th += ',';
    th += std::to_string(t);
  }
  args.push_back("--threads");
  args.push_back(th);
  if (!opt.shapes.empty()) {
    std::string sh;
    for (int i : opt.shapes) {
      if (!sh.empty()) sh += ',';
      sh += std::to_string(i);
    }
    args.push_back("--shapes");
    args.push_back(sh);
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> env;
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, "OPENBLAS_CORETYPE=", 18) != 0) env.push_back(*e);
  env.push_back(nullptr);
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    execve(opt.self.c_str(), argv.data(), env.data());
    std::perror("execve");
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  std::ifstream in(tmp);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    const auto f = split(line, ',');
    if (f.size() < 10) continue;
    Result r{f[0], "openblas(coretype unset)", std::stoll(f[1]), std::stoll(f[2]), std::stoll(f[3]),
             std::stoi(f[4]), std::stod(f[7]) * 1e-3, std::stod(f[8]) * 1e-3, std::stod(f[9]),
             f.size() > 11 ? std::stod(f[11]) : 0.0};
    out.push_back(r);
  }
  std::remove(tmp.c_str());
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  opt.self = "/proc/self/exe";
  char self_path[4096];
  const ssize_t len = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
  if (len > 0) opt.self.assign(self_path, size_t(len));
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "missing value for %s\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--csv") opt.csv = next();
    else if (a == "--reps") opt.reps = std::max(1, std::atoi(next().c_str()));
    else if (a == "--min-ms") opt.min_ms = std::atof(next().c_str());
    else if (a == "--threads") {
      opt.threads.clear();
      for (auto& t : split(next(), ',')) opt.threads.push_back(std::max(1, std::atoi(t.c_str())));
    } else if (a == "--libs") opt.libs = split(next(), ',');
    else if (a == "--variant") opt.variant = next();
    else if (a == "--no-reexec") opt.reexec = false;
    else if (a == "--shapes")
      for (auto& t : split(next(), ',')) opt.shapes.push_back(std::atoi(t.c_str()));
    else if (a == "--mc") opt.mc = std::atoll(next().c_str());
    else if (a == "--kc") opt.kc = std::atoll(next().c_str());
    else if (a == "--nc") opt.nc = std::atoll(next().c_str());
    else if (a == "--pause-ms") opt.pause_ms = std::max(0, std::atoi(next().c_str()));
    else {
      std::fprintf(stderr,
                   "usage: bench_gemm [--csv FILE] [--reps N] [--min-ms T] [--threads 1,2] "
                   "[--libs loom,eigen,openblas,onednn] [--shapes 0,1,..] [--mc N] [--kc N] [--nc N] "
                   "[--pause-ms MS] [--variant NAME] [--no-reexec]\n");
      return 2;
    }
  }

  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  std::printf("bench_gemm: fp32 row-major C = A*B, median of %d repeats (each >= %.0f ms)\n", opt.reps,
              opt.min_ms);
  std::printf("OPENBLAS_CORETYPE=%s\n", coretype ? coretype : "(unset)");
#if !LOOM_BENCH_HAVE_OPENBLAS
  std::printf("OpenBLAS: not found at build time, column omitted\n");
#endif
#if !LOOM_BENCH_HAVE_ONEDNN
  std::printf("oneDNN: not found at build time, column omitted\n");
#endif
#if !LOOM_BENCH_HAVE_OPENMP
  std::printf("OpenMP: not found at build time: Eigen runs single-threaded\n");
#endif
#if LOOM_GEMM_AVX2
  std::printf("loom kernel: AVX2+FMA 6x16\n");
#else
  std::printf("loom kernel: generic C++ (no AVX2+FMA at compile time)\n");
#endif

  // The first five are the reference shapes (ViT-tiny-like: 3200 tokens, width 192, MLP 768);
  // the last three are the transposed products of the same layers' backward/forward passes.
  const std::vector<Shape> all_shapes = {{"3200x192*192x576", 3200, 576, 192},
                                         {"3200x192*192x192", 3200, 192, 192},
                                         {"3200x192*192x768", 3200, 768, 192},
                                         {"3200x768*768x192", 3200, 192, 768},
                                         {"1024^3", 1024, 1024, 1024},
                                         {"3200x192*(576x192)^T", 3200, 576, 192, false, true},
                                         {"(3200x576)^T*3200x192", 576, 192, 3200, true, false},
                                         {"(3200x768)^T*3200x192", 768, 192, 3200, true, false}};
  std::vector<Shape> shapes;
  for (size_t i = 0; i < all_shapes.size(); ++i)
    if (opt.shapes.empty() || std::find(opt.shapes.begin(), opt.shapes.end(), int(i)) != opt.shapes.end())
      shapes.push_back(all_shapes[i]);
  auto& blk = loom::blas::gemm_detail::blocking();
  if (opt.mc > 0) blk.mc = (opt.mc + 5) / 6 * 6;
  if (opt.kc > 0) blk.kc = opt.kc;
  if (opt.nc > 0) blk.nc = (opt.nc + 15) / 16 * 16;
  std::printf("loom blocking: MC=%lld KC=%lld NC=%lld\n", (long long)blk.mc, (long long)blk.kc,
              (long long)blk.nc);

  std::vector<std::string> libs;
  for (const std::string l : {"loom", "eigen", "openblas", "onednn"}) {
    if (!has(opt.libs, l)) continue;
#if !LOOM_BENCH_HAVE_OPENBLAS
    if (l == "openblas") continue;
#endif
#if !LOOM_BENCH_HAVE_ONEDNN
    if (l == "onednn") continue;
#endif
    libs.push_back(l);
  }

  std::vector<Result> results;
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  for (const Shape& s : shapes) {
    std::vector<float> A(size_t(s.M * s.K)), B(size_t(s.K * s.N)), C(size_t(s.M * s.N)),
        ref(size_t(s.M * s.N));
    for (auto& x : A) x = dist(rng);
    for (auto& x : B) x = dist(rng);
    const int64_t lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N;
    using RM = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const Eigen::Map<const RM> a_stored(A.data(), s.ta ? s.K : s.M, lda);
    const Eigen::Map<const RM> b_stored(B.data(), s.tb ? s.N : s.K, ldb);
    Eigen::Map<RM> c_map(C.data(), s.M, s.N);
    auto eigen_product = [&](Eigen::Map<RM>& out) {
      if (s.ta && s.tb) out.noalias() = a_stored.transpose() * b_stored.transpose();
      else if (s.ta) out.noalias() = a_stored.transpose() * b_stored;
      else if (s.tb) out.noalias() = a_stored * b_stored.transpose();
      else out.noalias() = a_stored * b_stored;
    };
    {  // sanity: loom against Eigen
      Eigen::Map<RM> ref_map(ref.data(), s.M, s.N);
      eigen_product(ref_map);
      loom::blas::gemm(s.ta, s.tb, s.M, s.N, s.K, 1.f, A.data(), lda, B.data(), ldb, 0.f, C.data(), s.N);
      double err = 0;
      for (size_t i = 0; i < C.size(); ++i) err = std::max(err, double(std::abs(C[i] - ref[i])));
      if (err > 1e-3 * std::sqrt(double(s.K))) {
        std::fprintf(stderr, "%s: loom differs from Eigen by %g\n", s.name, err);
        return 1;
      }
    }
    for (int t : opt.threads) {
      set_threads(t);
      std::vector<std::function<void()>> fns;
      std::vector<int> inner;
      for (const std::string& lib : libs) {
        std::function<void()> f;
        if (lib == "loom") {
          f = [&] {
            loom::blas::gemm(s.ta, s.tb, s.M, s.N, s.K, 1.f, A.data(), lda, B.data(), ldb, 0.f,
                             C.data(), s.N);
          };
        } else if (lib == "eigen") {
          f = [&] { eigen_product(c_map); };
        }
#if LOOM_BENCH_HAVE_OPENBLAS
        else if (lib == "openblas") {
          f = [&] {
            cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans,
                        int(s.M), int(s.N), int(s.K), 1.f, A.data(), int(lda), B.data(), int(ldb), 0.f,
                        C.data(), int(s.N));
          };
        }
#endif
#if LOOM_BENCH_HAVE_ONEDNN
        else if (lib == "onednn") {
          f = [&] {
            dnnl_sgemm(s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', s.M, s.N, s.K, 1.f, A.data(), lda, B.data(),
                       ldb, 0.f, C.data(), s.N);
          };
        }
#endif
        fns.push_back(f);
        std::this_thread::sleep_for(std::chrono::milliseconds(opt.pause_ms));
        inner.push_back(calibrate(f, opt));
      }
      std::vector<std::vector<double>> times(libs.size());
      std::vector<double> busy(libs.size(), 0.0);
      for (int r = 0; r < opt.reps; ++r)
        for (size_t l = 0; l < libs.size(); ++l) {
          // Let the previous library's spinning threads go to sleep before timing the next one.
          std::this_thread::sleep_for(std::chrono::milliseconds(opt.pause_ms));
          const double m0 = machine_busy_s(), p0 = process_cpu_s(), t0 = now_s();
          for (int i = 0; i < inner[l]; ++i) fns[l]();
          const double dt = now_s() - t0;
          times[l].push_back(dt / inner[l]);
          busy[l] += std::max(0.0, (machine_busy_s() - m0) - (process_cpu_s() - p0)) / dt;
        }
      for (size_t l = 0; l < libs.size(); ++l) {
        std::sort(times[l].begin(), times[l].end());
        const double med = times[l][times[l].size() / 2], mn = times[l].front();
        const double gf = 2.0 * double(s.M) * double(s.N) * double(s.K) / med * 1e-9;
        results.push_back({s.name, libs[l], s.M, s.N, s.K, t, med, mn, gf, busy[l] / opt.reps});
        std::fprintf(stderr, "  %-22s %d thr %-9s %8.1f GFLOP/s  (busy %.2f)\n", s.name, t,
                     libs[l].c_str(), gf, busy[l] / opt.reps);
      }
    }
  }

  if (coretype && opt.reexec && has(libs, "openblas")) {
    std::printf("re-running OpenBLAS with OPENBLAS_CORETYPE unset...\n");
    const auto extra = run_coretype_unset(opt);
    results.insert(results.end(), extra.begin(), extra.end());
  }

  // Table: one row per (shape, threads), one column per library.
  std::vector<std::string> cols;
  for (const auto& r : results)
    if (!has(cols, r.lib)) cols.push_back(r.lib);
  std::map<std::pair<std::string, int>, std::map<std::string, double>> table;
  for (const auto& r : results) table[{r.shape, r.threads}][r.lib] = r.gflops;
  std::printf("\nGFLOP/s (2*M*N*K / median time)\n%-22s %3s", "shape (MxK*KxN)", "thr");
  for (const auto& c : cols) std::printf(" %14s", c.c_str());
  const bool have_loom = has(cols, "loom");
  if (have_loom) std::printf(" %10s", "loom/best");
  std::printf(" %6s\n", "busy");
  for (int t : opt.threads)
    for (const Shape& s : shapes) {
      const auto& row = table[{s.name, t}];
      std::printf("%-22s %3d", s.name, t);
      double best = 0;
      for (const auto& c : cols) {
        const auto it = row.find(c);
        if (it == row.end()) {
          std::printf(" %14s", "-");
          continue;
        }
        std::printf(" %14.1f", it->second);
        if (c != "loom") best = std::max(best, it->second);
      }
      if (have_loom && best > 0) std::printf(" %10.2f", row.at("loom") / best);
      else if (have_loom) std::printf(" %10s", "-");
      double busy = 0;
      for (const auto& r : results)
        if (r.shape == s.name && r.threads == t) busy = std::max(busy, r.busy);
      std::printf(" %6.2f\n", busy);
    }

  std::ofstream csv(opt.csv);
  csv << "shape,M,N,K,threads,library,variant,median_ms,min_ms,gflops,openblas_coretype,busy\n";
  for (const auto& r : results) {
    const std::string variant = r.lib == "openblas(coretype unset)" ? "coretype-unset" : opt.variant;
    csv << r.shape << ',' << r.M << ',' << r.N << ',' << r.K << ',' << r.threads << ','
        << (r.lib == "openblas(coretype unset)" ? "openblas" : r.lib) << ',' << variant << ','
        << r.median_s * 1e3 << ',' << r.min_s * 1e3 << ',' << r.gflops << ','
        << (variant == "coretype-unset" ? "" : (coretype ? coretype : "")) << ','
        << std::round(r.busy * 1000) / 1000 << '\n';
  }
  std::printf("\nCSV: %s\n", opt.csv.c_str());
  return 0;
}
