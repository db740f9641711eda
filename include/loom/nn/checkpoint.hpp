#pragma once
// Module checkpoints in safetensors under timm/MAE names. save_module writes parameters and
// buffers atomically; load_module validates everything before writing anything (io/state_dict.hpp)
// and accepts timm's conv-shaped patch-embedding weights [D, C, p, p] for loom's Linear form
// [D, C·p·p] by reshape.
#include <map>
#include <string>

#include "loom/io/safetensors.hpp"
#include "loom/io/state_dict.hpp"
#include "loom/nn/module.hpp"

namespace loom::nn {

template <class T, class Dev>
void save_module(const Module<T, Dev>& module, const std::string& path, const std::map<std::string, std::string>& metadata = {}) {
  io::save_safetensors(path, module.state_dict(), metadata);
}

// Adds the reshape permission for every patch-embedding weight of the module to `options`: the
// `proj.weight` under any `patch_embed` (timm's `patch_embed.proj.weight`, and the per-group
// `patch_embed.<group>.proj.weight` of the multi-modal encoder), stored by PyTorch as [D, C, p, p].
template <class T, class Dev>
io::LoadOptions with_patch_embed_reshape(const Module<T, Dev>& module, io::LoadOptions options) {
  const std::string tail = "proj.weight";
  for (const auto& [name, t] : module.state_dict()) {
    const bool in_patch_embed = name.rfind("patch_embed.", 0) == 0 || name.find(".patch_embed.") != std::string::npos;
    if (in_patch_embed && name.size() >= tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0)
      options.reshape(name);
  }
  return options;
}

template <class T, class Dev>
io::LoadReport load_module(Module<T, Dev>& module, const std::string& path, const io::LoadOptions& options = {}) {
  return io::load_into(module.state_dict(), io::SafetensorsFile::open(path), with_patch_embed_reshape(module, options));
}

}  // namespace loom::nn
