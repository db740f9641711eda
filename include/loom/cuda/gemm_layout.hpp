#pragma once
// How a loom matrix product is handed to cuBLAS without copying: the host-side decision behind
// loom::cuda::gemm (kernels/gemm.cu), plain C++ so the CPU tests (tests/cuda/test_gemm_layout.cpp)
// check every layout case by emulating the column-major GEMM it describes.
//
// loom's matrices are row-major views with arbitrary strides; cuBLAS is column-major. The product
// C[M, N] = A[M, K] · B[K, N] is computed as its transpose, Cᵀ[N, M] = Bᵀ[N, K] · Aᵀ[K, M]: cuBLAS's
// first operand is loom's right one (B), its second is loom's left one (A), and C is written
// column-major with ld = C's row stride. A loom matrix X [rows, cols] with strides (rs, cs):
//   cs == 1: Xᵀ is column-major [cols, rows] with ld = rs              -> op N
//   rs == 1: X itself is column-major [rows, cols] with ld = cs, Xᵀ = op T
// An extent-1 dim may have any stride (its stride is never used), so single rows and columns fit
// either way and get the smallest legal ld. Anything else (stepped columns, overlapping rows) has
// no cuBLAS description: the caller makes that operand contiguous first.
// Batch dims (all but the last two, broadcast to C's batch shape, stride 0 where broadcast) are
// coalesced and walked as runs of uniform stride: one strided-batched call per run. When B is shared
// by the whole batch and A's rows form one strided sequence, the batch folds into one GEMM.
#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "loom/core/iterate.hpp"
#include "loom/core/shape.hpp"

namespace loom::cuda {

// One loom operand as cuBLAS reads it: op(X) with X column-major, leading dimension ld. `trans`
// here is in cuBLAS's terms for the TRANSPOSE of the loom matrix (what the swapped product needs).
struct CublasOperand {
  bool trans = false;
  int64_t ld = 1;
};

// The cuBLAS description of loom matrix [rows, cols] with strides (row_stride, col_stride), or
// nullopt when it has none.
inline std::optional<CublasOperand> cublas_operand(int64_t rows, int64_t cols, int64_t row_stride,
                                                   int64_t col_stride) {
  const int64_t min_rows_ld = std::max<int64_t>(cols, 1), min_cols_ld = std::max<int64_t>(rows, 1);
  if ((cols == 1 || col_stride == 1) && (rows == 1 || row_stride >= min_rows_ld))
    return CublasOperand{false, rows == 1 ? min_rows_ld : row_stride};  // row-major: Xᵀ column-major
  if ((rows == 1 || row_stride == 1) && col_stride >= min_cols_ld)  // (cols == 1 is row-major above)
    return CublasOperand{true, col_stride};                          // column-major X
  return std::nullopt;
}

// One cublasGemmStridedBatchedEx call, in cuBLAS's terms: for p < batch,
//   C_p[m, n] = op(A_p)[m, k] · op(B_p)[k, n] (+ beta C_p), column-major,
// with A = loom's right operand, B = loom's left operand, C = loom's output (m = N, n = M rows).
// Pointers: A_p = right + right_offset + p·stride_a, B_p = left + left_offset + p·stride_b,
// C_p = out + out_offset + p·stride_c (element offsets).
struct CublasGemmCall {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  int64_t lda = 1, ldb = 1, ldc = 1;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
  int64_t batch = 1;
  int64_t left_offset = 0, right_offset = 0, out_offset = 0;
};

// The calls that compute out[batch.., M, N] = left[.., M, K] · right[.., K, N] for operands already
// known to have a cuBLAS description (`left`, `right` from cublas_operand of their last two dims).
// left_batch / right_batch / out_batch: each operand's strides over the broadcast batch shape
// (0 where broadcast); out_ld: out's row stride (>= N). Requires M, N, K >= 1.
inline std::vector<CublasGemmCall> plan_cublas_gemm(int64_t M, int64_t N, int64_t K, CublasOperand left,
                                                    CublasOperand right, const Shape& batch,
                                                    const Strides& left_batch, const Strides& right_batch,
                                                    const Strides& out_batch, int64_t out_ld) {
  CublasGemmCall base;
  base.trans_a = right.trans;
  base.lda = right.ld;
  base.trans_b = left.trans;
  base.ldb = left.ld;
  base.m = N;
  base.n = M;
  base.k = K;
  base.ldc = out_ld;

  // Right operand shared by the whole batch and left rows one strided sequence: fold the batch
  // into the GEMM's n (loom's rows), one call.
  const bool right_shared = std::all_of(right_batch.begin(), right_batch.end(), [](int64_t s) { return s == 0; });
  if (right_shared && !left.trans) {
    Shape rows = batch;
    Strides left_rows = left_batch, out_rows = out_batch;
    rows.push_back(M);
    left_rows.push_back(left.ld);
    out_rows.push_back(out_ld);
    const ::loom::detail::StridedLayout<2> lay = ::loom::detail::coalesce<2>(rows, {left_rows, out_rows});
    if (lay.shape.size() == 1) {
      const int64_t total = lay.shape[0];
      const int64_t ldb = total == 1 ? left.ld : lay.strides[0][0];
      const int64_t ldc = total == 1 ? out_ld : lay.strides[1][0];
      if (ldb >= std::max<int64_t>(K, 1) && ldc >= std::max<int64_t>(N, 1)) {
        CublasGemmCall call = base;
        call.n = total;
        call.ldb = ldb;
        call.ldc = ldc;
        return {call};
      }
    }
  }
  std::vector<CublasGemmCall> calls;
  ::loom::detail::for_each_run_serial<3>(batch, {left_batch, right_batch, out_batch},
                                         [&](auto off, int64_t n, auto st) {
                                           CublasGemmCall call = base;
                                           call.left_offset = off[0];
                                           call.right_offset = off[1];
                                           call.out_offset = off[2];
                                           call.batch = n;
                                           call.stride_b = n == 1 ? 0 : st[0];
                                           call.stride_a = n == 1 ? 0 : st[1];
                                           call.stride_c = n == 1 ? 0 : st[2];
                                           calls.push_back(call);
                                         });
  return calls;
}

}  // namespace loom::cuda
