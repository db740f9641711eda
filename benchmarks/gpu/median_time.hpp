#pragma once
// Median device time of a piece of GPU work, shared by the kernel benchmarks: one untimed call
// (warms caches and loom's caching allocator), then `reps` calls each timed by CUDA events.
#include <algorithm>
#include <functional>
#include <vector>

#include "loom/cuda/device_memory.hpp"

namespace loom::bench {

inline float median_ms(int reps, const std::function<void()>& fn) {
  fn();
  loom::cuda::synchronize();
  std::vector<float> t;
  loom::cuda::EventTimer timer;
  for (int r = 0; r < reps; ++r) {
    timer.start();
    fn();
    t.push_back(timer.stop_ms());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace loom::bench
