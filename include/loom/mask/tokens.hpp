#pragma once
// Token operations of the MAE, each with its backward:
//   patchify_group / unpatchify_group  image [B, C, H, W] <-> patch targets [B, L, p·p·C]
//   gather_tokens                      x [B, T, D], ids_keep [B, K] -> the visible tokens [B, K, D]
//   unshuffle_tokens                   visible [B, K, D] + mask token -> [B, T, D] by ids_restore
// Gathers never need atomics: backward writes each source row from a fixed set of positions in a
// fixed order, so results are deterministic.
//
// CUDA tensors (float, bf16): patchify_group runs the fused patchify kernel (backward: the
// unpatchify views), gather_tokens the device gather of loom/ops/index.hpp (backward: its
// deterministic column scatter_add), unshuffle_tokens the handwritten unshuffle kernels
// (kernels/patch_tokens.cu; backward needs ids_restore to be a permutation, as the MAE's is:
// each visible row receives exactly one gradient row). Ids are checked on the device.
#include <optional>
#include <type_traits>
#include <vector>

#include "loom/autograd/engine.hpp"
#include "loom/core/device_backend.hpp"
#include "loom/core/parallel.hpp"
#include "loom/core/tensor.hpp"
#include "loom/cuda/mae_tokens.hpp"
#include "loom/ops/index.hpp"

namespace loom::mask {

template <class T, class Dev>
Tensor<T, Dev> unpatchify_group(const Tensor<T, Dev>& patches, int64_t p, int64_t h, int64_t w);

// x [B, C, H, W] -> [B, L, p·p·C]: patches row-major over the grid, each flattened in
// (row, column, channel) order — the MAE reference's patchify (einsum 'nchpwq->nhwpqc').
template <class T, class Dev>
Tensor<T, Dev> patchify_group(const Tensor<T, Dev>& x, int64_t p) {
  LOOM_CHECK(x.dim() == 4, "patchify_group: expected [B, C, H, W], got shape ", x.shape());
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  LOOM_CHECK(p > 0 && H % p == 0 && W % p == 0, "patchify_group: image ", H, "x", W, " is not divisible by patch ", p);
  const int64_t h = H / p, w = W / p;
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    static_assert(loom::detail::cuda_backend_for<T>, "patchify_group on CUDA tensors needs LOOM_WITH_CUDA");
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, bf16>) {
      const Tensor<T, Dev> image = x.contiguous();
      Tensor<T, Dev> out = Tensor<T, Dev>::empty({B, h * w, p * p * C});  // [B, L, p·p·C]
      if (cuda::patchify_tokens(dtype_traits<T>::tag, image.data(), nullptr, out.data(), B, h * w, C, H, W, p)) {
        if (autograd::should_record(x.impl()))
          autograd::record("PatchifyBackward", out, {x.impl()}, [p, h, w](const Tensor<T, Dev>& g) {
            return std::vector<Tensor<T, Dev>>{unpatchify_group(g, p, h, w)};
          });
        return out;
      }
    }  // other shapes and types: the views below, copied by Tensor<T, CUDA>'s own copy_
  }
  return x.reshape({B, C, h, p, w, p}).permute({0, 2, 4, 3, 5, 1}).reshape({B, h * w, p * p * C});
}

// The inverse of patchify_group: [B, L, p·p·C] -> [B, C, h·p, w·p] for a grid of h x w patches.
template <class T, class Dev>
Tensor<T, Dev> unpatchify_group(const Tensor<T, Dev>& patches, int64_t p, int64_t h, int64_t w) {
  LOOM_CHECK(patches.dim() == 3 && patches.size(1) == h * w && p > 0 && patches.size(2) % (p * p) == 0,
             "unpatchify_group: patches of shape ", patches.shape(), " do not fit a ", h, "x", w, " grid of ", p, "x", p,
             " patches");
  const int64_t B = patches.size(0), C = patches.size(2) / (p * p);
  return patches.reshape({B, h, w, p, p, C}).permute({0, 5, 1, 3, 2, 4}).reshape({B, C, h * p, w * p});
}

