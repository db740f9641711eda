#pragma once
// PatchEmbed: the strided p×p convolution of ViT written as a Linear over flattened patches.
// A patch is flattened in (channel, row, column) order — the order of a conv weight [D, C, p, p]
// flattened — so timm's `patch_embed.proj.weight` loads by a reshape to [D, C·p·p].
#include "loom/nn/linear.hpp"

namespace loom::nn {

// x [B, C, H, W] -> patches [B, (H/p)·(W/p), C·p·p], row-major over the patch grid.
template <class T, class Dev>
Tensor<T, Dev> patchify_chw(const Tensor<T, Dev>& x, int64_t p) {
  LOOM_CHECK(x.dim() == 4, "patchify: expected an image batch [B, C, H, W], got shape ", x.shape());
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  LOOM_CHECK(p > 0 && H % p == 0 && W % p == 0, "patchify: image ", H, "x", W, " is not divisible by patch size ", p);
  const int64_t h = H / p, w = W / p;
  return x.reshape({B, C, h, p, w, p})   // [B, C, h, p, w, p]
      .permute({0, 2, 4, 1, 3, 5})       // [B, h, w, C, p, p]
      .reshape({B, h * w, C * p * p});   // [B, L, C·p·p]
}

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
    return proj->forward(patchify_chw(x, patch_size));
  }

  int64_t patch_size, in_chans, dim;
  std::shared_ptr<Linear<T, Dev>> proj;
};

}  // namespace loom::nn
