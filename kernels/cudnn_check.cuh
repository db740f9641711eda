#pragma once
// Every cuDNN call goes through LOOM_CUDNN_CHECK (beside cuda_check.cuh's CUDA and cuBLAS checks):
// a failure becomes a loom::Error naming the call, the status and cudnnGetErrorString's meaning.
// Only the cuDNN sources (built when CMake finds cuDNN, LOOM_WITH_CUDNN) include this header.
#include <cudnn.h>

#include "loom/core/error.hpp"

namespace loom::cuda::detail {

// cuDNN 9 also keeps a detailed message of its last failure (which attribute, which constraint):
// appended when present, it is what makes a rejected backend graph diagnosable.
inline void check_cudnn(cudnnStatus_t code, const char* call, const char* file, int line) {
  if (code == CUDNN_STATUS_SUCCESS) return;
  char detail[512] = {0};
#if CUDNN_MAJOR >= 9
  cudnnGetLastErrorString(detail, sizeof(detail));
#endif
  ::loom::detail::fail("cuDNN call failed: ", call, " -> status ", int(code), " (", cudnnGetErrorString(code), ") at ",
                       file, ":", line, detail[0] ? "; cuDNN says: " : "", detail);
}

}  // namespace loom::cuda::detail

#define LOOM_CUDNN_CHECK(call) ::loom::cuda::detail::check_cudnn((call), #call, __FILE__, __LINE__)
