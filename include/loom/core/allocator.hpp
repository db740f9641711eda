#pragma once
// CPU memory: 64-byte aligned blocks with per-device accounting (current / peak bytes in live
// tensors) and a cache of freed blocks keyed by size, so a training step that allocates the same
// activations every step stops paying page faults after the first one (see docs/performance.md).
// Blocks of 2 MiB and more come from mmap with MADV_HUGEPAGE.
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>

#include "loom/core/device.hpp"
#include "loom/core/device_backend.hpp"
#include "loom/core/error.hpp"
#include "loom/core/memory_stats.hpp"

namespace loom {

namespace detail {

class CpuAllocator {
 public:
  static constexpr size_t kAlignment = 64;
  static constexpr size_t kHugeThreshold = size_t(2) << 20;
  static constexpr size_t kCacheLimit = size_t(8) << 30;  // never cache more than this

  static CpuAllocator& instance() {
    static CpuAllocator* a = new CpuAllocator;  // leaked on purpose: outlives static tensors
    return *a;
  }

  void* allocate(size_t bytes) {
    const size_t size = round_size(std::max<size_t>(bytes, 1));
    std::lock_guard lock(mutex_);
    ++stats_.allocations;
    void* p = nullptr;
    if (auto it = cache_.find(size); it != cache_.end()) {
      p = it->second;
      cache_.erase(it);
      stats_.cached_bytes -= int64_t(size);
    } else {
      p = system_allocate(size);
      ++stats_.system_allocations;
    }
    stats_.current_bytes += int64_t(size);
    stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.current_bytes);
    return p;
  }

  void deallocate(void* p, size_t bytes) {
    if (!p) return;
    const size_t size = round_size(std::max<size_t>(bytes, 1));
    std::lock_guard lock(mutex_);
    stats_.current_bytes -= int64_t(size);
    if (caching_ && stats_.cached_bytes + int64_t(size) <= int64_t(kCacheLimit)) {
      cache_.emplace(size, p);
      stats_.cached_bytes += int64_t(size);
    } else {
      system_free(p, size);
    }
  }

  MemoryStats stats() {
    std::lock_guard lock(mutex_);
    return stats_;
  }
  void reset_peak() {
    std::lock_guard lock(mutex_);
    stats_.peak_bytes = stats_.current_bytes;
  }
  // Returns every cached block to the system.
  void empty_cache() {
    std::lock_guard lock(mutex_);
    for (auto& [size, p] : cache_) system_free(p, size);
    cache_.clear();
    stats_.cached_bytes = 0;
  }
  void set_caching(bool on) {
    if (!on) empty_cache();
    std::lock_guard lock(mutex_);
    caching_ = on;
  }

 private:
  CpuAllocator() {
    if (const char* env = std::getenv("LOOM_NO_ALLOC_CACHE")) caching_ = env[0] == '0';
  }
  static size_t round_size(size_t bytes) {
    const size_t granule = bytes >= kHugeThreshold ? kHugeThreshold : kAlignment;
    return (bytes + granule - 1) / granule * granule;
  }
  static void* system_allocate(size_t size) {
    if (size >= kHugeThreshold) {
      void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      LOOM_CHECK(p != MAP_FAILED, "out of memory: cannot map ", size, " bytes");
#ifdef MADV_HUGEPAGE
      madvise(p, size, MADV_HUGEPAGE);
#endif
      return p;
    }
    void* p = std::aligned_alloc(kAlignment, size);
    LOOM_CHECK(p != nullptr, "out of memory: cannot allocate ", size, " bytes");
    return p;
  }
  static void system_free(void* p, size_t size) {
    if (size >= kHugeThreshold)
      munmap(p, size);
    else
      std::free(p);
  }

  std::mutex mutex_;
  std::multimap<size_t, void*> cache_;
  MemoryStats stats_;
  bool caching_ = true;
};

}  // namespace detail

// Statistics of the allocator of device Dev (CUDA: the caching device allocator's bytes, and its
// cudaMalloc calls as system_allocations).
template <class Dev = CPU>
MemoryStats memory_stats() {
  if constexpr (Dev::kind == DeviceKind::cuda) return detail::device_memory_stats();
  return detail::CpuAllocator::instance().stats();
}
template <class Dev = CPU>
void reset_peak_memory() {
  if constexpr (Dev::kind == DeviceKind::cuda) detail::device_reset_peak();
  else detail::CpuAllocator::instance().reset_peak();
}
template <class Dev = CPU>
void empty_cache() {
  if constexpr (Dev::kind == DeviceKind::cuda) detail::device_empty_cache();
  else detail::CpuAllocator::instance().empty_cache();
}

}  // namespace loom
