#pragma once
// loom::blas::gemm: row-major GEMM, C = alpha * op(A) * op(B) + beta * C.
//
// fp32 is loom's own BLIS-style implementation: op(B) is packed into KC x NR micro-panels, op(A)
// into MR x KC micro-panels, and a register-blocked 6x16 AVX2+FMA micro-kernel (12 accumulators)
// computes each MR x NR tile of C. Loops, outermost first: NC columns of B -> KC slice of K (pack
// B) -> MC rows of A (pack A) -> NR columns -> MR rows -> kernel. Threading splits C into one
// rectangular block per thread (the split minimises the largest block, counting packing), each
// block runs the serial algorithm with its own thread-local packing buffers. Without AVX2+FMA at
// compile time a portable C++ kernel of the same shape is used. fp64 calls Eigen (tests/gradcheck).
// Design notes and measurements: docs/performance.md, section "GEMM".
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include <Eigen/Core>

#include "loom/core/error.hpp"
#include "loom/core/parallel.hpp"

#if defined(__linux__)
#include <sys/mman.h>
#endif

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define LOOM_GEMM_AVX2 1
#endif

namespace loom::blas {

namespace gemm_detail {

inline constexpr int64_t MR = 6;
inline constexpr int64_t NR = 16;

// Cache blocking (elements). Defaults measured on Zen 3 (32 KiB L1d, 512 KiB L2 per core).
struct Blocking {
  int64_t mc = 168;   // rows of packed A per block (multiple of MR): MC x KC floats stay in L2
  int64_t kc = 256;   // depth per pass: a KC x NR micro-panel of B stays in L1
  int64_t nc = 3072;  // columns of packed B per block (multiple of NR): KC x NC floats in L3
};
inline Blocking& blocking() {
  static Blocking b;
  return b;
}

// A 64-byte aligned, grow-only buffer: one per thread, so steady-state GEMM does not allocate.
struct PackBuffer {
  float* data = nullptr;
  size_t capacity = 0;  // floats
  PackBuffer() = default;
  PackBuffer(const PackBuffer&) = delete;
  PackBuffer& operator=(const PackBuffer&) = delete;
  ~PackBuffer() { std::free(data); }
  float* get(size_t n) {
    if (n > capacity) {
      std::free(data);
      const size_t bytes = ((n * sizeof(float) + 4095) / 4096) * 4096;
      data = static_cast<float*>(std::aligned_alloc(4096, bytes));
      if (!data) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
      if (bytes >= (size_t(2) << 20)) madvise(data, bytes, MADV_HUGEPAGE);
#endif
      capacity = bytes / sizeof(float);
    }
    return data;
  }
};
inline PackBuffer& tls_pack_a() {
  thread_local PackBuffer b;
  return b;
}
inline PackBuffer& tls_pack_b() {
  thread_local PackBuffer b;
  return b;
}

#if LOOM_GEMM_AVX2
// Transposes 8 rows of 8 floats in place: afterwards r[k] holds column k.
inline void transpose8(__m256& r0, __m256& r1, __m256& r2, __m256& r3, __m256& r4, __m256& r5,
                       __m256& r6, __m256& r7) {
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r0 = _mm256_permute2f128_ps(s0, s4, 0x20);
  r1 = _mm256_permute2f128_ps(s1, s5, 0x20);
  r2 = _mm256_permute2f128_ps(s2, s6, 0x20);
  r3 = _mm256_permute2f128_ps(s3, s7, 0x20);
  r4 = _mm256_permute2f128_ps(s0, s4, 0x31);
  r5 = _mm256_permute2f128_ps(s1, s5, 0x31);
  r6 = _mm256_permute2f128_ps(s2, s6, 0x31);
  r7 = _mm256_permute2f128_ps(s3, s7, 0x31);
}
#endif

// Packs op(A)[0:mc, 0:kc] (a points at element (0,0) of the block) into ceil(mc/MR) micro-panels
// of MR x kc, stored k-major (MR consecutive floats per k), zero-padded to whole panels. The
// destination needs MR*kc*panels + 8 floats (the vector path writes up to 2 floats past a panel).
inline void pack_a(bool trans, int64_t mc, int64_t kc, const float* a, int64_t lda, float* out) {
  for (int64_t i0 = 0; i0 < mc; i0 += MR, out += MR * kc) {
    const int64_t m = std::min(MR, mc - i0);
    if (trans) {  // op(A)(i,k) = a[k*lda + i]: MR consecutive floats per k
      const float* src = a + i0;
      if (m == MR) {
        for (int64_t k = 0; k < kc; ++k) std::memcpy(out + k * MR, src + k * lda, MR * sizeof(float));
      } else {
        for (int64_t k = 0; k < kc; ++k) {
          for (int64_t i = 0; i < m; ++i) out[k * MR + i] = src[k * lda + i];
          for (int64_t i = m; i < MR; ++i) out[k * MR + i] = 0.f;
        }
      }
      continue;
    }
    // op(A)(i,k) = a[i*lda + k]: gather one float from each of MR rows per k.
    const float* src = a + i0 * lda;
    int64_t k = 0;
#if LOOM_GEMM_AVX2
    if (m == MR) {
      const float *r0 = src, *r1 = src + lda, *r2 = src + 2 * lda, *r3 = src + 3 * lda,
                  *r4 = src + 4 * lda, *r5 = src + 5 * lda;
      for (; k + 8 <= kc; k += 8) {
        __m256 v0 = _mm256_loadu_ps(r0 + k), v1 = _mm256_loadu_ps(r1 + k);
        __m256 v2 = _mm256_loadu_ps(r2 + k), v3 = _mm256_loadu_ps(r3 + k);
        __m256 v4 = _mm256_loadu_ps(r4 + k), v5 = _mm256_loadu_ps(r5 + k);
        __m256 v6 = _mm256_setzero_ps(), v7 = _mm256_setzero_ps();
        transpose8(v0, v1, v2, v3, v4, v5, v6, v7);
        // Column j of the 8x8 block goes to out[(k+j)*MR .. +6); each 8-wide store spills 2 floats
        // into the next column's slot, which the next store overwrites.
        float* o = out + k * MR;
        _mm256_storeu_ps(o + 0 * MR, v0);
        _mm256_storeu_ps(o + 1 * MR, v1);
        _mm256_storeu_ps(o + 2 * MR, v2);
        _mm256_storeu_ps(o + 3 * MR, v3);
        _mm256_storeu_ps(o + 4 * MR, v4);
        _mm256_storeu_ps(o + 5 * MR, v5);
        _mm256_storeu_ps(o + 6 * MR, v6);
        _mm256_storeu_ps(o + 7 * MR, v7);
      }
    }
#endif
    for (; k < kc; ++k) {
      for (int64_t i = 0; i < m; ++i) out[k * MR + i] = src[i * lda + k];
      for (int64_t i = m; i < MR; ++i) out[k * MR + i] = 0.f;
    }
  }
}

// Packs op(B)[0:kc, 0:nc] into ceil(nc/NR) micro-panels of kc x NR (NR consecutive floats per k),
// zero-padded to whole panels.
inline void pack_b(bool trans, int64_t kc, int64_t nc, const float* b, int64_t ldb, float* out) {
  for (int64_t j0 = 0; j0 < nc; j0 += NR, out += NR * kc) {
    const int64_t n = std::min(NR, nc - j0);
    if (!trans) {  // op(B)(k,j) = b[k*ldb + j]: NR consecutive floats per k
      const float* src = b + j0;
      if (n == NR) {
        for (int64_t k = 0; k < kc; ++k) {
#if LOOM_GEMM_AVX2
          _mm256_store_ps(out + k * NR, _mm256_loadu_ps(src + k * ldb));
          _mm256_store_ps(out + k * NR + 8, _mm256_loadu_ps(src + k * ldb + 8));
#else
          std::memcpy(out + k * NR, src + k * ldb, NR * sizeof(float));
#endif
        }
      } else {
        for (int64_t k = 0; k < kc; ++k) {
          for (int64_t j = 0; j < n; ++j) out[k * NR + j] = src[k * ldb + j];
          for (int64_t j = n; j < NR; ++j) out[k * NR + j] = 0.f;
        }
      }
      continue;
    }
    // op(B)(k,j) = b[j*ldb + k]: gather one float from each of NR rows of b per k.
    const float* src = b + j0 * ldb;
    int64_t k = 0;
#if LOOM_GEMM_AVX2
    if (n == NR) {
      for (; k + 8 <= kc; k += 8) {
        for (int half = 0; half < 2; ++half) {
          const float* s = src + half * 8 * ldb + k;
          __m256 v0 = _mm256_loadu_ps(s), v1 = _mm256_loadu_ps(s + ldb);
          __m256 v2 = _mm256_loadu_ps(s + 2 * ldb), v3 = _mm256_loadu_ps(s + 3 * ldb);
          __m256 v4 = _mm256_loadu_ps(s + 4 * ldb), v5 = _mm256_loadu_ps(s + 5 * ldb);
          __m256 v6 = _mm256_loadu_ps(s + 6 * ldb), v7 = _mm256_loadu_ps(s + 7 * ldb);
          transpose8(v0, v1, v2, v3, v4, v5, v6, v7);
          float* o = out + k * NR + half * 8;
          _mm256_store_ps(o + 0 * NR, v0);
          _mm256_store_ps(o + 1 * NR, v1);
          _mm256_store_ps(o + 2 * NR, v2);
          _mm256_store_ps(o + 3 * NR, v3);
          _mm256_store_ps(o + 4 * NR, v4);
          _mm256_store_ps(o + 5 * NR, v5);
          _mm256_store_ps(o + 6 * NR, v6);
          _mm256_store_ps(o + 7 * NR, v7);
        }
      }
    }
#endif
    for (; k < kc; ++k) {
      for (int64_t j = 0; j < n; ++j) out[k * NR + j] = src[j * ldb + k];
      for (int64_t j = n; j < NR; ++j) out[k * NR + j] = 0.f;
    }
  }
}

// The micro-kernel: acc = sum_k a[k*MR + i] * b[k*NR + j] over one packed MR x kc / kc x NR pair,
// then C(i,j) = alpha*acc + beta*C(i,j) for the full MR x NR tile (C is not read when beta == 0).
#if LOOM_GEMM_AVX2
inline void kernel_6x16(int64_t kc, const float* __restrict a, const float* __restrict b, float* c,
                        int64_t ldc, float alpha, float beta) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int64_t i = 0; i < MR; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + NR - 1), _MM_HINT_T0);
  }
