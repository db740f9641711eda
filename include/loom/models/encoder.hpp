#pragma once
// The multi-modal ViT encoder shared by MAE pre-training and fine-tuning (DESIGN §1 "Tokens").
// Channels are split into groups (default S1 {VV, VH} and S2's 12 bands); each group has its own
// patch embedding; every token gets the fixed 2-D sin-cos embedding of its location plus a learned
// embedding of its group. Token t = g·L + l (group-major). A missing modality is simply absent
// tokens: the same encoder runs on S1 only, S2 only or both.
// With joint tokenization (one group over all channels) names match timm's ViT exactly.
//
// Names: patch_embed.proj.* (joint) or patch_embed.<group>.proj.* (groups), cls_token, pos_embed
// (buffer), group_embed [G, D] (groups only), blocks.N.*, norm.*.
#include <string>
#include <vector>

#include "loom/mask/tokens.hpp"
#include "loom/nn/nn.hpp"
#include "loom/ops/concat.hpp"

namespace loom::models {

struct GroupSpec {
  std::string name;   // e.g. "s1"
  int64_t channels;   // C_g
};

struct EncoderConfig {
  std::vector<GroupSpec> groups = {{"s1", 2}, {"s2", 12}};
  bool joint = false;  // one token per location over all channels (SatViT-style baseline)
  int64_t img_size = 120, patch = 8;
  int64_t dim = 192, depth = 6, heads = 3;
  double mlp_ratio = 4.0, drop_path = 0.0;

  int64_t grid() const { return img_size / patch; }
  int64_t locations() const { return grid() * grid(); }
  int G() const { return joint ? 1 : int(groups.size()); }
  int64_t total_channels() const {
    int64_t c = 0;
    for (const auto& g : groups) c += g.channels;
    return c;
  }
  // Channels of token group g (joint: all channels).
  int64_t group_channels(int g) const { return joint ? total_channels() : groups[size_t(g)].channels; }
  std::string group_name(int g) const { return joint ? "joint" : groups[size_t(g)].name; }
};

template <class T = float, class Dev = CPU>
class MultiModalEncoder : public nn::Module<T, Dev> {
 public:
  using Tensor = loom::Tensor<T, Dev>;

  explicit MultiModalEncoder(const EncoderConfig& cfg, Generator& gen = default_generator()) : config(cfg) {
    LOOM_CHECK(cfg.img_size % cfg.patch == 0, "encoder: image size ", cfg.img_size, " is not divisible by patch ", cfg.patch);
    LOOM_CHECK(!cfg.groups.empty(), "encoder: needs at least one channel group");
    const int G = cfg.G();
    if (cfg.joint) {
      patch_embeds.push_back(this->register_module(
          "patch_embed", std::make_shared<nn::PatchEmbed<T, Dev>>(cfg.patch, cfg.total_channels(), cfg.dim, gen)));
    } else {
      auto holder = this->register_module("patch_embed", std::make_shared<nn::Module<T, Dev>>());
      for (int g = 0; g < G; ++g)
        patch_embeds.push_back(holder->register_module(
            cfg.group_name(g), std::make_shared<nn::PatchEmbed<T, Dev>>(cfg.patch, cfg.group_channels(g), cfg.dim, gen)));
    }
    cls_token = this->register_parameter("cls_token", Tensor::zeros({1, 1, cfg.dim}));  // [1, 1, D]
    nn::init::normal_(cls_token, 0.0, 0.02, gen);
    pos_embed = this->register_buffer(
        "pos_embed", nn::sincos_pos_embed_2d<T, Dev>(cfg.dim, cfg.grid(), cfg.grid(), true).unsqueeze(0));  // [1, 1+L, D]
    if (!cfg.joint) {
      group_embed = this->register_parameter("group_embed", Tensor::zeros({int64_t(G), cfg.dim}));  // [G, D]
      nn::init::normal_(group_embed, 0.0, 0.02, gen);
    }
    blocks = this->register_module("blocks", std::make_shared<nn::ModuleList<nn::Block<T, Dev>, T, Dev>>());
    for (int64_t i = 0; i < cfg.depth; ++i) {
      const double dp = cfg.depth > 1 ? cfg.drop_path * double(i) / double(cfg.depth - 1) : 0.0;
      blocks->push_back(std::make_shared<nn::Block<T, Dev>>(
          nn::BlockOptions(cfg.dim, cfg.heads).mlp_ratio(cfg.mlp_ratio).drop_path(dp), gen));
    }
    norm = this->register_module("norm", std::make_shared<nn::LayerNorm<T, Dev>>(nn::LayerNormOptions(cfg.dim)));
  }
  std::string type_name() const override { return "MultiModalEncoder"; }

