#pragma once
// Scaled dot-product attention  o = softmax(q·kᵀ · scale) · v  over [B, H, S, D] tensors.
//
// scaled_dot_product_attention is the fused, tiled, online-softmax kernel (flash-attention style):
//   forward  — per (batch·head, query block): loop over key blocks, S = scale·Q_i·K_jᵀ on a tile,
//              running row max and sum, O_i rescaled and accumulated; saves only O and the row
//              log-sum-exp (LSE). The [Sq, Sk] score matrix is never materialized.
//   backward — pre-pass D = rowsum(dO ∘ O); per (batch·head, group of key blocks): for each key
//              block, loop over query blocks, recompute P = exp(S − LSE) on the tile, then
//              dV_j += Pᵀ·dO_i, dS = P ∘ (dO_i·V_jᵀ − D_i), dK_j += scale·dSᵀ·Q_i,
//              dQ_i += scale·dS·K_j (into the group's own dQ partial; partials summed in group
//              order afterwards: deterministic, no atomics, independent of the thread count).
// Tiles are multiplied with loom::blas's serial GEMM (fp32: the packed AVX2/FMA micro-kernel; fp64:
// Eigen); the tile bookkeeping lives in loom/ops/attention_tiles.hpp for the CUDA kernel to reuse.
// Operands are read in place when their rows have unit inner stride (the slices of a permuted qkv
// projection nn::Attention passes do); any other layout is copied once into a contiguous tensor.
// Memory: O(B·H·S·D), never O(S²). bf16 runs through the float kernel. Derivation: docs/attention.md.
//
// attention_reference is the unfused composition (matmul, softmax, matmul; it materializes the
// [B, H, Sq, Sk] scores): the reference the fused kernel is tested and benchmarked against.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "loom/autograd/function.hpp"
#include "loom/core/gemm.hpp"
#include "loom/core/parallel.hpp"
#include "loom/core/tensor.hpp"
#include "loom/ops/attention_tiles.hpp"
#include "loom/ops/elementwise.hpp"
#include "loom/ops/fast_math.hpp"
#include "loom/ops/linalg.hpp"
#include "loom/ops/softmax.hpp"

namespace loom {

// q [B, H, Sq, D], k [B, H, Sk, D], v [B, H, Sk, Dv] -> [B, H, Sq, Dv]; scale defaults to 1/sqrt(D).
template <class T, class Dev>
Tensor<T, Dev> attention_reference(const Tensor<T, Dev>& q, const Tensor<T, Dev>& k, const Tensor<T, Dev>& v,
                                   double scale = 0) {
  LOOM_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "attention: q, k, v must be [B, H, S, D], got ", q.shape(),
             ", ", k.shape(), ", ", v.shape());
  if (scale == 0) scale = 1.0 / std::sqrt(double(q.size(-1)));
  const Tensor<T, Dev> scores = matmul(q, k.transpose(-2, -1)) * scale;  // [B, H, Sq, Sk]
  return matmul(softmax(scores, -1), v);
}

