// The strided element kernels behind Tensor<T, CUDA>'s own members (loom/cuda/tensor_kernels.hpp):
//   copy_strided   dst = convert(src), any pair of element types, any strides (broadcast = 0)
//   fill_strided   dst = one bit pattern
//   add_strided    dst = a + b (floating point), the autograd engine's gradient accumulation
// One thread per element in a grid-stride loop; each finds its operands' offsets through
// loom::cuda::OffsetMap, the host/device index map that tests/cuda/test_kernel_math.cpp checks on
// the CPU. A contiguous same-type copy is a cudaMemcpy instead.
// How to run: tests/cuda/test_device_tensor.cpp (SKIPs without a GPU) compares every member with
// the CPU tensor; benchmarks/gpu/run.sh runs it.
#include <cuda_bf16.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cuda_check.cuh"
#include "loom/cuda/tensor_kernels.hpp"

namespace loom::cuda {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return unsigned(blocks < 65536 ? blocks : 65536);  // grid-stride beyond that
}

template <class To, class From>
__device__ __forceinline__ To convert(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else if constexpr (std::is_same_v<From, __nv_bfloat16>) {
    return convert<To>(__bfloat162float(v));
  } else if constexpr (std::is_same_v<To, __nv_bfloat16>) {
    return __float2bfloat16(float(v));  // as loom::bf16: through float, round to nearest even
  } else {
    return To(v);
  }
}

template <class C>
__device__ __forceinline__ C compute(__nv_bfloat16 v) { return __bfloat162float(v); }
template <class C, class T>
__device__ __forceinline__ C compute(T v) { return C(v); }

template <class To, class From>
__global__ void copy_kernel(To* dst, const From* src, OffsetMap<2> map, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[2];
    map.offsets(i, off);
    dst[off[0]] = convert<To>(src[off[1]]);
  }
}

template <class T>
__global__ void fill_kernel(T* dst, OffsetMap<1> map, int64_t n, T value) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[1];
    map.offsets(i, off);
    dst[off[0]] = value;
  }
}

template <class T>
__global__ void add_kernel(T* dst, const T* a, const T* b, OffsetMap<3> map, int64_t n) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[3];
    map.offsets(i, off);
    dst[off[0]] = convert<T>(compute<C>(a[off[1]]) + compute<C>(b[off[2]]));
  }
}

// Calls f(T{}) with the device element type of `type`.
template <class F>
void with_type(DType type, F&& f) {
  switch (type) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::bf16: return f(__nv_bfloat16{});
    case DType::i64: return f(int64_t{});
    case DType::i32: return f(int32_t{});
    case DType::u8: return f(uint8_t{});
  }
  ::loom::detail::fail("CUDA tensor kernels: unknown element type");
}

bool contiguous(const OffsetMap<2>& map) { return map.rank == 1 && map.stride[0][0] == 1 && map.stride[1][0] == 1; }

}  // namespace

void copy_strided(DType dst_type, void* dst, DType src_type, const void* src, const OffsetMap<2>& map, int64_t numel) {
  if (numel == 0) return;
  if (dst_type == src_type && contiguous(map)) {
    LOOM_CUDA_CHECK(cudaMemcpy(dst, src, size_t(numel) * dtype_size(dst_type), cudaMemcpyDeviceToDevice));
    return;
  }
  with_type(dst_type, [&](auto to) {
    with_type(src_type, [&](auto from) {
      using To = decltype(to);
      using From = decltype(from);
      copy_kernel<<<blocks_for(numel), kThreads>>>(static_cast<To*>(dst), static_cast<const From*>(src), map, numel);
    });
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

void fill_strided(DType type, void* dst, const OffsetMap<1>& map, int64_t numel, uint64_t bits) {
  if (numel == 0) return;
  with_type(type, [&](auto tag) {
    using T = decltype(tag);
    T value;
    static_assert(sizeof(T) <= sizeof(bits));
    std::memcpy(static_cast<void*>(&value), &bits, sizeof(T));  // little-endian: the low bytes are the element
    fill_kernel<<<blocks_for(numel), kThreads>>>(static_cast<T*>(dst), map, numel, value);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

void add_strided(DType type, void* dst, const void* a, const void* b, const OffsetMap<3>& map, int64_t numel) {
  if (numel == 0) return;
  with_type(type, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, __nv_bfloat16>) {
      add_kernel<<<blocks_for(numel), kThreads>>>(static_cast<T*>(dst), static_cast<const T*>(a),
                                                  static_cast<const T*>(b), map, numel);
    } else {
      ::loom::detail::fail("add_strided: ", dtype_name(type), " is not a floating-point type");
    }
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace loom::cuda
