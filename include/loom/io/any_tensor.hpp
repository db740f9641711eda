#pragma once
// AnyTensorRef: a type-erased handle to a CPU tensor of any loom element type, so that one list can
// name tensors of several dtypes (a checkpoint holding float weights, int64 step counters and uint8
// masks). It holds a Tensor handle, so it shares the tensor's memory: writing through it (copy_)
// updates the original tensor.
//
//   std::vector<std::pair<std::string, AnyTensorRef>> list = {{"w", weight_f32}, {"step", step_i64}};
//   list[0].second.visit([](const auto& t) { /* t is a Tensor<T> */ });
#include <cstdint>
#include <variant>

#include "loom/core/dtype.hpp"
#include "loom/core/tensor.hpp"

namespace loom::io {

class AnyTensorRef {
 public:
  using Variant = std::variant<Tensor<float>, Tensor<double>, Tensor<bf16>, Tensor<int64_t>, Tensor<int32_t>,
                               Tensor<uint8_t>>;

  AnyTensorRef() = default;  // undefined
  template <Element T>
  AnyTensorRef(const Tensor<T, CPU>& t) : tensor_(t) {}  // NOLINT: implicit, like a base-class reference

  bool defined() const {
    return std::visit([](const auto& t) { return t.defined(); }, tensor_);
  }
  DType dtype() const {
    return std::visit([](const auto& t) { return dtype_traits<typename std::decay_t<decltype(t)>::value_type>::tag; },
                      tensor_);
  }
  const Shape& shape() const {
    return std::visit([](const auto& t) -> const Shape& { return t.shape(); }, tensor_);
  }
  int64_t numel() const { return shape().numel(); }

  // Calls f(const Tensor<T>&) with the held tensor and returns its result.
  template <class F>
  decltype(auto) visit(F&& f) const {
    return std::visit(std::forward<F>(f), tensor_);
  }
  template <Element T>
  bool holds() const {
    return std::holds_alternative<Tensor<T>>(tensor_);
  }
  // The held tensor as Tensor<T>; throws when it has another element type.
  template <Element T>
  const Tensor<T>& get() const {
    LOOM_CHECK(holds<T>(), "AnyTensorRef: holds a ", dtype_name(dtype()), " tensor, asked for ",
               dtype_traits<T>::name);
    return std::get<Tensor<T>>(tensor_);
  }

 private:
  Variant tensor_;
};

}  // namespace loom::io
