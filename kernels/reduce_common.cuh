#pragma once
// What the reduction and normalization kernels (reduce.cu, norm.cu) share: their block folds and
// fp32 element access, the column-mode block shape (kReduceColumnWidth x kReduceColumnLanes, whose
// lane split test_reduce_map checks on the CPU) and the one-block-per-item grid.
// Included by those two .cu files only.
#include <cstdint>

#include "block_fold.cuh"
#include "device_types.cuh"
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

}  // namespace loom::cuda
