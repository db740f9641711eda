#pragma once
// The multi-modal masked autoencoder (DESIGN §1): the encoder sees the K visible group tokens of a
// MaskPlan; a light decoder (its own dim/depth/heads) gets them back in place among mask tokens,
// adds its own position + group embeddings, and one linear head per group predicts that group's
// patches; the loss is the mean over groups of the MSE on that group's hidden tokens.
//
// Decoder names (MAE reference): decoder_embed.*, mask_token [1, 1, Dd], decoder_pos_embed (buffer),
// decoder_group_embed [G, Dd] (groups only), decoder_blocks.N.*, decoder_norm.*, decoder_pred.*
// (joint) or decoder_pred.<group>.* (groups).
#include <string>
#include <vector>

#include "loom/mask/mask.hpp"
#include "loom/models/encoder.hpp"

namespace loom::models {

struct MaeConfig {
  EncoderConfig encoder;
  int64_t decoder_dim = 128, decoder_depth = 2, decoder_heads = 4;
  bool norm_pix = true;
};

template <class T = float, class Dev = CPU>
struct MaeOutput {
  mask::MaskedLoss<T, Dev> loss;
  std::vector<Tensor<T, Dev>> pred;     // per token group: [B, L, p·p·C_g]
  std::vector<Tensor<T, Dev>> target;   // per token group: [B, L, p·p·C_g] (not normalized)
};

template <class T = float, class Dev = CPU>
class MaskedAutoencoder : public MultiModalEncoder<T, Dev> {
 public:
  using Tensor = loom::Tensor<T, Dev>;
  using Encoder = MultiModalEncoder<T, Dev>;

  explicit MaskedAutoencoder(const MaeConfig& cfg, Generator& gen = default_generator()) : Encoder(cfg.encoder, gen), mae(cfg) {
    const EncoderConfig& e = cfg.encoder;
    const int G = e.G();
    decoder_embed = this->register_module("decoder_embed",
                                          std::make_shared<nn::Linear<T, Dev>>(nn::LinearOptions(e.dim, cfg.decoder_dim), gen));
    mask_token = this->register_parameter("mask_token", Tensor::zeros({1, 1, cfg.decoder_dim}));  // [1, 1, Dd]
    nn::init::normal_(mask_token, 0.0, 0.02, gen);
    decoder_pos_embed = this->register_buffer(
        "decoder_pos_embed", nn::sincos_pos_embed_2d<T, Dev>(cfg.decoder_dim, e.grid(), e.grid(), true).unsqueeze(0));
    if (!e.joint) {
      decoder_group_embed = this->register_parameter("decoder_group_embed", Tensor::zeros({int64_t(G), cfg.decoder_dim}));
      nn::init::normal_(decoder_group_embed, 0.0, 0.02, gen);
    }
    decoder_blocks = this->register_module("decoder_blocks", std::make_shared<nn::ModuleList<nn::Block<T, Dev>, T, Dev>>());
    for (int64_t i = 0; i < cfg.decoder_depth; ++i)
      decoder_blocks->push_back(std::make_shared<nn::Block<T, Dev>>(nn::BlockOptions(cfg.decoder_dim, cfg.decoder_heads), gen));
    decoder_norm = this->register_module("decoder_norm",
                                         std::make_shared<nn::LayerNorm<T, Dev>>(nn::LayerNormOptions(cfg.decoder_dim)));
    const int64_t p2 = e.patch * e.patch;
    if (e.joint) {
      decoder_preds.push_back(this->register_module(
          "decoder_pred", std::make_shared<nn::Linear<T, Dev>>(nn::LinearOptions(cfg.decoder_dim, p2 * e.total_channels()), gen)));
    } else {
      auto holder = this->register_module("decoder_pred", std::make_shared<nn::Module<T, Dev>>());
      for (int g = 0; g < G; ++g)
        decoder_preds.push_back(holder->register_module(
            e.group_name(g), std::make_shared<nn::Linear<T, Dev>>(nn::LinearOptions(cfg.decoder_dim, p2 * e.group_channels(g)), gen)));
    }
  }
  std::string type_name() const override { return "MaskedAutoencoder"; }

