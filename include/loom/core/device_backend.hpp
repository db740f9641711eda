#pragma once
// The one place that knows whether the CUDA backend is linked in. Tensor<T, CUDA> calls these;
// with LOOM_WITH_CUDA (set by linking loom::kernels) they reach the device, otherwise they throw a
// loom::Error that says how to get a CUDA build — header-only users never need the CUDA toolkit.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "loom/core/dtype.hpp"
#include "loom/core/error.hpp"
#include "loom/core/memory_stats.hpp"
#include "loom/core/shape.hpp"

#if LOOM_WITH_CUDA
#include "loom/cuda/device_info.hpp"
#include "loom/cuda/device_memory.hpp"
#include "loom/cuda/tensor_kernels.hpp"
#endif

namespace loom::detail {

#if LOOM_WITH_CUDA
inline constexpr bool kCudaBackend = true;
#else
inline constexpr bool kCudaBackend = false;
#endif

// For an op's CUDA branch: `static_assert(cuda_backend_for<T>, "<op> on CUDA tensors needs ...")`
// turns a missing backend into a compile-time error there (dependent on T, so it only fires when
// the branch is instantiated).
template <class T>
inline constexpr bool cuda_backend_for = kCudaBackend;

[[noreturn]] inline void no_cuda_backend(const char* what) {
  fail(what, ": CUDA tensors need the CUDA backend; build with LOOM_CUDA=ON and link loom::kernels");
}

inline void* device_allocate(size_t bytes) {
#if LOOM_WITH_CUDA
  return cuda::device_allocate(bytes);
#else
  (void)bytes;
  no_cuda_backend("Tensor<T, CUDA>");
#endif
}

inline void device_release(void* ptr) noexcept {
#if LOOM_WITH_CUDA
  cuda::device_release(ptr);
#else
  (void)ptr;
#endif
}

// Why CUDA tensors cannot be used in this process (no backend, no driver, no device), or nullptr.
inline const char* cuda_unavailable_reason() {
#if LOOM_WITH_CUDA
  return cuda::no_device_reason();
#else
  return "this build has no CUDA backend (configure with LOOM_CUDA=ON and link loom::kernels)";
#endif
}

// Page-locked host memory for the loader's batches (cached by size in loom::kernels).
inline void* pinned_allocate(size_t bytes) {
#if LOOM_WITH_CUDA
  return cuda::pinned_allocate(bytes);
#else
  (void)bytes;
  no_cuda_backend("pinned host memory");
#endif
}

inline void pinned_release(void* ptr) noexcept {
#if LOOM_WITH_CUDA
  cuda::pinned_release(ptr);
#else
  (void)ptr;
#endif
}

// The caching device allocator's statistics as MemoryStats; zeros without the backend.
inline MemoryStats device_memory_stats() {
  MemoryStats out;
#if LOOM_WITH_CUDA
  const cuda::DeviceMemoryStats d = cuda::device_memory_stats();
  out.current_bytes = int64_t(d.allocated_bytes);
  out.peak_bytes = int64_t(d.peak_bytes);
  out.cached_bytes = int64_t(d.cached_bytes);
  out.system_allocations = int64_t(d.device_mallocs);
#endif
  return out;
}

inline void device_reset_peak() {
#if LOOM_WITH_CUDA
  cuda::reset_device_peak();
#endif
}
inline void device_empty_cache() {
#if LOOM_WITH_CUDA
  cuda::empty_device_cache();
#endif
}

// Copies bytes between host and device memory or within either; the flags say where each pointer is.
inline void copy_bytes(void* dst, bool dst_on_device, const void* src, bool src_on_device, size_t bytes) {
  if (bytes == 0) return;
#if LOOM_WITH_CUDA
  if (dst_on_device && src_on_device) return cuda::copy_on_device(dst, src, bytes);
  if (dst_on_device) return cuda::copy_to_device(dst, src, bytes);
  if (src_on_device) return cuda::copy_to_host(dst, src, bytes);
#else
  if (dst_on_device || src_on_device) no_cuda_backend("copy to/from a CUDA tensor");
#endif
  std::memcpy(dst, src, bytes);
}

// dst = convert(src) over `shape`, each with its strides (src's may be 0 along broadcast dims).
inline void device_copy(DType dst_type, void* dst, const Strides& dst_strides, DType src_type, const void* src,
                        const Strides& src_strides, const Shape& shape) {
#if LOOM_WITH_CUDA
  cuda::copy_strided(dst_type, dst, src_type, src, cuda::make_offset_map<2>(shape, {dst_strides, src_strides}),
                     shape.numel());
#else
  (void)dst_type, (void)dst, (void)dst_strides, (void)src_type, (void)src, (void)src_strides, (void)shape;
  no_cuda_backend("copy_");
#endif
}

// Every element of dst (over `shape`, `strides`) gets the bit pattern `bits`.
inline void device_fill(DType type, void* dst, const Strides& strides, const Shape& shape, uint64_t bits) {
#if LOOM_WITH_CUDA
  cuda::fill_strided(type, dst, cuda::make_offset_map<1>(shape, {strides}), shape.numel(), bits);
#else
  (void)type, (void)dst, (void)strides, (void)shape, (void)bits;
  no_cuda_backend("fill_");
#endif
}

// dst = a + b over `shape` (floating-point types), for gradient accumulation.
inline void device_add(DType type, void* dst, const Strides& dst_strides, const void* a, const Strides& a_strides,
                       const void* b, const Strides& b_strides, const Shape& shape) {
#if LOOM_WITH_CUDA
  cuda::add_strided(type, dst, a, b, cuda::make_offset_map<3>(shape, {dst_strides, a_strides, b_strides}),
                    shape.numel());
#else
  (void)type, (void)dst, (void)dst_strides, (void)a, (void)a_strides, (void)b, (void)b_strides, (void)shape;
  no_cuda_backend("gradient accumulation");
#endif
}

}  // namespace loom::detail