#define LOOM_GEMM_STEP(off_a, off_b)                           \
  {                                                            \
    const __m256 b0 = _mm256_load_ps(b + (off_b));             \
    const __m256 b1 = _mm256_load_ps(b + (off_b) + 8);         \
    __m256 av = _mm256_broadcast_ss(a + (off_a) + 0);          \
    c00 = _mm256_fmadd_ps(av, b0, c00);                        \
    c01 = _mm256_fmadd_ps(av, b1, c01);                        \
    av = _mm256_broadcast_ss(a + (off_a) + 1);                 \
    c10 = _mm256_fmadd_ps(av, b0, c10);                        \
    c11 = _mm256_fmadd_ps(av, b1, c11);                        \
    av = _mm256_broadcast_ss(a + (off_a) + 2);                 \
    c20 = _mm256_fmadd_ps(av, b0, c20);                        \
    c21 = _mm256_fmadd_ps(av, b1, c21);                        \
    av = _mm256_broadcast_ss(a + (off_a) + 3);                 \
    c30 = _mm256_fmadd_ps(av, b0, c30);                        \
    c31 = _mm256_fmadd_ps(av, b1, c31);                        \
    av = _mm256_broadcast_ss(a + (off_a) + 4);                 \
    c40 = _mm256_fmadd_ps(av, b0, c40);                        \
    c41 = _mm256_fmadd_ps(av, b1, c41);                        \
    av = _mm256_broadcast_ss(a + (off_a) + 5);                 \
    c50 = _mm256_fmadd_ps(av, b0, c50);                        \
    c51 = _mm256_fmadd_ps(av, b1, c51);                        \
  }
  int64_t k = 0;
  for (; k + 4 <= kc; k += 4) {
    _mm_prefetch(reinterpret_cast<const char*>(a + 8 * MR), _MM_HINT_T0);
    LOOM_GEMM_STEP(0 * MR, 0 * NR)
    LOOM_GEMM_STEP(1 * MR, 1 * NR)
    LOOM_GEMM_STEP(2 * MR, 2 * NR)
    LOOM_GEMM_STEP(3 * MR, 3 * NR)
    a += 4 * MR;
    b += 4 * NR;
  }
  for (; k < kc; ++k) {
    LOOM_GEMM_STEP(0, 0)
    a += MR;
    b += NR;
  }
