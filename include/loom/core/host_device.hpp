#pragma once
// LOOM_HOST_DEVICE marks functions that CUDA kernels call as well as host code (index maps, tile
// math, the Philox generator), so the CPU test suite exercises the same arithmetic the GPU runs.
#ifndef LOOM_HOST_DEVICE
#if defined(__CUDACC__)
#define LOOM_HOST_DEVICE __host__ __device__
#else
#define LOOM_HOST_DEVICE
#endif
#endif
