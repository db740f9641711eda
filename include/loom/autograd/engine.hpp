// The reverse-mode engine: typed nodes, leaf gradient accumulation, saved tensors with version
// checks, recording helpers for ops, and backward(). See docs/autograd.md for the model.
// Part of the Tensor closure: core/tensor.hpp includes this file after defining the class.
// Including this header first still works: tensor.hpp is pulled in, which includes us back.
#include "loom/core/tensor.hpp"
#ifndef LOOM_AUTOGRAD_ENGINE_HPP
#define LOOM_AUTOGRAD_ENGINE_HPP
#include <algorithm>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "loom/autograd/grad_mode.hpp"
#include "loom/autograd/node.hpp"
#include "loom/core/tensor.hpp"

namespace loom {
namespace detail {

// out = a + b for same-shape tensors of any layout; out is fresh and contiguous.
template <class T, class Dev>
Tensor<T, Dev> add_same_shape(const Tensor<T, Dev>& a, const Tensor<T, Dev>& b) {
  Tensor<T, Dev> out = Tensor<T, Dev>::empty(a.shape());
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    device_add(dtype_traits<T>::tag, out.data(), out.strides(), a.data(), a.strides(), b.data(), b.strides(), a.shape());
    return out;
  }
  T *po = out.data(), *pa = a.data(), *pb = b.data();
  for_each_run<3>(a.shape(), {out.strides(), a.strides(), b.strides()}, [&](auto off, int64_t n, auto st) {
    for (int64_t i = 0; i < n; ++i)
      po[off[0] + i * st[0]] = T(compute_t<T>(pa[off[1] + i * st[1]]) + compute_t<T>(pb[off[2] + i * st[2]]));
  });
  return out;
}

// dst += src in place (same shape).
template <class T, class Dev>
void add_into(const Tensor<T, Dev>& dst, const Tensor<T, Dev>& src) {
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    device_add(dtype_traits<T>::tag, dst.data(), dst.strides(), dst.data(), dst.strides(), src.data(), src.strides(),
               dst.shape());
    dst.bump_version();
    return;
  }
  T *pd = dst.data(), *ps = src.data();
  for_each_run<2>(dst.shape(), {dst.strides(), src.strides()}, [&](auto off, int64_t n, auto st) {
    for (int64_t i = 0; i < n; ++i)
      pd[off[0] + i * st[0]] = T(compute_t<T>(pd[off[0] + i * st[0]]) + compute_t<T>(ps[off[1] + i * st[1]]));
  });
  dst.bump_version();
}

// True when nothing else can observe t's memory, so it may be updated in place.
template <class T, class Dev>
bool exclusively_owned(const Tensor<T, Dev>& t) {
  return t.impl().use_count() == 1 && t.impl()->storage.use_count() == 1 && t.is_contiguous();
}

}  // namespace detail

namespace autograd {

// A node whose output (and thus whose incoming gradient) has element type T on device Dev.
template <class T, class Dev>
class TypedNode : public Node {
 public:
  ImplPtr accumulate(ImplPtr a, const ImplPtr& b) override {
    Tensor<T, Dev> ta(std::move(a)), tb(b);
    if (detail::exclusively_owned(ta)) {
      detail::add_into(ta, tb);
      return ta.impl();
    }
    return detail::add_same_shape(ta, tb).impl();
  }
};

// Receives the gradient of a leaf and adds it to the leaf's .grad (kept across backward calls).
template <class T, class Dev>
class AccumulateGrad final : public TypedNode<T, Dev> {
 public:
  explicit AccumulateGrad(const ImplPtr& leaf) : leaf_(leaf) {}
  std::vector<ImplPtr> apply(const ImplPtr& grad_output) override {
    ImplPtr leaf = leaf_.lock();
    if (!leaf) return {};
    Tensor<T, Dev> g(grad_output);
    if (!leaf->grad) {
      leaf->grad = detail::exclusively_owned(g) ? g.impl() : g.clone().impl();
    } else {
      detail::add_into(Tensor<T, Dev>(leaf->grad), g);
    }
    for (auto& [id, hook] : ready_hooks_) hook();
    return {};
  }
  bool persistent() const override { return true; }
  std::string name() const override { return "AccumulateGrad"; }