#undef LOOM_GEMM_STEP
  const __m256 va = _mm256_set1_ps(alpha);
  auto store = [&](float* p, __m256 acc) {
    if (beta == 0.f) {
      _mm256_storeu_ps(p, _mm256_mul_ps(acc, va));
    } else if (beta == 1.f) {
      _mm256_storeu_ps(p, _mm256_fmadd_ps(acc, va, _mm256_loadu_ps(p)));
    } else {
      _mm256_storeu_ps(p, _mm256_fmadd_ps(acc, va, _mm256_mul_ps(_mm256_set1_ps(beta), _mm256_loadu_ps(p))));
    }
  };
  store(c + 0 * ldc, c00);
  store(c + 0 * ldc + 8, c01);
  store(c + 1 * ldc, c10);
  store(c + 1 * ldc + 8, c11);
  store(c + 2 * ldc, c20);
  store(c + 2 * ldc + 8, c21);
  store(c + 3 * ldc, c30);
  store(c + 3 * ldc + 8, c31);
  store(c + 4 * ldc, c40);
  store(c + 4 * ldc + 8, c41);
  store(c + 5 * ldc, c50);
  store(c + 5 * ldc + 8, c51);
}
#else
inline void kernel_6x16(int64_t kc, const float* __restrict a, const float* __restrict b, float* c,
                        int64_t ldc, float alpha, float beta) {
  float acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k, a += MR, b += NR)
    for (int64_t i = 0; i < MR; ++i)
      for (int64_t j = 0; j < NR; ++j) acc[i][j] += a[i] * b[j];
  for (int64_t i = 0; i < MR; ++i)
    for (int64_t j = 0; j < NR; ++j)
      c[i * ldc + j] = beta == 0.f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * c[i * ldc + j];
}
#endif

