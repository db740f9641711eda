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
//              dQ_i += scale·dS·K_j (group 0 into dQ, every other group into its own partial,
//              summed in group order afterwards: deterministic, no atomics, the same for any
//              thread count).
// Tiles are multiplied with loom::blas's packed AVX2/FMA GEMM macro-kernel (fp64: Eigen), each
// operand packed once per task; the tile bookkeeping and the online softmax live in
// loom/ops/attention_tiles.hpp, shared with the CUDA kernels.
// Operands are read in place when their rows have unit inner stride (the slices of a permuted qkv
// projection nn::Attention passes do); any other layout is copied once into a contiguous tensor.
// Memory: O(B·H·S·D), never O(S²). bf16 runs through the float kernel. Derivation: docs/attention.md.
//
// CUDA tensors run the handwritten kernels (kernels/flash_attention.cu, fp32 on CUDA cores;
// flash_attention_bf16.cu, bf16 on tensor cores with fp32 accumulation) through the same custom
// autograd function shape: forward saves O and the fp32 LSE, backward runs the D = rowsum(dO ∘ O)
// pre-pass and the deterministic dQ / dK / dV kernels. They take [BH, S, D] contiguous with
// Dv = D <= 128, so other layouts are copied once; float64 is not supported there.
//
// attention_reference is the unfused composition (matmul, softmax, matmul; it materializes the
// [B, H, Sq, Sk] scores): the reference the fused kernel is tested and benchmarked against.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include "loom/autograd/function.hpp"
#include "loom/core/gemm.hpp"
#include "loom/core/parallel.hpp"
#include "loom/core/tensor.hpp"
#include "loom/ops/attention_tiles.hpp"
#include "loom/ops/elementwise.hpp"
#include "loom/ops/linalg.hpp"
#include "loom/ops/softmax.hpp"

#if LOOM_WITH_CUDA
#include "loom/cuda/attention_backend.hpp"
#include "loom/cuda/cudnn_attention.hpp"
#include "loom/cuda/flash_attention.hpp"  // plain C++ declarations of the device kernels (kernels/, loom::kernels)
#endif

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

// Tile sizes: rows of Q per query block, rows of K/V per key block. 96 is a whole number of the
// GEMM micro-kernel's 6-row and 16-column panels, so full tiles have no edge panels; 96 x 96
// measured best of 64 x 64, 48 x 96 and 96 x 96 (docs/performance.md, "Attention (CPU)").
inline constexpr int64_t kBlockQ = 96;
inline constexpr int64_t kBlockK = 96;
// Forward and backward split each head's query / key blocks into chunks until there are at least
// this many tasks: a function of the shape only, so results do not depend on the thread count
// (each extra backward chunk costs one [Sq, D] dQ partial per head).
inline constexpr int64_t kMinTasks = 4;

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

// How tiles are multiplied. An operand is first "packed" (once, where it is reused across many
// tiles), then multiplied from packed form. fp32 packs into loom::blas's GEMM panels (MR-row
// panels of A, NR-column panels of B) and runs its AVX2/FMA macro-kernel directly. On a 96x96x64
// tile that measured 84-88 GFLOP/s per core, against 72-77 for a full GEMM call per tile (which
// packs both operands every time), 78-80 for hand-written AVX2 outer products and 29 for AVX2 dot
// products (docs/performance.md). fp64 (tests, gradcheck) packs by copying op(X) row-major and
// calls Eigen.
// Buffer sizes are in elements, rounded to 16 (64 bytes) so sub-buffers stay aligned.
template <class C>
struct TileEngine;

