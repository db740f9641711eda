#pragma once
// Every cuDNN call goes through LOOM_CUDNN_CHECK (beside cuda_check.cuh's CUDA and cuBLAS checks), and
// every cuDNN source uses the calling thread's one handle (cudnn_handle). A failed call becomes a
// loom::Error naming the call, the status and cudnnGetErrorString's meaning.
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

namespace loom::cuda {

// The calling thread's cuDNN handle (legacy default stream), shared by every cuDNN source.
// Destroying it at thread exit may find the CUDA context gone (process teardown): that status is
// ignored.
inline cudnnHandle_t cudnn_handle() {
  struct Owner {
    cudnnHandle_t h = nullptr;
    ~Owner() {
      if (h) (void)cudnnDestroy(h);
    }
  };
  thread_local Owner owner;
  if (!owner.h) LOOM_CUDNN_CHECK(cudnnCreate(&owner.h));
  return owner.h;
}

}  // namespace loom::cuda

