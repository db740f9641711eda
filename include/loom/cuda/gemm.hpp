#pragma once
// Matrix products on the device (kernels/gemm.cu, target loom::kernels): cuBLAS GEMMs described by
// loom/cuda/gemm_layout.hpp, and the bias broadcast into the output that a linear layer's GEMM
// adds onto. Plain C++: untyped device pointers, the element type as a DType. All work runs on the legacy default stream.
#include <cstdint>

#include "loom/core/dtype.hpp"
#include "loom/cuda/gemm_layout.hpp"

namespace loom::cuda {

// Process-wide: let fp32 GEMMs use TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32; inputs rounded
// to 10 mantissa bits, about 1e-3 relative error). Off by default: fp32 GEMMs are exact fp32.
void set_allow_tf32(bool allow);
bool allow_tf32();

// Runs one planned call: C = op(A)·op(B) + beta·C (see CublasGemmCall for which pointer is which).
// f32 (CUBLAS_COMPUTE_32F, or TF32 when allowed), bf16 in and out with fp32 accumulation, f64.
// `left`, `right`, `out` point at each operand's element 0; the call adds its offsets.
void gemm(DType type, const CublasGemmCall& call, const void* left, const void* right, float beta, void* out);

// out[r, j] = bias[j · bias_stride] for r < rows, j < cols; out contiguous [rows, cols].
void broadcast_rows(DType type, void* out, const void* bias, int64_t bias_stride, int64_t rows, int64_t cols);

}  // namespace loom::cuda