  // Hooks run after this backward's gradient was added to the leaf's .grad: the leaf's gradient is
  // final for this pass (data-parallel training starts communicating it right then).
  uint64_t add_ready_hook(std::function<void()> hook) {
    ready_hooks_.emplace_back(++last_hook_id_, std::move(hook));
    return last_hook_id_;
  }
  void remove_ready_hook(uint64_t id) {
    std::erase_if(ready_hooks_, [id](const auto& entry) { return entry.first == id; });
  }

 private:
  std::weak_ptr<detail::TensorImpl> leaf_;  // weak: the leaf owns this node
  std::vector<std::pair<uint64_t, std::function<void()>>> ready_hooks_;
  uint64_t last_hook_id_ = 0;
};

// Registers `hook` to run each time backward() has finished accumulating `leaf`'s gradient; returns
// an id for remove_grad_ready_hook. The leaf must be a leaf tensor that requires grad.
template <class T, class Dev>
uint64_t add_grad_ready_hook(const Tensor<T, Dev>& leaf, std::function<void()> hook) {
  LOOM_CHECK(leaf.defined() && leaf.requires_grad() && !leaf.impl()->grad_fn,
             "add_grad_ready_hook: the tensor must be a leaf that requires grad");
  auto* acc = dynamic_cast<AccumulateGrad<T, Dev>*>(leaf.impl()->grad_accumulator.get());
  LOOM_CHECK(acc != nullptr, "add_grad_ready_hook: the leaf has no gradient accumulator");
  return acc->add_ready_hook(std::move(hook));
}

template <class T, class Dev>
void remove_grad_ready_hook(const Tensor<T, Dev>& leaf, uint64_t id) {
  if (!leaf.defined()) return;
  if (auto* acc = dynamic_cast<AccumulateGrad<T, Dev>*>(leaf.impl()->grad_accumulator.get())) acc->remove_ready_hook(id);
}

// A tensor saved for backward. Reading it checks that it was not modified in place since.
template <class T, class Dev = CPU>
class SavedTensor {
 public:
  SavedTensor() = default;
  SavedTensor(const Tensor<T, Dev>& t, const char* op) : op_(op) {
    if (t.defined()) {
      tensor_ = t.detach();  // no graph reference: saving an op's own output creates no cycle
      version_ = t.version();
    }
  }
  const Tensor<T, Dev>& get() const {
    LOOM_CHECK(!tensor_.defined() || tensor_.version() == version_, op_,
               " backward: a tensor it saved was modified in place after being saved (version ",
               version_, ", now ", tensor_.version(), "); clone() it before the in-place change");
    return tensor_;
  }
  void reset() { tensor_ = Tensor<T, Dev>(); }

 private:
  Tensor<T, Dev> tensor_;
  uint64_t version_ = 0;
  const char* op_ = "";
};

// A node whose backward is a callable: grads = fn(grad_output), one entry per input (an undefined
// Tensor for inputs that get no gradient). Destroying the callable frees what it captured.
template <class T, class Dev, class Fn>
class LambdaNode final : public TypedNode<T, Dev> {
 public:
  LambdaNode(std::string name, Fn fn) : name_(std::move(name)), fn_(std::move(fn)) {}
  std::vector<ImplPtr> apply(const ImplPtr& grad_output) override {
    auto grads = (*fn_)(Tensor<T, Dev>(grad_output));
    std::vector<ImplPtr> out;
    out.reserve(grads.size());
    for (auto& g : grads) out.push_back(g.impl());
    return out;
  }
  void release_saved() override { fn_.reset(); }
  std::string name() const override { return name_; }

