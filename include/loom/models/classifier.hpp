#pragma once
// The multi-label classifier of fine-tuning: the MultiModalEncoder plus a head, with timm's names
// so that a standard ViT (joint tokens) fine-tuned in PyTorch loads as is, and back.
//
//   pool avg (default; timm global_pool='avg', MAE fine-tuning): the blocks' output patch tokens are
//     averaged (the cls token left out), then fc_norm (LayerNorm) and head (Linear). The encoder's
//     final `norm` is NOT applied — timm replaces it by Identity in that mode, so it is left out of
//     checkpoints too (checkpoint_state()).
//   pool cls: the encoder's `norm` on all tokens, the cls token, then head (no fc_norm).
//
// Modalities (which inputs the encoder sees; the rest are absent tokens, DESIGN §1):
//   s1, s2, s1s2 (both), s1s2-half: each location through exactly one modality, chosen by a fixed
//   checkerboard on the patch grid — (row + col) % 2 == 0 takes S1, else S2 — so the encoder sees
//   half of the input data. Group tokens: the chosen token of every location is picked with
//   mask::gather_tokens and fixed ids; joint tokens: the other modality's channels of that patch
//   are zeroed (what a joint token sees of an absent modality).
//
// Names: the encoder's (encoder.hpp), fc_norm.* (avg only), head.{weight, bias} [K, D], [K].
#include <string>
#include <vector>

#include "loom/mask/tokens.hpp"
#include "loom/models/encoder.hpp"
#include "loom/ops/elementwise.hpp"
#include "loom/ops/reduce.hpp"

namespace loom::models {

enum class Pool { avg, cls };
enum class ModalitySet { s1, s2, s1s2, s1s2_half };

inline Pool parse_pool(const std::string& s) {
  LOOM_CHECK(s == "avg" || s == "cls", "classifier: pool '", s, "' (expected avg or cls)");
  return s == "avg" ? Pool::avg : Pool::cls;
}
inline std::string pool_name(Pool p) { return p == Pool::avg ? "avg" : "cls"; }

inline ModalitySet parse_modality_set(const std::string& s) {
  if (s == "s1") return ModalitySet::s1;
  if (s == "s2") return ModalitySet::s2;
  if (s == "s1s2") return ModalitySet::s1s2;
  LOOM_CHECK(s == "s1s2-half", "classifier: modalities '", s, "' (expected s1, s2, s1s2 or s1s2-half)");
  return ModalitySet::s1s2_half;
}
inline std::string modality_set_name(ModalitySet m) {
  switch (m) {
    case ModalitySet::s1: return "s1";
    case ModalitySet::s2: return "s2";
    case ModalitySet::s1s2: return "s1s2";
    case ModalitySet::s1s2_half: return "s1s2-half";
  }
  return "?";
}

struct ClassifierConfig {
  EncoderConfig encoder;
  int64_t num_classes = 19;
  Pool pool = Pool::avg;
  ModalitySet modalities = ModalitySet::s1s2;
};

// Modality group (0: first group, e.g. S1; 1: second, e.g. S2) that location l of a grid x grid
// patch grid uses in s1s2-half.
inline int checkerboard_group(int64_t l, int64_t grid) { return int((l / grid + l % grid) % 2); }

// Token ids of s1s2-half among group tokens t = g·L + l: ids[l] = checkerboard_group(l)·L + l.
inline std::vector<int64_t> checkerboard_token_ids(int64_t grid) {
  const int64_t L = grid * grid;
  std::vector<int64_t> ids(static_cast<size_t>(L));
  for (int64_t l = 0; l < L; ++l) ids[size_t(l)] = checkerboard_group(l, grid) * L + l;
  return ids;
}

template <class T = float, class Dev = CPU>
class MultiLabelClassifier : public MultiModalEncoder<T, Dev> {
 public:
  using Tensor = loom::Tensor<T, Dev>;
  using Encoder = MultiModalEncoder<T, Dev>;

  explicit MultiLabelClassifier(const ClassifierConfig& cfg, Generator& gen = default_generator())
      : Encoder(cfg.encoder, gen), classifier(cfg) {
    LOOM_CHECK(cfg.num_classes > 0, "classifier: needs at least one class, got ", cfg.num_classes);
    LOOM_CHECK(cfg.modalities == ModalitySet::s1s2 || cfg.encoder.groups.size() == 2, "classifier: modalities ",
               modality_set_name(cfg.modalities), " need exactly two modality groups (S1, S2), got ",
               cfg.encoder.groups.size());
    if (cfg.pool == Pool::avg)
      fc_norm = this->register_module("fc_norm", std::make_shared<nn::LayerNorm<T, Dev>>(nn::LayerNormOptions(cfg.encoder.dim)));
    head = this->register_module(
        "head", std::make_shared<nn::Linear<T, Dev>>(nn::LinearOptions(cfg.encoder.dim, cfg.num_classes), gen));
    nn::init::normal_(head->weight, 0.0, 2e-5, gen);  // MAE fine-tuning: a nearly silent head at first
  }
  std::string type_name() const override { return "MultiLabelClassifier"; }

