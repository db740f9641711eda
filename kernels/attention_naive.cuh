#pragma once
// Unfused attention on the GPU: cuBLAS batched GEMMs and a row softmax, materializing the
// [BH, Sq, Sk] scores and probabilities (attention_naive.cu). It is the baseline the fused kernel
// is measured against, and what most frameworks' "math" attention path does:
//   forward   S = scale·Q Kᵀ (fp32) -> P = softmax(S) (element type) -> O = P V
//   backward  dV = Pᵀ dO, dP = dO Vᵀ (fp32), dS = P ∘ (dP - rowsum(P ∘ dP)), dQ = scale·dS K,
//             dK = scale·dSᵀ Q
// GEMMs take T inputs with fp32 accumulation (CUBLAS_COMPUTE_32F); T ∈ {float, bf16}.
#include "loom/cuda/device_memory.hpp"
#include "loom/cuda/flash_attention.hpp"

namespace loom::kernels {

template <class T>
class NaiveAttention {
 public:
  explicit NaiveAttention(const AttentionDims& dims);
  ~NaiveAttention();
  NaiveAttention(const NaiveAttention&) = delete;
  NaiveAttention& operator=(const NaiveAttention&) = delete;

  void forward(const T* q, const T* k, const T* v, T* o);  // keeps P for backward
  void backward(const T* q, const T* k, const T* v, const T* d_o, T* dq, T* dk, T* dv);
  size_t workspace_bytes() const { return scores_.bytes() + probs_.bytes() + dscores_.bytes(); }

 private:
  AttentionDims dims_;
  void* handle_ = nullptr;               // cublasHandle_t
  cuda::DeviceBuffer<float> scores_;     // [BH, Sq, Sk] S, then dP in backward
  cuda::DeviceBuffer<T> probs_;          // [BH, Sq, Sk] P
  cuda::DeviceBuffer<T> dscores_;        // [BH, Sq, Sk] dS
};

}  // namespace loom::kernels
