// Device row normalizations (loom/cuda/norm.hpp), fp32 statistics, one block per row:
//   softmax_forward       max, then sum of exp(x - max) (block folds), then the outputs; log_softmax
//                         writes (x - max) - log(sum). A NaN, +inf or an all -inf line gives NaN, as on the CPU.
//   softmax_backward      one fold (sum g·y, or sum g for log_softmax), then gx.
//   layer_norm_forward    two-pass statistics (mean, then the corrected sum of squared deviations),
//                         then y; mean and rstd saved per row.
//   layer_norm_backward_input   folds sum(gw) and sum(gw·xhat), then dx.
//   layer_norm_backward_params  dweight / dbias column sums: a 32 x 8 block per (32 columns, row
//                         chunk), partials combined in a fixed order (chunk split: reduce_split).
// Lines and rows are found with OffsetMap (CPU-tested); folds are kernels/block_fold.cuh.
// How to run: tests/cuda/test_device_reduce.cpp (SKIPs without a GPU) compares each op and its
// gradients with the CPU op; benchmarks/gpu/run.sh runs it.
#include <cuda_bf16.h>

#include <cstdint>

#include "cuda_check.cuh"
#include "loom/cuda/device_memory.hpp"
#include "loom/cuda/norm.hpp"
#include "reduce_common.cuh"

namespace loom::cuda {
namespace {

template <class T, bool kLog>
__global__ void softmax_forward_kernel(T* y, const T* x, Lines<2> lines) {
  const int64_t n = lines.length, ys = lines.along[0], xs = lines.along[1];
  for (int64_t l = blockIdx.x; l < lines.count; l += gridDim.x) {
    int64_t off[2];
    lines.starts.offsets(l, off);
    const T* xl = x + off[1];
    T* yl = y + off[0];
    float m = ExtremeFold<true>::identity();
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) m = ExtremeFold<true>::combine(m, load(xl + i * xs));
    m = block_fold<ExtremeFold<true>>(m);
    float s = 0.f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += expf(load(xl + i * xs) - m);
    s = block_fold<SumFold>(s);
    if constexpr (kLog) {
      const float log_s = logf(s);
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) store(yl + i * ys, (load(xl + i * xs) - m) - log_s);
    } else {
      const float inv = 1.f / s;
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) store(yl + i * ys, expf(load(xl + i * xs) - m) * inv);
    }
  }
}

template <class T, bool kLog>
__global__ void softmax_backward_kernel(T* gx, const T* y, const T* g, Lines<3> lines) {
  const int64_t n = lines.length, gxs = lines.along[0], ys = lines.along[1], gs = lines.along[2];
  for (int64_t l = blockIdx.x; l < lines.count; l += gridDim.x) {
    int64_t off[3];
    lines.starts.offsets(l, off);
    T* gxl = gx + off[0];
    const T *yl = y + off[1], *gl = g + off[2];
    float s = 0.f;  // sum(g) for log_softmax, sum(g y) for softmax
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
      s += kLog ? load(gl + i * gs) : load(gl + i * gs) * load(yl + i * ys);
    s = block_fold<SumFold>(s);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const float yi = load(yl + i * ys), gi = load(gl + i * gs);
      store(gxl + i * gxs, kLog ? gi - expf(yi) * s : yi * (gi - s));
    }
  }
}

template <class T>
__global__ void layer_norm_forward_kernel(T* y, float* mean, float* rstd, const T* x, const T* w, const T* b,
                                          int64_t rows, int64_t cols, double eps) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    float s = 0.f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += load(xr + j);
    const float mu = block_fold<SumFold>(s) / float(cols);
    float dev = 0.f, dev2 = 0.f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const float d = load(xr + j) - mu;
      dev += d;
      dev2 += d * d;
    }
    dev = block_fold<SumFold>(dev);
    dev2 = block_fold<SumFold>(dev2);
    // dev2 - dev^2 / n corrects for the rounding of the mean (as the CPU op does).
    const float var = (dev2 - dev * dev / float(cols)) / float(cols);
    const float rs = float(1.0 / sqrt(double(var) + eps));
    if (threadIdx.x == 0) {
      mean[r] = mu;
      rstd[r] = rs;
    }
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      float v = (load(xr + j) - mu) * rs;
      if (w) v *= load(w + j);
      if (b) v += load(b + j);
      store(yr + j, v);
    }
  }
}

