#pragma once
// Pre-norm transformer block (timm/MAE):  x = x + drop_path(attn(norm1(x)));
//                                         x = x + drop_path(mlp(norm2(x))).
#include "loom/nn/attention.hpp"
#include "loom/nn/dropout.hpp"
#include "loom/nn/layer_norm.hpp"
#include "loom/nn/mlp.hpp"

namespace loom::nn {

struct BlockOptions {
  BlockOptions(int64_t dim, int64_t heads) : dim_(dim), heads_(heads) {}
  BlockOptions& mlp_ratio(double r) {
    mlp_ratio_ = r;
    return *this;
  }
  BlockOptions& qkv_bias(bool on) {
    qkv_bias_ = on;
    return *this;
  }
  BlockOptions& drop_path(double p) {
    drop_path_ = p;
    return *this;
  }
  BlockOptions& eps(double e) {
    eps_ = e;
    return *this;
  }
  int64_t dim_, heads_;
  double mlp_ratio_ = 4.0;
  bool qkv_bias_ = true;
  double drop_path_ = 0.0;
  double eps_ = 1e-6;
};

template <class T = float, class Dev = CPU>
class Block : public Module<T, Dev> {
 public:
  using Tensor = loom::Tensor<T, Dev>;
  explicit Block(const BlockOptions& opt, Generator& gen = default_generator()) : options(opt) {
    norm1 = this->register_module("norm1", std::make_shared<LayerNorm<T, Dev>>(LayerNormOptions(opt.dim_).eps(opt.eps_)));
    attn = this->register_module(
        "attn", std::make_shared<Attention<T, Dev>>(AttentionOptions(opt.dim_, opt.heads_).qkv_bias(opt.qkv_bias_), gen));
    norm2 = this->register_module("norm2", std::make_shared<LayerNorm<T, Dev>>(LayerNormOptions(opt.dim_).eps(opt.eps_)));
    mlp = this->register_module(
        "mlp", std::make_shared<Mlp<T, Dev>>(opt.dim_, int64_t(double(opt.dim_) * opt.mlp_ratio_), gen));
    drop_path = this->register_module("drop_path", std::make_shared<DropPath<T, Dev>>(opt.drop_path_, gen));
  }
  std::string type_name() const override { return "Block"; }

  // x [B, N, D] -> [B, N, D]
  Tensor forward(const Tensor& x) const {
    const Tensor h = x + drop_path->forward(attn->forward(norm1->forward(x)));
    return h + drop_path->forward(mlp->forward(norm2->forward(h)));
  }

  BlockOptions options;
  std::shared_ptr<LayerNorm<T, Dev>> norm1, norm2;
  std::shared_ptr<Attention<T, Dev>> attn;
  std::shared_ptr<Mlp<T, Dev>> mlp;
  std::shared_ptr<DropPath<T, Dev>> drop_path;
};

}  // namespace loom::nn
