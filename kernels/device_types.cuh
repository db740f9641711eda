#pragma once
// Element access shared by the kernels: loom::bf16 on the host is bit-identical to __nv_bfloat16 on
// the device; kernels load either type as fp32 and store fp32 results rounded to the element type.
#include <cuda_bf16.h>

#include "loom/core/bf16.hpp"

namespace loom::kernels::detail {

template <class T>
struct DeviceType {
  using type = T;
};
template <>
struct DeviceType<loom::bf16> {
  using type = __nv_bfloat16;
};
template <class T>
using device_t = typename DeviceType<T>::type;

template <class T>
const device_t<T>* dev(const T* p) {
  return reinterpret_cast<const device_t<T>*>(p);
}
template <class T>
device_t<T>* dev(T* p) {
  return reinterpret_cast<device_t<T>*>(p);
}

__device__ __forceinline__ float load(const float* p) { return *p; }
__device__ __forceinline__ float load(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ void store(float* p, float x) { *p = x; }
__device__ __forceinline__ void store(__nv_bfloat16* p, float x) { *p = __float2bfloat16(x); }

}  // namespace loom::kernels::detail