template <class T>
__global__ void layer_norm_backward_input_kernel(T* dx, const T* g, const T* x, const T* w, const float* mean,
                                                 const float* rstd, int64_t rows, int64_t cols) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T *xr = x + r * cols, *gr = g + r * cols;
    T* dr = dx + r * cols;
    const float m = mean[r], rs = rstd[r];
    // gw is the rounded product in both loops (__fmul_rn: no contraction into an FMA), so that
    // gw - a cancels exactly where the sums say it should: a one-element row gives dx = 0, not the
    // product's rounding error times rstd (316 at eps 1e-5).
    float sum_gw = 0.f, sum_gw_xhat = 0.f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const float xhat = (load(xr + j) - m) * rs;
      const float gw = __fmul_rn(load(gr + j), w ? load(w + j) : 1.f);
      sum_gw += gw;
      sum_gw_xhat += gw * xhat;
    }
    const float a = block_fold<SumFold>(sum_gw) / float(cols);
    const float c = block_fold<SumFold>(sum_gw_xhat) / float(cols);
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const float xhat = (load(xr + j) - m) * rs;
      const float gw = __fmul_rn(load(gr + j), w ? load(w + j) : 1.f);
      store(dr + j, rs * (gw - a - xhat * c));
    }
  }
}

// block (kColumnWidth, kColumnLanes), grid (column groups, row chunks). Partials [chunk][col] when
// there are several chunks, else the results.
template <class T>
__global__ void layer_norm_params_kernel(T* dw, T* db, float* dw_part, float* db_part, const T* g, const T* x,
                                         const float* mean, const float* rstd, int64_t rows, int64_t cols,
                                         ReduceSplit split) {
  __shared__ float lanes_w[kColumnLanes][kColumnWidth];
  __shared__ float lanes_b[kColumnLanes][kColumnWidth];
  const int64_t chunk = blockIdx.y;
  const int64_t j = int64_t(blockIdx.x) * kColumnWidth + threadIdx.x;
  float sw = 0.f, sb = 0.f;
  if (j < cols) {
    for_each_lane_position(split, rows, chunk, threadIdx.y, kColumnLanes, [&](int64_t r) {
      const float gv = load(g + r * cols + j);
      sw += gv * ((load(x + r * cols + j) - mean[r]) * rstd[r]);
      sb += gv;
    });
  }
  lanes_w[threadIdx.y][threadIdx.x] = sw;
  lanes_b[threadIdx.y][threadIdx.x] = sb;
  __syncthreads();
  if (threadIdx.y != 0 || j >= cols) return;
  for (int k = 1; k < kColumnLanes; ++k) {
    sw += lanes_w[k][threadIdx.x];
    sb += lanes_b[k][threadIdx.x];
  }
  if (split.chunks > 1) {
    if (dw_part) dw_part[chunk * cols + j] = sw;
    if (db_part) db_part[chunk * cols + j] = sb;
  } else {
    if (dw) store(dw + j, sw);
    if (db) store(db + j, sb);
  }
}

// out[j] = sum over chunks c (in order) of part[c][j].
template <class T>
__global__ void sum_chunks_kernel(T* out, const float* part, int64_t cols, int64_t chunks) {
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < cols; j += int64_t(gridDim.x) * blockDim.x) {
    float s = part[j];
    for (int64_t c = 1; c < chunks; ++c) s += part[c * cols + j];
    store(out + j, s);
  }
}

}  // namespace