 private:
  std::string name_;
  std::optional<Fn> fn_;
};

// Whether an op on these inputs must record a node.
template <class... Impls>
bool should_record(const Impls&... inputs) {
  return grad_enabled() && (needs_grad(inputs) || ...);
}

// Attaches `node` as the producer of `output`, wiring edges to `inputs`.
inline void attach(const ImplPtr& output, std::shared_ptr<Node> node, const std::vector<ImplPtr>& inputs) {
  for (const ImplPtr& in : inputs) {
    node->next.push_back(gradient_edge(in));
    node->input_meta.push_back(in ? InputMeta{in->shape, in->dtype, in->device} : InputMeta{});
  }
  output->grad_fn = std::move(node);
}

inline void attach(const ImplPtr& output, std::shared_ptr<Node> node, std::initializer_list<ImplPtr> inputs) {
  attach(output, std::move(node), std::vector<ImplPtr>(inputs));
}

// Records `backward` (grad_output -> one gradient per input) as the producer of `output`.
// Ops call it only when should_record(...) is true.
template <class T, class Dev, class Fn>
void record(const char* name, const Tensor<T, Dev>& output, std::initializer_list<ImplPtr> inputs, Fn&& backward) {
  auto node = std::make_shared<LambdaNode<T, Dev, std::decay_t<Fn>>>(name, std::forward<Fn>(backward));
  attach(output.impl(), std::move(node), inputs);
}
template <class T, class Dev, class Fn>
void record(const std::string& name, const Tensor<T, Dev>& output, const std::vector<ImplPtr>& inputs, Fn&& backward) {
  auto node = std::make_shared<LambdaNode<T, Dev, std::decay_t<Fn>>>(name, std::forward<Fn>(backward));
  attach(output.impl(), std::move(node), inputs);
}

// Runs backward from `root` seeded with `grad` (same shape as root).
inline void run_backward(const ImplPtr& root, const ImplPtr& grad, bool retain_graph) {
  std::shared_ptr<Node> root_node = gradient_edge(root);
  LOOM_CHECK(root_node != nullptr,
             "backward: the tensor does not require grad (no input of its graph has requires_grad)");
  // Count, for every reachable node, how many edges feed it a gradient.
  std::unordered_map<Node*, int> pending;
  std::vector<Node*> stack{root_node.get()};
  pending[root_node.get()] = 0;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const auto& nx : n->next) {
      if (!nx) continue;
      auto [it, inserted] = pending.try_emplace(nx.get(), 0);
      ++it->second;
      if (inserted) stack.push_back(nx.get());
    }
  }
  NoGradGuard no_grad;  // backward formulas build no graph
  std::unordered_map<Node*, ImplPtr> buffers{{root_node.get(), grad}};
  std::vector<std::shared_ptr<Node>> ready{root_node};
  while (!ready.empty()) {
    std::shared_ptr<Node> node = std::move(ready.back());
    ready.pop_back();
    ImplPtr g = std::move(buffers[node.get()]);
    buffers.erase(node.get());
    std::vector<ImplPtr> grads;
    if (g) {
      LOOM_CHECK(!node->released, "backward: the graph through ", node->name(),
                 " was already freed by an earlier backward(); pass retain_graph=true to the first "
                 "backward() to traverse it again");
      grads = node->apply(g);
      LOOM_CHECK(grads.empty() || grads.size() == node->next.size(), "backward: ", node->name(), " returned ",
                 grads.size(), " gradients for ", node->next.size(), " inputs");
    }
    if (!retain_graph && !node->persistent()) {
      node->release_saved();
      node->released = true;
    }
    for (size_t i = 0; i < node->next.size(); ++i) {
      const std::shared_ptr<Node>& nx = node->next[i];
      if (!nx) continue;
      if (i < grads.size() && grads[i]) {
        const InputMeta& meta = node->input_meta[i];
        LOOM_CHECK(grads[i]->shape == meta.shape && grads[i]->dtype == meta.dtype && grads[i]->device == meta.device,
                   "backward: ", node->name(), " produced a gradient of shape ", grads[i]->shape, " (",
                   dtype_name(grads[i]->dtype), ", ", device_name(grads[i]->device), ") for input ", i, " of shape ",
                   meta.shape, " (", dtype_name(meta.dtype), ", ", device_name(meta.device), ")");
        ImplPtr& buf = buffers[nx.get()];
        buf = buf ? nx->accumulate(std::move(buf), grads[i]) : std::move(grads[i]);
      }
      if (--pending[nx.get()] == 0) ready.push_back(nx);
    }
  }
}

}  // namespace autograd

