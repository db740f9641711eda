// Device reductions (loom/cuda/reduce.hpp): one kernel family folds a strided tensor over any set of
// dims, in fp32, deterministically (no atomics).
//   row mode     one block per (output, chunk); its threads stride over the reduced index r
//                (consecutive r are the closest elements), then a warp-shuffle + shared-memory tree.
//                Used when the reduced elements are the innermost (sum over the last dim, a full sum).
//   column mode  a 32 x 8 block per (32 outputs, chunk): threadIdx.x picks the output (adjacent
//                outputs are adjacent in memory), threadIdx.y strides over r, and the 8 partials are
//                combined in a fixed order. Used for e.g. a bias gradient, [M, N] summed over M.
//   finish       when the reduced range is cut into several chunks (reduce_split: shape-only), the
//                first pass writes fp32 partials [chunk][output] and this kernel merges them in order.
//   arg_extreme  max / min over one dim with the index of the first extreme: row mode with an
//                order-free (value, index) combine (loom/cuda/arg_extreme.hpp); put_along its backward.
// Ops: sum (with a scale: mean), max, min (NaN wins), count_equal (amax / amin ties), sum_squares
// (fp32 out, for a gradient norm), mean_f32 / deviation / squared_deviation (var and stddev:
// spread_forward / spread_backward). Also scale_strided (mean's backward) and extreme_backward
// (amax / amin's tie-sharing gradient).
// Index math: loom/cuda/reduce_map.hpp (CPU-tested in tests/cuda/test_reduce_map.cpp).
// How to run: tests/cuda/test_device_reduce.cpp (SKIPs without a GPU) compares every op against the
// CPU op; benchmarks/gpu/run.sh runs it.
#include <cuda_bf16.h>

#include <cstdint>
#include <type_traits>

#include "cuda_check.cuh"
#include "loom/cuda/arg_extreme.hpp"
#include "loom/cuda/device_memory.hpp"
#include "loom/cuda/reduce.hpp"
#include "reduce_common.cuh"

