// bench_attention_gpu: loom's fused attention kernels against the unfused cuBLAS + softmax version,
// forward, backward and both, fp32 and bf16, on the shapes of the MAE (seq 113, 451, 1025; head
// dim 64; batch·heads 256). FLOPs counted as the field does: fwd = 4·BH·Sq·Sk·D (two GEMMs),
// bwd = 2.5·fwd (five GEMMs, the forward's recomputation included).
// Usage: bench_attention_gpu [--reps N] [--bh N] [--csv FILE]. PyTorch's SDPA (flash and cuDNN
// backends) is timed on the same shapes by torch_sdpa.py; run.sh puts the two side by side.
// cuDNN's own fused SDPA (loom/cuda/cudnn_attention.hpp, backend API) is the "cudnn_sdpa" row, bf16
// (bwd columns nan if cuDNN cannot run its backward here); skipped, saying why, when loom was built
// without cuDNN.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "attention_naive.cuh"
#include "loom/cuda/device_info.hpp"
#include "loom/cuda/device_memory.hpp"
#include "median_time.hpp"
#include "loom/cuda/flash_attention.hpp"
#include "loom/core/bf16.hpp"
#include "loom/cuda/cudnn_attention.hpp"
#include "loom/cuda/cudnn_support.hpp"

namespace {

using loom::bench::median_ms;
using loom::cuda::DeviceBuffer;
using loom::kernels::AttentionDims;

template <class T>
std::vector<T> random_host(size_t n, unsigned seed) {
  std::vector<T> x(n);
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& v : x) {  // uniform(-1, 1) from a 64-bit LCG: benchmarks need values, not statistics
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    v = T(float(double(s >> 11) / double(1ull << 53) * 2.0 - 1.0));
  }
  return x;
}

struct Row {
  std::string impl, dtype;
  int64_t seq;
  float fwd_ms, bwd_ms, fwdbwd_ms;
};

template <class T>
void bench(const char* dtype, int64_t bh, int64_t seq, int d, int reps, std::vector<Row>& rows) {
  const AttentionDims dims{bh, seq, seq, d, 1.0f / std::sqrt(float(d))};
  const size_t n = size_t(bh * seq * d);
  auto q = DeviceBuffer<T>::from_host(random_host<T>(n, 1)), k = DeviceBuffer<T>::from_host(random_host<T>(n, 2)),
       v = DeviceBuffer<T>::from_host(random_host<T>(n, 3)), d_o = DeviceBuffer<T>::from_host(random_host<T>(n, 4));
  DeviceBuffer<T> o(n), dq(n), dk(n), dv(n);
  DeviceBuffer<float> lse{size_t(bh * seq)}, delta{size_t(bh * seq)};

  const auto fwd = [&] { loom::kernels::flash_attention_forward(dims, q.data(), k.data(), v.data(), o.data(), lse.data()); };
  const auto bwd = [&] {
    loom::kernels::flash_attention_backward(dims, q.data(), k.data(), v.data(), o.data(), d_o.data(), lse.data(),
                                            delta.data(), dq.data(), dk.data(), dv.data());
  };
  fwd();
  rows.push_back({"loom_flash", dtype, seq, median_ms(reps, fwd), median_ms(reps, bwd), median_ms(reps, [&] {
                    fwd();
                    bwd();
                  })});

  loom::kernels::NaiveAttention<T> naive(dims);
  const auto nfwd = [&] { naive.forward(q.data(), k.data(), v.data(), o.data()); };
  const auto nbwd = [&] { naive.backward(q.data(), k.data(), v.data(), d_o.data(), dq.data(), dk.data(), dv.data()); };
  nfwd();
  rows.push_back({"cublas_softmax", dtype, seq, median_ms(reps, nfwd), median_ms(reps, nbwd), median_ms(reps, [&] {
                    nfwd();
                    nbwd();
                  })});
}

