#pragma once
// Linear: y = x·Wᵀ + b over the last dimension. weight [out, in], bias [out] (timm names).
#include <memory>

#include "loom/nn/init.hpp"
#include "loom/nn/module.hpp"
#include "loom/ops/linalg.hpp"

namespace loom::nn {

struct LinearOptions {
  LinearOptions(int64_t in, int64_t out) : in_features_(in), out_features_(out) {}
  LinearOptions& bias(bool on) {
    bias_ = on;
    return *this;
  }
  int64_t in_features_, out_features_;
  bool bias_ = true;
};

template <class T = float, class Dev = CPU>
class Linear : public Module<T, Dev> {
 public:
  using Tensor = loom::Tensor<T, Dev>;
  Linear(const LinearOptions& opt, Generator& gen = default_generator()) : options(opt) {
    LOOM_CHECK(opt.in_features_ > 0 && opt.out_features_ > 0, "Linear: features must be positive, got in ",
               opt.in_features_, ", out ", opt.out_features_);
    weight = this->register_parameter("weight", Tensor::empty({opt.out_features_, opt.in_features_}));  // [out, in]
    init::xavier_uniform_(weight, gen);
    if (opt.bias_) bias = this->register_parameter("bias", Tensor::zeros({opt.out_features_}));  // [out]
  }
  std::string type_name() const override { return "Linear"; }

  // x [..., in] -> [..., out]
  Tensor forward(const Tensor& x) const {
    LOOM_CHECK(x.dim() >= 1 && x.size(-1) == options.in_features_, "Linear: input of shape ", x.shape(),
               " does not end in in_features ", options.in_features_);
    return linear(x, weight, bias);
  }

  LinearOptions options;
  Tensor weight;  // [out, in]
  Tensor bias;    // [out] or undefined
};

}  // namespace loom::nn
