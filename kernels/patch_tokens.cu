// Patch-masking kernels of the MAE: fused patchify + gather of the visible tokens, and the decoder
// unshuffle (mask tokens + gather by ids_restore) with its backward.
//
// Versions (T ∈ {float, bf16}):
//   patchify_gather_kernel   one block per (sample, kept patch): reads the patch's C·p rows of p
//                            pixels (contiguous runs), transposes through shared memory into the
//                            token's (row, column, channel) order, writes the row contiguously.
//   patchify_gather_vec4     fp32, p and W multiples of 4 (the usual case): 4 tokens per block,
//                            16-byte loads and stores, same transposition.
//   unshuffle_kernel         one block per output row, copying from its source row (visible or
//                            the mask token); rows are contiguous on both sides.
//   unshuffle_grad_visible   one block per row of grad_out; a kept row has exactly one source.
//   mask_token_partial +     Σ of the hidden rows' gradients: 128 row slices × 32-column blocks,
//   sum_slices               then the slices added in order. Deterministic, no atomics.
// How to run: tests/cuda/test_cuda_kernels.cpp ("[patch]") against loom::mask's CPU ops;
// benchmarks/gpu/bench_patch_gpu (GB/s vs a device-to-device copy); both from benchmarks/gpu/run.sh.
// Index maps: patch_index.hpp (exercised by CPU tests).
#include <cstdint>
#include <type_traits>

#include "cuda_check.cuh"
#include "loom/cuda/device_memory.hpp"
#include "device_types.cuh"
#include "patch_tokens.cuh"

