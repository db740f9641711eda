#pragma once
// TensorImpl: the untyped state behind a Tensor handle — storage, layout, dtype/device tags and the
// autograd metadata. Tensor<T, Dev> is a typed view of it; the autograd engine passes ImplPtr around
// so that one graph can hold nodes of several element types.
#include <cstdint>
#include <memory>

#include "loom/core/device.hpp"
#include "loom/core/dtype.hpp"
#include "loom/core/shape.hpp"
#include "loom/core/storage.hpp"

namespace loom::autograd {
class Node;
}

namespace loom::detail {

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Strides strides;
  int64_t offset = 0;  // in elements
  DType dtype = DType::f32;
  DeviceKind device = DeviceKind::cpu;

  // Autograd. A leaf that requires grad owns its gradient accumulator node; a non-leaf has grad_fn.
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<autograd::Node> grad_fn;
  std::shared_ptr<autograd::Node> grad_accumulator;
};

using ImplPtr = std::shared_ptr<TensorImpl>;

}  // namespace loom::detail