namespace detail::flash {

// Tile sizes (rows of Q per query block, rows of K/V per key block). See docs/performance.md.
inline constexpr int64_t kBlockQ = 64;
inline constexpr int64_t kBlockK = 64;
// The backward splits each head's key blocks into groups until there are at least this many tasks
// (a function of the shape only, so results do not depend on the thread count; each extra group
// costs one [Sq, D] dQ partial per head).
inline constexpr int64_t kMinBackwardTasks = 4;

// One [B, H, S, D] operand read as B·H row-major matrices [S, D] with row stride `ld`.
template <class C>
struct HeadRows {
  const C* data = nullptr;
  int64_t heads = 1, batch_stride = 0, head_stride = 0, ld = 1;
  const C* head(int64_t bh) const { return data + (bh / heads) * batch_stride + (bh % heads) * head_stride; }
};

// t itself when the kernel can read it in place (unit inner stride, rows not overlapping), else a
// contiguous copy.
template <class C>
Tensor<C> readable(const Tensor<C>& t) {
  const bool rows_ok = t.size(3) == 1 || t.stride(3) == 1;
  const bool ld_ok = t.size(2) == 1 || t.stride(2) >= t.size(3);
  return rows_ok && ld_ok ? t : t.contiguous();
}

template <class C>
HeadRows<C> head_rows(const Tensor<C>& t) {  // t readable()
  HeadRows<C> r;
  r.data = t.data();
  r.heads = t.size(1);
  r.batch_stride = t.stride(0);
  r.head_stride = t.stride(1);
  r.ld = t.size(2) == 1 ? t.size(3) : t.stride(2);
  return r;
}

// C_tile = alpha * op(A) * op(B) + beta * C_tile on the calling thread (M, N, K >= 1).
inline void tile_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                      const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  blas::gemm_detail::gemm_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
inline void tile_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
                      int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  blas::gemm_detail::gemm_eigen(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

struct Sizes {
  int64_t bh, sq, sk, d, dv;
};

// o [BH, Sq, Dv] and lse [BH, Sq] (contiguous) from q, k, v.
template <class C>
void forward(const Sizes& n, const HeadRows<C>& q, const HeadRows<C>& k, const HeadRows<C>& v, C scale, C* o,
             C* lse) {
  namespace tiles = attention_tiles;
  const int64_t q_blocks = tiles::block_count(n.sq, kBlockQ), k_blocks = tiles::block_count(n.sk, kBlockK);
  parallel_tasks(n.bh * q_blocks, [&](int64_t task) {
    const int64_t bh = task / q_blocks;
    const tiles::BlockRange rows = tiles::block_range(task % q_blocks, kBlockQ, n.sq);
    const int64_t br = rows.size();
    Tensor<C> scratch = Tensor<C>::empty({2, kBlockQ, kBlockK});
    C* s = scratch.data();                    // [Br, Bc] scores of this tile (then shifted)
    C* p = s + kBlockQ * kBlockK;             // [Br, Bc] exp of the shifted scores
    std::vector<tiles::OnlineSoftmax<C>> state(static_cast<size_t>(br));
    const C* q_i = q.head(bh) + rows.begin * q.ld;  // [Br, D]
    C* o_i = o + (bh * n.sq + rows.begin) * n.dv;   // [Br, Dv]
    for (int64_t kb = 0; kb < k_blocks; ++kb) {
      const tiles::BlockRange cols = tiles::block_range(kb, kBlockK, n.sk);
      const int64_t bc = cols.size();
      const C* k_j = k.head(bh) + cols.begin * k.ld;  // [Bc, D]
      const C* v_j = v.head(bh) + cols.begin * v.ld;  // [Bc, Dv]
      tile_gemm(false, true, br, bc, n.d, scale, q_i, q.ld, k_j, k.ld, C(0), s, bc);
      for (int64_t r = 0; r < br; ++r) {
        C* s_r = s + r * bc;
        C* p_r = p + r * bc;
        const C new_max = tiles::online_softmax_max(state[size_t(r)], *std::max_element(s_r, s_r + bc));
        for (int64_t c = 0; c < bc; ++c) s_r[c] -= new_max;
        exp_block(s_r, p_r, bc);
        C block_sum = 0;
        for (int64_t c = 0; c < bc; ++c) block_sum += p_r[c];
        const C rescale = tiles::online_softmax_update(state[size_t(r)], new_max, block_sum);
        if (kb > 0 && rescale != C(1))  // (the first block overwrites o_i below)
          for (C* x = o_i + r * n.dv; x != o_i + (r + 1) * n.dv; ++x) *x *= rescale;
      }
      tile_gemm(false, false, br, n.dv, bc, C(1), p, bc, v_j, v.ld, kb == 0 ? C(0) : C(1), o_i, n.dv);
    }
    for (int64_t r = 0; r < br; ++r) {
      const C inv = C(1) / state[size_t(r)].sum;
      for (C* x = o_i + r * n.dv; x != o_i + (r + 1) * n.dv; ++x) *x *= inv;
      lse[bh * n.sq + rows.begin + r] = tiles::online_softmax_lse(state[size_t(r)]);
    }
  });
}

// dq [BH, Sq, D], dk [BH, Sk, D], dv [BH, Sk, Dv] (contiguous, zero-filled by the caller) from the
// saved o [BH, Sq, Dv] and lse [BH, Sq] (contiguous) and the output gradient dout.
template <class C>
void backward(const Sizes& n, const HeadRows<C>& q, const HeadRows<C>& k, const HeadRows<C>& v, const C* o,
              const C* lse, const HeadRows<C>& dout, C scale, C* dq, C* dk, C* dv) {
  namespace tiles = attention_tiles;
  const int64_t q_blocks = tiles::block_count(n.sq, kBlockQ), k_blocks = tiles::block_count(n.sk, kBlockK);
  // D_i = sum_d dO[i, d] * O[i, d]  (= sum_j P_ij dP_ij), one per query row.  [BH, Sq]
  Tensor<C> d_rows = Tensor<C>::empty({n.bh, n.sq});
  C* dr = d_rows.data();
  parallel_for(0, n.bh * n.sq, std::max<int64_t>(1, 4096 / std::max<int64_t>(n.dv, 1)), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const C* g = dout.head(i / n.sq) + (i % n.sq) * dout.ld;
      const C* y = o + i * n.dv;
      double acc = 0;
      for (int64_t c = 0; c < n.dv; ++c) acc += double(g[c]) * double(y[c]);
      dr[i] = C(acc);
    }
  });
  // Key blocks of a head are dealt into `groups` tasks; group 0 accumulates its dQ share into dq,
  // every other group into its own partial.
  const int64_t groups = std::clamp<int64_t>((kMinBackwardTasks + n.bh - 1) / n.bh, 1, k_blocks);
  Tensor<C> dq_partial;  // [groups - 1, BH, Sq, D]
  if (groups > 1) dq_partial = Tensor<C>::zeros({groups - 1, n.bh, n.sq, n.d});
  parallel_tasks(n.bh * groups, [&](int64_t task) {
    const int64_t bh = task / groups, g = task % groups;
    C* dq_head = g > 0 ? dq_partial.data() + ((g - 1) * n.bh + bh) * n.sq * n.d : dq + bh * n.sq * n.d;  // [Sq, D]
    Tensor<C> scratch = Tensor<C>::empty({2, kBlockQ, kBlockK});
    C* s = scratch.data();         // [Br, Bc] shifted scores, then dP, then dS
    C* p = s + kBlockQ * kBlockK;  // [Br, Bc] probabilities
    const tiles::BlockRange my_blocks = tiles::group_range(g, groups, k_blocks);
    for (int64_t kb = my_blocks.begin; kb < my_blocks.end; ++kb) {
      const tiles::BlockRange cols = tiles::block_range(kb, kBlockK, n.sk);
      const int64_t bc = cols.size();
      const C* k_j = k.head(bh) + cols.begin * k.ld;   // [Bc, D]
      const C* v_j = v.head(bh) + cols.begin * v.ld;   // [Bc, Dv]
      C* dk_j = dk + (bh * n.sk + cols.begin) * n.d;   // [Bc, D]
      C* dv_j = dv + (bh * n.sk + cols.begin) * n.dv;  // [Bc, Dv]
      for (int64_t qb = 0; qb < q_blocks; ++qb) {
        const tiles::BlockRange rows = tiles::block_range(qb, kBlockQ, n.sq);
        const int64_t br = rows.size();
        const C* q_i = q.head(bh) + rows.begin * q.ld;        // [Br, D]
        const C* do_i = dout.head(bh) + rows.begin * dout.ld;  // [Br, Dv]
        const C* lse_i = lse + bh * n.sq + rows.begin;         // [Br]
        const C* d_i = dr + bh * n.sq + rows.begin;            // [Br]
        C* dq_i = dq_head + rows.begin * n.d;                  // [Br, D]
        // P = exp(scale·Q_i·K_jᵀ − LSE_i)
        tile_gemm(false, true, br, bc, n.d, scale, q_i, q.ld, k_j, k.ld, C(0), s, bc);
        for (int64_t r = 0; r < br; ++r) {
          C* s_r = s + r * bc;
          for (int64_t c = 0; c < bc; ++c) s_r[c] -= lse_i[r];
          exp_block(s_r, p + r * bc, bc);
        }
        tile_gemm(true, false, bc, n.dv, br, C(1), p, bc, do_i, dout.ld, C(1), dv_j, n.dv);  // dV_j += Pᵀ·dO_i
        tile_gemm(false, true, br, bc, n.dv, C(1), do_i, dout.ld, v_j, v.ld, C(0), s, bc);   // dP = dO_i·V_jᵀ
        for (int64_t r = 0; r < br; ++r) {  // dS = P ∘ (dP − D_i)
          C* ds_r = s + r * bc;
          const C* p_r = p + r * bc;
          for (int64_t c = 0; c < bc; ++c) ds_r[c] = p_r[c] * (ds_r[c] - d_i[r]);
        }
        tile_gemm(true, false, bc, n.d, br, scale, s, bc, q_i, q.ld, C(1), dk_j, n.d);  // dK_j += scale·dSᵀ·Q_i
        tile_gemm(false, false, br, n.d, bc, scale, s, bc, k_j, k.ld, C(1), dq_i, n.d);  // dQ_i += scale·dS·K_j
      }
    }
  });
  if (groups > 1) {  // dQ = group 0's share + the other groups' partials, in group order
    const C* part = dq_partial.data();
    const int64_t per_group = n.bh * n.sq * n.d;
    parallel_for(0, per_group, 1 << 14, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        C acc = dq[i];
        for (int64_t g = 0; g + 1 < groups; ++g) acc += part[g * per_group + i];
        dq[i] = acc;
      }
    });
  }
}

