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

// Adds the reshape permission for every patch-embedding weight of the module to `options`.
template <class T, class Dev>
io::LoadOptions with_patch_embed_reshape(const Module<T, Dev>& module, io::LoadOptions options) {
  const std::string suffix = "patch_embed.proj.weight";
  for (const auto& [name, t] : module.state_dict())
    if (name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      options.reshape(name);
  return options;
}

template <class T, class Dev>
io::LoadReport load_module(Module<T, Dev>& module, const std::string& path, const io::LoadOptions& options = {}) {
  return io::load_into(module.state_dict(), io::SafetensorsFile::open(path), with_patch_embed_reshape(module, options));
}

}  // namespace loom::nn