  // Token groups from per-modality images (undefined = modality absent). inputs[m] is [B, C_m, H, W]
  // for config.groups[m]. Returns one [B, L, D] tensor per token group (joint: one, all channels
  // stacked; an absent modality is then zeros) — undefined for absent groups.
  std::vector<Tensor> embed_groups(const std::vector<Tensor>& inputs) const {
    LOOM_CHECK(inputs.size() == config.groups.size(), "encoder: ", inputs.size(), " inputs for ", config.groups.size(),
               " modality groups");
    int64_t B = -1;
    for (size_t m = 0; m < inputs.size(); ++m) {
      if (!inputs[m].defined()) continue;
      const Tensor& x = inputs[m];
      LOOM_CHECK(x.dim() == 4 && x.size(1) == config.groups[m].channels && x.size(2) == config.img_size &&
                     x.size(3) == config.img_size,
                 "encoder: input '", config.groups[m].name, "' has shape ", x.shape(), ", expected [B, ",
                 config.groups[m].channels, ", ", config.img_size, ", ", config.img_size, "]");
      LOOM_CHECK(B < 0 || x.size(0) == B, "encoder: inputs disagree on batch size (", B, " vs ", x.size(0), ")");
      B = x.size(0);
    }
    LOOM_CHECK(B >= 0, "encoder: every modality is absent");
    const Tensor pos = pos_embed.slice(1, 1, pos_embed.size(1));  // [1, L, D]
    if (config.joint) {
      std::vector<Tensor> parts;
      for (size_t m = 0; m < inputs.size(); ++m)
        parts.push_back(inputs[m].defined() ? inputs[m]
                                            : Tensor::zeros({B, config.groups[m].channels, config.img_size, config.img_size}));
      return {patch_embeds[0]->forward(concat<T, Dev>(parts, 1)) + pos};
    }
    std::vector<Tensor> out(inputs.size());
    for (size_t g = 0; g < inputs.size(); ++g)
      if (inputs[g].defined())
        out[g] = patch_embeds[g]->forward(inputs[g]) + pos + group_embed.select(0, int64_t(g)).view({1, 1, config.dim});
    return out;
  }

  // Runs cls + tokens [B, N, D] through the blocks and the final norm -> [B, 1 + N, D].
  Tensor encode(const Tensor& tokens) const {
    const int64_t B = tokens.size(0);
    const Tensor cls = (cls_token + pos_embed.slice(1, 0, 1)).expand({B, 1, config.dim});
    Tensor x = concat<T, Dev>({cls, tokens}, 1);
    for (const auto& block : *blocks) x = block->forward(x);
    return norm->forward(x);
  }

  // All tokens of the present groups (no masking): [B, 1 + G_present·L, D].
  Tensor forward(const std::vector<Tensor>& inputs) const {
    std::vector<Tensor> present;
    for (auto& t : embed_groups(inputs))
      if (t.defined()) present.push_back(t);
    return encode(concat<T, Dev>(present, 1));
  }

  // Encoder parameter names (what encoder.safetensors holds), for filtering a larger model.
  static bool is_encoder_name(const std::string& name) {
    return name.rfind("decoder", 0) != 0 && name != "mask_token";
  }

  EncoderConfig config;
  std::vector<std::shared_ptr<nn::PatchEmbed<T, Dev>>> patch_embeds;
  Tensor cls_token;    // [1, 1, D]
  Tensor pos_embed;    // [1, 1 + L, D]
  Tensor group_embed;  // [G, D] (undefined when joint)
  std::shared_ptr<nn::ModuleList<nn::Block<T, Dev>, T, Dev>> blocks;
  std::shared_ptr<nn::LayerNorm<T, Dev>> norm;
};

}  // namespace loom::models
