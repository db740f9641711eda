#pragma once
// PatchEmbed: the strided p×p convolution of ViT written as a Linear over flattened patches.
// A patch is flattened in (channel, row, column) order — the order of a conv weight [D, C, p, p]
// flattened — so timm's `patch_embed.proj.weight` loads by a reshape to [D, C·p·p].
// `use_conv` (default off) routes forward through loom::conv_patch_embed: the same parameters and
// result, computed on CUDA tensors by cuDNN's convolution when loom is built with cuDNN
// (docs/cuda.md "cuDNN"); elsewhere it is the same patchify + linear.
#include "loom/nn/linear.hpp"
#include "loom/ops/conv_patch_embed.hpp"

namespace loom::nn {

using loom::patchify_chw;  // x [B, C, H, W] -> patches [B, L, C·p·p] (loom/ops/conv_patch_embed.hpp)

template <class T = float, class Dev = CPU>
class PatchEmbed : public Module<T, Dev> {
 public:
  using Tensor = loom::Tensor<T, Dev>;
  PatchEmbed(int64_t patch, int64_t in_chans, int64_t dim, Generator& gen = default_generator())
      : patch_size(patch), in_chans(in_chans), dim(dim) {
    LOOM_CHECK(patch > 0 && in_chans > 0 && dim > 0, "PatchEmbed: patch ", patch, ", channels ", in_chans, ", dim ", dim,
               " must be positive");
    proj = this->register_module("proj",
                                 std::make_shared<Linear<T, Dev>>(LinearOptions(in_chans * patch * patch, dim), gen));
  }
  std::string type_name() const override { return "PatchEmbed"; }

  // x [B, C, H, W] -> [B, L, D]
  Tensor forward(const Tensor& x) const {
    LOOM_CHECK(x.dim() == 4 && x.size(1) == in_chans, "PatchEmbed: input of shape ", x.shape(), " is not [B, ",
               in_chans, ", H, W]");
    if (use_conv) return conv_patch_embed(x, proj->weight, proj->bias, patch_size);
    return proj->forward(patchify_chw(x, patch_size));
  }

  int64_t patch_size, in_chans, dim;
  bool use_conv = false;  // the conv_patch_embed path (cuDNN on CUDA tensors when built with it)
  std::shared_ptr<Linear<T, Dev>> proj;
};

}  // namespace loom::nn