// ---- Tensor members that involve autograd -------------------------------------------------------

template <Element T, class Dev>
Tensor<T, Dev>& Tensor<T, Dev>::requires_grad_(bool on) {
  LOOM_CHECK(defined(), "requires_grad_: undefined tensor");
  auto& im = *impl_;
  LOOM_CHECK(!on || FloatElement<T>, "requires_grad_: only floating-point tensors can require grad, this one is ",
             dtype_traits<T>::name);
  LOOM_CHECK(!im.grad_fn, "requires_grad_: only leaf tensors can change requires_grad; this one is the output of ",
             im.grad_fn->name(), " (use detach() to make a leaf)");
  im.requires_grad = on;
  if (on && !im.grad_accumulator) {
    if constexpr (FloatElement<T>) im.grad_accumulator = std::make_shared<autograd::AccumulateGrad<T, Dev>>(impl_);
  }
  if (!on) im.grad_accumulator.reset();
  return *this;
}

template <Element T, class Dev>
void Tensor<T, Dev>::zero_grad() const {
  if (defined() && impl_->grad) {
    NoGradGuard guard;
    Tensor(impl_->grad).fill_(T(0));
  }
}

template <Element T, class Dev>
void Tensor<T, Dev>::set_grad(const Tensor& g) const {
  LOOM_CHECK(!g.defined() || g.shape() == shape(), "set_grad: gradient of shape ", g.shape(),
             " for a tensor of shape ", shape());
  checked();
  impl_->grad = g.defined() ? g.impl() : nullptr;
}

template <Element T, class Dev>
std::string Tensor<T, Dev>::grad_fn_name() const {
  return checked().grad_fn ? impl_->grad_fn->name() : std::string();
}

template <Element T, class Dev>
void Tensor<T, Dev>::backward(const Tensor& grad_output, bool retain_graph) const {
  if constexpr (!FloatElement<T>) {
    detail::fail("backward: called on a ", dtype_traits<T>::name, " tensor");
  } else {
    Tensor seed = grad_output;
    if (!seed.defined()) {
      LOOM_CHECK(numel() == 1, "backward: output of shape ", shape(),
                 " is not a scalar; pass the gradient of the output explicitly");
      seed = Tensor::ones(shape());
    }
    LOOM_CHECK(seed.shape() == shape(), "backward: gradient of shape ", seed.shape(), " for an output of shape ", shape());
    autograd::run_backward(impl_, seed.impl(), retain_graph);
  }
}

template <Element T, class Dev>
Tensor<T, Dev> Tensor<T, Dev>::detach() const {
  const auto& im = checked();
  auto out = std::make_shared<detail::TensorImpl>();
  out->storage = im.storage;
  out->shape = im.shape;
  out->strides = im.strides;
  out->offset = im.offset;
  out->dtype = im.dtype;
  out->device = im.device;
  return Tensor(std::move(out));
}

template <Element T, class Dev>
void Tensor<T, Dev>::check_inplace(const char* what) const {
  const auto& im = checked();
  LOOM_CHECK(!autograd::grad_enabled() || !(im.requires_grad || im.grad_fn), what,
             ": in-place change of a tensor that is part of the autograd graph; do it under "
             "NoGradGuard (as optimizers do) or on a detach()ed tensor");
}

}  // namespace loom

#endif  // LOOM_AUTOGRAD_ENGINE_HPP
