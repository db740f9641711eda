// Device discovery for the CUDA backend: lets host code ask whether a usable GPU is present, so that
// CUDA tests can SKIP with a reason on machines without one.
#include <cuda_runtime.h>

#include <cstdio>

#include "loom/cuda/device_info.hpp"

namespace loom::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

const char* no_device_reason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) return cudaGetErrorString(e);
  return n == 0 ? "no CUDA device present" : nullptr;
}

}  // namespace loom::cuda
