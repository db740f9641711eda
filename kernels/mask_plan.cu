// Mask-plan generation on the device (loom/cuda/mask_plan.hpp).
// Versions: one — a thread per sample runs loom::mask::plan_sample (loom/mask/sample_plan.hpp), the
// function make_mask_plan runs per sample on the CPU, with its scratch (sort keys, merge buffer,
// flags: sample_scratch_words(G, L) words per sample) in global memory from the caching allocator.
// The plans are bit-identical to the CPU's by construction: the same integer Philox streams, the
// same merge sort, and for dirichlet the same portable log/exp/cos (loom/mask/portable_math.hpp)
// instead of libm. This file is compiled with --fmad=false (kernels/CMakeLists.txt) so that nvcc
// fuses no multiply-add the host does not; the shared code writes each one as an explicit fma.
// Work is small (B·T·log T key moves: 5–7 ms of one CPU core for 256 samples of 450 tokens), so
// one thread per sample is enough; 32 threads per block spread the samples over the SMs.
// How to run: tests/cuda/test_mask_plan_gpu.cpp compares with make_mask_plan for every strategy
// kind on odd sizes (SKIPs without a GPU); benchmarks/gpu/run.sh runs it. CPU side:
// tests/mask/test_mask_plan_device_logic.cpp (sort, portable math) and tests/mask (the plans).
#include "cuda_check.cuh"
#include "loom/cuda/device_memory.hpp"
#include "loom/mask/flat_strategy.hpp"
#include "loom/mask/sample_plan.hpp"
#include "loom/cuda/mask_plan.hpp"

namespace loom::kernels {
namespace {

__global__ void mask_plan_kernel(mask::FlatStrategy strategy, int64_t B, int G, int64_t L, int64_t K, uint64_t seed,
                                 uint64_t step, uint32_t first_sample, uint64_t* __restrict__ scratch,
                                 int64_t scratch_words, int64_t* __restrict__ ids_keep,
                                 int64_t* __restrict__ ids_restore, float* __restrict__ mask,
                                 int32_t* __restrict__ member) {
  const int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= B) return;
  const int64_t T = int64_t(G) * L;
  const mask::SampleScratch s = mask::carve_sample_scratch(scratch + b * scratch_words, G, L);
  member[b] = mask::plan_sample(strategy, G, L, K, seed, step, first_sample + uint32_t(b), s, ids_keep + b * K,
                                ids_restore + b * T, mask + b * T);
}

}  // namespace

int64_t make_mask_plan_device(const mask::Strategy& strategy, int64_t B, int G, int64_t L, uint64_t seed, uint64_t step,
                              uint32_t first_sample, int64_t* ids_keep, int64_t* ids_restore, float* mask,
                              int32_t* member) {
  LOOM_CHECK(B >= 0, "make_mask_plan_device: negative batch size ", B);
  const int64_t K = mask::visible_count(strategy, G, L);
  const mask::FlatStrategy flat = mask::flatten(strategy);
  if (B == 0) return K;
  const int64_t words = mask::sample_scratch_words(G, L);
  cuda::DeviceBuffer<uint64_t> scratch(size_t(B * words));
  constexpr int kThreads = 32;
  mask_plan_kernel<<<unsigned((B + kThreads - 1) / kThreads), kThreads>>>(
      flat, B, G, L, K, seed, step, first_sample, scratch.data(), words, ids_keep, ids_restore, mask, member);
  LOOM_CUDA_CHECK(cudaGetLastError());
  return K;
}

}  // namespace loom::kernels
