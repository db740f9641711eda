#pragma once
// Which implementation scaled_dot_product_attention runs on CUDA tensors: loom's handwritten flash
// kernels (the default, float and bf16) or cuDNN's fused SDPA (bf16 tensors with a head dim that is
// a multiple of 8 up to 128, in a build with cuDNN; other tensors keep loom's kernels). A
// process-wide choice, read when an attention is recorded, so a graph's backward uses the
// implementation its forward used. Both save the same natural-log row statistics.
//
//   loom::cuda::set_attention_backend(loom::cuda::AttentionBackend::cudnn);
#include <atomic>

#include "loom/core/error.hpp"
#include "loom/cuda/cudnn_support.hpp"

namespace loom::cuda {

enum class AttentionBackend { loom_flash, cudnn };

namespace detail {
inline std::atomic<AttentionBackend>& attention_backend_slot() {
  static std::atomic<AttentionBackend> backend{AttentionBackend::loom_flash};
  return backend;
}
}  // namespace detail

inline AttentionBackend attention_backend() { return detail::attention_backend_slot().load(std::memory_order_relaxed); }

// Throws (naming why) when cuDNN is asked for in a build without it.
inline void set_attention_backend(AttentionBackend backend) {
  LOOM_CHECK(backend != AttentionBackend::cudnn || kCudnnBuilt, "set_attention_backend(cudnn): ", kNoCudnnMessage);
  detail::attention_backend_slot().store(backend, std::memory_order_relaxed);
}

}  // namespace loom::cuda
