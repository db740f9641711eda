#pragma once
// What one elementwise launch hands each thread (kernels/elementwise_map.cuh): the functor, the
// operands and the index map, with element i computed by Operands::flat / Operands::strided.
// Host-and-device code: test_device_elementwise runs these very functions on the CPU over host
// buffers (every listed functor, flat and strided, in place, float and bf16) so the operand
// plumbing is checked on machines without a GPU too.
#include <cuda_bf16.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "loom/cuda/offset_map.hpp"

namespace loom::cuda::elementwise_detail {

// An element in its compute type: bf16 widens to float, everything else is itself.
template <class T>
__host__ __device__ __forceinline__ auto load(const T* p) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat162float(*p);
  } else {
    return *p;
  }
}

template <class T, class V>
__host__ __device__ __forceinline__ void store(T* p, V v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    *p = __float2bfloat16(float(v));
  } else {
    *p = T(v);
  }
}

// What one launch needs, passed by value: the functor, the output, the inputs (type-erased in an
// array, typed again per element: a __global__ template may have only one parameter pack) and the
// index map.
template <bool InPlace, class F, class TOut, class Seq, class... Ts>
struct Operands;

template <bool InPlace, class F, class TOut, size_t... K, class... Ts>
struct Operands<InPlace, F, TOut, std::index_sequence<K...>, Ts...> {
  F f;
  TOut* out;
  const void* in[sizeof...(Ts) > 0 ? sizeof...(Ts) : 1];
  OffsetMap<sizeof...(Ts) + 1> map;

  // Element i when every operand is contiguous over the same elements.
  __host__ __device__ __forceinline__ void flat(int64_t i) const {
    if constexpr (InPlace) {
      store(out + i, f(load(out + i), load(static_cast<const Ts*>(in[K]) + i)...));
    } else {
      store(out + i, f(load(static_cast<const Ts*>(in[K]) + i)...));
    }
  }

  // Element i (row-major over the shape) at each operand's strided offset.
  __host__ __device__ __forceinline__ void strided(int64_t i) const {
    int64_t off[sizeof...(Ts) + 1];
    map.offsets(i, off);
    if constexpr (InPlace) {
      store(out + off[0], f(load(out + off[0]), load(static_cast<const Ts*>(in[K]) + off[K + 1])...));
    } else {
      store(out + off[0], f(load(static_cast<const Ts*>(in[K]) + off[K + 1])...));
    }
  }
};

// Whether every operand is contiguous over the same elements (the flat path).
template <size_t N>
bool all_unit_stride(const OffsetMap<N>& map) {
  if (map.rank != 1) return false;
  for (size_t k = 0; k < N; ++k)
    if (map.stride[k][0] != 1) return false;
  return true;
}

}  // namespace loom::cuda::elementwise_detail
