#pragma once
// Sorting of 64-bit keys that the host's make_mask_plan and the device plan kernel both run (one
// thread per sample), so the two order tokens identically by construction: no std::sort, no
// recursion, no allocation — the caller passes a spare buffer of n keys.
// Bottom-up merge sort: insertion sort on runs of 16, then merges that ping-pong between the two
// buffers. Stable (a merge takes the left key on a tie), O(n log n) on every input.
#include <cstdint>

#include "loom/core/host_device.hpp"

namespace loom::mask {

inline constexpr int64_t kKeySortRun = 16;

// Sorts keys[0, n) ascending; `spare` holds n keys of scratch. Returns the buffer that holds the
// sorted keys (keys or spare, by the parity of the merge passes).
LOOM_HOST_DEVICE inline uint64_t* sort_keys(uint64_t* keys, uint64_t* spare, int64_t n) {
  for (int64_t lo = 0; lo < n; lo += kKeySortRun) {
    const int64_t hi = lo + kKeySortRun < n ? lo + kKeySortRun : n;
    for (int64_t i = lo + 1; i < hi; ++i) {
      const uint64_t key = keys[i];
      int64_t j = i;
      for (; j > lo && keys[j - 1] > key; --j) keys[j] = keys[j - 1];
      keys[j] = key;
    }
  }
  uint64_t* src = keys;
  uint64_t* dst = spare;
  for (int64_t width = kKeySortRun; width < n; width *= 2) {
    for (int64_t lo = 0; lo < n; lo += 2 * width) {
      const int64_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
      int64_t a = lo, b = mid, out = lo;
      while (a < mid && b < hi) dst[out++] = src[b] < src[a] ? src[b++] : src[a++];
      while (a < mid) dst[out++] = src[a++];
      while (b < hi) dst[out++] = src[b++];
    }
    uint64_t* t = src;
    src = dst;
    dst = t;
  }
  return src;
}

}  // namespace loom::mask