  // Images [B, C_m, H, W] per modality group (all given; the modality setting picks what is used)
  // -> patch tokens the encoder sees, [B, N, D] (N = L for joint / one modality / s1s2-half).
  Tensor input_tokens(const std::vector<Tensor>& images) const {
    const EncoderConfig& e = this->config;
    LOOM_CHECK(images.size() == e.groups.size(), "classifier: ", images.size(), " inputs for ", e.groups.size(),
               " modality groups");
    std::vector<Tensor> inputs = images;
    switch (classifier.modalities) {
      case ModalitySet::s1: inputs[1] = Tensor(); break;
      case ModalitySet::s2: inputs[0] = Tensor(); break;
      case ModalitySet::s1s2: break;
      case ModalitySet::s1s2_half:
        if (e.joint) {
          for (int g = 0; g < 2; ++g) inputs[size_t(g)] = inputs[size_t(g)] * checkerboard_pixels(g);
        }
        break;
    }
    std::vector<Tensor> present;
    for (auto& t : this->embed_groups(inputs))
      if (t.defined()) present.push_back(t);
    Tensor tokens = concat<T, Dev>(present, 1);  // [B, G_present·L, D]
    if (classifier.modalities == ModalitySet::s1s2_half && !e.joint) {
      const int64_t B = tokens.size(0), L = e.locations();
      const loom::Tensor<int64_t, Dev> ids =
          loom::Tensor<int64_t, Dev>::from_vector({1, L}, checkerboard_token_ids(e.grid())).expand({B, L});  // [B, L]
      tokens = mask::gather_tokens(tokens, ids);                                                      // [B, L, D]
    }
    return tokens;
  }

  // The pooled representation [B, D] that the head's part (head_logits) starts from: the mean of
  // the blocks' patch tokens (avg), or the normalized cls token (cls).
  Tensor pooled(const std::vector<Tensor>& images) const {
    const Tensor tokens = input_tokens(images);  // [B, N, D]
    const int64_t B = tokens.size(0), D = this->config.dim;
    const Tensor cls = (this->cls_token + this->pos_embed.slice(1, 0, 1)).expand({B, 1, D});
    Tensor x = concat<T, Dev>({cls, tokens}, 1);  // [B, 1 + N, D]
    for (const auto& block : *this->blocks) x = block->forward(x);
    if (classifier.pool == Pool::avg) return mean(x.slice(1, 1, x.size(1)), {1});  // [B, D]
    return this->norm->forward(x).select(1, 0);                                    // [B, D]
  }

  // pooled [B, D] -> logits [B, K]: fc_norm (avg) and head.
  Tensor head_logits(const Tensor& pooled_features) const {
    return head->forward(fc_norm ? fc_norm->forward(pooled_features) : pooled_features);
  }

  // Logits [B, K] (probabilities: sigmoid).
  Tensor forward(const std::vector<Tensor>& images) const { return head_logits(pooled(images)); }

  // What a checkpoint holds: the state_dict without the unused final `norm` in avg mode (timm's
  // state_dict has none there).
  typename nn::Module<T, Dev>::NamedTensors checkpoint_state() const {
    typename nn::Module<T, Dev>::NamedTensors out;
    for (auto& [name, t] : this->state_dict())
      if (!is_unused_name(name)) out.emplace_back(name, t);
    return out;
  }
  // checkpoint_state() as timm stores it: patch-embedding weights in conv shape [D, C, p, p]
  // (loom keeps them as [D, C·p·p]; nn::with_patch_embed_reshape loads either), so that a saved
  // joint-token classifier loads into timm's VisionTransformer as is. Views, no copies.
  typename nn::Module<T, Dev>::NamedTensors timm_state() const {
    NoGradGuard no_grad;
    typename nn::Module<T, Dev>::NamedTensors out = checkpoint_state();
    for (size_t g = 0; g < this->patch_embeds.size(); ++g) {
      const auto& pe = *this->patch_embeds[g];
      const std::string name =
          this->config.joint ? "patch_embed.proj.weight" : "patch_embed." + this->config.group_name(int(g)) + ".proj.weight";
      for (auto& [n, t] : out)
        if (n == name) t = t.reshape(Shape{pe.dim, pe.in_chans, pe.patch_size, pe.patch_size});  // [D, C, p, p]
    }
    return out;
  }
  bool is_unused_name(const std::string& name) const {
    return classifier.pool == Pool::avg && (name == "norm.weight" || name == "norm.bias");
  }

  ClassifierConfig classifier;
  std::shared_ptr<nn::LayerNorm<T, Dev>> fc_norm;  // avg pool only
  std::shared_ptr<nn::Linear<T, Dev>> head;

 private:
  // [1, 1, H, W]: 1 on the patches of group g's checkerboard cells, else 0.
  Tensor checkerboard_pixels(int g) const {
    const EncoderConfig& e = this->config;
    std::vector<T> m(size_t(e.img_size * e.img_size));
    for (int64_t y = 0; y < e.img_size; ++y)
      for (int64_t x = 0; x < e.img_size; ++x)
        m[size_t(y * e.img_size + x)] = T(checkerboard_group((y / e.patch) * e.grid() + x / e.patch, e.grid()) == g ? 1 : 0);
    return Tensor::from_vector({1, 1, e.img_size, e.img_size}, m);
  }
};

}  // namespace loom::models
