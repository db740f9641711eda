// Elementwise ops on CUDA tensors: the kernels of every functor listed in
// LOOM_CUDA_ELEMENTWISE_KERNELS (loom/cuda/elementwise.hpp), for float and bf16 elements. The
// kernel template is elementwise_map.cuh; the math is the functors of
// loom/ops/elementwise_functors.hpp, the same code the CPU ops run (tests/ops/test_elementwise_functors.cpp
// checks them against double references on the CPU).
// Versions: one kernel per (functor, element type), with a flat path (all operands contiguous)
// and a strided/broadcast path chosen at launch.
// How to run: tests/cuda/test_device_elementwise.cpp (SKIPs without a GPU) compares every ported
// op, forward and backward, with the CPU tensors' results; benchmarks/gpu/run.sh runs it.
#include "elementwise_map.cuh"

namespace loom::cuda {

#define LOOM_CUDA_ELEMENTWISE_INSTANTIATE(in_place, F, ...) template struct ElementwiseKernel<in_place, F, __VA_ARGS__>;
LOOM_CUDA_ELEMENTWISE_KERNELS(LOOM_CUDA_ELEMENTWISE_INSTANTIATE, float)
LOOM_CUDA_ELEMENTWISE_KERNELS(LOOM_CUDA_ELEMENTWISE_INSTANTIATE, ::loom::bf16)
#undef LOOM_CUDA_ELEMENTWISE_INSTANTIATE

}  // namespace loom::cuda