template <>
struct TileEngine<float> {
  static constexpr int64_t round16(int64_t x) { return (x + 15) / 16 * 16; }
  static int64_t a_size(int64_t m, int64_t k) {
    using blas::gemm_detail::MR;
    return round16((m + MR - 1) / MR * MR * k + 8);
  }
  static int64_t b_size(int64_t k, int64_t n) { return round16(k * round16(n)); }
  // op(A) [m, k]: A stored [m, k] (row stride ld), or [k, m] when trans.
  static void pack_a(bool trans, int64_t m, int64_t k, const float* a, int64_t ld, float* out) {
    blas::gemm_detail::pack_a(trans, m, k, a, ld, out);
  }
  // op(B) [k, n]: B stored [k, n] (row stride ld), or [n, k] when trans.
  static void pack_b(bool trans, int64_t k, int64_t n, const float* b, int64_t ld, float* out) {
    blas::gemm_detail::pack_b(trans, k, n, b, ld, out);
  }
  // c [m, n] = alpha * A·B + beta * c from packed operands.
  static void multiply(int64_t m, int64_t n, int64_t k, float alpha, const float* pa, const float* pb, float beta,
                       float* c, int64_t ldc) {
    blas::gemm_detail::macro_kernel(m, n, k, pa, pb, c, ldc, alpha, beta, blas::gemm_detail::RegionPrefetch());
  }
};

template <>
struct TileEngine<double> {
  static constexpr int64_t round16(int64_t x) { return (x + 15) / 16 * 16; }
  static int64_t a_size(int64_t m, int64_t k) { return round16(m * k); }
  static int64_t b_size(int64_t k, int64_t n) { return round16(k * n); }
  static void pack_a(bool trans, int64_t m, int64_t k, const double* a, int64_t ld, double* out) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < k; ++j) out[i * k + j] = trans ? a[j * ld + i] : a[i * ld + j];
  }
  static void pack_b(bool trans, int64_t k, int64_t n, const double* b, int64_t ld, double* out) {
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < n; ++j) out[i * n + j] = trans ? b[j * ld + i] : b[i * ld + j];
  }
  static void multiply(int64_t m, int64_t n, int64_t k, double alpha, const double* pa, const double* pb, double beta,
                       double* c, int64_t ldc) {
    blas::gemm_detail::gemm_eigen(false, false, m, n, k, alpha, pa, k, pb, n, beta, c, ldc);
  }
};

// Carves consecutive 64-byte-aligned buffers out of one scratch tensor (sizes from TileEngine).
template <class C>
struct Carver {
  C* next;
  C* take(int64_t elements) {
    C* p = next;
    next += elements;
    return p;
  }
};

// ---- row kernels on one tile row -----------------------------------------------------------------
// max of x[0, n)
template <class C>
C row_max(const C* x, int64_t n) {
  C m = x[0];
  for (int64_t i = 1; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}
// p[i] = exp(s[i] - shift) for i in [0, n); returns the sum of the p[i]. s and p must not alias.
template <class C>
C exp_shifted(const C* s, C shift, C* p, int64_t n) {
  C sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += (p[i] = std::exp(s[i] - shift));
  return sum;
}

#if defined(__AVX2__) && defined(__FMA__)
// exp of 8 floats, |error| about 1 ulp for x in [-87.3, 88]; x < -87.3 (and -inf) gives 0, NaN
// stays NaN. Range reduction exp(x) = 2^k · exp(r), k = round(x·log2 e), |r| <= ln2/2, and a
// degree-6 Taylor polynomial for exp(r) (truncation error r^7/7! < 1.2e-7).
inline __m256 exp8(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.3f), hi = _mm256_set1_ps(88.0f);
  __m256 xc = _mm256_max_ps(lo, _mm256_min_ps(hi, x));  // operand order keeps NaN (minps returns the 2nd)
  const __m256 k = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), xc);  // ln 2 split in two parts
  r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 poly = _mm256_set1_ps(1.f / 720);
  poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(1.f / 120));
  poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(1.f / 24));
  poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(1.f / 6));
  poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(0.5f));
  poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(1.f));
  poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(1.f));
  const __m256i pow2k = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
  const __m256 y = _mm256_mul_ps(poly, _mm256_castsi256_ps(pow2k));
  return _mm256_andnot_ps(_mm256_cmp_ps(x, lo, _CMP_LT_OQ), y);
}