namespace detail {
template <class T>
void copy_row(T* dst, const T* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
}
template <class T>
void add_row(T* dst, const T* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = T(compute_t<T>(dst[i]) + compute_t<T>(src[i]));
}
// The CUDA form: the same checks, the values tested on the device.
template <class Dev>
void check_ids(const Tensor<int64_t, Dev>& ids, const Shape& tokens, int64_t limit, const char* op, const char* what) {
  LOOM_CHECK(ids.dim() == 2 && ids.size(0) == tokens[0], op, ": ", what, " of shape ", ids.shape(),
             " does not match the batch of tokens ", tokens);
  if (const std::optional<int64_t> v = loom::detail::first_bad_index_on_device(ids, limit))
    loom::detail::fail(op, ": ", what, " holds ", *v, ", outside [0, ", limit, ")");
}
inline void check_ids(const Tensor<int64_t>& ids, const Shape& tokens, int64_t limit, const char* op, const char* what) {
  LOOM_CHECK(ids.dim() == 2 && ids.size(0) == tokens[0], op, ": ", what, " of shape ", ids.shape(),
             " does not match the batch of tokens ", tokens);
  const int64_t* p = ids.data();
  for (int64_t i = 0; i < ids.numel(); ++i)
    LOOM_CHECK(p[i] >= 0 && p[i] < limit, op, ": ", what, " holds ", p[i], ", outside [0, ", limit, ")");
}
}  // namespace detail

// x [B, T, D], ids_keep [B, K] -> [B, K, D] with out[b, k] = x[b, ids_keep[b, k]].
template <class T, class Dev>
Tensor<T, Dev> gather_tokens(const Tensor<T, Dev>& x_in, const Tensor<int64_t, Dev>& ids_in) {
  LOOM_CHECK(x_in.dim() == 3, "gather_tokens: expected tokens [B, T, D], got shape ", x_in.shape());
  const Tensor<T, Dev> x = x_in.contiguous();
  const Tensor<int64_t, Dev> ids = ids_in.contiguous();
  const int64_t B = x.size(0), Tn = x.size(1), D = x.size(2), K = ids.dim() == 2 ? ids.size(1) : 0;
  detail::check_ids(ids, x.shape(), Tn, "gather_tokens", "ids_keep");
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    const Tensor<int64_t, Dev> spread = ids.reshape({B, K, 1}).expand({B, K, D});  // [B, K, D], a view
    Tensor<T, Dev> out = loom::detail::gather_unchecked(x, 1, spread);          // [B, K, D]
    if (autograd::should_record(x_in.impl()))
      autograd::record("GatherTokensBackward", out, {x_in.impl()},
                       [saved_ids = autograd::SavedTensor<int64_t, Dev>(ids, "gather_tokens"), Tn](const Tensor<T, Dev>& g) {
                         const Tensor<int64_t, Dev>& ids = saved_ids.get();  // throws if changed in place
                         const int64_t B = g.size(0), K = g.size(1), D = g.size(2);
                         const Tensor<int64_t, Dev> spread = ids.reshape({B, K, 1}).expand({B, K, D});
                         return std::vector<Tensor<T, Dev>>{
                             loom::detail::scatter_add_unchecked(Tensor<T, Dev>::zeros({B, Tn, D}), 1, spread, g)};
                       });
    return out;
  }
  Tensor<T, Dev> out = Tensor<T, Dev>::empty({B, K, D});  // [B, K, D]
  const T* px = x.data();
  const int64_t* pi = ids.data();
  T* po = out.data();
  parallel_for(0, B * K, std::max<int64_t>(1, 4096 / std::max<int64_t>(D, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) detail::copy_row(po + r * D, px + ((r / K) * Tn + pi[r]) * D, D);
  });
  if (autograd::should_record(x_in.impl())) {
    autograd::record("GatherTokensBackward", out, {x_in.impl()},
                     [saved_ids = autograd::SavedTensor<int64_t, Dev>(ids, "gather_tokens"), Tn](const Tensor<T, Dev>& g_in) {
      const Tensor<int64_t, Dev>& ids = saved_ids.get();  // throws if the ids were changed in place
      const Tensor<T, Dev> g = g_in.contiguous();
      const int64_t B = g.size(0), K = g.size(1), D = g.size(2);
      Tensor<T, Dev> gx = Tensor<T, Dev>::zeros({B, Tn, D});  // [B, T, D]
      const T* pg = g.data();
      const int64_t* pi = ids.data();
      T* pgx = gx.data();
      parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {  // one sample per task: rows never shared
        for (int64_t b = b0; b < b1; ++b)
          for (int64_t k = 0; k < K; ++k) detail::add_row(pgx + (b * Tn + pi[b * K + k]) * D, pg + (b * K + k) * D, D);
      });
      return std::vector<Tensor<T, Dev>>{gx};
    });
  }
  return out;
}

