#pragma once
// The device primitives behind Tensor<T, CUDA>'s own members (fill_, copy_, to_vector, gradient
// accumulation), untyped so that one compiled kernel family serves every element type. Defined in
// kernels/tensor_copy.cu (target loom::kernels). Pointers are device pointers at each operand's
// first element; offsets come from the OffsetMap (operand 0 is the destination).
#include <cstdint>

#include "loom/core/dtype.hpp"
#include "loom/cuda/offset_map.hpp"

namespace loom::cuda {

// dst = convert(src) elementwise (any pair of element types; bf16 converts through float).
void copy_strided(DType dst_type, void* dst, DType src_type, const void* src, const OffsetMap<2>& map, int64_t numel);
// Every element of dst gets the bit pattern `bits` (its low dtype_size(type) bytes).
void fill_strided(DType type, void* dst, const OffsetMap<1>& map, int64_t numel, uint64_t bits);
// dst = a + b elementwise, floating-point types (f32, f64, bf16 computed in f32).
void add_strided(DType type, void* dst, const void* a, const void* b, const OffsetMap<3>& map, int64_t numel);

}  // namespace loom::cuda