namespace loom::cuda {
namespace {

// The fp32 fold of each op (count_equal sums ones, sum_squares squares).
template <ReduceOp kOp>
struct FoldOf {
  using type = SumFold;
};
template <>
struct FoldOf<ReduceOp::max> {
  using type = ExtremeFold<true>;
};
template <>
struct FoldOf<ReduceOp::min> {
  using type = ExtremeFold<false>;
};

// The value element p contributes to output o: itself, its square, its (squared) deviation from
// the fp32 target[o], or (count_equal) 1 when it equals the element-type target[o].
template <ReduceOp kOp, class T>
__device__ __forceinline__ float take(const T* p, const void* target, int64_t o) {
  if constexpr (kOp == ReduceOp::count_equal) {
    return load(p) == load(static_cast<const T*>(target) + o) ? 1.f : 0.f;
  } else if constexpr (kOp == ReduceOp::sum_squares) {
    return load(p) * load(p);
  } else if constexpr (kOp == ReduceOp::deviation) {
    return load(p) - static_cast<const float*>(target)[o];
  } else if constexpr (kOp == ReduceOp::squared_deviation) {
    const float d = load(p) - static_cast<const float*>(target)[o];
    return d * d;
  } else {
    return load(p);
  }
}

// Stores a finished value: sum / max / min in the element type (sum with `scale`), others in fp32.
template <ReduceOp kOp, class T>
__device__ __forceinline__ void store_result(void* out, int64_t o, float v, float scale) {
  if constexpr (kOp == ReduceOp::sum) store(static_cast<T*>(out) + o, v * scale);
  else if constexpr (kOp == ReduceOp::max || kOp == ReduceOp::min) store(static_cast<T*>(out) + o, v);
  else if constexpr (kOp == ReduceOp::mean_f32) static_cast<float*>(out)[o] = v / scale;  // scale: N
  else static_cast<float*>(out)[o] = v;
}

template <ReduceOp kOp>
using fold_t = typename FoldOf<kOp>::type;

// grid (outputs, chunks). partial == nullptr: one chunk, results go straight to out.
template <ReduceOp kOp, class T>
__global__ void reduce_rows_kernel(void* out, float* partial, const T* in, const void* target, ReduceMap map,
                                   ReduceSplit split, float scale) {
  using Op = fold_t<kOp>;
  const int64_t chunk = blockIdx.y;
  for (int64_t o = blockIdx.x; o < map.n_out; o += gridDim.x) {
    float acc = Op::identity();
    for_each_lane_element(map, split, o, chunk, threadIdx.x, blockDim.x,
                          [&](int64_t off) { acc = Op::combine(acc, take<kOp>(in + off, target, o)); });
    acc = block_fold<Op>(acc);
    if (threadIdx.x == 0) {
      if (partial) partial[chunk * map.n_out + o] = acc;
      else store_result<kOp, T>(out, o, acc, scale);
    }
  }
}

// block (kColumnWidth, kColumnLanes), grid (output groups, chunks).
template <ReduceOp kOp, class T>
__global__ void reduce_columns_kernel(void* out, float* partial, const T* in, const void* target, ReduceMap map,
                                      ReduceSplit split, float scale) {
  using Op = fold_t<kOp>;
  __shared__ float lanes[kColumnLanes][kColumnWidth];
  const int64_t chunk = blockIdx.y;
  const int64_t o = int64_t(blockIdx.x) * kColumnWidth + threadIdx.x;
  float acc = Op::identity();
  if (o < map.n_out)
    for_each_lane_element(map, split, o, chunk, threadIdx.y, kColumnLanes,
                          [&](int64_t off) { acc = Op::combine(acc, take<kOp>(in + off, target, o)); });
  lanes[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && o < map.n_out) {
    for (int k = 1; k < kColumnLanes; ++k) acc = Op::combine(acc, lanes[k][threadIdx.x]);
    if (partial) partial[chunk * map.n_out + o] = acc;
    else store_result<kOp, T>(out, o, acc, scale);
  }
}

// out[o] = fold of partial[c][o] over the chunks c in order.
template <ReduceOp kOp, class T>
__global__ void finish_kernel(void* out, const float* partial, int64_t n_out, int64_t chunks, float scale) {
  using Op = fold_t<kOp>;
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < n_out; o += int64_t(gridDim.x) * blockDim.x) {
    float acc = partial[o];
    for (int64_t c = 1; c < chunks; ++c) acc = Op::combine(acc, partial[c * n_out + o]);
    store_result<kOp, T>(out, o, acc, scale);
  }
}

unsigned grid_for(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return unsigned(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);  // grid-stride beyond that
}

template <ReduceOp kOp, class T>
void launch_reduce(void* out, const T* in, const void* target, const ReduceMap& map, float scale) {
  const bool columns = map.column_mode();
  const int64_t out_blocks = columns ? (map.n_out + kColumnWidth - 1) / kColumnWidth : map.n_out;
  const ReduceSplit split = reduce_split(map.n_red, out_blocks);
  DeviceBuffer<float> partial(split.chunks > 1 ? size_t(split.chunks * map.n_out) : 0);
  float* p = split.chunks > 1 ? partial.data() : nullptr;
  if (columns) {
    const dim3 grid(unsigned(out_blocks), unsigned(split.chunks));
    LOOM_CHECK(out_blocks <= 0x7fffffff && split.chunks <= 65535, "reduce: too many outputs for one launch");
    reduce_columns_kernel<kOp, T><<<grid, dim3(kColumnWidth, kColumnLanes)>>>(out, p, in, target, map, split, scale);
  } else {
    const dim3 grid(grid_one_block_each(map.n_out), unsigned(split.chunks));
    reduce_rows_kernel<kOp, T><<<grid, row_threads(split.chunk)>>>(out, p, in, target, map, split, scale);
  }
  LOOM_CUDA_CHECK_LAUNCH();
  if (p) {
    finish_kernel<kOp, T><<<grid_for(map.n_out, 256), 256>>>(out, p, map.n_out, split.chunks, scale);
    LOOM_CUDA_CHECK_LAUNCH();
  }
}

// One block per output (grid-stride): each thread folds r = threadIdx.x, + blockDim.x, ...; then a
// shuffle tree per warp and warp 0 over the warps. arg_combine makes the order irrelevant.
template <class T, bool kMax>
__global__ void arg_extreme_kernel(T* values, int64_t* indices, const T* in, ReduceMap map) {
  __shared__ float warp_values[32];
  __shared__ int64_t warp_indices[32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, n_warps = blockDim.x / 32;
  for (int64_t o = blockIdx.x; o < map.n_out; o += gridDim.x) {
    const int64_t base = map.kept_offset(o);
    ArgExtreme best;
    for (int64_t r = threadIdx.x; r < map.n_red; r += blockDim.x)
      best = arg_combine<kMax>(best, ArgExtreme{load(in + base + map.reduced_offset(r)), r});
    auto warp_fold = [&]() {
      for (int step = 16; step > 0; step /= 2) {
        ArgExtreme other;
        other.value = __shfl_down_sync(0xffffffffu, best.value, step);
        other.index = __shfl_down_sync(0xffffffffu, (long long)best.index, step);
        best = arg_combine<kMax>(best, other);
      }
    };
    warp_fold();
    if (lane == 0) {
      warp_values[warp] = best.value;
      warp_indices[warp] = best.index;
    }
    __syncthreads();
    if (warp == 0) {
      best = lane < n_warps ? ArgExtreme{warp_values[lane], warp_indices[lane]} : ArgExtreme{};
      warp_fold();
      if (lane == 0) {
        indices[o] = best.index;
        if (values) store(values + o, best.value);
      }
    }
    __syncthreads();
  }
}

template <class T>
__global__ void put_along_kernel(T* dst, const T* src, const int64_t* index, OffsetMap<3> map, int64_t n,
                                 int64_t step) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[3];
    map.offsets(i, off);
    dst[off[0] + index[off[2]] * step] = src[off[1]];
  }
}

