#pragma once
// Multi-head self-attention with a fused qkv projection (timm names attn.qkv, attn.proj):
//   qkv = x·Wqkvᵀ + b  -> q, k, v [B, H, N, Dh];  o = softmax(q·kᵀ / sqrt(Dh))·v;  y = proj(o).
// The attention itself is loom's fused online-softmax kernel (ops/attention.hpp).
#include "loom/nn/linear.hpp"
#include "loom/ops/attention.hpp"

namespace loom::nn {

struct AttentionOptions {
  AttentionOptions(int64_t dim, int64_t heads) : dim_(dim), heads_(heads) {}
  AttentionOptions& qkv_bias(bool on) {
    qkv_bias_ = on;
    return *this;
  }
  int64_t dim_, heads_;
  bool qkv_bias_ = true;
};

template <class T = float, class Dev = CPU>
class Attention : public Module<T, Dev> {
 public:
  using Tensor = loom::Tensor<T, Dev>;
  explicit Attention(const AttentionOptions& opt, Generator& gen = default_generator()) : options(opt) {
    LOOM_CHECK(opt.heads_ > 0 && opt.dim_ % opt.heads_ == 0, "Attention: dim ", opt.dim_,
               " is not divisible by heads ", opt.heads_);
    qkv = this->register_module("qkv",
                                std::make_shared<Linear<T, Dev>>(LinearOptions(opt.dim_, 3 * opt.dim_).bias(opt.qkv_bias_), gen));
    proj = this->register_module("proj", std::make_shared<Linear<T, Dev>>(LinearOptions(opt.dim_, opt.dim_), gen));
  }
  std::string type_name() const override { return "Attention"; }

  // x [B, N, D] -> [B, N, D]
  Tensor forward(const Tensor& x) const {
    LOOM_CHECK(x.dim() == 3 && x.size(2) == options.dim_, "Attention: input of shape ", x.shape(),
               " is not [B, N, ", options.dim_, "]");
    const int64_t B = x.size(0), N = x.size(1), H = options.heads_, Dh = options.dim_ / H;
    const Tensor qkv_out = qkv->forward(x).view({B, N, 3, H, Dh}).permute({2, 0, 3, 1, 4});  // [3, B, H, N, Dh]
    const Tensor o = scaled_dot_product_attention(qkv_out.select(0, 0), qkv_out.select(0, 1),
                                                  qkv_out.select(0, 2));  // [B, H, N, Dh]
    return proj->forward(o.transpose(1, 2).reshape({B, N, options.dim_}));
  }

  AttentionOptions options;
  std::shared_ptr<Linear<T, Dev>> qkv, proj;
};

}  // namespace loom::nn
