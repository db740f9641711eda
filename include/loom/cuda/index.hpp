#pragma once
// Device primitives of loom's index ops (loom/ops/index.hpp), untyped like tensor_kernels.hpp so
// one compiled kernel per element size or accumulator serves every element type. Defined in
// kernels/index.cu (target loom::kernels); pointers are device pointers at each operand's first
// element, offsets come from OffsetMaps (operand 0 is the destination). The per-thread arithmetic
// is loom/cuda/index_math.hpp, which the CPU tests run.
#include <cstddef>
#include <cstdint>

#include "loom/core/dtype.hpp"
#include "loom/cuda/index_math.hpp"
#include "loom/cuda/offset_map.hpp"

namespace loom::cuda {

// gather over index's shape (index_math::gather_element): a pure copy, so only the element size
// (1, 2, 4 or 8 bytes) matters.
void gather_strided(size_t element_size, void* out, const void* t, const int64_t* index, const OffsetMap<3>& map,
                    int64_t numel, int64_t dim_stride);

// acc (fp32) += src scattered along dim, one thread per column (index_math::scatter_add_column);
// src is f32 or bf16. `columns` = numel of index's shape without dim.
void scatter_add_columns(float* acc, DType src_type, const void* src, const int64_t* index, const OffsetMap<3>& map,
                         int64_t columns, const index_math::ScatterColumn& column);

// The row-major position (over the map's shape) of the first index value outside [0, limit), or -1.
// One device pass (an integer atomicMin of positions: the result does not depend on scheduling)
// and one 8-byte read-back, so it synchronizes with the device.
int64_t first_out_of_range(const int64_t* index, const OffsetMap<1>& map, int64_t numel, int64_t limit);

}  // namespace loom::cuda
