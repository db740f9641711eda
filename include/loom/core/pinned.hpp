#pragma once
// pinned_empty: a CPU tensor whose storage is page-locked host memory (needs the CUDA backend).
// It is an ordinary Tensor<T> everywhere; its upload with to_device<CUDA>() is a DMA transfer at
// full PCIe speed instead of a staged copy through a driver bounce buffer. The loader makes its
// batches this way with LoaderOptions::pinned(true), which the trainers set for --device cuda.
#include <memory>

#include "loom/core/device_backend.hpp"
#include "loom/core/tensor.hpp"

namespace loom {

template <Element T>
Tensor<T> pinned_empty(const Shape& shape) {
  for (int64_t d : shape) LOOM_CHECK(d >= 0, "pinned_empty: negative extent in shape ", shape);
  const size_t bytes = size_t(shape.numel()) * sizeof(T);
  void* block = detail::pinned_allocate(bytes);
  auto impl = std::make_shared<detail::TensorImpl>();
  impl->storage = std::make_shared<Storage>(block, bytes, DeviceKind::cpu,
                                            std::shared_ptr<void>(block, [](void* p) { detail::pinned_release(p); }));
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype_traits<T>::tag;
  impl->device = DeviceKind::cpu;
  return Tensor<T>(std::move(impl));
}

}  // namespace loom
