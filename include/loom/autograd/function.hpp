#pragma once
// Custom autograd functions: an op with a hand-written forward (run without recording) and a
// hand-written backward, entering the tape as one node. Fused kernels (attention, masked loss,
// layer norm) plug in this way.
//
//   struct ScaledTanh {
//     static constexpr const char* name = "ScaledTanh";
//     static Tensor<float> forward(FunctionContext& ctx, const Tensor<float>& x, double scale) {
//       Tensor<float> y = scale * tanh(x);           // [N]
//       ctx.save_for_backward(y);
//       ctx.set("scale", scale);
//       return y;
//     }
//     static std::vector<Tensor<float>> backward(FunctionContext& ctx, const Tensor<float>& grad) {
//       auto y = ctx.saved<float>(0);
//       double s = ctx.get<double>("scale");
//       return {grad * (s - y * y / s)};             // one gradient per Tensor argument
//     }
//   };
//   Tensor<float> y = autograd::Function<ScaledTanh>::apply(x, 2.0);
//
// backward returns one entry per Tensor argument of forward, in order (non-Tensor arguments are
// skipped); an undefined Tensor means "no gradient". Saved tensors are checked for in-place
// changes when read, and everything the context holds is freed after backward unless the graph is
// retained.
#include <any>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "loom/autograd/engine.hpp"

namespace loom::autograd {

template <class X> struct is_tensor : std::false_type {};
template <class T, class Dev> struct is_tensor<Tensor<T, Dev>> : std::true_type {};

class FunctionContext {
 public:
  template <class... Ts>
  void save_for_backward(const Ts&... tensors) {
    (saved_.push_back({tensors.detach().impl(), tensors.version()}), ...);
  }
  template <class T, class Dev = CPU>
  Tensor<T, Dev> saved(size_t i) const {
    LOOM_CHECK(i < saved_.size(), name_, " backward: saved tensor ", i, " requested, ", saved_.size(), " saved");
    Tensor<T, Dev> t(saved_[i].impl);
    LOOM_CHECK(t.version() == saved_[i].version, name_, " backward: saved tensor ", i,
               " was modified in place after being saved (version ", saved_[i].version, ", now ", t.version(), ")");
    return t;
  }
  template <class V>
  void set(const std::string& key, V value) {
    values_[key] = std::move(value);
  }
  template <class V>
  V get(const std::string& key) const {
    auto it = values_.find(key);
    LOOM_CHECK(it != values_.end(), name_, " backward: no value named '", key, "' was set in forward");
    const V* v = std::any_cast<V>(&it->second);
    LOOM_CHECK(v != nullptr, name_, " backward: value '", key, "' was set with another type");
    return *v;
  }
  // Whether the i-th Tensor argument needs a gradient (skip computing the others).
  bool needs_input_grad(size_t i) const { return i < needs_grad_.size() && needs_grad_[i]; }

 private:
  template <class F> friend struct Function;
  struct Saved {
    ImplPtr impl;
    uint64_t version;
  };
  std::string name_;
  std::vector<Saved> saved_;
  std::map<std::string, std::any> values_;
  std::vector<bool> needs_grad_;
};

template <class F>
struct Function {
  template <class... Args>
  static auto apply(const Args&... args) {
    auto ctx = std::make_shared<FunctionContext>();
    if constexpr (requires { F::name; }) ctx->name_ = F::name;
    else ctx->name_ = "CustomFunction";
    std::vector<ImplPtr> inputs;
    auto collect = [&](const auto& a) {
      if constexpr (is_tensor<std::decay_t<decltype(a)>>::value) {
        inputs.push_back(a.impl());
        ctx->needs_grad_.push_back(needs_grad(a.impl()));
      }
    };
    (collect(args), ...);
    const bool recording = grad_enabled() && std::any_of(inputs.begin(), inputs.end(), [](const ImplPtr& p) { return needs_grad(p); });
    auto out = [&] {
      NoGradGuard guard;
      return F::forward(*ctx, args...);
    }();
    using Out = decltype(out);
    static_assert(is_tensor<Out>::value, "Function<F>: F::forward must return one loom::Tensor");
    if (recording) {
      record(ctx->name_, out, inputs, [ctx, n = inputs.size()](const Out& grad) {
        auto grads = F::backward(*ctx, grad);
        LOOM_CHECK(grads.size() == n, ctx->name_, " backward returned ", grads.size(), " gradients for ", n,
                   " tensor inputs");
        return grads;
      });
    }
    return out;
  }
};

}  // namespace loom::autograd
