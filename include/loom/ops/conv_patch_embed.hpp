#pragma once
// conv_patch_embed: ViT's patch embedding — a p×p convolution with stride p, no padding — as one op.
//   x [B, C, H, W], weight [D, C·p·p] (nn::PatchEmbed's Linear weight; [D, C, p, p] also taken),
//   bias [D] or undefined  ->  [B, L, D], L = (H/p)·(W/p), tokens row-major over the patch grid.
// Paths (identical results up to summation order):
//   - CPU tensors, and CUDA tensors in builds without cuDNN: patchify + linear, the composite
//     nn::PatchEmbed uses by default (differentiable through those ops).
//   - CUDA tensors with cuDNN (LOOM_WITH_CUDNN): one autograd node over cuDNN's convolution
//     (kernels/cudnn_conv.cpp): forward writes [B, D, h, w], then one strided add moves it to
//     [B, L, D] with the bias; backward makes dy [B, D, h, w] from the [B, L, D] gradient and runs
//     cudnnConvolutionBackwardFilter (dw), BackwardData (dx, only when x needs it) and BackwardBias
//     (db; bf16: a sum over the tokens). float and bf16.
// nn::PatchEmbed takes this path when its `use_conv` is set (docs/cuda.md "cuDNN").
#include "loom/autograd/function.hpp"
#include "loom/cuda/cudnn_conv.hpp"
#include "loom/cuda/cudnn_layout.hpp"
#include "loom/ops/elementwise.hpp"
#include "loom/ops/linalg.hpp"
#include "loom/ops/reduce.hpp"

namespace loom {

// x [B, C, H, W] -> patches [B, (H/p)·(W/p), C·p·p], each flattened in (channel, row, column) order.
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

namespace detail {

#if LOOM_WITH_CUDNN
template <class T>
struct ConvPatchEmbedCudnn {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, bf16>, "ConvPatchEmbedCudnn: float or bf16");
  static constexpr const char* name = "ConvPatchEmbedBackward";
  using Dev = CUDA;
  static constexpr DType kType = dtype_traits<T>::tag;

  // bias is always defined here (zeros standing in for "no bias", which then gets no gradient).
  static Tensor<T, Dev> forward(autograd::FunctionContext& ctx, const Tensor<T, Dev>& x, const Tensor<T, Dev>& weight,
                                const Tensor<T, Dev>& bias, int64_t p) {
    const cuda::PatchConvDims d = cuda::patch_conv_dims(x.shape(), weight.shape(), p);
    const Tensor<T, Dev> xc = x.contiguous(), wc = weight.contiguous();  // [B, C, H, W], [D, C·p·p]
    Tensor<T, Dev> y = Tensor<T, Dev>::empty({d.batch, d.dim, d.grid_h(), d.grid_w()});  // [B, D, h, w]
    if (y.numel() > 0) cuda::cudnn_patch_conv_forward(kType, d, xc.data(), wc.data(), y.data());
    ctx.save_for_backward(xc, wc);
    ctx.set("patch", p);
    // [B, h, w, D] + bias [D]: one strided pass that also makes the token layout
    return (y.permute({0, 2, 3, 1}) + bias).reshape({d.batch, d.tokens(), d.dim});  // [B, L, D]
  }

  static std::vector<Tensor<T, Dev>> backward(autograd::FunctionContext& ctx, const Tensor<T, Dev>& grad) {
    const Tensor<T, Dev> x = ctx.saved<T, Dev>(0), w = ctx.saved<T, Dev>(1);
    const cuda::PatchConvDims d = cuda::patch_conv_dims(x.shape(), w.shape(), ctx.get<int64_t>("patch"));
    if (grad.numel() == 0)  // no patches (B = 0 or an image smaller than a patch): nothing flows back
      return {ctx.needs_input_grad(0) ? Tensor<T, Dev>::zeros(x.shape()) : Tensor<T, Dev>(),
              ctx.needs_input_grad(1) ? Tensor<T, Dev>::zeros(w.shape()) : Tensor<T, Dev>(),
              ctx.needs_input_grad(2) ? Tensor<T, Dev>::zeros({d.dim}) : Tensor<T, Dev>()};
    const Tensor<T, Dev> dy = grad.reshape({d.batch, d.grid_h(), d.grid_w(), d.dim})  // [B, h, w, D]
                                  .permute({0, 3, 1, 2})
                                  .contiguous();  // [B, D, h, w]
    Tensor<T, Dev> dx, dw, db;
    if (ctx.needs_input_grad(0)) {
      dx = Tensor<T, Dev>::empty(x.shape());
      cuda::cudnn_patch_conv_backward_data(kType, d, w.data(), dy.data(), dx.data());
    }
    if (ctx.needs_input_grad(1)) {
      dw = Tensor<T, Dev>::empty(w.shape());
      cuda::cudnn_patch_conv_backward_filter(kType, d, x.data(), dy.data(), dw.data());
    }
    if (ctx.needs_input_grad(2)) {
      if constexpr (std::is_same_v<T, float>) {
        db = Tensor<T, Dev>::empty({d.dim});
        cuda::cudnn_patch_conv_backward_bias(kType, d, dy.data(), db.data());
      } else {
        db = sum(grad.reshape({d.batch * d.tokens(), d.dim}), {0});  // [D]
      }
    }
    return {dx, dw, db};
  }
};
#endif

}  // namespace detail

template <class T, class Dev>
Tensor<T, Dev> conv_patch_embed(const Tensor<T, Dev>& x, const Tensor<T, Dev>& weight, const Tensor<T, Dev>& bias,
                                int64_t p) {
  const cuda::PatchConvDims d = cuda::patch_conv_dims(x.shape(), weight.shape(), p);
  LOOM_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == d.dim), "conv_patch_embed: bias ", bias.shape(),
             " is not [", d.dim, "]");
#if LOOM_WITH_CUDNN
  if constexpr (Tensor<T, Dev>::kOnDevice && (std::is_same_v<T, float> || std::is_same_v<T, bf16>)) {
    const Tensor<T, Dev> b = bias.defined() ? bias : Tensor<T, Dev>::zeros({d.dim});
    return autograd::Function<detail::ConvPatchEmbedCudnn<T>>::apply(x, weight, b, p);
  }
#endif
  const Tensor<T, Dev> w2 = weight.dim() == 2 ? weight : weight.reshape({d.dim, d.channels * p * p});  // [D, C·p·p]
  return linear(patchify_chw(x, p), w2, bias);  // [B, L, D]
}

}  // namespace loom
