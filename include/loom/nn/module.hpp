#pragma once
// Module: the base of every layer and model. Children, parameters and buffers are registered by
// name at run time, so architectures are composed at run time (never encoded in types) and dotted
// names (`blocks.3.attn.qkv.weight`) drive checkpoints, weight-decay groups and layer-wise lr
// decay. The names follow timm/MAE so that weights move between loom and PyTorch.
//
// Modules are held by std::shared_ptr; a parameter is a Tensor handle shared between the member
// field and the registry, so loading a checkpoint (copy_ under NoGradGuard) updates both.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "loom/core/error.hpp"
#include "loom/core/tensor.hpp"

namespace loom::nn {

template <class T = float, class Dev = CPU>
class Module {
 public:
  using Tensor = loom::Tensor<T, Dev>;
  using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // A short type name for printing (e.g. "Linear").
  virtual std::string type_name() const { return "Module"; }

  // ---- registration ---------------------------------------------------------------------------
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true) {
    check_new_name(name);
    if (requires_grad) t.requires_grad_(true);
    parameters_.emplace_back(name, t);
    return t;
  }
  Tensor register_buffer(const std::string& name, Tensor t) {
    check_new_name(name);
    buffers_.emplace_back(name, t);
    return t;
  }
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> child) {
    check_new_name(name);
    LOOM_CHECK(child != nullptr, type_name(), ": register_module('", name, "') got a null module");
    children_.emplace_back(name, child);
    return child;
  }

  // ---- traversal ------------------------------------------------------------------------------
  // Parameters with dotted names, depth first in registration order.
  NamedTensors named_parameters(bool recurse = true) const {
    NamedTensors out;
    collect(out, "", recurse, &Module::parameters_);
    return out;
  }
  NamedTensors named_buffers(bool recurse = true) const {
    NamedTensors out;
    collect(out, "", recurse, &Module::buffers_);
    return out;
  }
  std::vector<Tensor> parameters(bool recurse = true) const {
    std::vector<Tensor> out;
    for (auto& [n, p] : named_parameters(recurse)) out.push_back(p);
    return out;
  }
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& named_children() const { return children_; }
  // Parameters and buffers together: what a checkpoint holds.
  NamedTensors state_dict() const {
    NamedTensors out = named_parameters();
    for (auto& nb : named_buffers()) out.push_back(nb);
    return out;
  }
  // Looks a parameter or buffer up by dotted name; throws naming it when absent.
  Tensor find(const std::string& name) const {
    for (auto& [n, t] : state_dict())
      if (n == name) return t;
    detail::fail(type_name(), ": no parameter or buffer named '", name, "'");
  }

  int64_t parameter_count(bool trainable_only = false) const {
    int64_t n = 0;
    for (auto& [name, p] : named_parameters())
      if (!trainable_only || p.requires_grad()) n += p.numel();
    return n;
  }

  // ---- modes ----------------------------------------------------------------------------------
  virtual void train(bool on = true) {
    training_ = on;
    for (auto& [n, c] : children_) c->train(on);
  }
  void eval() { train(false); }
  bool is_training() const { return training_; }

  void zero_grad() {
    for (auto& p : parameters()) p.zero_grad();
  }
  // Freezes (or unfreezes) every parameter: used by linear probing.
  void requires_grad_(bool on) {
    for (auto& p : parameters()) p.requires_grad_(on);
  }

  // Calls fn(qualified_name, module) on this module and all descendants, depth first.
  void apply(const std::function<void(const std::string&, Module&)>& fn, const std::string& prefix = "") {
    fn(prefix, *this);
    for (auto& [n, c] : children_) c->apply(fn, prefix.empty() ? n : prefix + "." + n);
  }

 private:
  void check_new_name(const std::string& name) const {
    LOOM_CHECK(!name.empty() && name.find('.') == std::string::npos, type_name(), ": invalid member name '", name,
               "' (non-empty, no dots)");
    auto taken = [&](const auto& list) {
      for (auto& [n, x] : list)
        if (n == name) return true;
      return false;
    };
    LOOM_CHECK(!taken(parameters_) && !taken(buffers_) && !taken(children_), type_name(), ": name '", name,
               "' registered twice");
  }
  void collect(NamedTensors& out, const std::string& prefix, bool recurse, NamedTensors Module::*list) const {
    for (auto& [n, t] : this->*list) out.emplace_back(prefix + n, t);
    if (!recurse) return;
    for (auto& [n, c] : children_) c->collect(out, prefix + n + ".", true, list);
  }

  NamedTensors parameters_;
  NamedTensors buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// An ordered list of modules of one kind, named 0, 1, 2, ... (timm's `blocks.N`).
template <class M, class T = float, class Dev = CPU>
class ModuleList : public Module<T, Dev> {
 public:
  std::string type_name() const override { return "ModuleList"; }
  std::shared_ptr<M> push_back(std::shared_ptr<M> m) {
    items_.push_back(this->register_module(std::to_string(items_.size()), m));
    return items_.back();
  }
  size_t size() const { return items_.size(); }
  M& operator[](size_t i) const { return *items_.at(i); }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }

 private:
  std::vector<std::shared_ptr<M>> items_;
};

}  // namespace loom::nn
