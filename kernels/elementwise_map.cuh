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
#include "elementwise_operands.cuh"
#include "loom/cuda/elementwise.hpp"

namespace loom::cuda::elementwise_detail {

constexpr int kThreads = 256;

inline unsigned blocks_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return unsigned(blocks < 65536 ? blocks : 65536);  // grid-stride beyond that
}

template <class Ops>
__global__ void __launch_bounds__(kThreads) elementwise_kernel(Ops ops, int64_t n, bool flat) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  if (flat) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) ops.flat(i);
  } else {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) ops.strided(i);
  }
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
