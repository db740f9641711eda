#pragma once
// The device row-normalization kernels behind loom's softmax / log_softmax and layer_norm on
// Tensor<T, CUDA>, forward and backward. Defined in kernels/norm.cu (target loom::kernels);
// declared always (see loom/cuda/reduce.hpp). Element types f32 and bf16 with fp32 statistics;
// f64 throws a loom::Error. One block per row; deterministic (fixed fold order, no atomics).
#include <cstdint>

#include "loom/core/dtype.hpp"
#include "loom/cuda/offset_map.hpp"

namespace loom::cuda {

// A set of 1-d lines: line l of operand k starts at starts.offsets(l)[k] and steps along[k].
template <size_t N>
struct Lines {
  OffsetMap<N> starts;  // over the shape without the line's dim
  int64_t count = 0;    // lines
  int64_t length = 0;   // elements per line
  int64_t along[N] = {};
};

// y = softmax(x) (log: log_softmax) along each line; operands {y, x}.
void softmax_forward(DType type, bool log, void* y, const void* x, const Lines<2>& lines);
// gx from the saved output y and the gradient g; operands {gx, y, g}.
//   softmax: gx = y (g - sum(g y));   log_softmax: gx = g - exp(y) sum(g)
void softmax_backward(DType type, bool log, void* gx, const void* y, const void* g, const Lines<3>& lines);

// layer_norm over contiguous rows [rows, cols]: y = (x - mean) rstd w + b (w, b may be null),
// saving mean and rstd (fp32, [rows]) for the backward.
void layer_norm_forward(DType type, void* y, float* mean, float* rstd, const void* x, const void* weight,
                        const void* bias, int64_t rows, int64_t cols, double eps);
// dx = rstd (gw - mean(gw) - xhat mean(gw xhat)), gw = g w, xhat = (x - mean) rstd; all [rows, cols] dense.
void layer_norm_backward_input(DType type, void* dx, const void* g, const void* x, const void* weight,
                               const float* mean, const float* rstd, int64_t rows, int64_t cols);
// dweight = sum over rows of g xhat, dbias = sum over rows of g ([cols] each; either may be null).
void layer_norm_backward_params(DType type, void* dweight, void* dbias, const void* g, const void* x,
                                const float* mean, const float* rstd, int64_t rows, int64_t cols);

}  // namespace loom::cuda
