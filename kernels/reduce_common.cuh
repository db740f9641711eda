#pragma once
// What the reduction and normalization kernels (reduce.cu, norm.cu) share: their block folds and
// fp32 element access, the column-mode block shape (kReduceColumnWidth x kReduceColumnLanes, whose
// lane split test_reduce_map checks on the CPU), the one-block-per-item grid and the element-type
// dispatch of their entry points.
// Included by those two .cu files only.
#include <cuda_bf16.h>

#include <cstdint>

#include "block_fold.cuh"
#include "device_types.cuh"
#include "loom/core/dtype.hpp"
#include "loom/core/error.hpp"
#include "loom/cuda/reduce_map.hpp"

namespace loom::cuda {

using kernels::detail::block_fold;
using kernels::detail::ExtremeFold;
using kernels::detail::load;
using kernels::detail::store;
using kernels::detail::SumFold;

// A column-mode block: threadIdx.x picks one of kColumnWidth adjacent outputs (columns),
// threadIdx.y is one of kColumnLanes lanes striding over the reduced index (rows).
constexpr int kColumnWidth = kReduceColumnWidth;
constexpr int kColumnLanes = kReduceColumnLanes;

// One block per item (line, row, output), capped at the grid's x limit: the kernels grid-stride
// over items beyond it.
inline unsigned grid_one_block_each(int64_t n) { return unsigned(n < 0x7fffffff ? n : 0x7fffffff); }

// Calls f(T{}) with the device type of a floating-point element type the kernels support.
template <class F>
void with_float_type(const char* op, DType type, F&& f) {
  switch (type) {
    case DType::f32: return f(float{});
    case DType::bf16: return f(__nv_bfloat16{});
    case DType::f64: ::loom::detail::fail(op, ": float64 is not supported on CUDA");
    default: ::loom::detail::fail(op, ": ", dtype_name(type), " is not supported on CUDA (float32 and bfloat16 are)");
  }
}

}  // namespace loom::cuda