void softmax_forward(DType type, bool log, void* y, const void* x, const Lines<2>& lines) {
  if (lines.count == 0 || lines.length == 0) return;
  with_float_type(log ? "log_softmax" : "softmax", type, [&](auto tag) {
    using T = decltype(tag);
    const int threads = row_threads(lines.length);
    T* py = static_cast<T*>(y);
    const T* px = static_cast<const T*>(x);
    if (log) softmax_forward_kernel<T, true><<<grid_one_block_each(lines.count), threads>>>(py, px, lines);
    else softmax_forward_kernel<T, false><<<grid_one_block_each(lines.count), threads>>>(py, px, lines);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

void softmax_backward(DType type, bool log, void* gx, const void* y, const void* g, const Lines<3>& lines) {
  if (lines.count == 0 || lines.length == 0) return;
  with_float_type(log ? "log_softmax backward" : "softmax backward", type, [&](auto tag) {
    using T = decltype(tag);
    const int threads = row_threads(lines.length);
    T* pgx = static_cast<T*>(gx);
    const T *py = static_cast<const T*>(y), *pg = static_cast<const T*>(g);
    if (log) softmax_backward_kernel<T, true><<<grid_one_block_each(lines.count), threads>>>(pgx, py, pg, lines);
    else softmax_backward_kernel<T, false><<<grid_one_block_each(lines.count), threads>>>(pgx, py, pg, lines);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

void layer_norm_forward(DType type, void* y, float* mean, float* rstd, const void* x, const void* weight,
                        const void* bias, int64_t rows, int64_t cols, double eps) {
  if (rows == 0) return;
  with_float_type("layer_norm", type, [&](auto tag) {
    using T = decltype(tag);
    layer_norm_forward_kernel<<<grid_one_block_each(rows), row_threads(cols)>>>(
        static_cast<T*>(y), mean, rstd, static_cast<const T*>(x), static_cast<const T*>(weight),
        static_cast<const T*>(bias), rows, cols, eps);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

void layer_norm_backward_input(DType type, void* dx, const void* g, const void* x, const void* weight,
                               const float* mean, const float* rstd, int64_t rows, int64_t cols) {
  if (rows == 0) return;
  with_float_type("layer_norm backward", type, [&](auto tag) {
    using T = decltype(tag);
    layer_norm_backward_input_kernel<<<grid_one_block_each(rows), row_threads(cols)>>>(
        static_cast<T*>(dx), static_cast<const T*>(g), static_cast<const T*>(x), static_cast<const T*>(weight), mean,
        rstd, rows, cols);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

void layer_norm_backward_params(DType type, void* dweight, void* dbias, const void* g, const void* x,
                                const float* mean, const float* rstd, int64_t rows, int64_t cols) {
  if (cols == 0 || (!dweight && !dbias)) return;
  with_float_type("layer_norm backward", type, [&](auto tag) {
    using T = decltype(tag);
    const int64_t col_blocks = (cols + kColumnWidth - 1) / kColumnWidth;
    const ReduceSplit split = reduce_split(rows, col_blocks);
    const bool parts = split.chunks > 1;
    DeviceBuffer<float> dw_part(parts && dweight ? size_t(split.chunks * cols) : 0);
    DeviceBuffer<float> db_part(parts && dbias ? size_t(split.chunks * cols) : 0);
    T* dw = static_cast<T*>(dweight);
    T* db = static_cast<T*>(dbias);
    layer_norm_params_kernel<<<dim3(unsigned(col_blocks), unsigned(split.chunks)), dim3(kColumnWidth, kColumnLanes)>>>(
        dw, db, dw_part.data(), db_part.data(), static_cast<const T*>(g), static_cast<const T*>(x), mean, rstd, rows,
        cols, split);
    LOOM_CUDA_CHECK_LAUNCH();
    if (parts) {
      const unsigned blocks = unsigned((cols + 255) / 256);
      if (dw) sum_chunks_kernel<<<blocks, 256>>>(dw, dw_part.data(), cols, split.chunks);
      if (db) sum_chunks_kernel<<<blocks, 256>>>(db, db_part.data(), cols, split.chunks);
    }
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace loom::cuda
