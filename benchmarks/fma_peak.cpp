// fma_peak: the machine's fp32 FMA peak, measured (not assumed) for benchmarks/compare_torch.sh.
// Each thread runs 12 independent chains of 8-wide fused multiply-adds (enough to cover the FMA
// latency on two pipes); 1 FMA lane = 2 FLOP. Prints one JSON line with the best of several runs
// at 1 thread and at --threads threads.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr int kChains = 12;
constexpr long kIterations = 40'000'000;

// Returns a value depending on every chain so that the loop is not optimized away.
float fma_chains(long iterations) {
  __m256 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(float(c) * 1e-3f);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (long i = 0; i < iterations; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
  __m256 s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm256_add_ps(s, acc[c]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0];
}

// GFLOP/s of `threads` threads running the chains at once (best of `repeats`).
double measure(int threads, int repeats) {
  double best = 0;
  for (int r = 0; r < repeats; ++r) {
    std::atomic<float> sink{0};
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back([&] { sink = sink + fma_chains(kIterations); });
    for (auto& t : pool) t.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, double(threads) * double(kIterations) * kChains * 8 * 2 / s * 1e-9);
    if (sink == 12345.0f) std::printf(" ");
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, repeats = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--threads") threads = std::stoi(argv[i + 1]);
    else if (a == "--repeats") repeats = std::stoi(argv[i + 1]);
  }
  const double one = measure(1, repeats), all = measure(threads, repeats);
  std::printf("{\"probe\": \"fma_peak\", \"gflops_1_thread\": %.1f, \"threads\": %d, \"gflops\": %.1f}\n", one, threads, all);
  return 0;
}
