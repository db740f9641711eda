// Device kernels of loom's index ops (loom/cuda/index.hpp), behind gather / index_select /
// scatter_add on CUDA tensors and their backward.
// Versions:
//   gather_kernel<E>         one thread per element of index's shape, E = element size (1/2/4/8
//                            bytes): a pure copy, so one instantiation per size serves every type.
//   scatter_add_kernel<S>    one thread per column (index's coordinates other than dim), S = f32 or
//                            bf16 source, fp32 accumulator; the column is summed in increasing order
//                            along dim: deterministic, no float atomics, bit-identical to the CPU.
//   range_check_kernel       first out-of-range index position by an integer atomicMin (the result
//                            is the minimum whatever the schedule), read back by the host to throw.
// Per-thread math: loom/cuda/index_math.hpp (CPU-tested by tests/cuda/test_index_math.cpp).
// How to run: tests/cuda/test_device_index.cpp (SKIPs without a GPU) against the CPU ops;
// benchmarks/gpu/run.sh runs it.
#include <cuda_bf16.h>

#include <cstdint>

#include "cuda_check.cuh"
#include "loom/cuda/device_memory.hpp"
#include "loom/cuda/index.hpp"

namespace loom::cuda {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return unsigned(blocks < 65536 ? blocks : 65536);  // grid-stride beyond that
}

template <size_t Bytes>
struct Word;  // an element moved as raw bits
template <>
struct Word<1> { using type = uint8_t; };
template <>
struct Word<2> { using type = uint16_t; };
template <>
struct Word<4> { using type = uint32_t; };
template <>
struct Word<8> { using type = uint64_t; };

template <class W>
__global__ void gather_kernel(W* out, const W* t, const int64_t* index, OffsetMap<3> map, int64_t n,
                              int64_t dim_stride) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    index_math::gather_element(out, t, index, map, dim_stride, i);
}

struct ToFloat {
  __device__ float operator()(float v) const { return v; }
  __device__ float operator()(__nv_bfloat16 v) const { return __bfloat162float(v); }
};

template <class S>
__global__ void scatter_add_kernel(float* acc, const S* src, const int64_t* index, OffsetMap<3> map,
                                   int64_t columns, index_math::ScatterColumn column) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < columns; i += int64_t(gridDim.x) * blockDim.x)
    index_math::scatter_add_column(acc, src, index, map, column, i, ToFloat{});
}

__global__ void range_check_kernel(const int64_t* index, OffsetMap<1> map, int64_t n, int64_t limit,
                                   unsigned long long* first_bad) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[1];
    map.offsets(i, off);
    if (index_math::index_out_of_range(index[off[0]], limit)) atomicMin(first_bad, static_cast<unsigned long long>(i));
  }
}

}  // namespace

void gather_strided(size_t element_size, void* out, const void* t, const int64_t* index, const OffsetMap<3>& map,
                    int64_t numel, int64_t dim_stride) {
  if (numel == 0) return;
  auto launch = [&](auto word) {
    using W = decltype(word);
    gather_kernel<<<blocks_for(numel), kThreads>>>(static_cast<W*>(out), static_cast<const W*>(t), index, map, numel,
                                                   dim_stride);
  };
  switch (element_size) {
    case 1: launch(Word<1>::type{}); break;
    case 2: launch(Word<2>::type{}); break;
    case 4: launch(Word<4>::type{}); break;
    case 8: launch(Word<8>::type{}); break;
    default: ::loom::detail::fail("gather on CUDA: unsupported element size ", element_size);
  }
  LOOM_CUDA_CHECK_LAUNCH();
}

void scatter_add_columns(float* acc, DType src_type, const void* src, const int64_t* index, const OffsetMap<3>& map,
                         int64_t columns, const index_math::ScatterColumn& column) {
  if (columns == 0 || column.steps == 0) return;
  if (src_type == DType::f32) {
    scatter_add_kernel<<<blocks_for(columns), kThreads>>>(acc, static_cast<const float*>(src), index, map, columns,
                                                          column);
  } else if (src_type == DType::bf16) {
    scatter_add_kernel<<<blocks_for(columns), kThreads>>>(acc, static_cast<const __nv_bfloat16*>(src), index, map,
                                                          columns, column);
  } else {
    ::loom::detail::fail("scatter_add on CUDA: ", dtype_name(src_type), " is not supported (float32 and bfloat16 are)");
  }
  LOOM_CUDA_CHECK_LAUNCH();
}

int64_t first_out_of_range(const int64_t* index, const OffsetMap<1>& map, int64_t numel, int64_t limit) {
  if (numel == 0) return -1;
  DeviceBuffer<unsigned long long> first_bad(1);
  LOOM_CUDA_CHECK(cudaMemset(first_bad.data(), 0xff, sizeof(unsigned long long)));  // "none": the largest value
  range_check_kernel<<<blocks_for(numel), kThreads>>>(index, map, numel, limit, first_bad.data());
  LOOM_CUDA_CHECK_LAUNCH();
  const unsigned long long found = first_bad.to_host()[0];
  return found == ~0ull ? -1 : int64_t(found);
}

}  // namespace loom::cuda
