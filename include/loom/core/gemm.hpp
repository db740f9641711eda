#pragma once
// loom::blas::gemm: row-major GEMM, C = alpha * op(A) * op(B) + beta * C.
//
// fp32 is loom's own BLIS-style implementation: op(B) is packed into KC x NR micro-panels, op(A)
// into MR x KC micro-panels, and a register-blocked 6x16 AVX2+FMA micro-kernel (12 accumulators)
// computes each MR x NR tile of C. Loops, outermost first: NC columns of B -> KC slice of K (pack
// B) -> MC rows of A (pack A, prefetch the next block's source) -> NR columns -> MR rows -> kernel.
// Threading (loom's pool) cuts C into one rectangle per thread, choosing the split that minimises
// the largest share (counting packing). When the rows are split, the threads pack each slice of B
// together into one shared buffer and then compute their rows (BLIS-style); otherwise each block
// runs the serial algorithm. Packing buffers are thread-local and grow-only. Without AVX2+FMA at
// compile time a portable C++ kernel of the same shape is used; there is no AVX-512 path (it could
// not be tested on the development machine). fp64 calls Eigen (for tests and gradient checks).
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

// Cache blocking (elements; a tuning knob for benchmarks, not thread-safe to change during GEMMs),
// chosen by measurement on Zen 3 (32 KiB L1d, 512 KiB L2 per core;
// see docs/performance.md). K is cut into near-equal passes of at most KC: a deep pass costs fewer
// read-modify-write sweeps over C and amortises the kernel's epilogue, which measured better than
// keeping a KC x NR micro-panel of B inside L1 (KC = 256); a small MC keeps the packed A block
// (MC x KC) plus B's working set in L2.
struct Blocking {
  int64_t mc = 72;    // rows of packed A per block (multiple of MR)
  int64_t kc = 768;   // maximum depth per pass
  int64_t nc = 2048;  // columns of packed B per block (multiple of NR): KC x NC floats, in L3
  bool shared_b = true;  // threads split M share one packed B (else each packs its own)
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
// Rows of the source are contiguous along the packed panels' short side (A transposed, B not):
// copies `w` of each source row into panels of width W, KB source rows at a time so the rows
// being read stay in L1 while every panel is written.
template <int64_t W>
inline void pack_rows(int64_t kc, int64_t w, const float* src, int64_t ld, float* out) {
  constexpr int64_t KB = 8;
  for (int64_t k0 = 0; k0 < kc; k0 += KB) {
    const int64_t k1 = std::min(kc, k0 + KB);
    float* panel = out;
    for (int64_t j0 = 0; j0 < w; j0 += W, panel += W * kc) {
      const int64_t n = std::min(W, w - j0);
      if (n == W) {
#if LOOM_GEMM_AVX2
        if constexpr (W == 16) {
          for (int64_t k = k0; k < k1; ++k) {
            _mm256_store_ps(panel + k * W, _mm256_loadu_ps(src + k * ld + j0));
            _mm256_store_ps(panel + k * W + 8, _mm256_loadu_ps(src + k * ld + j0 + 8));
          }
          continue;
        } else if constexpr (W == 6) {
          // One 8-wide load and store per row: the store spills 2 floats into the next row's slot,
          // which that row overwrites later. Exact copies where the load could pass the end of the
          // block's columns (last panel) or the store the end of the panel (last row).
          if (j0 + 8 <= w) {
            const int64_t kv = std::min(k1, kc - 1);
            int64_t k = k0;
            for (; k < kv; ++k) _mm256_storeu_ps(panel + k * W, _mm256_loadu_ps(src + k * ld + j0));
            for (; k < k1; ++k) std::memcpy(panel + k * W, src + k * ld + j0, W * sizeof(float));
            continue;
          }
        }
#endif
        for (int64_t k = k0; k < k1; ++k) std::memcpy(panel + k * W, src + k * ld + j0, W * sizeof(float));
      } else {
        for (int64_t k = k0; k < k1; ++k) {
          for (int64_t j = 0; j < n; ++j) panel[k * W + j] = src[k * ld + j0 + j];
          for (int64_t j = n; j < W; ++j) panel[k * W + j] = 0.f;
        }
      }
    }
  }
}

inline void pack_a(bool trans, int64_t mc, int64_t kc, const float* a, int64_t lda, float* out) {
  if (trans) {  // op(A)(i,k) = a[k*lda + i]: MR consecutive floats per k
    pack_rows<MR>(kc, mc, a, lda, out);
    return;
  }
  for (int64_t i0 = 0; i0 < mc; i0 += MR, out += MR * kc) {
    const int64_t m = std::min(MR, mc - i0);
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
  if (!trans) {  // op(B)(k,j) = b[k*ldb + j]: NR consecutive floats per k
    pack_rows<NR>(kc, nc, b, ldb, out);
    return;
  }
  for (int64_t j0 = 0; j0 < nc; j0 += NR, out += NR * kc) {
    const int64_t n = std::min(NR, nc - j0);
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
// One k step of the 6x16 kernel: 2 vector loads of B, 6 broadcasts of A, 12 FMAs into ymm4..15
// (row i of the tile in ymm(4+2i), ymm(5+2i)). Offsets are bytes from the current a/b pointers.
#define LOOM_GEMM_ASM_STEP(A0, A1, A2, A3, A4, A5, B0, B1) \
  "vmovaps " B0 "(%[b]), %%ymm0\n\t"                       \
  "vmovaps " B1 "(%[b]), %%ymm1\n\t"                       \
  "vbroadcastss " A0 "(%[a]), %%ymm2\n\t"                  \
  "vfmadd231ps %%ymm0, %%ymm2, %%ymm4\n\t"                 \
  "vfmadd231ps %%ymm1, %%ymm2, %%ymm5\n\t"                 \
  "vbroadcastss " A1 "(%[a]), %%ymm3\n\t"                  \
  "vfmadd231ps %%ymm0, %%ymm3, %%ymm6\n\t"                 \
  "vfmadd231ps %%ymm1, %%ymm3, %%ymm7\n\t"                 \
  "vbroadcastss " A2 "(%[a]), %%ymm2\n\t"                  \
  "vfmadd231ps %%ymm0, %%ymm2, %%ymm8\n\t"                 \
  "vfmadd231ps %%ymm1, %%ymm2, %%ymm9\n\t"                 \
  "vbroadcastss " A3 "(%[a]), %%ymm3\n\t"                  \
  "vfmadd231ps %%ymm0, %%ymm3, %%ymm10\n\t"                \
  "vfmadd231ps %%ymm1, %%ymm3, %%ymm11\n\t"                \
  "vbroadcastss " A4 "(%[a]), %%ymm2\n\t"                  \
  "vfmadd231ps %%ymm0, %%ymm2, %%ymm12\n\t"                \
  "vfmadd231ps %%ymm1, %%ymm2, %%ymm13\n\t"                \
  "vbroadcastss " A5 "(%[a]), %%ymm3\n\t"                  \
  "vfmadd231ps %%ymm0, %%ymm3, %%ymm14\n\t"                \
  "vfmadd231ps %%ymm1, %%ymm3, %%ymm15\n\t"

// The k loop is inline assembly: with intrinsics g++ 12 folds B loads into the FMAs and shuffles
// accumulators between registers (measured ~7% slower on the kernel alone).
inline void kernel_6x16(int64_t kc, const float* __restrict a, const float* __restrict b, float* c,
                        int64_t ldc, float alpha, float beta) {
  alignas(32) float acc[MR * NR];
  for (int64_t i = 0; i < MR; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + NR - 1), _MM_HINT_T0);
  }
  int64_t iter = kc / 4, rem = kc % 4;
  __asm__ volatile(
      "vxorps %%ymm4, %%ymm4, %%ymm4\n\t"
      "vxorps %%ymm5, %%ymm5, %%ymm5\n\t"
      "vxorps %%ymm6, %%ymm6, %%ymm6\n\t"
      "vxorps %%ymm7, %%ymm7, %%ymm7\n\t"
      "vxorps %%ymm8, %%ymm8, %%ymm8\n\t"
      "vxorps %%ymm9, %%ymm9, %%ymm9\n\t"
      "vxorps %%ymm10, %%ymm10, %%ymm10\n\t"
      "vxorps %%ymm11, %%ymm11, %%ymm11\n\t"
      "vxorps %%ymm12, %%ymm12, %%ymm12\n\t"
      "vxorps %%ymm13, %%ymm13, %%ymm13\n\t"
      "vxorps %%ymm14, %%ymm14, %%ymm14\n\t"
      "vxorps %%ymm15, %%ymm15, %%ymm15\n\t"
      "test %[iter], %[iter]\n\t"
      "jz 2f\n\t"
      ".p2align 5\n"
      "1:\n\t"
      "prefetcht0 384(%[a])\n\t"
      LOOM_GEMM_ASM_STEP("0", "4", "8", "12", "16", "20", "0", "32")
      LOOM_GEMM_ASM_STEP("24", "28", "32", "36", "40", "44", "64", "96")
      LOOM_GEMM_ASM_STEP("48", "52", "56", "60", "64", "68", "128", "160")
      LOOM_GEMM_ASM_STEP("72", "76", "80", "84", "88", "92", "192", "224")
      "add $96, %[a]\n\t"
      "add $256, %[b]\n\t"
      "dec %[iter]\n\t"
      "jnz 1b\n"
      "2:\n\t"
      "test %[rem], %[rem]\n\t"
      "jz 4f\n"
      "3:\n\t"
      LOOM_GEMM_ASM_STEP("0", "4", "8", "12", "16", "20", "0", "32")
      "add $24, %[a]\n\t"
      "add $64, %[b]\n\t"
      "dec %[rem]\n\t"
      "jnz 3b\n"
      "4:\n\t"
      "vmovaps %%ymm4, 0(%[acc])\n\t"
      "vmovaps %%ymm5, 32(%[acc])\n\t"
      "vmovaps %%ymm6, 64(%[acc])\n\t"
      "vmovaps %%ymm7, 96(%[acc])\n\t"
      "vmovaps %%ymm8, 128(%[acc])\n\t"
      "vmovaps %%ymm9, 160(%[acc])\n\t"
      "vmovaps %%ymm10, 192(%[acc])\n\t"
      "vmovaps %%ymm11, 224(%[acc])\n\t"
      "vmovaps %%ymm12, 256(%[acc])\n\t"
      "vmovaps %%ymm13, 288(%[acc])\n\t"
      "vmovaps %%ymm14, 320(%[acc])\n\t"
      "vmovaps %%ymm15, 352(%[acc])\n\t"
      "vzeroupper\n\t"
      : [a] "+r"(a), [b] "+r"(b), [iter] "+r"(iter), [rem] "+r"(rem)
      : [acc] "r"(acc)
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
        "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc", "memory");
  const __m256 va = _mm256_set1_ps(alpha);
  for (int64_t i = 0; i < MR; ++i) {
    float* p = c + i * ldc;
    const __m256 lo = _mm256_load_ps(acc + i * NR), hi = _mm256_load_ps(acc + i * NR + 8);
    if (beta == 0.f) {
      _mm256_storeu_ps(p, _mm256_mul_ps(lo, va));
      _mm256_storeu_ps(p + 8, _mm256_mul_ps(hi, va));
    } else if (beta == 1.f) {
      _mm256_storeu_ps(p, _mm256_fmadd_ps(lo, va, _mm256_loadu_ps(p)));
      _mm256_storeu_ps(p + 8, _mm256_fmadd_ps(hi, va, _mm256_loadu_ps(p + 8)));
    } else {
      const __m256 vb = _mm256_set1_ps(beta);
      _mm256_storeu_ps(p, _mm256_fmadd_ps(lo, va, _mm256_mul_ps(vb, _mm256_loadu_ps(p))));
      _mm256_storeu_ps(p + 8, _mm256_fmadd_ps(hi, va, _mm256_mul_ps(vb, _mm256_loadu_ps(p + 8))));
    }
  }
}
#undef LOOM_GEMM_ASM_STEP
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

// Software prefetch of a strided 2-D region (rows of row_bytes each), a few cache lines at a time:
// the macro-kernel uses it to pull the next block of A towards L2 while it computes, so packing
// that block does not stall on memory.
struct RegionPrefetch {
  const char* row = nullptr;  // current row
  int64_t stride = 0, row_bytes = 0, rows_left = 0, off = 0, per_step = 0;
  RegionPrefetch() = default;
  RegionPrefetch(const float* p, int64_t stride_floats, int64_t nrows, int64_t row_floats, int64_t steps)
      : row(reinterpret_cast<const char*>(p)), stride(stride_floats * 4), row_bytes(row_floats * 4),
        rows_left(nrows) {
    const int64_t lines = nrows * ((row_bytes + 63) / 64 + 1);
    per_step = steps > 0 ? (lines + steps - 1) / steps : 0;
  }
  void step() {
    for (int64_t i = 0; i < per_step && rows_left > 0; ++i) {
      __builtin_prefetch(row + off, 0, 2);
      off += 64;
      if (off >= row_bytes + 64) {
        off = 0;
        row += stride;
        --rows_left;
      }
    }
  }
};

// One MC x NC block of C from packed A (mc x kc) and packed B (kc x nc).
inline void macro_kernel(int64_t mc, int64_t nc, int64_t kc, const float* pa, const float* pb,
                         float* c, int64_t ldc, float alpha, float beta, RegionPrefetch pf) {
  alignas(64) float tmp[MR * NR];
  for (int64_t j0 = 0; j0 < nc; j0 += NR) {
    const int64_t n = std::min(NR, nc - j0);
    const float* b = pb + j0 * kc;
    for (int64_t i0 = 0; i0 < mc; i0 += MR) {
      const int64_t m = std::min(MR, mc - i0);
      const float* a = pa + i0 * kc;
      float* cij = c + i0 * ldc + j0;
      pf.step();
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

// K and M cut into near-equal blocks no larger than KC / MC (kc a multiple of 4, mc of MR).
inline int64_t pass_depth(int64_t K) {
  const int64_t k_blocks = (K + blocking().kc - 1) / blocking().kc;
  return round_up((K + k_blocks - 1) / k_blocks, 4);
}
inline int64_t block_rows(int64_t M) {
  const int64_t m_blocks = (M + blocking().mc - 1) / blocking().mc;
  return round_up((M + m_blocks - 1) / m_blocks, MR);
}

// Rows [0, M) of one pass: C[0:M, 0:nc] (+)= alpha * op(A)[0:M, 0:kc] * packed B. `a` points at
// op(A)(0, 0) of the pass. Packs A block by block into this thread's buffer.
inline void gemm_rows(bool ta, int64_t M, int64_t nc, int64_t kc, float alpha, const float* a,
                      int64_t lda, const float* pb, float beta, float* c, int64_t ldc) {
  const int64_t mc_max = block_rows(M);
  float* pa = tls_pack_a().get(size_t(kc * mc_max + 8));
  for (int64_t i0 = 0; i0 < M; i0 += mc_max) {
    const int64_t mc = std::min(mc_max, M - i0);
    pack_a(ta, mc, kc, ta ? a + i0 : a + i0 * lda, lda, pa);
    // While computing this block, prefetch the source of the next block of A.
    RegionPrefetch pf;
    const int64_t i1 = i0 + mc, mc1 = std::min(mc_max, M - i1);
    if (mc1 > 0) {
      const int64_t steps = ((mc + MR - 1) / MR) * ((nc + NR - 1) / NR);
      pf = ta ? RegionPrefetch(a + i1, lda, kc, mc1, steps) : RegionPrefetch(a + i1 * lda, lda, mc1, kc, steps);
    }
    macro_kernel(mc, nc, kc, pa, pb, c + i0 * ldc, ldc, alpha, beta, pf);
  }
}

// Serial GEMM on one block; a/b/c point at the block's first element of op(A), op(B), C.
// Requires M, N, K >= 1 and alpha != 0.
inline void gemm_serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                        const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                        float* c, int64_t ldc) {
  const int64_t kc_max = pass_depth(K);
  const int64_t nc_max = std::min(round_up(N, NR), blocking().nc);
  float* pb = tls_pack_b().get(size_t(kc_max * nc_max));
  for (int64_t j0 = 0; j0 < N; j0 += nc_max) {
    const int64_t nc = std::min(nc_max, N - j0);
    for (int64_t p0 = 0; p0 < K; p0 += kc_max) {
      const int64_t kc = std::min(kc_max, K - p0);
      pack_b(tb, kc, nc, tb ? b + j0 * ldb + p0 : b + p0 * ldb + j0, ldb, pb);
      gemm_rows(ta, M, nc, kc, alpha, ta ? a + p0 * lda : a + p0, lda, pb, p0 == 0 ? beta : 1.f,
                c + j0, ldc);
    }
  }
}

// Parallel GEMM with the rows of C split among `tasks` threads and op(B) packed once per pass
// into a shared buffer by all of them (BLIS-style): no thread repacks B, which matters when
// each thread's share of M is small against K.
inline void gemm_shared_b(int64_t tasks, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                          float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
                          float beta, float* c, int64_t ldc) {
  const int64_t kc_max = pass_depth(K);
  const int64_t nc_max = std::min(round_up(N, NR), blocking().nc);
  float* pb = tls_pack_b().get(size_t(kc_max * nc_max));  // the caller's buffer, read by all
  const int64_t mu = (M + MR - 1) / MR;
  for (int64_t j0 = 0; j0 < N; j0 += nc_max) {
    const int64_t nc = std::min(nc_max, N - j0);
    const int64_t panels = (nc + NR - 1) / NR;
    for (int64_t p0 = 0; p0 < K; p0 += kc_max) {
      const int64_t kc = std::min(kc_max, K - p0);
      const float* bp = tb ? b + j0 * ldb + p0 : b + p0 * ldb + j0;
      parallel_tasks(std::min(tasks, panels), [&](int64_t t) {
        const int64_t n = std::min(tasks, panels);
        const int64_t q0 = panels * t / n, q1 = panels * (t + 1) / n;
        const int64_t c0 = q0 * NR, c1 = std::min(nc, q1 * NR);
        if (c1 > c0) pack_b(tb, kc, c1 - c0, tb ? bp + c0 * ldb : bp + c0, ldb, pb + q0 * NR * kc);
      });
      parallel_tasks(tasks, [&](int64_t t) {
        const int64_t r0 = std::min(M, mu * t / tasks * MR), r1 = std::min(M, mu * (t + 1) / tasks * MR);
        if (r1 <= r0) return;
        const float* ap = ta ? a + p0 * lda + r0 : a + r0 * lda + p0;
        gemm_rows(ta, r1 - r0, nc, kc, alpha, ap, lda, pb, p0 == 0 ? beta : 1.f, c + r0 * ldc + j0, ldc);
      });
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
  if (s.tn == 1 && blocking().shared_b) {
    gemm_shared_b(s.tm, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
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
