#pragma once
// Vision Transformer encoder with timm/MAE parameter names:
//   patch_embed.proj.{weight,bias}, cls_token [1, 1, D], pos_embed [1, 1 + L, D] (fixed sin-cos,
//   a buffer), blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}.*, norm.{weight,bias}.
// Presets: tiny 192/12/3, small 384/12/6, base 768/12/12, or any "DIMxDEPTHxHEADS".
#include <sstream>
#include <string>

#include "loom/nn/block.hpp"
#include "loom/nn/patch_embed.hpp"
#include "loom/nn/pos_embed.hpp"
#include "loom/ops/concat.hpp"

namespace loom::nn {

struct VitOptions {
  int64_t img_size = 224, patch = 16, in_chans = 3;
  int64_t dim = 768, depth = 12, heads = 12;
  double mlp_ratio = 4.0;
  bool qkv_bias = true;
  double drop_path_rate = 0.0;  // linearly increasing over the blocks, as timm
  double eps = 1e-6;

  VitOptions& image(int64_t size, int64_t patch_size, int64_t channels) {
    img_size = size;
    patch = patch_size;
    in_chans = channels;
    return *this;
  }
  VitOptions& size(int64_t d, int64_t n_blocks, int64_t n_heads) {
    dim = d;
    depth = n_blocks;
    heads = n_heads;
    return *this;
  }
  VitOptions& with_mlp_ratio(double r) { mlp_ratio = r; return *this; }
  VitOptions& with_qkv_bias(bool on) { qkv_bias = on; return *this; }
  VitOptions& with_drop_path(double p) { drop_path_rate = p; return *this; }

  // "tiny", "small", "base", or "DIMxDEPTHxHEADS" (e.g. "192x6x3").
  VitOptions& preset(const std::string& name) {
    if (name == "tiny") return size(192, 12, 3);
    if (name == "small") return size(384, 12, 6);
    if (name == "base") return size(768, 12, 12);
    int64_t d = 0, n = 0, h = 0;
    char x1 = 0, x2 = 0;
    std::istringstream in(name);
    in >> d >> x1 >> n >> x2 >> h;
    LOOM_CHECK(in && in.peek() == EOF && x1 == 'x' && x2 == 'x' && d > 0 && n > 0 && h > 0, "ViT: unknown model '", name,
               "' (expected tiny, small, base or DIMxDEPTHxHEADS such as 192x12x3)");
    return size(d, n, h);
  }
  int64_t grid() const { return img_size / patch; }
};

template <class T = float, class Dev = CPU>
class VisionTransformer : public Module<T, Dev> {
 public:
  using Tensor = loom::Tensor<T, Dev>;
  explicit VisionTransformer(const VitOptions& opt, Generator& gen = default_generator()) : options(opt) {
    LOOM_CHECK(opt.img_size % opt.patch == 0, "ViT: image size ", opt.img_size, " is not divisible by patch ", opt.patch);
    patch_embed = this->register_module("patch_embed", std::make_shared<PatchEmbed<T, Dev>>(opt.patch, opt.in_chans, opt.dim, gen));
    cls_token = this->register_parameter("cls_token", Tensor::zeros({1, 1, opt.dim}));  // [1, 1, D]
    init::normal_(cls_token, 0.0, 0.02, gen);
    pos_embed = this->register_buffer(
        "pos_embed", sincos_pos_embed_2d<T, Dev>(opt.dim, opt.grid(), opt.grid(), true).unsqueeze(0));  // [1, 1 + L, D]
    blocks = this->register_module("blocks", std::make_shared<ModuleList<Block<T, Dev>, T, Dev>>());
    for (int64_t i = 0; i < opt.depth; ++i) {
      const double dp = opt.depth > 1 ? opt.drop_path_rate * double(i) / double(opt.depth - 1) : 0.0;
      blocks->push_back(std::make_shared<Block<T, Dev>>(
          BlockOptions(opt.dim, opt.heads).mlp_ratio(opt.mlp_ratio).qkv_bias(opt.qkv_bias).drop_path(dp).eps(opt.eps), gen));
    }
    norm = this->register_module("norm", std::make_shared<LayerNorm<T, Dev>>(LayerNormOptions(opt.dim).eps(opt.eps)));
  }
  std::string type_name() const override { return "VisionTransformer"; }

  // Patch tokens with their position embedding: x [B, C, H, W] -> [B, L, D].
  Tensor embed_patches(const Tensor& x) const {
    LOOM_CHECK(x.dim() == 4 && x.size(2) == options.img_size && x.size(3) == options.img_size, "ViT: input of shape ",
               x.shape(), " is not [B, ", options.in_chans, ", ", options.img_size, ", ", options.img_size, "]");
    return patch_embed->forward(x) + pos_embed.slice(1, 1, pos_embed.size(1));
  }
  // The cls token with its (zero) position embedding, one per sample: [B, 1, D].
  Tensor cls_tokens(int64_t batch) const {
    return (cls_token + pos_embed.slice(1, 0, 1)).expand({batch, 1, options.dim});
  }
  // Runs the blocks and the final norm on a token sequence [B, N, D] -> [B, N, D].
  Tensor forward_blocks(Tensor tokens) const {
    for (const auto& block : *blocks) tokens = block->forward(tokens);
    return norm->forward(tokens);
  }
  // The full encoder: x [B, C, H, W] -> normalized tokens [B, 1 + L, D] (cls first).
  Tensor forward(const Tensor& x) const {
    const Tensor patches = embed_patches(x);  // [B, L, D]
    return forward_blocks(concat<T, Dev>({cls_tokens(x.size(0)), patches}, 1));
  }

  VitOptions options;
  std::shared_ptr<PatchEmbed<T, Dev>> patch_embed;
  Tensor cls_token;  // [1, 1, D]
  Tensor pos_embed;  // [1, 1 + L, D]
  std::shared_ptr<ModuleList<Block<T, Dev>, T, Dev>> blocks;
  std::shared_ptr<LayerNorm<T, Dev>> norm;
};

}  // namespace loom::nn
