#pragma once
// The per-thread work of the device index kernels (kernels/index.cu), as host/device functions that
// the CPU tests (tests/cuda/test_index_math.cpp) run over every thread index against naive loops:
//   gather_element       thread `linear` over index's shape copies one element
//   scatter_add_column   thread `linear` over the coordinates of index's shape other than `dim`
//                        adds its whole column along `dim`, in increasing order along `dim`
//   index_out_of_range   the validity test of one index value
// Why scatter_add is one thread per column: positions that differ outside `dim` never write the same
// output element, so columns are independent and no atomics are needed; within a column the order
// is fixed (j = 0, 1, ...), the CPU's order, so the device sums are bit-identical to the CPU's and
// deterministic. The cost is parallelism: numel(index) / size(index, dim) threads (a 1-D
// scatter_add runs on one thread) — fine for the MAE (gradients of gathers over tokens: B·D
// columns), documented in docs/cuda.md.
#include <cstdint>

#include "loom/core/host_device.hpp"
#include "loom/cuda/offset_map.hpp"

namespace loom::cuda::index_math {

// out[pos] = t[pos with coordinate `dim` replaced by index[pos]]. The map runs over index's shape
// with operands {out, t with stride 0 along dim, index}; dim_stride is t's stride along dim.
template <class T>
LOOM_HOST_DEVICE void gather_element(T* out, const T* t, const int64_t* index, const OffsetMap<3>& map,
                                     int64_t dim_stride, int64_t linear) {
  int64_t off[3];
  map.offsets(linear, off);
  out[off[0]] = t[off[1] + index[off[2]] * dim_stride];
}

// The column a scatter_add thread walks: its length and each operand's stride along `dim`.
struct ScatterColumn {
  int64_t steps = 0;                              // index.size(dim)
  int64_t acc_stride = 0, src_stride = 0, index_stride = 0;  // strides along dim
};

// acc[column start with dim -> index[j]] += to_acc(src[j]) for j = 0 .. steps-1 in order. The map
// runs over index's shape without `dim`, with operands {acc, src, index}.
template <class Acc, class S, class ToAcc>
LOOM_HOST_DEVICE void scatter_add_column(Acc* acc, const S* src, const int64_t* index, const OffsetMap<3>& map,
                                         const ScatterColumn& column, int64_t linear, ToAcc to_acc) {
  int64_t off[3];
  map.offsets(linear, off);
  Acc* a = acc + off[0];
  const S* s = src + off[1];
  const int64_t* ix = index + off[2];
  for (int64_t j = 0; j < column.steps; ++j)
    a[ix[j * column.index_stride] * column.acc_stride] += to_acc(s[j * column.src_stride]);
}

LOOM_HOST_DEVICE inline bool index_out_of_range(int64_t value, int64_t limit) { return value < 0 || value >= limit; }

}  // namespace loom::cuda::index_math