// out[o] = var or std from the fp32 deviation sums (the CPU's corrected two-pass formula).
template <class T, bool kStd>
__global__ void spread_finish_kernel(T* out, const float* dev, const float* dev2, int64_t n_out, float n, float denom) {
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < n_out; o += int64_t(gridDim.x) * blockDim.x) {
    const float v = (dev2[o] - dev[o] * dev[o] / n) / denom;
    store(out + o, kStd ? sqrtf(v) : v);
  }
}

// gx = coef[o] (x - mean[o]): var coef = 2 g / denom; std coef = g / (denom std), 0 where std == 0.
template <class T, bool kStd>
__global__ void spread_backward_kernel(T* gx, const T* x, const float* mean, const T* g, const T* out,
                                       OffsetMap<3> map, int64_t n, float denom) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[3];
    map.offsets(i, off);
    const int64_t o = off[2];
    float coef;
    if constexpr (kStd) {
      const float s = load(out + o);
      coef = s == 0.f ? 0.f : load(g + o) / (denom * s);
    } else {
      coef = 2.f * load(g + o) / denom;
    }
    store(gx + off[0], coef * (load(x + off[1]) - mean[o]));
  }
}

template <class T>
__global__ void scale_kernel(T* dst, const T* src, OffsetMap<2> map, int64_t n, float factor) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[2];
    map.offsets(i, off);
    store(dst + off[0], load(src + off[1]) * factor);
  }
}

template <class T>
__global__ void extreme_backward_kernel(T* gx, const T* x, const T* value, const T* g, const float* count,
                                        OffsetMap<3> map, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[3];
    map.offsets(i, off);
    const int64_t o = off[2];
    const bool hit = load(x + off[1]) == load(value + o);
    store(gx + off[0], hit ? load(g + o) / count[o] : 0.f);
  }
}

}  // namespace

void reduce_strided(DType type, ReduceOp op, void* out, const void* in, const ReduceMap& map, double scale,
                    const void* target) {
  if (map.n_out == 0) return;
  LOOM_CHECK(map.n_red > 0 || (op != ReduceOp::max && op != ReduceOp::min),
             "reduce: cannot take the max / min over zero elements");
  with_float_type("reduce", type, [&](auto tag) {
    using T = decltype(tag);
    const T* x = static_cast<const T*>(in);
    const void* t = target;
    const float s = float(scale);
    switch (op) {
      case ReduceOp::sum: return launch_reduce<ReduceOp::sum, T>(out, x, t, map, s);
      case ReduceOp::max: return launch_reduce<ReduceOp::max, T>(out, x, t, map, s);
      case ReduceOp::min: return launch_reduce<ReduceOp::min, T>(out, x, t, map, s);
      case ReduceOp::count_equal: return launch_reduce<ReduceOp::count_equal, T>(out, x, t, map, s);
      case ReduceOp::sum_squares: return launch_reduce<ReduceOp::sum_squares, T>(out, x, t, map, s);
      case ReduceOp::mean_f32: return launch_reduce<ReduceOp::mean_f32, T>(out, x, t, map, float(map.n_red));
      case ReduceOp::deviation: return launch_reduce<ReduceOp::deviation, T>(out, x, t, map, s);
      case ReduceOp::squared_deviation: return launch_reduce<ReduceOp::squared_deviation, T>(out, x, t, map, s);
    }
  });
}

