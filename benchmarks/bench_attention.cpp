// Fused CPU attention (scaled_dot_product_attention: tiled online softmax) against the unfused
// composition (attention_reference: matmul, softmax, matmul), fp32, forward alone and forward +
// backward, at sequence lengths 113, 451, 1025, head dim 64, batch·heads 96 (8 x 12).
// Repeats alternate fused / reference; the table shows medians, GFLOP/s, the time ratio
// reference / fused, and the peak bytes each allocates above what was live before (allocator
// statistics: loom::reset_peak_memory / memory_stats).
// FLOPs counted per (batch·head): forward 4·Sq·Sk·D (two matmuls), backward 8·Sq·Sk·D (four); the
// fused backward's recomputation of Q·Kᵀ is not counted.
// --cpu-time times with the process CPU clock instead of the wall clock: on a shared, loaded
// machine that is the steadier measure of work (use it with --threads 1; pool threads that spin
// while waiting would count too).
// --tiles 1 first compares ways to multiply one 96x96x64 score tile S = Q·Kᵀ on one core (thread
// CPU time): hand-written AVX2 dot products, hand-written AVX2 outer products (one query row x 96
// keys in 12 accumulators), a full blas::gemm_serial call per tile (packs both operands), and the
// GEMM macro-kernel on operands packed once (what the fused kernel does).
// Usage: bench_attention [--reps N] [--threads T] [--seq S[,S...]] [--csv FILE] [--cpu-time 1] [--tiles 1]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif
#include <string>
#include <vector>

#include "loom/autograd/grad_mode.hpp"
#include "loom/core/allocator.hpp"
#include "loom/core/parallel.hpp"
#include "loom/core/random.hpp"
#include "loom/ops/attention.hpp"

using loom::Tensor;
using Clock = std::chrono::steady_clock;

namespace {

struct Measure {
  std::vector<double> seconds;
  int64_t peak_bytes = 0;
  double median() const {
    std::vector<double> v = seconds;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  }
};

bool use_cpu_time = false;

double now_seconds() {
  if (use_cpu_time) {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return double(t.tv_sec) + double(t.tv_nsec) * 1e-9;
  }
  return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
}

// Times fn once and records the peak bytes it allocated above what was live before.
template <class Fn>
void measure(Measure& m, Fn&& fn) {
  const int64_t before = loom::memory_stats().current_bytes;
  loom::reset_peak_memory();
  const double t0 = now_seconds();
  fn();
  m.seconds.push_back(now_seconds() - t0);
  m.peak_bytes = std::max(m.peak_bytes, loom::memory_stats().peak_bytes - before);
}

#if defined(__AVX2__) && defined(__FMA__)
double thread_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + double(t.tv_nsec) * 1e-9;
}

// s [n, n] = q [n, d] · k [n, d]ᵀ as n² dot products (8-wide FMA, then a horizontal sum).
void tile_dots(const float* q, const float* k, float* s, int n, int d) {
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      __m256 acc = _mm256_setzero_ps();
      for (int c = 0; c < d; c += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i * d + c), _mm256_loadu_ps(k + j * d + c), acc);
      __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
      h = _mm_hadd_ps(h, h);
      h = _mm_hadd_ps(h, h);
      s[i * n + j] = _mm_cvtss_f32(h);
    }
}

// s [96, 96] = q [96, d] · kt [d, 96]: per query row, 12 accumulators of 8 keys, q broadcast.
void tile_outer(const float* q, const float* kt, float* s, int d) {
  constexpr int n = 96;
  for (int i = 0; i < n; ++i) {
    __m256 acc[12];
    for (auto& a : acc) a = _mm256_setzero_ps();
    for (int c = 0; c < d; ++c) {
      const __m256 b = _mm256_broadcast_ss(q + i * d + c);
      for (int v = 0; v < 12; ++v) acc[v] = _mm256_fmadd_ps(b, _mm256_loadu_ps(kt + c * n + v * 8), acc[v]);
    }
    for (int v = 0; v < 12; ++v) _mm256_storeu_ps(s + i * n + v * 8, acc[v]);
  }
}

