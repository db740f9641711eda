#pragma once
// MLP of a transformer block: fc1 -> GELU -> fc2 (timm names mlp.fc1, mlp.fc2).
#include "loom/nn/linear.hpp"
#include "loom/ops/gelu.hpp"

namespace loom::nn {

template <class T = float, class Dev = CPU>
class Mlp : public Module<T, Dev> {
 public:
  using Tensor = loom::Tensor<T, Dev>;
  Mlp(int64_t dim, int64_t hidden, Generator& gen = default_generator()) {
    fc1 = this->register_module("fc1", std::make_shared<Linear<T, Dev>>(LinearOptions(dim, hidden), gen));
    fc2 = this->register_module("fc2", std::make_shared<Linear<T, Dev>>(LinearOptions(hidden, dim), gen));
  }
  std::string type_name() const override { return "Mlp"; }
  // x [..., D] -> [..., D]
  Tensor forward(const Tensor& x) const { return fc2->forward(gelu(fc1->forward(x))); }

  std::shared_ptr<Linear<T, Dev>> fc1, fc2;
};

}  // namespace loom::nn