namespace loom::kernels {
namespace {

using detail::dev;
using detail::load;
using detail::store;

constexpr int kMaxTokenFloats = 12288;  // 48 KiB of shared memory: p = 16 with 48 channels

template <class T>
__global__ void patchify_gather_kernel(const T* __restrict__ image, const int64_t* __restrict__ ids_keep,
                                       T* __restrict__ tokens, int64_t kept, patch::ImageGeometry g) {
  extern __shared__ float token[];  // [p·p·C] in token order
  const int64_t b = blockIdx.y, k = blockIdx.x;
  const int patch_index = int(ids_keep ? ids_keep[b * kept + k] : k);
  // 32-bit index math inside a token (64-bit division is slow on the GPU); the token's own pixel
  // (0, 0) is located once, through the shared index map.
  const int p = int(g.patch), C = int(g.channels), n = p * p * C;
  const int plane = int(g.height * g.width), width = int(g.width);
  const T* img = image + b * g.channels * g.height * g.width + patch::image_offset(g, patch_index, 0);
  // Read in image order (channel, row, column): runs of p contiguous pixels.
  for (int idx = threadIdx.x; idx < n; idx += blockDim.x) {
    const int col = idx % p, r = (idx / p) % p, c = idx / (p * p);
    token[(r * p + col) * C + c] = load(img + c * plane + r * width + col);
  }
  __syncthreads();
  T* out = tokens + (b * kept + k) * n;
  for (int e = threadIdx.x; e < n; e += blockDim.x) store(out + e, token[e]);
}

// fp32 with p and W multiples of 4: several tokens per block and 16-byte loads and stores (the
// scalar kernel above moves too few bytes per block to cover memory latency).
constexpr int kVecTokensPerBlock = 4;
__global__ void patchify_gather_vec4_kernel(const float* __restrict__ image, const int64_t* __restrict__ ids_keep,
                                            float* __restrict__ tokens, int64_t kept, patch::ImageGeometry g) {
  extern __shared__ float staged[];  // [kVecTokensPerBlock][p·p·C] in token order
  __shared__ int64_t patch_offset[kVecTokensPerBlock];
  const int p = int(g.patch), C = int(g.channels), n = p * p * C, quads_per_row = p / 4, quads = n / 4;
  const int plane = int(g.height * g.width), width = int(g.width);
  const int64_t b = blockIdx.y, k0 = int64_t(blockIdx.x) * kVecTokensPerBlock;
  const int count = int(kept - k0 < kVecTokensPerBlock ? kept - k0 : kVecTokensPerBlock);
  if (threadIdx.x < count) {  // where each token's pixel (0, 0) is, looked up once
    const int64_t k = k0 + threadIdx.x;
    patch_offset[threadIdx.x] = patch::image_offset(g, ids_keep ? ids_keep[b * kept + k] : k, 0);
  }
  __syncthreads();
  const float* img = image + b * g.channels * g.height * g.width;
  // All tokens' loads in one loop, so that many are in flight at once.
  for (int idx = threadIdx.x; idx < count * quads; idx += blockDim.x) {
    const int t = idx / quads, v = idx % quads;  // token, float4 of a patch row
    const int quad = v % quads_per_row, r = (v / quads_per_row) % p, c = v / (quads_per_row * p);
    const float4 x = *reinterpret_cast<const float4*>(img + patch_offset[t] + c * plane + r * width + quad * 4);
    float* token = staged + t * n + (r * p + quad * 4) * C + c;
    token[0] = x.x;
    token[C] = x.y;
    token[2 * C] = x.z;
    token[3 * C] = x.w;
  }
  __syncthreads();
  float4* out = reinterpret_cast<float4*>(tokens + (b * kept + k0) * n);
  const float4* src = reinterpret_cast<const float4*>(staged);
  for (int v = threadIdx.x; v < count * quads; v += blockDim.x) out[v] = src[v];
}

// A block copies one row: 16-byte words when both rows are 16-byte aligned, else element-wise.
template <class T>
__device__ __forceinline__ void copy_row(T* __restrict__ dst, const T* __restrict__ src, int dim) {
  constexpr int kPerWord = 16 / sizeof(T);
  if (dim % kPerWord == 0 && ((reinterpret_cast<uintptr_t>(dst) | reinterpret_cast<uintptr_t>(src)) & 15) == 0) {
    for (int w = threadIdx.x; w < dim / kPerWord; w += blockDim.x)
      reinterpret_cast<uint4*>(dst)[w] = reinterpret_cast<const uint4*>(src)[w];
  } else {
    for (int d = threadIdx.x; d < dim; d += blockDim.x) dst[d] = src[d];
  }
}

// One block per output row (sample b, position t); threads stride over the row's dims.
template <class T>
__global__ void unshuffle_kernel(const T* __restrict__ visible, const T* __restrict__ mask_token,
                                 const int64_t* __restrict__ ids_restore, T* __restrict__ out, int64_t kept,
                                 int64_t tokens, int dim) {
  const int64_t row = blockIdx.x, b = row / tokens;
  const int64_t r = ids_restore[row];
  const T* src = patch::is_visible(r, kept) ? visible + (b * kept + r) * dim : mask_token;
  T* dst = out + row * dim;
  copy_row(dst, src, dim);
}

template <class T>
__global__ void unshuffle_grad_visible_kernel(const T* __restrict__ grad_out, const int64_t* __restrict__ ids_restore,
                                              T* __restrict__ grad_visible, int64_t kept, int64_t tokens, int dim) {
  const int64_t row = blockIdx.x, b = row / tokens;
  const int64_t r = ids_restore[row];
  if (!patch::is_visible(r, kept)) return;
  copy_row(grad_visible + (b * kept + r) * dim, grad_out + row * dim, dim);
}

// The mask token's gradient, Σ over hidden rows of grad_out, in two deterministic stages: each of
// kSlices row slices sums into partial[slice, d] (8 row stripes per block, combined in a fixed
// order), then one pass adds the slices in order.
constexpr int kStripes = 8;
constexpr int kSlices = 128;
template <class T>
__global__ void mask_token_partial_kernel(const T* __restrict__ grad_out, const int64_t* __restrict__ ids_restore,
                                          float* __restrict__ partial, int64_t kept, int64_t rows, int64_t dim) {
  __shared__ float stripe_sums[kStripes][32];
  const int64_t d = int64_t(blockIdx.x) * 32 + threadIdx.x % 32;
  const int stripe = threadIdx.x / 32;
  const int64_t begin = rows * blockIdx.y / kSlices, end = rows * (blockIdx.y + 1) / kSlices;
  float acc = 0.0f;
  if (d < dim)
    for (int64_t row = begin + stripe; row < end; row += kStripes)
      if (!patch::is_visible(ids_restore[row], kept)) acc += load(grad_out + row * dim + d);
  stripe_sums[stripe][threadIdx.x % 32] = acc;
  __syncthreads();
  if (stripe == 0 && d < dim) {
    float sum = 0.0f;
    for (int s = 0; s < kStripes; ++s) sum += stripe_sums[s][threadIdx.x];
    partial[int64_t(blockIdx.y) * dim + d] = sum;
  }
}

__global__ void sum_slices_kernel(const float* __restrict__ partial, float* __restrict__ out, int64_t dim) {
  const int64_t d = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (d >= dim) return;
  float sum = 0.0f;
  for (int s = 0; s < kSlices; ++s) sum += partial[s * dim + d];
  out[d] = sum;
}

unsigned blocks_for(int64_t n, int threads) { return unsigned((n + threads - 1) / threads); }

}  // namespace

template <class T>
void patchify_gather(const T* image, const int64_t* ids_keep, T* tokens, int64_t batch, int64_t kept,
                     const patch::ImageGeometry& g) {
  LOOM_CHECK(g.patch > 0 && g.channels > 0 && g.height % g.patch == 0 && g.width % g.patch == 0,
             "patchify_gather: image [", g.channels, ", ", g.height, ", ", g.width, "] is not a whole number of ",
             g.patch, "x", g.patch, " patches");
  LOOM_CHECK(g.token_size() <= kMaxTokenFloats, "patchify_gather: a token of p·p·C = ", g.token_size(),
             " elements exceeds the kernel's ", kMaxTokenFloats);
  LOOM_CHECK(batch >= 1 && kept >= 1 && batch <= 65535, "patchify_gather: batch ", batch, " and kept ", kept,
             " must be >= 1 (batch <= 65535)");
  LOOM_CHECK(ids_keep || kept == g.patches(), "patchify_gather: without ids_keep, kept must equal the ",
             g.patches(), " patches, got ", kept);
  const size_t token_bytes = size_t(g.token_size()) * sizeof(float);
  const bool aligned = (reinterpret_cast<uintptr_t>(image) & 15) == 0 && (reinterpret_cast<uintptr_t>(tokens) & 15) == 0;
  if constexpr (std::is_same_v<T, float>) {
    if (g.patch % 4 == 0 && g.width % 4 == 0 && aligned &&
        kVecTokensPerBlock * (token_bytes + sizeof(int64_t)) <= 48 * 1024) {  // + its static patch_offset[]
      const dim3 grid{unsigned((kept + kVecTokensPerBlock - 1) / kVecTokensPerBlock), unsigned(batch)};
      patchify_gather_vec4_kernel<<<grid, 256, kVecTokensPerBlock * token_bytes>>>(image, ids_keep, tokens, kept, g);
      LOOM_CUDA_CHECK_LAUNCH();
      return;
    }
  }
  const dim3 grid{unsigned(kept), unsigned(batch)};
  patchify_gather_kernel<<<grid, 128, token_bytes>>>(dev(image), ids_keep, dev(tokens), kept, g);
  LOOM_CUDA_CHECK_LAUNCH();
}

template <class T>
void unshuffle_forward(const T* visible, const T* mask_token, const int64_t* ids_restore, T* out, int64_t batch,
                       int64_t kept, int64_t tokens, int64_t dim) {
  LOOM_CHECK(batch >= 1 && kept >= 0 && kept <= tokens && dim >= 1, "unshuffle_forward: need kept <= tokens, got [",
             batch, ", ", kept, ", ", dim, "] into [", batch, ", ", tokens, ", ", dim, "]");
  LOOM_CHECK(dim <= (int64_t(1) << 30), "unshuffle_forward: dim ", dim, " too large");
  unshuffle_kernel<<<unsigned(batch * tokens), 128>>>(dev(visible), dev(mask_token), ids_restore, dev(out), kept,
                                                      tokens, int(dim));
  LOOM_CUDA_CHECK_LAUNCH();
}

template <class T>
void unshuffle_backward(const T* grad_out, const int64_t* ids_restore, T* grad_visible, float* grad_mask_token,
                        int64_t batch, int64_t kept, int64_t tokens, int64_t dim) {
  LOOM_CHECK(batch >= 1 && kept >= 0 && kept <= tokens && dim >= 1, "unshuffle_backward: need kept <= tokens, got [",
             batch, ", ", kept, ", ", dim, "] from [", batch, ", ", tokens, ", ", dim, "]");
  LOOM_CHECK(dim <= (int64_t(1) << 30), "unshuffle_backward: dim ", dim, " too large");
  unshuffle_grad_visible_kernel<<<unsigned(batch * tokens), 128>>>(dev(grad_out), ids_restore, dev(grad_visible), kept,
                                                                   tokens, int(dim));
  LOOM_CUDA_CHECK_LAUNCH();
  cuda::DeviceBuffer<float> partial(size_t(kSlices * dim));  // from the caching allocator: no cudaMalloc when warm
  mask_token_partial_kernel<<<dim3{blocks_for(dim, 32), unsigned(kSlices)}, 32 * kStripes>>>(
      dev(grad_out), ids_restore, partial.data(), kept, batch * tokens, dim);
  LOOM_CUDA_CHECK_LAUNCH();
  sum_slices_kernel<<<blocks_for(dim, 256), 256>>>(partial.data(), grad_mask_token, dim);
  LOOM_CUDA_CHECK_LAUNCH();
}

#define LOOM_INSTANTIATE(T)                                                                                      \
  template void patchify_gather<T>(const T*, const int64_t*, T*, int64_t, int64_t, const patch::ImageGeometry&); \
  template void unshuffle_forward<T>(const T*, const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t); \
  template void unshuffle_backward<T>(const T*, const int64_t*, T*, float*, int64_t, int64_t, int64_t, int64_t);
LOOM_INSTANTIATE(float)
LOOM_INSTANTIATE(loom::bf16)
#undef LOOM_INSTANTIATE

}  // namespace loom::kernels