inline double resolve_scale(double scale, int64_t head_dim) {
  return scale == 0 ? 1.0 / std::sqrt(double(head_dim)) : scale;
}

template <class T, class Dev>
void check_args(const Tensor<T, Dev>& q, const Tensor<T, Dev>& k, const Tensor<T, Dev>& v, double scale) {
  const char* op = "scaled_dot_product_attention: ";
  LOOM_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, op, "q, k, v must be [B, H, S, D], got q ", q.shape(),
             ", k ", k.shape(), ", v ", v.shape());
  LOOM_CHECK(q.size(0) == k.size(0) && q.size(1) == k.size(1), op, "q ", q.shape(), " and k ", k.shape(),
             " must have the same [B, H] (expand() a shared operand)");
  LOOM_CHECK(k.size(0) == v.size(0) && k.size(1) == v.size(1), op, "k ", k.shape(), " and v ", v.shape(),
             " must have the same [B, H] (expand() a shared operand)");
  LOOM_CHECK(q.size(3) == k.size(3), op, "q ", q.shape(), " and k ", k.shape(), " must have the same head dim D");
  LOOM_CHECK(k.size(2) == v.size(2), op, "k ", k.shape(), " and v ", v.shape(),
             " must have the same sequence length Sk");
  LOOM_CHECK(k.size(2) >= 1, op, "no keys to attend to: k ", k.shape(), ", v ", v.shape());
  LOOM_CHECK(q.size(3) >= 1 && v.size(3) >= 1, op, "head dims must be >= 1, got q ", q.shape(), ", v ", v.shape());
  LOOM_CHECK(std::isfinite(scale), op, "scale must be finite, got ", scale);
}