// One MC x NC block of C from packed A (mc x kc) and packed B (kc x nc).
inline void macro_kernel(int64_t mc, int64_t nc, int64_t kc, const float* pa, const float* pb,
                         float* c, int64_t ldc, float alpha, float beta) {
  alignas(64) float tmp[MR * NR];
  for (int64_t j0 = 0; j0 < nc; j0 += NR) {
    const int64_t n = std::min(NR, nc - j0);
    const float* b = pb + j0 * kc;
    for (int64_t i0 = 0; i0 < mc; i0 += MR) {
      const int64_t m = std::min(MR, mc - i0);
      const float* a = pa + i0 * kc;
      float* cij = c + i0 * ldc + j0;
      if (m == MR && n == NR) {
        kernel_6x16(kc, a, b, cij, ldc, alpha, beta);
      } else {  // edge tile: full tile into tmp, then the valid m x n part into C
        kernel_6x16(kc, a, b, tmp, NR, 1.f, 0.f);
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < n; ++j) {
            float& dst = cij[i * ldc + j];
            dst = beta == 0.f ? alpha * tmp[i * NR + j] : alpha * tmp[i * NR + j] + beta * dst;
          }
      }
    }
  }
}

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Serial GEMM on one block; a/b/c point at the block's first element of op(A), op(B), C.
// Requires M, N, K >= 1 and alpha != 0.
inline void gemm_serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                        const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                        float* c, int64_t ldc) {
  const Blocking& bl = blocking();
  // Split K and M into near-equal blocks no larger than KC / MC.
  const int64_t k_blocks = (K + bl.kc - 1) / bl.kc;
  const int64_t kc_max = round_up((K + k_blocks - 1) / k_blocks, 4);
  const int64_t m_blocks = (M + bl.mc - 1) / bl.mc;
  const int64_t mc_max = round_up((M + m_blocks - 1) / m_blocks, MR);
  const int64_t nc_max = std::min(round_up(N, NR), bl.nc);
  float* pb = tls_pack_b().get(size_t(kc_max * nc_max));
  float* pa = tls_pack_a().get(size_t(kc_max * mc_max + 8));
  for (int64_t j0 = 0; j0 < N; j0 += nc_max) {
    const int64_t nc = std::min(nc_max, N - j0);
    for (int64_t p0 = 0; p0 < K; p0 += kc_max) {
      const int64_t kc = std::min(kc_max, K - p0);
      pack_b(tb, kc, nc, tb ? b + j0 * ldb + p0 : b + p0 * ldb + j0, ldb, pb);
      const float beta_k = p0 == 0 ? beta : 1.f;
      for (int64_t i0 = 0; i0 < M; i0 += mc_max) {
        const int64_t mc = std::min(mc_max, M - i0);
        pack_a(ta, mc, kc, ta ? a + p0 * lda + i0 : a + i0 * lda + p0, lda, pa);
        macro_kernel(mc, nc, kc, pa, pb, c + i0 * ldc + j0, ldc, alpha, beta_k);
      }
    }
  }
}

