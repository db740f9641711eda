#pragma once
// OffsetMap<N>: the element offsets of N strided operands laid over one shape, as a function of the
// linear (row-major) element index. This is how every strided device kernel finds its elements —
// one thread per linear index — and it is plain host/device code, so the CPU tests check the exact
// arithmetic the GPU runs. The layout is coalesced first (extent-1 dims dropped, dims contiguous for
// every operand merged), so a contiguous tensor costs one division per element, not one per dim.
#include <array>
#include <cstddef>
#include <cstdint>

#include "loom/core/host_device.hpp"
#include "loom/core/iterate.hpp"
#include "loom/core/shape.hpp"

namespace loom::cuda {

template <size_t N>
struct OffsetMap {
  int rank = 0;                             // coalesced rank, >= 1
  int64_t extent[kMaxRank] = {};            // innermost last
  int64_t stride[N][kMaxRank] = {};         // per operand, in elements (0 = broadcast)

  // off[k] = operand k's element offset of the element with row-major index `linear`.
  LOOM_HOST_DEVICE void offsets(int64_t linear, int64_t (&off)[N]) const {
    for (size_t k = 0; k < N; ++k) off[k] = 0;
    for (int d = rank - 1; d >= 0; --d) {
      const int64_t i = linear % extent[d];
      linear /= extent[d];
      for (size_t k = 0; k < N; ++k) off[k] += i * stride[k][d];
    }
  }
};

template <size_t N>
OffsetMap<N> make_offset_map(const Shape& shape, const std::array<Strides, N>& strides) {
  const ::loom::detail::StridedLayout<N> lay = ::loom::detail::coalesce<N>(shape, strides);
  OffsetMap<N> map;
  map.rank = lay.shape.size();
  for (int d = 0; d < map.rank; ++d) {
    map.extent[d] = lay.shape[d];
    for (size_t k = 0; k < N; ++k) map.stride[k][d] = lay.strides[k][d];
  }
  return map;
}

}  // namespace loom::cuda