template <>
inline float row_max<float>(const float* x, int64_t n) {
  int64_t i = 0;
  float m = x[0];
  if (n >= 8) {
    __m256 v = _mm256_loadu_ps(x);
    for (i = 8; i + 8 <= n; i += 8) v = _mm256_max_ps(v, _mm256_loadu_ps(x + i));
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, v);
    for (float l : lanes) m = l > m ? l : m;
  }
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

template <>
inline float exp_shifted<float>(const float* s, float shift, float* p, int64_t n) {
  const __m256 sh = _mm256_set1_ps(shift);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + i), sh));
    _mm256_storeu_ps(p + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  if (i < n) {  // tail: padded lanes read -inf, whose exp is 0
    alignas(32) float in[8], out[8];
    for (int64_t j = 0; j < 8; ++j) in[j] = i + j < n ? s[i + j] - shift : -INFINITY;
    const __m256 e = exp8(_mm256_load_ps(in));
    _mm256_store_ps(out, e);
    for (int64_t j = 0; i + j < n; ++j) p[i + j] = out[j];
    acc = _mm256_add_ps(acc, e);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  return ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
}
#endif

struct Sizes {
  int64_t bh, sq, sk, d, dv;
};

// o [BH, Sq, Dv] and lse [BH, Sq] (contiguous) from q, k, v. One task per (head, chunk of query
// blocks); a task packs its head's K and V blocks once, then streams its query blocks over them.
template <class C>
void forward(const Sizes& n, const HeadRows<C>& q, const HeadRows<C>& k, const HeadRows<C>& v, C scale, C* o,
             C* lse) {
  namespace tiles = attention_tiles;
  using E = TileEngine<C>;
  const int64_t q_blocks = tiles::block_count(n.sq, kBlockQ), k_blocks = tiles::block_count(n.sk, kBlockK);
  const int64_t chunks = std::clamp<int64_t>((kMinTasks + n.bh - 1) / n.bh, 1, q_blocks);
  const int64_t k_size = E::b_size(n.d, kBlockK), v_size = E::b_size(kBlockK, n.dv);
  const int64_t scratch_size = k_blocks * (k_size + v_size) + E::a_size(kBlockQ, n.d) +
                               E::a_size(kBlockQ, kBlockK) + 2 * kBlockQ * kBlockK;
  parallel_tasks(n.bh * chunks, [&](int64_t task) {
    const int64_t bh = task / chunks;
    const tiles::BlockRange my_blocks = tiles::group_range(task % chunks, chunks, q_blocks);
    Tensor<C> scratch = Tensor<C>::empty({scratch_size});
    Carver<C> carve{scratch.data()};
    C* packed_kt = carve.take(k_blocks * k_size);  // K_jᵀ [D, Bc] per key block
    C* packed_v = carve.take(k_blocks * v_size);   // V_j [Bc, Dv] per key block
    C* packed_q = carve.take(E::a_size(kBlockQ, n.d));
    C* packed_p = carve.take(E::a_size(kBlockQ, kBlockK));
    C* s = carve.take(kBlockQ * kBlockK);  // [Br, Bc] scores of this tile
    C* p = carve.take(kBlockQ * kBlockK);  // [Br, Bc] exp(scores − running max)
    for (int64_t kb = 0; kb < k_blocks; ++kb) {
      const tiles::BlockRange cols = tiles::block_range(kb, kBlockK, n.sk);
      E::pack_b(true, n.d, cols.size(), k.head(bh) + cols.begin * k.ld, k.ld, packed_kt + kb * k_size);
      E::pack_b(false, cols.size(), n.dv, v.head(bh) + cols.begin * v.ld, v.ld, packed_v + kb * v_size);
    }
    std::vector<tiles::OnlineSoftmax<C>> state(static_cast<size_t>(kBlockQ));
    for (int64_t qb = my_blocks.begin; qb < my_blocks.end; ++qb) {
      const tiles::BlockRange rows = tiles::block_range(qb, kBlockQ, n.sq);
      const int64_t br = rows.size();
      C* o_i = o + (bh * n.sq + rows.begin) * n.dv;  // [Br, Dv]
      E::pack_a(false, br, n.d, q.head(bh) + rows.begin * q.ld, q.ld, packed_q);
      std::fill(state.begin(), state.end(), tiles::OnlineSoftmax<C>{});
      for (int64_t kb = 0; kb < k_blocks; ++kb) {
        const int64_t bc = tiles::block_range(kb, kBlockK, n.sk).size();
        E::multiply(br, bc, n.d, scale, packed_q, packed_kt + kb * k_size, C(0), s, bc);  // S = scale·Q_i·K_jᵀ
        for (int64_t r = 0; r < br; ++r) {
          tiles::OnlineSoftmax<C>& row = state[size_t(r)];
          const C rescale = tiles::rescale_for_tile(row, row_max(s + r * bc, bc));
          tiles::accumulate_weight_sum(row, exp_shifted(s + r * bc, row.max, p + r * bc, bc));
          if (kb > 0 && rescale != C(1))  // (the first block overwrites o_i below)
            for (C* x = o_i + r * n.dv; x != o_i + (r + 1) * n.dv; ++x) *x *= rescale;
        }
        E::pack_a(false, br, bc, p, bc, packed_p);
        E::multiply(br, n.dv, bc, C(1), packed_p, packed_v + kb * v_size, kb == 0 ? C(0) : C(1), o_i, n.dv);  // O_i += P·V_j
      }
      for (int64_t r = 0; r < br; ++r) {
        const C inv = C(1) / state[size_t(r)].sum;
        for (C* x = o_i + r * n.dv; x != o_i + (r + 1) * n.dv; ++x) *x *= inv;
        lse[bh * n.sq + rows.begin + r] = tiles::log_sum_exp(state[size_t(r)]);
      }
    }
  });
}

// dq [BH, Sq, D], dk [BH, Sk, D], dv [BH, Sk, Dv] (contiguous; every element is written, the first
// contribution with beta = 0, so they need no zero-fill) from the saved o [BH, Sq, Dv] and
// lse [BH, Sq] (contiguous) and the output gradient dout. Requires Sq >= 1.
template <class C>
void backward(const Sizes& n, const HeadRows<C>& q, const HeadRows<C>& k, const HeadRows<C>& v, const C* o,
              const C* lse, const HeadRows<C>& dout, C scale, C* dq, C* dk, C* dv) {
  namespace tiles = attention_tiles;
  using E = TileEngine<C>;
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
  const int64_t groups = std::clamp<int64_t>((kMinTasks + n.bh - 1) / n.bh, 1, k_blocks);
  Tensor<C> dq_partial;  // [groups - 1, BH, Sq, D]; every group owns >= 1 key block, so all is written
  if (groups > 1) dq_partial = Tensor<C>::empty({groups - 1, n.bh, n.sq, n.d});
  // Per query block, packed once per task: Q_i and dO_i as left operands (kc = D, Dv) and as right
  // operands (kc = Br); per key block: K_jᵀ, V_jᵀ, K_j as right operands; per tile: Pᵀ, dSᵀ, dS.
  const int64_t qa_size = E::a_size(kBlockQ, n.d), qb_size = E::b_size(kBlockQ, n.d);
  const int64_t da_size = E::a_size(kBlockQ, n.dv), db_size = E::b_size(kBlockQ, n.dv);
  const int64_t tile_pack_size = std::max(E::a_size(kBlockK, kBlockQ), E::a_size(kBlockQ, kBlockK));
  const int64_t scratch_size = q_blocks * (qa_size + qb_size + da_size + db_size) + E::b_size(n.d, kBlockK) +
                               E::b_size(n.dv, kBlockK) + E::b_size(kBlockK, n.d) + tile_pack_size +
                               2 * kBlockQ * kBlockK;
  parallel_tasks(n.bh * groups, [&](int64_t task) {
    const int64_t bh = task / groups, g = task % groups;
    C* dq_head = g > 0 ? dq_partial.data() + ((g - 1) * n.bh + bh) * n.sq * n.d : dq + bh * n.sq * n.d;  // [Sq, D]
    Tensor<C> scratch = Tensor<C>::empty({scratch_size});
    Carver<C> carve{scratch.data()};
    C* q_as_a = carve.take(q_blocks * qa_size);
    C* q_as_b = carve.take(q_blocks * qb_size);
    C* do_as_a = carve.take(q_blocks * da_size);
    C* do_as_b = carve.take(q_blocks * db_size);
    C* kt = carve.take(E::b_size(n.d, kBlockK));   // K_jᵀ [D, Bc]
    C* vt = carve.take(E::b_size(n.dv, kBlockK));  // V_jᵀ [Dv, Bc]
    C* kn = carve.take(E::b_size(kBlockK, n.d));   // K_j [Bc, D]
    C* packed_tile = carve.take(tile_pack_size);  // Pᵀ, then dSᵀ, then dS (each used before the next)
    C* s = carve.take(kBlockQ * kBlockK);  // [Br, Bc] scores, then dP, then dS
    C* p = carve.take(kBlockQ * kBlockK);  // [Br, Bc] probabilities
    for (int64_t qb = 0; qb < q_blocks; ++qb) {
      const tiles::BlockRange rows = tiles::block_range(qb, kBlockQ, n.sq);
      const C* q_i = q.head(bh) + rows.begin * q.ld;
      const C* do_i = dout.head(bh) + rows.begin * dout.ld;
      E::pack_a(false, rows.size(), n.d, q_i, q.ld, q_as_a + qb * qa_size);
      E::pack_b(false, rows.size(), n.d, q_i, q.ld, q_as_b + qb * qb_size);
      E::pack_a(false, rows.size(), n.dv, do_i, dout.ld, do_as_a + qb * da_size);
      E::pack_b(false, rows.size(), n.dv, do_i, dout.ld, do_as_b + qb * db_size);
    }
    const tiles::BlockRange my_blocks = tiles::group_range(g, groups, k_blocks);
    for (int64_t kb = my_blocks.begin; kb < my_blocks.end; ++kb) {
      const tiles::BlockRange cols = tiles::block_range(kb, kBlockK, n.sk);
      const int64_t bc = cols.size();
      const C* k_j = k.head(bh) + cols.begin * k.ld;   // [Bc, D]
      const C* v_j = v.head(bh) + cols.begin * v.ld;   // [Bc, Dv]
      C* dk_j = dk + (bh * n.sk + cols.begin) * n.d;   // [Bc, D]
      C* dv_j = dv + (bh * n.sk + cols.begin) * n.dv;  // [Bc, Dv]
      E::pack_b(true, n.d, bc, k_j, k.ld, kt);
      E::pack_b(true, n.dv, bc, v_j, v.ld, vt);
      E::pack_b(false, bc, n.d, k_j, k.ld, kn);
      for (int64_t qb = 0; qb < q_blocks; ++qb) {
        const tiles::BlockRange rows = tiles::block_range(qb, kBlockQ, n.sq);
        const int64_t br = rows.size();
        const C* lse_i = lse + bh * n.sq + rows.begin;  // [Br]
        const C* d_i = dr + bh * n.sq + rows.begin;     // [Br]
        C* dq_i = dq_head + rows.begin * n.d;           // [Br, D]
        // P = exp(scale·Q_i·K_jᵀ − LSE_i)
        E::multiply(br, bc, n.d, scale, q_as_a + qb * qa_size, kt, C(0), s, bc);
        for (int64_t r = 0; r < br; ++r) exp_shifted(s + r * bc, lse_i[r], p + r * bc, bc);
        E::pack_a(true, bc, br, p, bc, packed_tile);
        const C first_q = qb == 0 ? C(0) : C(1), first_k = kb == my_blocks.begin ? C(0) : C(1);
        E::multiply(bc, n.dv, br, C(1), packed_tile, do_as_b + qb * db_size, first_q, dv_j, n.dv);  // dV_j += Pᵀ·dO_i
        E::multiply(br, bc, n.dv, C(1), do_as_a + qb * da_size, vt, C(0), s, bc);       // dP = dO_i·V_jᵀ
        for (int64_t r = 0; r < br; ++r) {  // dS = P ∘ (dP − D_i)
          C* ds_r = s + r * bc;
          const C* p_r = p + r * bc;
          for (int64_t c = 0; c < bc; ++c) ds_r[c] = p_r[c] * (ds_r[c] - d_i[r]);
        }
        E::pack_a(true, bc, br, s, bc, packed_tile);
        E::multiply(bc, n.d, br, scale, packed_tile, q_as_b + qb * qb_size, first_q, dk_j, n.d);  // dK_j += scale·dSᵀ·Q_i
        E::pack_a(false, br, bc, s, bc, packed_tile);
        E::multiply(br, n.d, bc, scale, packed_tile, kn, first_k, dq_i, n.d);  // dQ_i += scale·dS·K_j
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
    if (o.numel() == 0)  // no queries (or no heads): nothing reaches k and v
      return {Tensor<T>::zeros(q.shape()), Tensor<T>::zeros(k.shape()), Tensor<T>::zeros(v.shape())};
    Tensor<T> dq = Tensor<T>::empty(q.shape()), dk = Tensor<T>::empty(k.shape()), dv = Tensor<T>::empty(v.shape());
    const Tensor<T> g = readable(grad);  // [B, H, Sq, Dv]
    flash::backward<T>(n, head_rows(q), head_rows(k), head_rows(v), o.data(), lse.data(), head_rows(g), T(scale),
                       dq.data(), dk.data(), dv.data());
    return {dq, dk, dv};
  }
};

// The CUDA tensors' counterpart of FlashAttention (T = float or bf16), defined with the backend.
template <class T>
struct FlashAttentionCuda;

#if LOOM_WITH_CUDA
template <class T>
struct FlashAttentionCuda {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, bf16>, "FlashAttentionCuda: float or bf16");
  static constexpr const char* name = "FlashAttentionBackward";
  using Dev = CUDA;

  static kernels::AttentionDims dims(const Tensor<T, Dev>& q, const Tensor<T, Dev>& k, double scale) {
    return kernels::AttentionDims{q.size(0) * q.size(1), q.size(2), k.size(2), int(q.size(3)), float(scale)};
  }
  static cuda::CudnnSdpaDims cudnn_dims(const Tensor<T, Dev>& q, const Tensor<T, Dev>& k, double scale) {
    return cuda::CudnnSdpaDims{q.size(0), q.size(1), q.size(2), k.size(2), q.size(3), float(scale)};
  }
  // cuDNN's SDPA when selected (loom/cuda/attention_backend.hpp), for bf16 tensors with a head dim
  // cuDNN takes (a multiple of 8); everything else runs loom's kernels.
  static bool uses_cudnn(int64_t head_dim) {
    return std::is_same_v<T, bf16> && cuda::attention_backend() == cuda::AttentionBackend::cudnn && head_dim % 8 == 0;
  }

  static Tensor<T, Dev> forward(autograd::FunctionContext& ctx, const Tensor<T, Dev>& q, const Tensor<T, Dev>& k,
                                const Tensor<T, Dev>& v, double scale) {
    LOOM_CHECK(v.size(3) == q.size(3) && q.size(3) <= 128, "scaled_dot_product_attention: the CUDA kernels need ",
               "the same head dim D <= 128 for q, k and v, got q ", q.shape(), ", v ", v.shape());
    const Tensor<T, Dev> qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();  // [BH, S, D] each
    Tensor<T, Dev> o = Tensor<T, Dev>::empty(q.shape());                                // [B, H, Sq, D]
    Tensor<float, Dev> lse = Tensor<float, Dev>::empty({q.size(0), q.size(1), q.size(2)});  // [B, H, Sq]
    const bool use_cudnn = uses_cudnn(q.size(3));
    if (o.numel() > 0 && use_cudnn)
      cuda::cudnn_sdpa_forward(cudnn_dims(q, k, scale), qc.data(), kc.data(), vc.data(), o.data(), lse.data());
    else if (o.numel() > 0)
      kernels::flash_attention_forward<T>(dims(q, k, scale), qc.data(), kc.data(), vc.data(), o.data(), lse.data());
    ctx.save_for_backward(qc, kc, vc, o, lse);
    ctx.set("scale", scale);
    ctx.set("cudnn", use_cudnn);
    return o;
  }

  static std::vector<Tensor<T, Dev>> backward(autograd::FunctionContext& ctx, const Tensor<T, Dev>& grad) {
    const Tensor<T, Dev> q = ctx.saved<T, Dev>(0), k = ctx.saved<T, Dev>(1), v = ctx.saved<T, Dev>(2);
    const Tensor<T, Dev> o = ctx.saved<T, Dev>(3);
    const Tensor<float, Dev> lse = ctx.saved<float, Dev>(4);
    if (o.numel() == 0)  // no queries (or no heads): nothing reaches k and v
      return {Tensor<T, Dev>::zeros(q.shape()), Tensor<T, Dev>::zeros(k.shape()), Tensor<T, Dev>::zeros(v.shape())};
    const Tensor<T, Dev> g = grad.contiguous();                                          // [B, H, Sq, D]
    Tensor<float, Dev> delta = Tensor<float, Dev>::empty({q.size(0), q.size(1), q.size(2)});  // rowsum(dO ∘ O)
    Tensor<T, Dev> dq = Tensor<T, Dev>::empty(q.shape()), dk = Tensor<T, Dev>::empty(k.shape()),
                   dv = Tensor<T, Dev>::empty(v.shape());
    // cuDNN's backward when this cuDNN has one for the shape; else loom's, which takes cuDNN's O and
    // statistics as they are (both save the natural-log LSE of the scaled scores per query row).
    const cuda::CudnnSdpaDims sdpa = cudnn_dims(q, k, ctx.get<double>("scale"));
    if (ctx.get<bool>("cudnn") && cuda::cudnn_sdpa_backward_supported(sdpa)) {
      cuda::cudnn_sdpa_backward(sdpa, q.data(), k.data(), v.data(), o.data(), g.data(), lse.data(), dq.data(),
                                dk.data(), dv.data());
      return {dq, dk, dv};
    }
    kernels::flash_attention_backward<T>(dims(q, k, ctx.get<double>("scale")), q.data(), k.data(), v.data(),
                                         o.data(), g.data(), lse.data(), delta.data(), dq.data(), dk.data(),
                                         dv.data());
    return {dq, dk, dv};
  }
};
#endif

}  // namespace detail::flash

// Fused attention: q [B, H, Sq, D], k [B, H, Sk, D], v [B, H, Sk, Dv] -> [B, H, Sq, Dv]; scale
// defaults (0) to 1/sqrt(D). Differentiable in q, k, v. Any strides (expanded operands included).
template <class T, class Dev>
Tensor<T, Dev> scaled_dot_product_attention(const Tensor<T, Dev>& q, const Tensor<T, Dev>& k, const Tensor<T, Dev>& v,
                                            double scale = 0) {
  detail::flash::check_args(q, k, v, scale);
  scale = detail::flash::resolve_scale(scale, q.size(3));
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    static_assert(detail::cuda_backend_for<T>,
                  "scaled_dot_product_attention on CUDA tensors needs LOOM_WITH_CUDA (link loom::kernels)");
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, bf16>)
      return autograd::Function<detail::flash::FlashAttentionCuda<T>>::apply(q, k, v, scale);
    else
      detail::fail("scaled_dot_product_attention: ", dtype_traits<T>::name, " is not supported on CUDA (float or bf16)");
  } else if constexpr (std::is_same_v<T, bf16>) {  // computed in float, rounded once at the end
    return scaled_dot_product_attention(q.template to<float>(), k.template to<float>(), v.template to<float>(), scale)
        .template to<bf16>();
  } else {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "scaled_dot_product_attention: float, double or bf16");
    return autograd::Function<detail::flash::FlashAttention<T>>::apply(q, k, v, scale);
  }
}

}  // namespace loom
