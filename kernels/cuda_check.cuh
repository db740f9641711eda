#pragma once
// Every CUDA runtime and cuBLAS call goes through one of these checks: a failure becomes a
// loom::Error naming the call, the error code and its meaning, never an abort.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "loom/core/error.hpp"

namespace loom::cuda::detail {

inline void check_cuda(cudaError_t code, const char* call, const char* file, int line) {
  if (code != cudaSuccess)
    ::loom::detail::fail("CUDA call failed: ", call, " -> ", cudaGetErrorName(code), " (", cudaGetErrorString(code),
                         ") at ", file, ":", line);
}

inline void check_cublas(cublasStatus_t code, const char* call, const char* file, int line) {
  if (code != CUBLAS_STATUS_SUCCESS)
    ::loom::detail::fail("cuBLAS call failed: ", call, " -> ", cublasGetStatusName(code), " (",
                         cublasGetStatusString(code), ") at ", file, ":", line);
}

}  // namespace loom::cuda::detail

#define LOOM_CUDA_CHECK(call) ::loom::cuda::detail::check_cuda((call), #call, __FILE__, __LINE__)
#define LOOM_CUBLAS_CHECK(call) ::loom::cuda::detail::check_cublas((call), #call, __FILE__, __LINE__)
// After a kernel launch: catches bad launch configurations at once (execution errors surface at
// the next synchronizing call, also checked).
#define LOOM_CUDA_CHECK_LAUNCH() LOOM_CUDA_CHECK(cudaGetLastError())
