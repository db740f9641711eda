#pragma once
// Dropout (elementwise) and DropPath (stochastic depth: whole samples of a residual branch).
// Both are identity in eval mode or with p = 0; in training, kept values are scaled by 1/(1-p).
#include "loom/core/random.hpp"
#include "loom/nn/module.hpp"
#include "loom/ops/elementwise.hpp"

namespace loom::nn {

// A generator of its own for a stochastic layer, seeded by one draw from `parent`: layers never hold
// references to generators that may not outlive them, and each layer's stream is distinct.
inline Generator fork(Generator& parent) {
  const uint64_t c = parent.reserve(1);
  const auto block = philox::philox4x32_10(philox::counter_at(c), philox::key_for_seed(parent.seed()));
  return Generator((uint64_t(block.x[1]) << 32) | block.x[0]);
}

template <class T = float, class Dev = CPU>
class Dropout : public Module<T, Dev> {
 public:
  using Tensor = loom::Tensor<T, Dev>;
  explicit Dropout(double p = 0.0, Generator& parent = default_generator()) : p_(p), gen_(fork(parent)) {
    LOOM_CHECK(p >= 0 && p < 1, "Dropout: probability must be in [0, 1), got ", p);
  }
  std::string type_name() const override { return "Dropout"; }
  Generator& generator() const { return gen_; }
  Tensor forward(const Tensor& x) const {
    if (!this->is_training() || p_ == 0) return x;
    const Tensor keep = bernoulli<Dev>(x.shape(), 1 - p_, gen_).template to<T>();  // [...] 0/1
    return x * keep * (1.0 / (1 - p_));
  }

 private:
  double p_;
  mutable Generator gen_;
};

template <class T = float, class Dev = CPU>
class DropPath : public Module<T, Dev> {
 public:
  using Tensor = loom::Tensor<T, Dev>;
  explicit DropPath(double p = 0.0, Generator& parent = default_generator()) : p_(p), gen_(fork(parent)) {
    LOOM_CHECK(p >= 0 && p < 1, "DropPath: probability must be in [0, 1), got ", p);
  }
  std::string type_name() const override { return "DropPath"; }
  Generator& generator() const { return gen_; }
  double p() const { return p_; }
  // x [B, ...]: each sample's branch is kept with probability 1 - p.
  Tensor forward(const Tensor& x) const {
    if (!this->is_training() || p_ == 0) return x;
    Shape mask_shape = Shape::filled(x.dim(), 1);
    mask_shape[0] = x.size(0);
    const Tensor keep = bernoulli<Dev>(mask_shape, 1 - p_, gen_).template to<T>();  // [B, 1, ...]
    return x * keep * (1.0 / (1 - p_));
  }

 private:
  double p_;
  mutable Generator gen_;
};

}  // namespace loom::nn
