// The unfused cuBLAS + softmax attention declared in attention_naive.cuh.
// Versions: T ∈ {float, bf16}; softmax_rows_kernel / softmax_backward_kernel: one warp per row.
// How to run: benchmarks/gpu/bench_attention_gpu (the "cublas" rows), from benchmarks/gpu/run.sh.
#include <cublas_v2.h>

#include <type_traits>

#include "attention_naive.cuh"
#include "cuda_check.cuh"
#include "device_types.cuh"

namespace loom::kernels {
namespace {

using detail::load;
using detail::store;

template <class DT>
constexpr cudaDataType_t cuda_type() {
  return std::is_same_v<DT, float> ? CUDA_R_32F : CUDA_R_16BF;
}

// Row-major batched C[M, N] = alpha · op(A) · op(B) + beta · C, where op transposes when asked.
// cuBLAS is column-major: a row-major matrix is its transpose there, so C is computed as
// Cᵀ = op(B)ᵀ op(A)ᵀ with the operands swapped.
void gemm_rm(cublasHandle_t h, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
             const void* a, cudaDataType_t a_type, int64_t stride_a, const void* b, cudaDataType_t b_type,
             int64_t stride_b, void* c, cudaDataType_t c_type, int64_t stride_c, int64_t batch) {
  const float beta = 0.0f;
  const int64_t lda = trans_a ? m : k, ldb = trans_b ? k : n;
  LOOM_CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                               int(n), int(m), int(k), &alpha, b, b_type, int(ldb), stride_b, a, a_type,
                                               int(lda), stride_a, &beta, c, c_type, int(n), stride_c, int(batch),
                                               CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

template <class DT>
__global__ void softmax_rows_kernel(const float* __restrict__ s, DT* __restrict__ p, int64_t rows, int64_t n) {
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const float* x = s + row * n;
  float m = -INFINITY;
  for (int64_t j = lane; j < n; j += 32) m = fmaxf(m, x[j]);
  for (int off = 16; off > 0; off /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
  float sum = 0.0f;
  for (int64_t j = lane; j < n; j += 32) sum += __expf(x[j] - m);
  for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  const float inv = 1.0f / sum;
  for (int64_t j = lane; j < n; j += 32) store(p + row * n + j, __expf(x[j] - m) * inv);
}

template <class DT>
__global__ void softmax_backward_kernel(const DT* __restrict__ p, const float* __restrict__ dp, DT* __restrict__ ds,
                                        int64_t rows, int64_t n) {
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  float dot = 0.0f;
  for (int64_t j = lane; j < n; j += 32) dot = fmaf(load(p + row * n + j), dp[row * n + j], dot);
  for (int off = 16; off > 0; off /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, off);
  for (int64_t j = lane; j < n; j += 32) store(ds + row * n + j, load(p + row * n + j) * (dp[row * n + j] - dot));
}

}  // namespace

template <class T>
NaiveAttention<T>::NaiveAttention(const AttentionDims& dims)
    : dims_(dims),
      scores_(size_t(dims.batch_heads * dims.seq_q * dims.seq_k)),
      probs_(size_t(dims.batch_heads * dims.seq_q * dims.seq_k)),
      dscores_(size_t(dims.batch_heads * dims.seq_q * dims.seq_k)) {
  check_attention_dims(dims, "NaiveAttention");
  cublasHandle_t h = nullptr;
  LOOM_CUBLAS_CHECK(cublasCreate(&h));
  handle_ = h;
}

template <class T>
NaiveAttention<T>::~NaiveAttention() {
  if (handle_) (void)cublasDestroy(static_cast<cublasHandle_t>(handle_));
}

template <class T>
void NaiveAttention<T>::forward(const T* q, const T* k, const T* v, T* o) {
  using DT = detail::device_t<T>;
  const auto h = static_cast<cublasHandle_t>(handle_);
  const int64_t bh = dims_.batch_heads, sq = dims_.seq_q, sk = dims_.seq_k, d = dims_.head_dim;
  const cudaDataType_t t = cuda_type<DT>();
  gemm_rm(h, false, true, sq, sk, d, dims_.scale, q, t, sq * d, k, t, sk * d, scores_.data(), CUDA_R_32F, sq * sk, bh);
  softmax_rows_kernel<DT><<<unsigned((bh * sq + 7) / 8), 256>>>(scores_.data(), detail::dev(probs_.data()), bh * sq, sk);
  LOOM_CUDA_CHECK_LAUNCH();
  gemm_rm(h, false, false, sq, d, sk, 1.0f, probs_.data(), t, sq * sk, v, t, sk * d, o, t, sq * d, bh);
}

template <class T>
void NaiveAttention<T>::backward(const T* q, const T* k, const T* v, const T* d_o, T* dq, T* dk, T* dv) {
  using DT = detail::device_t<T>;
  const auto h = static_cast<cublasHandle_t>(handle_);
  const int64_t bh = dims_.batch_heads, sq = dims_.seq_q, sk = dims_.seq_k, d = dims_.head_dim;
  const cudaDataType_t t = cuda_type<DT>();
  gemm_rm(h, true, false, sk, d, sq, 1.0f, probs_.data(), t, sq * sk, d_o, t, sq * d, dv, t, sk * d, bh);      // dV = Pᵀ dO
  gemm_rm(h, false, true, sq, sk, d, 1.0f, d_o, t, sq * d, v, t, sk * d, scores_.data(), CUDA_R_32F, sq * sk, bh);  // dP
  softmax_backward_kernel<DT><<<unsigned((bh * sq + 7) / 8), 256>>>(detail::dev(probs_.data()), scores_.data(),
                                                                    detail::dev(dscores_.data()), bh * sq, sk);
  LOOM_CUDA_CHECK_LAUNCH();
  gemm_rm(h, false, false, sq, d, sk, dims_.scale, dscores_.data(), t, sq * sk, k, t, sk * d, dq, t, sq * d, bh);  // dQ
  gemm_rm(h, true, false, sk, d, sq, dims_.scale, dscores_.data(), t, sq * sk, q, t, sq * d, dk, t, sk * d, bh);   // dK
}

template class NaiveAttention<float>;
template class NaiveAttention<loom::bf16>;

}  // namespace loom::kernels
