#pragma once
// MemoryStats: what loom's allocators report (memory_stats<Dev>() in loom/core/allocator.hpp).
#include <cstdint>

namespace loom {

struct MemoryStats {
  int64_t current_bytes = 0;   // bytes held by live tensors
  int64_t peak_bytes = 0;      // maximum of current_bytes since the last reset
  int64_t cached_bytes = 0;    // freed blocks kept for reuse (not counted in current_bytes)
  int64_t allocations = 0;     // requests served (CUDA: not counted, 0)
  int64_t system_allocations = 0;  // requests that had to go to the system (CUDA: cudaMalloc calls)
};

}  // namespace loom
