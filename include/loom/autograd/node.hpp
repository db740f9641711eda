#pragma once
// Node: one recorded operation of the dynamic tape. Each node has exactly one output; `next[i]` is
// the node that receives the gradient for input i (nullptr when that input needs no gradient).
// Nodes are created by typed code (TypedNode<T, Dev>), which knows how to add gradients.
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "loom/core/tensor_impl.hpp"

namespace loom::autograd {

using loom::detail::ImplPtr;

struct InputMeta {
  Shape shape;
  DType dtype;
  DeviceKind device = DeviceKind::cpu;
};

class Node {
 public:
  virtual ~Node() = default;

  // Gradients for each input (same order as `next`) given the gradient of the output; an entry may
  // be nullptr when it is known to be zero or not needed.
  virtual std::vector<ImplPtr> apply(const ImplPtr& grad_output) = 0;
  // Frees whatever the backward needed (saved tensors); called after apply unless retain_graph.
  virtual void release_saved() {}
  // Returns a + b (both gradients of this node's output); may reuse a's memory when unshared.
  virtual ImplPtr accumulate(ImplPtr a, const ImplPtr& b) = 0;
  virtual std::string name() const = 0;
  // Persistent nodes (leaf accumulators) survive backward: they are never marked released.
  virtual bool persistent() const { return false; }

  std::vector<std::shared_ptr<Node>> next;
  std::vector<InputMeta> input_meta;  // shape/dtype of each input, to validate gradients
  uint64_t sequence = next_sequence();  // creation order: later nodes run first in backward
  bool released = false;

 private:
  static uint64_t next_sequence() {
    static std::atomic<uint64_t> counter{0};
    return counter.fetch_add(1, std::memory_order_relaxed);
  }
};

// The node that receives a tensor's gradient in the graph: its grad_fn, or the accumulator of a
// leaf that requires grad, or nullptr.
inline std::shared_ptr<Node> gradient_edge(const ImplPtr& impl) {
  if (!impl) return nullptr;
  if (impl->grad_fn) return impl->grad_fn;
  if (impl->requires_grad) return impl->grad_accumulator;
  return nullptr;
}

inline bool needs_grad(const ImplPtr& impl) { return impl && (impl->grad_fn || impl->requires_grad); }

}  // namespace loom::autograd
