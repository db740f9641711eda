// Matrix products on the device (loom/cuda/gemm.hpp), behind matmul / bmm / linear on CUDA tensors:
//   gemm            one cublasGemmStridedBatchedEx call planned by loom/cuda/gemm_layout.hpp
//                   (strides -> op, ld, batch stride; CPU-tested in tests/cuda/test_gemm_layout.cpp)
//                   versions: fp32 (CUBLAS_COMPUTE_32F), fp32 with TF32 tensor cores when
//                   set_allow_tf32(true) (CUBLAS_COMPUTE_32F_FAST_TF32), bf16 in/out with fp32
//                   accumulation, fp64
//   broadcast_rows  the bias written into every output row before a beta = 1 GEMM adds onto it
//                   (the gradients' sums over broadcast dims are detail::sum_to's, kernels/reduce.cu)
// One cuBLAS handle per thread, created on first use. Every call is checked (LOOM_CUBLAS_CHECK).
// How to run: tests/cuda/test_device_linalg.cpp (SKIPs without a GPU) compares matmul, bmm, linear
// and their gradients on CUDA tensors with the CPU ops; benchmarks/gpu/run.sh runs it.
#include <cuda_bf16.h>

#include <algorithm>
#include <atomic>
#include <climits>

#include "cuda_check.cuh"
#include "loom/cuda/gemm.hpp"

namespace loom::cuda {
namespace {

std::atomic<bool> g_allow_tf32{false};

// The calling thread's cuBLAS handle. Destroying it at thread exit may find the CUDA context gone
// (process teardown): that status is ignored, there is nothing left to release then.
cublasHandle_t handle() {
  struct Owner {
    cublasHandle_t h = nullptr;
    ~Owner() {
      if (h) (void)cublasDestroy(h);
    }
  };
  thread_local Owner owner;
  if (!owner.h) LOOM_CUBLAS_CHECK(cublasCreate(&owner.h));
  return owner.h;
}

int as_int(int64_t v, const char* what) {
  LOOM_CHECK(v >= 0 && v <= INT_MAX, "gemm: ", what, " = ", v, " exceeds cuBLAS's 32-bit range");
  return int(v);
}

constexpr int kThreads = 256;

unsigned blocks_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return unsigned(blocks < 65536 ? blocks : 65536);  // grid-stride beyond that
}

template <class T>
__global__ void broadcast_rows_kernel(T* out, const T* bias, int64_t bias_stride, int64_t cols, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = bias[(i % cols) * bias_stride];
}

// Calls f(T{}) with the device type of a floating-point DType.
template <class F>
void with_float_type(DType type, const char* op, F&& f) {
  switch (type) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::bf16: return f(__nv_bfloat16{});
    default: ::loom::detail::fail(op, ": ", dtype_name(type), " is not a floating-point type");
  }
}

}  // namespace

void set_allow_tf32(bool allow) { g_allow_tf32.store(allow); }
bool allow_tf32() { return g_allow_tf32.load(); }

void gemm(DType type, const CublasGemmCall& call, const void* left, const void* right, float beta, void* out) {
  if (call.m == 0 || call.n == 0 || call.batch == 0) return;
  cudaDataType_t data_type;
  cublasComputeType_t compute;
  switch (type) {
    case DType::f32:
      data_type = CUDA_R_32F;
      compute = allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
      break;
    case DType::bf16:
      data_type = CUDA_R_16BF;
      compute = CUBLAS_COMPUTE_32F;
      break;
    case DType::f64:
      data_type = CUDA_R_64F;
      compute = CUBLAS_COMPUTE_64F;
      break;
    default: ::loom::detail::fail("gemm: ", dtype_name(type), " is not a floating-point type");
  }
  const size_t esize = dtype_size(type);
  const char* a = static_cast<const char*>(right) + call.right_offset * int64_t(esize);
  const char* b = static_cast<const char*>(left) + call.left_offset * int64_t(esize);
  char* c = static_cast<char*>(out) + call.out_offset * int64_t(esize);
  const float alpha_f = 1.0f, beta_f = beta;
  const double alpha_d = 1.0, beta_d = beta;
  const void* alpha = type == DType::f64 ? static_cast<const void*>(&alpha_d) : &alpha_f;
  const void* beta_p = type == DType::f64 ? static_cast<const void*>(&beta_d) : &beta_f;
  const int m = as_int(call.m, "m"), n = as_int(call.n, "n"), k = as_int(call.k, "k");
  const int lda = as_int(call.lda, "lda"), ldb = as_int(call.ldb, "ldb"), ldc = as_int(call.ldc, "ldc");
  // Batches in chunks that stay well inside every grid limit of cuBLAS's kernels.
  constexpr int64_t kMaxBatch = 65535;
  for (int64_t p = 0; p < call.batch; p += kMaxBatch) {
    const int count = int(std::min<int64_t>(kMaxBatch, call.batch - p));
    LOOM_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        handle(), call.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, call.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, alpha,
        a + p * call.stride_a * int64_t(esize), data_type, lda, call.stride_a,
        b + p * call.stride_b * int64_t(esize), data_type, ldb, call.stride_b, beta_p,
        c + p * call.stride_c * int64_t(esize), data_type, ldc, call.stride_c, count, compute, CUBLAS_GEMM_DEFAULT));
  }
}

void broadcast_rows(DType type, void* out, const void* bias, int64_t bias_stride, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  if (n == 0) return;
  with_float_type(type, "broadcast_rows", [&](auto tag) {
    using T = decltype(tag);
    broadcast_rows_kernel<<<blocks_for(n), kThreads>>>(static_cast<T*>(out), static_cast<const T*>(bias),
                                                       bias_stride, cols, n);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace loom::cuda
