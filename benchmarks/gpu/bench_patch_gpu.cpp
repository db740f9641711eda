// bench_patch_gpu: the MAE's patch-masking kernels in GB/s (bytes read + written) against a
// device-to-device copy moving the same number of bytes, measured in the same run (target >= 80%).
// Shapes: batch 256 of 120×120 images, 12 optical channels, patch 8 (225 patches), 25% kept;
// decoder width 512 over 450 tokens (two modality groups); loss rows of 8·8·12 values.
// Usage: bench_patch_gpu [--reps N] [--csv FILE].
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "loom/cuda/device_info.hpp"
#include "loom/cuda/device_memory.hpp"
#include "median_time.hpp"
#include "masked_mse.cuh"
#include "patch_tokens.cuh"

namespace {

using loom::bench::median_ms;
using loom::cuda::DeviceBuffer;

// A permutation of 0..n-1 per sample, from a fixed LCG (ids_shuffle), and its inverse (ids_restore).
std::vector<int64_t> shuffles(int64_t batch, int64_t n, bool inverse) {
  std::vector<int64_t> out;
  uint64_t s = 12345;
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<int64_t> perm(n);
    std::iota(perm.begin(), perm.end(), 0);
    for (int64_t i = n - 1; i > 0; --i) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      std::swap(perm[i], perm[(s >> 33) % uint64_t(i + 1)]);
    }
    if (inverse) {
      std::vector<int64_t> inv(n);
      for (int64_t i = 0; i < n; ++i) inv[perm[i]] = i;
      perm = inv;
    }
    out.insert(out.end(), perm.begin(), perm.end());
  }
  return out;
}

struct Result {
  std::string kernel;
  double bytes;
  float ms, copy_ms;
};

}  // namespace

int main(int argc, char** argv) {
  int reps = 50;
  std::string csv = "bench_patch_gpu.csv";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--csv")) csv = argv[i + 1];
    else {
      std::fprintf(stderr, "bench_patch_gpu: unknown flag %s (use --reps, --csv)\n", argv[i]);
      return 2;
    }
  }
  if (const char* why = loom::cuda::no_device_reason()) {
    std::printf("bench_patch_gpu: skipped: %s\n", why);
    return 0;
  }
  std::vector<Result> results;
  try {
    DeviceBuffer<char> copy_src{size_t(1) << 31}, copy_dst{size_t(1) << 31};
    const auto copy_ms = [&](double moved) {  // a copy moves each byte twice (read + write)
      const size_t n = size_t(moved / 2);
      return median_ms(reps, [&] { loom::cuda::copy_on_device(copy_dst.data(), copy_src.data(), n); });
    };

    const int64_t B = 256, L = 225, K = 56, D = 512, T = 450, KD = 113;
    const loom::kernels::patch::ImageGeometry g{12, 120, 120, 8};
    {
      DeviceBuffer<float> image{size_t(B * g.channels * g.height * g.width)}, tokens{size_t(B * K * g.token_size())};
      image.zero();
      std::vector<int64_t> keep = shuffles(B, L, false), kept;
      for (int64_t b = 0; b < B; ++b) kept.insert(kept.end(), keep.begin() + b * L, keep.begin() + b * L + K);
      auto ids = DeviceBuffer<int64_t>::from_host(kept);
      const double moved = 2.0 * double(tokens.bytes()) + double(ids.bytes());
      const float ms = median_ms(reps, [&] {
        loom::kernels::patchify_gather(image.data(), ids.data(), tokens.data(), B, K, g);
      });
      results.push_back({"patchify_gather fp32", moved, ms, copy_ms(moved)});
    }
    {
      DeviceBuffer<float> visible{size_t(B * KD * D)}, mask_token{size_t(D)}, out{size_t(B * T * D)},
          grad_visible{size_t(B * KD * D)}, grad_mask{size_t(D)};
      visible.zero();
      mask_token.zero();
      out.zero();
      auto restore = DeviceBuffer<int64_t>::from_host(shuffles(B, T, true));
      const double fwd_moved = double(visible.bytes() + out.bytes() + restore.bytes());
      const float fwd = median_ms(reps, [&] {
        loom::kernels::unshuffle_forward(visible.data(), mask_token.data(), restore.data(), out.data(), B, KD, T, D);
      });
      results.push_back({"unshuffle fwd fp32", fwd_moved, fwd, copy_ms(fwd_moved)});
      // backward reads grad_out once for the visible rows and once for the mask-token column sums
      const double bwd_moved = double(out.bytes() * 2 + grad_visible.bytes() + 2 * restore.bytes());
      const float bwd = median_ms(reps, [&] {
        loom::kernels::unshuffle_backward(out.data(), restore.data(), grad_visible.data(), grad_mask.data(), B, KD, T,
                                          D);
      });
      results.push_back({"unshuffle bwd fp32", bwd_moved, bwd, copy_ms(bwd_moved)});
    }
    {
      const int64_t R = B * L, P = g.token_size();
      DeviceBuffer<float> pred{size_t(R * P)}, target{size_t(R * P)}, grad{size_t(R * P)}, rows{size_t(R)},
          result{2};
      pred.zero();
      target.zero();
      std::vector<float> mask(static_cast<size_t>(R));
      for (int64_t r = 0; r < R; ++r) mask[size_t(r)] = r % 4 ? 1.0f : 0.0f;
      auto dmask = DeviceBuffer<float>::from_host(mask);
      const double moved = double(pred.bytes() + target.bytes() + grad.bytes());
      const float ms = median_ms(reps, [&] {
        loom::kernels::masked_mse_forward_backward(pred.data(), target.data(), dmask.data(), R, P, true, 1.0f,
                                                   grad.data(), rows.data(), result.data());
      });
      results.push_back({"masked_mse fwd+bwd fp32", moved, ms, copy_ms(moved)});
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_patch_gpu: %s\n", e.what());
    return 1;
  }
  FILE* f = std::fopen(csv.c_str(), "w");
  if (f) std::fprintf(f, "kernel,bytes_moved,ms,gb_s,copy_ms,copy_gb_s,fraction_of_copy\n");
  std::printf("%-26s %10s %9s %9s %9s %9s\n", "kernel", "MB moved", "ms", "GB/s", "copy GB/s", "of copy");
  for (const Result& r : results) {
    const double gbs = r.bytes / r.ms * 1e-6, copy_gbs = r.bytes / r.copy_ms * 1e-6;
    std::printf("%-26s %10.1f %9.4f %9.1f %9.1f %8.0f%%\n", r.kernel.c_str(), r.bytes * 1e-6, r.ms, gbs, copy_gbs,
                100.0 * gbs / copy_gbs);
    if (f)
      std::fprintf(f, "%s,%.0f,%.5f,%.2f,%.5f,%.2f,%.4f\n", r.kernel.c_str(), r.bytes, r.ms, gbs, r.copy_ms, copy_gbs,
                   gbs / copy_gbs);
  }
  if (f) std::fclose(f);
  return 0;
}