void compare_tile_products() {
  constexpr int n = 96, d = 64, reps = 20000;
  using Engine = loom::detail::flash::TileEngine<float>;
  const Tensor<float> buffer = Tensor<float>::zeros({8 * 16384});
  float* q = buffer.data();  // [96, 64]
  float *k = q + 16384, *kt = k + 16384, *s = kt + 16384, *pa = s + 16384, *pb = pa + 32768;
  for (int i = 0; i < n * d; ++i) q[i] = float(i % 13) * 0.01f, k[i] = float(i % 7) * 0.02f;
  for (int j = 0; j < n; ++j)
    for (int c = 0; c < d; ++c) kt[c * n + j] = k[j * d + c];
  Engine::pack_a(false, n, d, q, d, pa);
  Engine::pack_b(true, d, n, k, d, pb);
  auto rate = [&](auto&& fn) {
    fn();
    const double t0 = thread_seconds();
    for (int r = 0; r < reps; ++r) fn();
    return 2.0 * n * n * d * reps / (thread_seconds() - t0) / 1e9;
  };
  const double dots = rate([&] { tile_dots(q, k, s, n, d); });
  const double outer = rate([&] { tile_outer(q, kt, s, d); });
  const double per_call = rate([&] { loom::blas::gemm_detail::gemm_serial(false, true, n, n, d, 1.f, q, d, k, d, 0.f, s, n); });
  const double packed = rate([&] { Engine::multiply(n, n, d, 1.f, pa, pb, 0.f, s, n); });
  std::printf("one 96x96x64 tile S = Q*K^T, GFLOP/s on one core: AVX2 dot products %.1f | AVX2 outer products %.1f | "
              "gemm_serial per tile %.1f | macro-kernel on pre-packed operands %.1f\n\n",
              dots, outer, per_call, packed);
}
#endif

}  // namespace

int main(int argc, char** argv) {
  int reps = 5, threads = 2;
  bool tiles = false;
  std::vector<int64_t> seqs{113, 451, 1025};
  std::string csv = "bench_attention.csv";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--csv")) csv = argv[i + 1];
    else if (!std::strcmp(argv[i], "--cpu-time")) use_cpu_time = std::atoi(argv[i + 1]) != 0;
    else if (!std::strcmp(argv[i], "--tiles")) tiles = std::atoi(argv[i + 1]) != 0;
    else if (!std::strcmp(argv[i], "--seq")) {
      seqs.clear();
      for (const char* p = argv[i + 1]; *p;) {
        char* end = nullptr;
        seqs.push_back(std::strtoll(p, &end, 10));
        p = *end == ',' ? end + 1 : end;
      }
    }
  }
  loom::set_num_threads(threads);
#if defined(__AVX2__) && defined(__FMA__)
  if (tiles) compare_tile_products();
#else
  (void)tiles;
#endif
  const int64_t B = 8, H = 12, D = 64;
  std::printf("attention fp32: batch %lld x heads %lld, head dim %lld, %d threads, median of %d (%s time)\n",
              (long long)B, (long long)H, (long long)D, loom::num_threads(), reps, use_cpu_time ? "CPU" : "wall");
  std::printf("%6s %-8s %12s %10s %12s %10s %14s %14s\n", "S", "pass", "fused ms", "GFLOP/s", "ref ms", "GFLOP/s",
              "fused peak MB", "ref peak MB");
  FILE* out = std::fopen(csv.c_str(), "w");
  if (out) std::fprintf(out, "seq,pass,fused_ms,reference_ms,ratio,fused_peak_bytes,reference_peak_bytes\n");
  for (const int64_t S : seqs) {
    loom::Generator gen(1);
    const Tensor<float> q = loom::randn<float>({B, H, S, D}, gen).requires_grad_();
    const Tensor<float> k = loom::randn<float>({B, H, S, D}, gen).requires_grad_();
    const Tensor<float> v = loom::randn<float>({B, H, S, D}, gen).requires_grad_();
    const Tensor<float> dout = loom::randn<float>({B, H, S, D}, gen);
    const double per_head = double(S) * double(S) * double(D) * double(B * H);
    for (const bool backward : {false, true}) {
      auto step = [&](bool fused) {
        if (!backward) {
          loom::NoGradGuard no_grad;
          const Tensor<float> o = fused ? loom::scaled_dot_product_attention(q, k, v) : loom::attention_reference(q, k, v);
          return;
        }
        for (const auto* x : {&q, &k, &v}) x->zero_grad();
        const Tensor<float> o = fused ? loom::scaled_dot_product_attention(q, k, v) : loom::attention_reference(q, k, v);
        o.backward(dout);
      };
      step(true);  // warm-up: pages, allocator cache, packing buffers
      step(false);
      Measure fused, ref;
      for (int r = 0; r < reps; ++r) {
        measure(fused, [&] { step(true); });
        measure(ref, [&] { step(false); });
      }
      const double flops = (backward ? 12 : 4) * per_head;
      const char* pass = backward ? "fwd+bwd" : "forward";
      std::printf("%6lld %-8s %12.2f %10.1f %12.2f %10.1f %14.1f %14.1f   ratio ref/fused %.2f\n", (long long)S, pass,
                  fused.median() * 1e3, flops / fused.median() / 1e9, ref.median() * 1e3, flops / ref.median() / 1e9,
                  double(fused.peak_bytes) / 1e6, double(ref.peak_bytes) / 1e6, ref.median() / fused.median());
      std::fflush(stdout);
      if (out)
        std::fprintf(out, "%lld,%s,%.3f,%.3f,%.3f,%lld,%lld\n", (long long)S, pass, fused.median() * 1e3,
                     ref.median() * 1e3, ref.median() / fused.median(), (long long)fused.peak_bytes,
                     (long long)ref.peak_bytes);
    }
  }
  if (out) std::fclose(out);
  return 0;
}
