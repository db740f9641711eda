#pragma once
// The fold behind max / min / argmax / argmin over a dim on the device (kernels/reduce.cu): a
// (value, index) pair per thread, combined in whatever order the block's tree takes. The combine
// is order-free — the better value wins, a NaN beats any number, and equal values (or two NaNs)
// keep the smaller index — so the result is always the CPU's: the first occurrence of the extreme.
// Plain host/device code, CPU-tested in tests/cuda/test_reduce_map.cpp.
#include <cstdint>

#include "loom/core/host_device.hpp"

namespace loom::cuda {

struct ArgExtreme {
  float value = 0;
  int64_t index = -1;  // -1: nothing folded yet
};

template <bool kMax>
LOOM_HOST_DEVICE inline bool arg_better(float v, float best) {
  const bool v_nan = v != v, best_nan = best != best;
  return (kMax ? v > best : v < best) || (v_nan && !best_nan);
}

template <bool kMax>
LOOM_HOST_DEVICE inline ArgExtreme arg_combine(const ArgExtreme& a, const ArgExtreme& b) {
  if (a.index < 0) return b;
  if (b.index < 0) return a;
  if (arg_better<kMax>(b.value, a.value)) return b;
  if (arg_better<kMax>(a.value, b.value)) return a;
  return b.index < a.index ? b : a;  // tie (or both NaN): first occurrence
}

}  // namespace loom::cuda