// C = beta * C for an M x N block (beta == 0 writes zeros without reading C).
template <class T>
void scale_c(int64_t M, int64_t N, T beta, T* c, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    T* row = c + i * ldc;
    if (beta == T(0))
      std::fill(row, row + N, T(0));
    else if (beta != T(1))
      for (int64_t j = 0; j < N; ++j) row[j] *= beta;
  }
}

// How one GEMM is cut into rectangular blocks, one per task.
struct Split {
  int64_t tm = 1, tn = 1;  // blocks along M and N
  int64_t mu = 0, nu = 0;  // M and N in micro-tile units
};

// Picks tm x tn == tasks minimising the largest block's work, counting packing
// (rows + cols per unit of K) against the multiply (rows * cols per unit of K).
inline Split choose_split(int64_t M, int64_t N, int64_t tasks) {
  Split s;
  s.mu = (M + MR - 1) / MR;
  s.nu = (N + NR - 1) / NR;
  double best = -1;
  for (int64_t tm = 1; tm <= tasks; ++tm) {
    if (tasks % tm) continue;
    const int64_t tn = tasks / tm;
    if (tm > s.mu || tn > s.nu) continue;
    const double rows = double((s.mu + tm - 1) / tm * MR), cols = double((s.nu + tn - 1) / tn * NR);
    const double cost = rows * cols + 8.0 * (rows + cols);
    if (best < 0 || cost < best) {
      best = cost;
      s.tm = tm;
      s.tn = tn;
    }
  }
  return s;
}

// Runs block t (of s.tm * s.tn) of one GEMM serially.
inline void gemm_block(const Split& s, int64_t t, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                       float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
                       float beta, float* c, int64_t ldc) {
  const int64_t bi = t / s.tn, bj = t % s.tn;
  const int64_t i0 = std::min(M, s.mu * bi / s.tm * MR), i1 = std::min(M, s.mu * (bi + 1) / s.tm * MR);
  const int64_t j0 = std::min(N, s.nu * bj / s.tn * NR), j1 = std::min(N, s.nu * (bj + 1) / s.tn * NR);
  if (i1 <= i0 || j1 <= j0) return;
  gemm_serial(ta, tb, i1 - i0, j1 - j0, K, alpha, ta ? a + i0 : a + i0 * lda, lda,
              tb ? b + j0 * ldb : b + j0, ldb, beta, c + i0 * ldc + j0, ldc);
}

inline void check_args(const char* op, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                       int64_t lda, int64_t ldb, int64_t ldc) {
  LOOM_CHECK(M >= 0 && N >= 0 && K >= 0, op, ": negative size M=", M, " N=", N, " K=", K);
  LOOM_CHECK(lda >= std::max<int64_t>(1, ta ? M : K), op, ": lda=", lda, " too small");
  LOOM_CHECK(ldb >= std::max<int64_t>(1, tb ? K : N), op, ": ldb=", ldb, " too small");
  LOOM_CHECK(ldc >= std::max<int64_t>(1, N), op, ": ldc=", ldc, " too small");
}

// Below this many multiply-adds a GEMM runs on the calling thread.
inline constexpr int64_t kParallelMinWork = int64_t(1) << 17;

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

template <class T>
void gemm_eigen(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  using Stride = Eigen::OuterStride<>;
  using CMap = Eigen::Map<const RowMat<T>, 0, Stride>;
  Eigen::Map<RowMat<T>, 0, Stride> c(C, M, N, Stride(ldc));
  const CMap a(A, ta ? K : M, ta ? M : K, Stride(lda));
  const CMap b(B, tb ? N : K, tb ? K : N, Stride(ldb));
  if (beta == T(0))
    c.setZero();
  else if (beta != T(1))
    c *= beta;
  if (ta && tb)
    c.noalias() += alpha * (a.transpose() * b.transpose());
  else if (ta)
    c.noalias() += alpha * (a.transpose() * b);
  else if (tb)
    c.noalias() += alpha * (a * b.transpose());
  else
    c.noalias() += alpha * (a * b);
}

}  // namespace gemm_detail