void arg_extreme(DType type, bool is_max, void* values, int64_t* indices, const void* in, const ReduceMap& map) {
  if (map.n_out == 0) return;
  LOOM_CHECK(map.n_red > 0, "max / min: cannot reduce over zero elements");
  with_float_type(is_max ? "max" : "min", type, [&](auto tag) {
    using T = decltype(tag);
    const unsigned grid = grid_one_block_each(map.n_out);
    const int threads = row_threads(map.n_red);
    T* v = static_cast<T*>(values);
    const T* x = static_cast<const T*>(in);
    if (is_max) arg_extreme_kernel<T, true><<<grid, threads>>>(v, indices, x, map);
    else arg_extreme_kernel<T, false><<<grid, threads>>>(v, indices, x, map);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

void put_along(DType type, void* dst, const void* src, const int64_t* index, const OffsetMap<3>& map, int64_t numel,
               int64_t step) {
  if (numel == 0) return;
  with_float_type("max / min backward", type, [&](auto tag) {
    using T = decltype(tag);
    put_along_kernel<<<grid_for(numel, 256), 256>>>(static_cast<T*>(dst), static_cast<const T*>(src), index, map,
                                                    numel, step);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

void spread_forward(DType type, bool is_std, void* out, const void* in, const ReduceMap& map, double denom) {
  if (map.n_out == 0) return;
  with_float_type(is_std ? "stddev" : "var", type, [&](auto tag) {
    using T = decltype(tag);
    const T* x = static_cast<const T*>(in);
    DeviceBuffer<float> stats(size_t(3 * map.n_out));  // [mean | dev | dev2]
    float* mean = stats.data();
    float* dev = mean + map.n_out;
    float* dev2 = dev + map.n_out;
    launch_reduce<ReduceOp::mean_f32, T>(mean, x, nullptr, map, float(map.n_red));
    launch_reduce<ReduceOp::deviation, T>(dev, x, mean, map, 1.f);
    launch_reduce<ReduceOp::squared_deviation, T>(dev2, x, mean, map, 1.f);
    T* o = static_cast<T*>(out);
    const float n = float(map.n_red), d = float(denom);
    if (is_std) spread_finish_kernel<T, true><<<grid_for(map.n_out, 256), 256>>>(o, dev, dev2, map.n_out, n, d);
    else spread_finish_kernel<T, false><<<grid_for(map.n_out, 256), 256>>>(o, dev, dev2, map.n_out, n, d);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

void spread_backward(DType type, bool is_std, void* gx, const void* x, const void* g, const void* out,
                     const ReduceMap& map, const OffsetMap<3>& elements, int64_t numel, double denom) {
  if (numel == 0) return;
  with_float_type(is_std ? "stddev backward" : "var backward", type, [&](auto tag) {
    using T = decltype(tag);
    DeviceBuffer<float> mean(size_t(map.n_out));  // recomputed, as the CPU op does
    launch_reduce<ReduceOp::mean_f32, T>(mean.data(), static_cast<const T*>(x), nullptr, map, float(map.n_red));
    T* pgx = static_cast<T*>(gx);
    const T *px = static_cast<const T*>(x), *pg = static_cast<const T*>(g), *po = static_cast<const T*>(out);
    const unsigned grid = grid_for(numel, 256);
    const float* m = mean.data();
    const float d = float(denom);
    if (is_std) spread_backward_kernel<T, true><<<grid, 256>>>(pgx, px, m, pg, po, elements, numel, d);
    else spread_backward_kernel<T, false><<<grid, 256>>>(pgx, px, m, pg, po, elements, numel, d);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

void scale_strided(DType type, void* dst, const void* src, const OffsetMap<2>& map, int64_t numel, double factor) {
  if (numel == 0) return;
  with_float_type("mean backward", type, [&](auto tag) {
    using T = decltype(tag);
    scale_kernel<<<grid_for(numel, 256), 256>>>(static_cast<T*>(dst), static_cast<const T*>(src), map, numel,
                                                float(factor));
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

void extreme_backward(DType type, void* gx, const void* x, const void* value, const void* g, const float* count,
                      const OffsetMap<3>& map, int64_t numel) {
  if (numel == 0) return;
  with_float_type("amax / amin backward", type, [&](auto tag) {
    using T = decltype(tag);
    extreme_backward_kernel<<<grid_for(numel, 256), 256>>>(static_cast<T*>(gx), static_cast<const T*>(x),
                                                           static_cast<const T*>(value), static_cast<const T*>(g),
                                                           count, map, numel);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace loom::cuda