// cuDNN's fused SDPA on the same shape (bf16; [BH, S, D] as B = BH, H = 1). A backward that cuDNN
// cannot run here leaves the bwd columns nan and says why.
void bench_cudnn_sdpa(int64_t bh, int64_t seq, int d, int reps, std::vector<Row>& rows) {
  using loom::bf16;
  const size_t n = size_t(bh * seq * d);
  auto q = DeviceBuffer<bf16>::from_host(random_host<bf16>(n, 1)),
       k = DeviceBuffer<bf16>::from_host(random_host<bf16>(n, 2)),
       v = DeviceBuffer<bf16>::from_host(random_host<bf16>(n, 3)),
       d_o = DeviceBuffer<bf16>::from_host(random_host<bf16>(n, 4));
  DeviceBuffer<bf16> o(n), dq(n), dk(n), dv(n);
  DeviceBuffer<float> stats{size_t(bh * seq)};
  const loom::cuda::CudnnSdpaDims dims{bh, 1, seq, seq, d, 1.0f / std::sqrt(float(d))};
  const auto fwd = [&] { loom::cuda::cudnn_sdpa_forward(dims, q.data(), k.data(), v.data(), o.data(), stats.data()); };
  const auto bwd = [&] {
    loom::cuda::cudnn_sdpa_backward(dims, q.data(), k.data(), v.data(), o.data(), d_o.data(), stats.data(), dq.data(),
                                    dk.data(), dv.data());
  };
  fwd();  // builds and caches the execution plan
  Row row{"cudnn_sdpa", "bf16", seq, median_ms(reps, fwd), NAN, NAN};
  try {
    bwd();
    row.bwd_ms = median_ms(reps, bwd);
    row.fwdbwd_ms = median_ms(reps, [&] {
      fwd();
      bwd();
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_attention_gpu: cudnn_sdpa backward skipped: %s\n", e.what());
  }
  rows.push_back(row);
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 20;
  int64_t bh = 256;
  std::string csv = "bench_attention_gpu.csv";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--bh")) bh = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--csv")) csv = argv[i + 1];
    else {
      std::fprintf(stderr, "bench_attention_gpu: unknown flag %s (use --reps, --bh, --csv)\n", argv[i]);
      return 2;
    }
  }
  if (const char* why = loom::cuda::no_device_reason()) {
    std::printf("bench_attention_gpu: skipped: %s\n", why);
    return 0;
  }
  const int d = 64;
  std::vector<Row> rows, cudnn_rows;
  try {
    for (int64_t seq : {113, 451, 1025}) {
      bench<float>("fp32", bh, seq, d, reps, rows);
      bench<loom::bf16>("bf16", bh, seq, d, reps, rows);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_attention_gpu: %s\n", e.what());
    return 1;
  }
  if (const char* why = loom::cuda::no_cudnn_reason()) {
    std::printf("bench_attention_gpu: cudnn_sdpa skipped: %s\n", why);
  } else {
    try {
      for (int64_t seq : {113, 451, 1025}) bench_cudnn_sdpa(bh, seq, d, reps, cudnn_rows);
    } catch (const std::exception& e) {  // a comparator failing must not cost the other rows
      std::fprintf(stderr, "bench_attention_gpu: cudnn_sdpa failed: %s\n", e.what());
    }
  }
  FILE* f = std::fopen(csv.c_str(), "w");
  if (f) std::fprintf(f, "impl,dtype,bh,seq,head_dim,fwd_ms,bwd_ms,fwdbwd_ms,fwd_tflops,bwd_tflops,fwdbwd_tflops\n");
  std::printf("%-15s %-5s %5s %9s %9s %9s %8s %8s %8s\n", "impl", "dtype", "seq", "fwd ms", "bwd ms", "f+b ms",
              "fwd TF/s", "bwd TF/s", "f+b TF/s");
  std::vector<Row> all = rows;
  all.insert(all.end(), cudnn_rows.begin(), cudnn_rows.end());
  for (const Row& r : all) {
    const double fwd_flop = 4.0 * double(bh) * double(r.seq) * double(r.seq) * d, bwd_flop = 2.5 * fwd_flop;
    const double tf = 1e-9;  // flop / ms -> TFLOP/s
    std::printf("%-15s %-5s %5lld %9.3f %9.3f %9.3f %8.2f %8.2f %8.2f\n", r.impl.c_str(), r.dtype.c_str(),
                (long long)r.seq, r.fwd_ms, r.bwd_ms, r.fwdbwd_ms, fwd_flop / r.fwd_ms * tf, bwd_flop / r.bwd_ms * tf,
                (fwd_flop + bwd_flop) / r.fwdbwd_ms * tf);
    if (f)
      std::fprintf(f, "%s,%s,%lld,%lld,%d,%.4f,%.4f,%.4f,%.3f,%.3f,%.3f\n", r.impl.c_str(), r.dtype.c_str(),
                   (long long)bh, (long long)r.seq, d, r.fwd_ms, r.bwd_ms, r.fwdbwd_ms, fwd_flop / r.fwd_ms * tf,
                   bwd_flop / r.bwd_ms * tf, (fwd_flop + bwd_flop) / r.fwdbwd_ms * tf);
  }
  // Ratios against the unfused version of the same dtype and shape (rows come in pairs).
  for (size_t i = 0; i + 1 < rows.size(); i += 2)
    std::printf("ratio flash/cublas %s seq %lld: fwd %.2fx  bwd %.2fx  fwd+bwd %.2fx\n", rows[i].dtype.c_str(),
                (long long)rows[i].seq, rows[i + 1].fwd_ms / rows[i].fwd_ms, rows[i + 1].bwd_ms / rows[i].bwd_ms,
                rows[i + 1].fwdbwd_ms / rows[i].fwdbwd_ms);
  // loom's bf16 flash kernels against cuDNN's on the same shape (> 1: loom is faster).
  for (const Row& c : cudnn_rows)
    for (const Row& r : rows)
      if (r.impl == "loom_flash" && r.dtype == "bf16" && r.seq == c.seq)
        std::printf("ratio loom_flash/cudnn_sdpa bf16 seq %lld: fwd %.2fx  bwd %.2fx  fwd+bwd %.2fx\n",
                    (long long)c.seq, c.fwd_ms / r.fwd_ms, c.bwd_ms / r.bwd_ms, c.fwdbwd_ms / r.fwdbwd_ms);
  if (f) std::fclose(f);
  return 0;
}