// C[M x N] = alpha * op(A) * op(B) + beta * C, all row-major. op(A) is M x K: A is stored M x K
// (lda >= K), or K x M (lda >= M) when trans_a. op(B) is K x N: B is stored K x N (ldb >= N), or
// N x K (ldb >= K) when trans_b. beta == 0 never reads C. Uses loom's thread pool.
inline void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                 const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                 int64_t ldc) {
  using namespace gemm_detail;
  check_args("gemm", trans_a, trans_b, M, N, K, lda, ldb, ldc);
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.f) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  const int64_t threads = num_threads();
  if (threads == 1 || M * N * K < kParallelMinWork) {
    gemm_serial(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const Split s = choose_split(M, N, threads);
  parallel_tasks(s.tm * s.tn, [&](int64_t t) {
    gemm_block(s, t, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  });
}

// fp64: Eigen, for tests and gradient checks (single-threaded).
inline void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha,
                 const double* A, int64_t lda, const double* B, int64_t ldb, double beta, double* C,
                 int64_t ldc) {
  using namespace gemm_detail;
  check_args("gemm", trans_a, trans_b, M, N, K, lda, ldb, ldc);
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.0) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  gemm_eigen(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// `batch` independent GEMMs: matrix b of A/B/C starts at A + b*stride_a etc. (a stride of 0
// broadcasts one matrix to every batch entry; C strides must not make outputs overlap).
// Parallel across the batch, and within each GEMM when the batch alone cannot fill the threads.
inline void gemm_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                         const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                         float* C, int64_t ldc, int64_t batch, int64_t stride_a, int64_t stride_b,
                         int64_t stride_c) {
  using namespace gemm_detail;
  check_args("gemm_batched", trans_a, trans_b, M, N, K, lda, ldb, ldc);
  LOOM_CHECK(batch >= 0, "gemm_batched: negative batch ", batch);
  if (M == 0 || N == 0 || batch == 0) return;
  if (K == 0 || alpha == 0.f) {
    parallel_for(0, batch, std::max<int64_t>(1, (int64_t(1) << 16) / (M * N)), [&](int64_t b0, int64_t b1) {
      for (int64_t i = b0; i < b1; ++i) scale_c(M, N, beta, C + i * stride_c, ldc);
    });
    return;
  }
  const int64_t threads = num_threads();
  const int64_t work = M * N * K;
  if (threads == 1 || work * batch < kParallelMinWork) {
    for (int64_t i = 0; i < batch; ++i)
      gemm_serial(trans_a, trans_b, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb,
                  beta, C + i * stride_c, ldc);
    return;
  }
  // One task per matrix when that balances (batch a multiple of the threads, or many matrices);
  // otherwise also cut each matrix into `threads` blocks.
  const bool whole = batch % threads == 0 || batch >= 4 * threads || work < kParallelMinWork;
  const Split s = whole ? Split{1, 1, (M + MR - 1) / MR, (N + NR - 1) / NR}
                        : choose_split(M, N, threads);
  const int64_t per = s.tm * s.tn;
  parallel_tasks(batch * per, [&](int64_t t) {
    const int64_t i = t / per;
    gemm_block(s, t % per, trans_a, trans_b, M, N, K, alpha, A + i * stride_a, lda,
               B + i * stride_b, ldb, beta, C + i * stride_c, ldc);
  });
}

inline void gemm_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha,
                         const double* A, int64_t lda, const double* B, int64_t ldb, double beta,
                         double* C, int64_t ldc, int64_t batch, int64_t stride_a, int64_t stride_b,
                         int64_t stride_c) {
  LOOM_CHECK(batch >= 0, "gemm_batched: negative batch ", batch);
  parallel_tasks(batch, [&](int64_t i) {
    gemm(trans_a, trans_b, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta,
         C + i * stride_c, ldc);
  });
}

}  // namespace loom::blas
