// The caching device allocator, copies and event timer declared in device_memory.cuh.
#include <map>
#include <mutex>
#include <unordered_map>

#include "cuda_check.cuh"
#include "loom/cuda/device_memory.hpp"

namespace loom::cuda {
namespace {

// Sizes round up to 512 B below 1 MiB and to 2 MiB above, so that blocks of nearby sizes (one
// batch's activations, the next batch's) share free lists.
size_t rounded_size(size_t bytes) {
  const size_t granule = bytes < (size_t(1) << 20) ? 512 : (size_t(2) << 20);
  return (bytes + granule - 1) / granule * granule;
}

struct CachingAllocator {
  std::mutex mutex;
  std::multimap<size_t, void*> free_blocks;  // rounded size -> block
  std::unordered_map<void*, size_t> live;    // block -> rounded size
  DeviceMemoryStats stats;

  void* allocate(size_t bytes) {
    const size_t size = rounded_size(bytes == 0 ? 1 : bytes);
    std::lock_guard<std::mutex> lock(mutex);
    void* ptr = nullptr;
    // Reuse a cached block of the same size, or up to twice as large (bounded waste).
    if (auto it = free_blocks.lower_bound(size); it != free_blocks.end() && it->first <= 2 * size) {
      ptr = it->second;
      stats.cached_bytes -= it->first;
      live[ptr] = it->first;
      stats.allocated_bytes += it->first;
      free_blocks.erase(it);
    } else {
      cudaError_t code = cudaMalloc(&ptr, size);
      if (code == cudaErrorMemoryAllocation && !free_blocks.empty()) {
        (void)cudaGetLastError();  // clear the sticky-free error, give the cache back, retry once
        release_cached_locked();
        code = cudaMalloc(&ptr, size);
      }
      if (code != cudaSuccess) {
        (void)cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        (void)cudaMemGetInfo(&free_b, &total_b);
        ::loom::detail::fail("device_allocate: cudaMalloc of ", size, " bytes failed (", cudaGetErrorName(code),
                             "); device has ", free_b, " of ", total_b, " bytes free, loom holds ",
                             stats.allocated_bytes, " live and ", stats.cached_bytes, " cached");
      }
      ++stats.device_mallocs;
      live[ptr] = size;
      stats.allocated_bytes += size;
    }
    if (stats.allocated_bytes > stats.peak_bytes) stats.peak_bytes = stats.allocated_bytes;
    return ptr;
  }

  void release(void* ptr) {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = live.find(ptr);
    LOOM_CHECK(it != live.end(), "device_release: pointer was not allocated by loom's device allocator");
    stats.allocated_bytes -= it->second;
    stats.cached_bytes += it->second;
    free_blocks.emplace(it->second, ptr);
    live.erase(it);
  }

  void release_cached_locked() {
    for (auto& [size, ptr] : free_blocks) LOOM_CUDA_CHECK(cudaFree(ptr));
    free_blocks.clear();
    stats.cached_bytes = 0;
  }
};

CachingAllocator& allocator() {
  static CachingAllocator* instance = new CachingAllocator();  // never destroyed: outlives static buffers
  return *instance;
}

}  // namespace

void* device_allocate(size_t bytes) { return allocator().allocate(bytes); }
void device_release(void* ptr) { allocator().release(ptr); }
DeviceMemoryStats device_memory_stats() {
  std::lock_guard<std::mutex> lock(allocator().mutex);
  return allocator().stats;
}
void reset_device_peak() {
  std::lock_guard<std::mutex> lock(allocator().mutex);
  allocator().stats.peak_bytes = allocator().stats.allocated_bytes;
}
void empty_device_cache() {
  std::lock_guard<std::mutex> lock(allocator().mutex);
  allocator().release_cached_locked();
}

void copy_to_device(void* dst, const void* src, size_t bytes) {
  LOOM_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
void copy_to_host(void* dst, const void* src, size_t bytes) {
  LOOM_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}
void copy_on_device(void* dst, const void* src, size_t bytes) {
  LOOM_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
}
void fill_device_zero(void* dst, size_t bytes) { LOOM_CUDA_CHECK(cudaMemset(dst, 0, bytes)); }
void synchronize() { LOOM_CUDA_CHECK(cudaDeviceSynchronize()); }

namespace {
// Page-locked blocks are kept by exact size once freed: cudaMallocHost costs milliseconds, and a
// loader asks for the same batch shapes every step.
struct PinnedCache {
  std::mutex mutex;
  std::multimap<size_t, void*> free_blocks;
  std::unordered_map<void*, size_t> live;
};
PinnedCache& pinned_cache() {
  static PinnedCache* instance = new PinnedCache();  // never destroyed: outlives static tensors
  return *instance;
}
}  // namespace

void* pinned_allocate(size_t bytes) {
  const size_t size = bytes == 0 ? 1 : bytes;
  PinnedCache& cache = pinned_cache();
  std::lock_guard<std::mutex> lock(cache.mutex);
  void* ptr = nullptr;
  if (auto it = cache.free_blocks.find(size); it != cache.free_blocks.end()) {
    ptr = it->second;
    cache.free_blocks.erase(it);
  } else {
    LOOM_CUDA_CHECK(cudaMallocHost(&ptr, size));
  }
  cache.live[ptr] = size;
  return ptr;
}
void pinned_release(void* ptr) {
  PinnedCache& cache = pinned_cache();
  std::lock_guard<std::mutex> lock(cache.mutex);
  auto it = cache.live.find(ptr);
  LOOM_CHECK(it != cache.live.end(), "pinned_release: pointer was not allocated by pinned_allocate");
  cache.free_blocks.emplace(it->second, ptr);
  cache.live.erase(it);
}

EventTimer::EventTimer() {
  cudaEvent_t a, b;
  LOOM_CUDA_CHECK(cudaEventCreate(&a));
  LOOM_CUDA_CHECK(cudaEventCreate(&b));
  start_ = a;
  stop_ = b;
}
EventTimer::~EventTimer() {
  (void)cudaEventDestroy(static_cast<cudaEvent_t>(start_));
  (void)cudaEventDestroy(static_cast<cudaEvent_t>(stop_));
}
void EventTimer::start() { LOOM_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(start_))); }
float EventTimer::stop_ms() {
  LOOM_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(stop_)));
  LOOM_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(stop_)));
  float ms = 0;
  LOOM_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start_), static_cast<cudaEvent_t>(stop_)));
  return ms;
}

}  // namespace loom::cuda
