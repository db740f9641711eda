#pragma once
// LayerNorm over the last dimension, eps 1e-6 by default (ViT/MAE), weight 1 / bias 0.
#include "loom/nn/module.hpp"
#include "loom/ops/layer_norm.hpp"

namespace loom::nn {

struct LayerNormOptions {
  explicit LayerNormOptions(int64_t dim) : dim_(dim) {}
  LayerNormOptions& eps(double v) {
    eps_ = v;
    return *this;
  }
  LayerNormOptions& affine(bool on) {
    affine_ = on;
    return *this;
  }
  int64_t dim_;
  double eps_ = 1e-6;
  bool affine_ = true;
};

template <class T = float, class Dev = CPU>
class LayerNorm : public Module<T, Dev> {
 public:
  using Tensor = loom::Tensor<T, Dev>;
  explicit LayerNorm(const LayerNormOptions& opt) : options(opt) {
    if (opt.affine_) {
      weight = this->register_parameter("weight", Tensor::ones({opt.dim_}));  // [D]
      bias = this->register_parameter("bias", Tensor::zeros({opt.dim_}));     // [D]
    }
  }
  std::string type_name() const override { return "LayerNorm"; }

  // x [..., D] -> [..., D]
  Tensor forward(const Tensor& x) const {
    LOOM_CHECK(x.dim() >= 1 && x.size(-1) == options.dim_, "LayerNorm: input of shape ", x.shape(),
               " does not end in ", options.dim_);
    return layer_norm(x, Shape{options.dim_}, weight, bias, options.eps_);
  }

  LayerNormOptions options;
  Tensor weight, bias;
};

}  // namespace loom::nn