  // Per-token-group reconstruction targets (patchified, not normalized): [B, L, p·p·C_g].
  std::vector<Tensor> targets(const std::vector<Tensor>& inputs) const {
    const EncoderConfig& e = this->config;
    if (e.joint) return {mask::patchify_group(concat<T, Dev>(inputs, 1), e.patch)};
    std::vector<Tensor> out;
    for (const auto& x : inputs) out.push_back(mask::patchify_group(x, e.patch));
    return out;
  }

  // inputs[m]: [B, C_m, H, W] for every modality group (all present in pre-training).
  MaeOutput<T, Dev> forward(const std::vector<Tensor>& inputs, const mask::BasicMaskPlan<Dev>& plan) const {
    const EncoderConfig& e = this->config;
    const int G = e.G();
    const int64_t L = e.locations();
    for (const auto& x : inputs) LOOM_CHECK(x.defined(), "MAE: pre-training needs every modality present");
    LOOM_CHECK(plan.groups == G && plan.locations == L, "MAE: mask plan for G = ", plan.groups, ", L = ", plan.locations,
               " but the model has G = ", G, ", L = ", L);
    // Encoder on the visible tokens.
    const Tensor tokens = concat<T, Dev>(this->embed_groups(inputs), 1);        // [B, T, D]
    const Tensor latent = this->encode(mask::gather_tokens(tokens, plan.ids_keep));  // [B, 1 + K, D]
    // Decoder on all tokens.
    const Tensor y = decoder_embed->forward(latent);                               // [B, 1 + K, Dd]
    const int64_t B = y.size(0), Dd = mae.decoder_dim;
    Tensor full = mask::unshuffle_tokens(y.slice(1, 1, y.size(1)), mask_token, plan.ids_restore);  // [B, T, Dd]
    full = full + decoder_token_embed();                                           // + pos + group
    const Tensor cls = y.slice(1, 0, 1) + decoder_pos_embed.slice(1, 0, 1);        // [B, 1, Dd]
    Tensor x = concat<T, Dev>({cls, full}, 1);                                     // [B, 1 + T, Dd]
    for (const auto& block : *decoder_blocks) x = block->forward(x);
    x = decoder_norm->forward(x).slice(1, 1, 1 + int64_t(G) * L);                  // [B, T, Dd]
    MaeOutput<T, Dev> out;
    for (int g = 0; g < G; ++g)
      out.pred.push_back(decoder_preds[size_t(g)]->forward(x.slice(1, g * L, (g + 1) * L)));  // [B, L, p·p·C_g]
    out.target = targets(inputs);
    out.loss = mask::masked_group_loss(out.pred, out.target, plan.mask, mae.norm_pix);
    (void)B;
    (void)Dd;
    return out;
  }

  // Decoder position + group embedding of every token: [1, T, Dd].
  Tensor decoder_token_embed() const {
    const EncoderConfig& e = this->config;
    const Tensor pos = decoder_pos_embed.slice(1, 1, decoder_pos_embed.size(1));  // [1, L, Dd]
    if (e.joint) return pos;
    std::vector<Tensor> parts;
    for (int g = 0; g < e.G(); ++g)
      parts.push_back(pos + decoder_group_embed.select(0, g).view({1, 1, mae.decoder_dim}));
    return concat<T, Dev>(parts, 1);
  }

  // The encoder's part of the state (names as MultiModalEncoder): written to encoder.safetensors.
  typename nn::Module<T, Dev>::NamedTensors encoder_state() const {
    typename nn::Module<T, Dev>::NamedTensors out;
    for (auto& [name, t] : this->state_dict())
      if (Encoder::is_encoder_name(name)) out.emplace_back(name, t);
    return out;
  }

  MaeConfig mae;
  std::shared_ptr<nn::Linear<T, Dev>> decoder_embed;
  Tensor mask_token;           // [1, 1, Dd]
  Tensor decoder_pos_embed;    // [1, 1 + L, Dd]
  Tensor decoder_group_embed;  // [G, Dd] (undefined when joint)
  std::shared_ptr<nn::ModuleList<nn::Block<T, Dev>, T, Dev>> decoder_blocks;
  std::shared_ptr<nn::LayerNorm<T, Dev>> decoder_norm;
  std::vector<std::shared_ptr<nn::Linear<T, Dev>>> decoder_preds;
};

}  // namespace loom::models