// The custom autograd function: one node, saving q, k, v (as given), O and the row LSE.
template <class T>
struct FlashAttention {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "FlashAttention: float or double");
  static constexpr const char* name = "FlashAttentionBackward";

  static Tensor<T> forward(autograd::FunctionContext& ctx, const Tensor<T>& q, const Tensor<T>& k,
                           const Tensor<T>& v, double scale) {
    const Tensor<T> qr = readable(q), kr = readable(k), vr = readable(v);
    const int64_t B = q.size(0), H = q.size(1);
    const Sizes n{B * H, q.size(2), k.size(2), q.size(3), v.size(3)};
    Tensor<T> o = Tensor<T>::empty({B, H, n.sq, n.dv});  // [B, H, Sq, Dv]
    Tensor<T> lse = Tensor<T>::empty({B, H, n.sq});      // [B, H, Sq]
    if (o.numel() > 0)
      flash::forward<T>(n, head_rows(qr), head_rows(kr), head_rows(vr), T(scale), o.data(), lse.data());
    ctx.save_for_backward(qr, kr, vr, o, lse);
    ctx.set("scale", scale);
    return o;
  }

  static std::vector<Tensor<T>> backward(autograd::FunctionContext& ctx, const Tensor<T>& grad) {
    const Tensor<T> q = ctx.saved<T>(0), k = ctx.saved<T>(1), v = ctx.saved<T>(2);
    const Tensor<T> o = ctx.saved<T>(3), lse = ctx.saved<T>(4);
    const double scale = ctx.get<double>("scale");
    const int64_t B = q.size(0), H = q.size(1);
    const Sizes n{B * H, q.size(2), k.size(2), q.size(3), v.size(3)};
    Tensor<T> dq = Tensor<T>::zeros(q.shape()), dk = Tensor<T>::zeros(k.shape()), dv = Tensor<T>::zeros(v.shape());
    if (o.numel() > 0) {
      const Tensor<T> g = readable(grad);  // [B, H, Sq, Dv]
      flash::backward<T>(n, head_rows(q), head_rows(k), head_rows(v), o.data(), lse.data(), head_rows(g), T(scale),
                         dq.data(), dk.data(), dv.data());
    }
    return {dq, dk, dv};
  }
};

}  // namespace detail::flash

// Fused attention: q [B, H, Sq, D], k [B, H, Sk, D], v [B, H, Sk, Dv] -> [B, H, Sq, Dv]; scale
// defaults (0) to 1/sqrt(D). Differentiable in q, k, v. Any strides (expanded operands included).
template <class T, class Dev>
Tensor<T, Dev> scaled_dot_product_attention(const Tensor<T, Dev>& q, const Tensor<T, Dev>& k, const Tensor<T, Dev>& v,
                                            double scale = 0) {
  static_assert(Dev::kind == DeviceKind::cpu, "scaled_dot_product_attention: CPU only for now");
  detail::flash::check_args(q, k, v, scale);
  scale = detail::flash::resolve_scale(scale, q.size(3));
  if constexpr (std::is_same_v<T, bf16>) {  // computed in float, rounded once at the end
    return scaled_dot_product_attention(q.template to<float>(), k.template to<float>(), v.template to<float>(), scale)
        .template to<bf16>();
  } else {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "scaled_dot_product_attention: float, double or bf16");
    return autograd::Function<detail::flash::FlashAttention<T>>::apply(q, k, v, scale);
  }
}

}  // namespace loom
