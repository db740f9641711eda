#pragma once
// The device reductions behind loom's sum / mean / amax / amin / detail::sum_to on Tensor<T, CUDA>
// and their backward passes. Defined in kernels/reduce.cu (target loom::kernels); declared always,
// so the ops' CUDA branches compile without the toolkit (and static_assert when instantiated
// without LOOM_WITH_CUDA). Element types f32 and bf16, accumulated in fp32; f64 throws a
// loom::Error. Pointers are device pointers at each operand's first element. Deterministic: no
// atomics, fixed split (reduce_map.hpp), fixed tree order — reruns are bit-identical.
#include <array>
#include <cstdint>

#include "loom/core/dtype.hpp"
#include "loom/core/shape.hpp"
#include "loom/cuda/offset_map.hpp"
#include "loom/cuda/reduce_map.hpp"

namespace loom::cuda {

enum class ReduceOp {
  sum,          // scale * sum
  max,          // largest; a NaN wins
  min,          // smallest; a NaN wins
  count_equal,  // how many elements equal the output's `target` (ties of amax / amin)
  sum_squares,  // sum of x^2 (e.g. a gradient norm), kept in fp32
  // fp32 out, for var / stddev's two passes (target: n_out fp32 centers):
  mean_f32,           // sum / N, a correctly rounded division (a constant row's mean is exact)
  deviation,          // sum of (x - target[o])
  squared_deviation,  // sum of (x - target[o])^2
};

// out[o] (dense, n_out elements: of `type` for sum / max / min, else f32) = op over r of
// in[map.input_offset(o, r)].
// `target`: n_out dense elements, of `type` for count_equal, f32 for (squared_)deviation.
void reduce_strided(DType type, ReduceOp op, void* out, const void* in, const ReduceMap& map, double scale = 1.0,
                    const void* target = nullptr);

// Host glue: reduces a tensor (shape, strides) over the dims with reduced[d] set into a dense out.
inline void reduce_tensor(DType type, ReduceOp op, void* out, const void* in, const Shape& shape,
                          const Strides& strides, const std::array<bool, kMaxRank>& reduced, double scale = 1.0,
                          const void* target = nullptr) {
  reduce_strided(type, op, out, in, make_reduce_map(shape, strides, reduced), scale, target);
}

// max / min over the one reduced dim of `map` (n_red = its extent): indices[o] = position of the
// first extreme (a NaN wins), values[o] (if not null) its value. Dense outputs.
void arg_extreme(DType type, bool is_max, void* values, int64_t* indices, const void* in, const ReduceMap& map);

// max / min backward: dst[off0 + index[off2] * step] = src[off1] for every element of the map
// (over the output's positions; map operands {dst, src, index}).
void put_along(DType type, void* dst, const void* src, const int64_t* index, const OffsetMap<3>& map, int64_t numel,
               int64_t step);

// var (is_std: stddev) over the map's reduced elements, dividing by `denom` (N or N - 1): the
// corrected two-pass formula of the CPU op, (sum d^2 - (sum d)^2 / N) / denom with d = x - mean,
// in fp32. out: n_out dense elements of `type`.
void spread_forward(DType type, bool is_std, void* out, const void* in, const ReduceMap& map, double denom);
// Its backward: gx = coef[o] (x - mean[o]) with coef = 2 g / denom (var) or g / (denom std), 0 where
// std == 0. g and out dense [n_out]; elements {gx, x, o's index} through `elements`.
void spread_backward(DType type, bool is_std, void* gx, const void* x, const void* g, const void* out,
                     const ReduceMap& map, const OffsetMap<3>& elements, int64_t numel, double denom);

// dst = factor * src elementwise (mean's backward); map operands {dst, src}.
void scale_strided(DType type, void* dst, const void* src, const OffsetMap<2>& map, int64_t numel, double factor);

// amax / amin backward: gx = (x == value[o]) ? g[o] / count[o] : 0 for every input element, o being
// the output it feeds. map operands {gx, x, o's index into the dense value / g / count arrays}.
void extreme_backward(DType type, void* gx, const void* x, const void* value, const void* g, const float* count,
                      const OffsetMap<3>& map, int64_t numel);

}  // namespace loom::cuda
