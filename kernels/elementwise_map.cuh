#pragma once
// The kernel template behind loom::cuda::ElementwiseKernel (loom/cuda/elementwise.hpp): one thread
// per element in a grid-stride loop, out[i] = f(in_0[i], ...) with each operand loaded in its
// compute type (bf16 -> float) and the result stored as the output type (float -> bf16 rounds to
// nearest even, as loom::bf16 does). Two paths in the one kernel, chosen per launch:
//   - flat: every operand contiguous over the same elements (the OffsetMap coalesced them to one
//     unit-stride dim): element i is at offset i everywhere, no index arithmetic;
//   - strided: offsets from OffsetMap::offsets (transposed views, slices, broadcast stride 0) —
//     the host/device index map that test_kernel_math checks on the CPU.
// Included only by kernels/elementwise.cu, which instantiates it for the listed functors.
#include <cuda_bf16.h>

#include <cstdint>
#include <type_traits>
#include <utility>

#include "cuda_check.cuh"
#include "device_types.cuh"
#include "loom/cuda/elementwise.hpp"

namespace loom::cuda::elementwise_detail {

constexpr int kThreads = 256;

inline unsigned blocks_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return unsigned(blocks < 65536 ? blocks : 65536);  // grid-stride beyond that
}

// An element in its compute type: bf16 widens to float, everything else is itself.
template <class T>
__device__ __forceinline__ auto load(const T* p) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat162float(*p);
  } else {
    return *p;
  }
}

template <class T, class V>
__device__ __forceinline__ void store(T* p, V v) {
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
  __device__ __forceinline__ void flat(int64_t i) const {
    if constexpr (InPlace) {
      store(out + i, f(load(out + i), load(static_cast<const Ts*>(in[K]) + i)...));
    } else {
      store(out + i, f(load(static_cast<const Ts*>(in[K]) + i)...));
    }
  }

  // Element i (row-major over the shape) at each operand's strided offset.
  __device__ __forceinline__ void strided(int64_t i) const {
    int64_t off[sizeof...(Ts) + 1];
    map.offsets(i, off);
    if constexpr (InPlace) {
      store(out + off[0], f(load(out + off[0]), load(static_cast<const Ts*>(in[K]) + off[K + 1])...));
    } else {
      store(out + off[0], f(load(static_cast<const Ts*>(in[K]) + off[K + 1])...));
    }
  }
};

template <class Ops>
__global__ void __launch_bounds__(kThreads) elementwise_kernel(Ops ops, int64_t n, bool flat) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  if (flat) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) ops.flat(i);
  } else {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) ops.strided(i);
  }
}

template <size_t N>
bool all_unit_stride(const OffsetMap<N>& map) {
  if (map.rank != 1) return false;
  for (size_t k = 0; k < N; ++k)
    if (map.stride[k][0] != 1) return false;
  return true;
}

}  // namespace loom::cuda::elementwise_detail

namespace loom::cuda {

template <bool InPlace, class F, class TOut, class... Ts>
void ElementwiseKernel<InPlace, F, TOut, Ts...>::launch(const F& f, TOut* out, const OffsetMap<sizeof...(Ts) + 1>& map,
                                                         int64_t numel, const Ts*... in) {
  namespace ew = elementwise_detail;
  using kernels::detail::dev;
  if (numel == 0) return;
  using Ops = ew::Operands<InPlace, F, kernels::detail::device_t<TOut>, std::index_sequence_for<Ts...>,
                           kernels::detail::device_t<Ts>...>;
  const Ops ops{f, dev(out), {static_cast<const void*>(dev(in))...}, map};
  ew::elementwise_kernel<<<ew::blocks_for(numel), ew::kThreads>>>(ops, numel, ew::all_unit_stride(map));
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace loom::cuda
