#pragma once
// Whether this build has the cuDNN backends (CMake found cuDNN and defined LOOM_WITH_CUDNN for
// loom::kernels and its users), and why a cuDNN path cannot run here (for errors and test SKIPs).
#include "loom/cuda/device_info.hpp"

namespace loom::cuda {

#if LOOM_WITH_CUDNN
inline constexpr bool kCudnnBuilt = true;
#else
inline constexpr bool kCudnnBuilt = false;
#endif

inline constexpr const char* kNoCudnnMessage =
    "loom was built without cuDNN (CMake did not find cudnn.h / libcudnn in the CUDA toolkit, or LOOM_CUDNN=OFF)";

// nullptr when the cuDNN paths can run; otherwise why not (no usable GPU, or built without cuDNN).
inline const char* no_cudnn_reason() {
  if (!kCudnnBuilt) return kNoCudnnMessage;
  return no_device_reason();
}

}  // namespace loom::cuda