namespace detail {
// unshuffle_tokens' backward: g [B, T, D] -> the gradients of the visible tokens [B, K, D] and of
// the mask token (token_shape), the sum of the masked positions' rows in a fixed order. CUDA
// tensors run kernels/patch_tokens.cu (fp32 sums); the CPU sums per sample in double.
template <class T, class Dev>
std::vector<Tensor<T, Dev>> unshuffle_tokens_backward(const Tensor<T, Dev>& g, const Tensor<int64_t, Dev>& ids,
                                                      int64_t K, const Shape& token_shape) {
  const int64_t B = g.size(0), Tn = g.size(1), D = g.size(2);
  Tensor<T, Dev> gv = Tensor<T, Dev>::zeros({B, K, D});  // [B, K, D]
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    Tensor<float, Dev> gt = Tensor<float, Dev>::zeros({D});  // [D], summed in fp32
    if (g.numel() > 0)
      cuda::unshuffle_tokens_backward(dtype_traits<T>::tag, g.data(), ids.data(), gv.data(), gt.data(), B, K, Tn, D);
    return std::vector<Tensor<T, Dev>>{gv, gt.template to<T>().reshape(token_shape)};
  } else {
    std::vector<double> per_sample(static_cast<size_t>(B * D), 0.0);  // mask-token partial sums
    const T* pg = g.data();
    const int64_t* pi = ids.data();
    T* pgv = gv.data();
    parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b)
        for (int64_t t = 0; t < Tn; ++t) {
          const int64_t j = pi[b * Tn + t];
          const T* row = pg + (b * Tn + t) * D;
          if (j < K) {
            add_row(pgv + (b * K + j) * D, row, D);
          } else {
            for (int64_t d = 0; d < D; ++d) per_sample[size_t(b * D + d)] += double(compute_t<T>(row[d]));
          }
        }
    });
    Tensor<T, Dev> gt = Tensor<T, Dev>::empty(token_shape);
    for (int64_t d = 0; d < D; ++d) {
      double s = 0;
      for (int64_t b = 0; b < B; ++b) s += per_sample[size_t(b * D + d)];  // fixed order
      gt.data()[d] = T(static_cast<compute_t<T>>(s));
    }
    return std::vector<Tensor<T, Dev>>{gv, gt};
  }
}
}  // namespace detail

// visible [B, K, D], mask_token [1, 1, D], ids_restore [B, T] -> [B, T, D]:
// out[b, t] = visible[b, j] if j = ids_restore[b, t] < K, else mask_token.
template <class T, class Dev>
Tensor<T, Dev> unshuffle_tokens(const Tensor<T, Dev>& visible_in, const Tensor<T, Dev>& mask_token_in,
                                const Tensor<int64_t, Dev>& ids_in) {
  LOOM_CHECK(visible_in.dim() == 3, "unshuffle_tokens: expected visible tokens [B, K, D], got shape ", visible_in.shape());
  const int64_t B = visible_in.size(0), K = visible_in.size(1), D = visible_in.size(2);
  LOOM_CHECK(mask_token_in.numel() == D, "unshuffle_tokens: mask token of shape ", mask_token_in.shape(),
             " does not match token dim ", D, " of visible tokens ", visible_in.shape());
  const Tensor<T, Dev> vis = visible_in.contiguous(), tok = mask_token_in.contiguous();
  const Tensor<int64_t, Dev> ids = ids_in.contiguous();
  const int64_t Tn = ids.dim() == 2 ? ids.size(1) : 0;
  detail::check_ids(ids, vis.shape(), Tn, "unshuffle_tokens", "ids_restore");
  LOOM_CHECK(Tn >= K, "unshuffle_tokens: ids_restore of shape ", ids.shape(), ": ", Tn, " tokens cannot hold the ", K,
             " visible ones of ", vis.shape());
  Tensor<T, Dev> out = Tensor<T, Dev>::empty({B, Tn, D});  // [B, T, D]
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    static_assert(loom::detail::cuda_backend_for<T>, "unshuffle_tokens on CUDA tensors needs LOOM_WITH_CUDA");
    if (out.numel() > 0)
      cuda::unshuffle_tokens_forward(dtype_traits<T>::tag, vis.data(), tok.data(), ids.data(), out.data(), B, K, Tn, D);
  } else {
    const T *pv = vis.data(), *pt = tok.data();
    const int64_t* pi = ids.data();
    T* po = out.data();
    parallel_for(0, B * Tn, std::max<int64_t>(1, 4096 / std::max<int64_t>(D, 1)), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t j = pi[r];
        detail::copy_row(po + r * D, j < K ? pv + ((r / Tn) * K + j) * D : pt, D);
      }
    });
  }
  if (autograd::should_record(visible_in.impl(), mask_token_in.impl())) {
    autograd::record("UnshuffleTokensBackward", out, {visible_in.impl(), mask_token_in.impl()},
                     [saved_ids = autograd::SavedTensor<int64_t, Dev>(ids, "unshuffle_tokens"), K,
                      token_shape = mask_token_in.shape()](const Tensor<T, Dev>& g_in) {
                       const Tensor<int64_t, Dev>& ids = saved_ids.get();  // throws if changed in place
                       return detail::unshuffle_tokens_backward(g_in.contiguous(), ids, K, token_shape);
                     });
  }
  return out;
}

}  // namespace loom::mask
