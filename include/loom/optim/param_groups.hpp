#pragma once
// Parameter groups from dotted names, as the MAE reference builds them:
//  - no weight decay for biases, norm weights, 1-d parameters, tokens, position embeddings and the
//    learned modality-group embeddings (group_embed, decoder_group_embed: [G, D], like pos_embed);
//  - layer-wise lr decay for fine-tuning: layer id 0 for the embeddings (patch_embed, cls_token,
//    pos_embed), i + 1 for blocks.i.*, depth + 1 for everything after (norm, head); the lr scale of
//    layer id l is decay^(depth + 1 - l).
#include <cmath>
#include <string>
#include <vector>

#include "loom/core/tensor.hpp"

namespace loom::optim {

template <class T = float, class Dev = CPU>
struct ParamGroup {
  std::vector<std::pair<std::string, Tensor<T, Dev>>> params;
  double weight_decay = 0.0;
  double lr_scale = 1.0;
};

inline bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }
inline bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Whether a parameter is exempt from weight decay (MAE/timm rule).
template <class T, class Dev>
bool no_weight_decay(const std::string& name, const Tensor<T, Dev>& p) {
  return p.dim() <= 1 || ends_with(name, ".bias") || name.find("token") != std::string::npos ||
         name.find("pos_embed") != std::string::npos || name.find("group_embed") != std::string::npos;
}

// Layer id of a parameter name for layer-wise lr decay (`prefix` strips e.g. "encoder.").
inline int layer_id(const std::string& full_name, int depth, const std::string& prefix = "") {
  const std::string name = starts_with(full_name, prefix) ? full_name.substr(prefix.size()) : full_name;
  if (starts_with(name, "patch_embed") || name == "cls_token" || name == "pos_embed" || starts_with(name, "group_embed"))
    return 0;
  if (starts_with(name, "blocks.")) return std::stoi(name.substr(7, name.find('.', 7) - 7)) + 1;
  return depth + 1;
}

// Splits trainable parameters into decay / no-decay groups, each further split by layer when
// layer_decay < 1. Frozen parameters (requires_grad false) are left out.
template <class T, class Dev>
std::vector<ParamGroup<T, Dev>> make_param_groups(const std::vector<std::pair<std::string, Tensor<T, Dev>>>& named,
                                                  double weight_decay, double layer_decay = 1.0, int depth = 0,
                                                  const std::string& prefix = "") {
  std::vector<ParamGroup<T, Dev>> groups;
  auto group_for = [&](double wd, double scale) -> ParamGroup<T, Dev>& {
    for (auto& g : groups)
      if (g.weight_decay == wd && g.lr_scale == scale) return g;
    groups.push_back({{}, wd, scale});
    return groups.back();
  };
  for (const auto& [name, p] : named) {
    if (!p.requires_grad()) continue;
    const double wd = no_weight_decay(name, p) ? 0.0 : weight_decay;
    const double scale = layer_decay < 1.0 ? std::pow(layer_decay, depth + 1 - layer_id(name, depth, prefix)) : 1.0;
    group_for(wd, scale).params.emplace_back(name, p);
  }
  return groups;
}

}  // namespace loom::optim
