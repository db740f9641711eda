#pragma once
// Matrix products, each with its backward beside it:
//   matmul(a, b)            torch.matmul semantics: 1-D x 1-D dot, matrix x vector, vector x matrix,
//                           2-D x 2-D, and batched (rank >= 3) with NumPy broadcasting of batch dims
//   bmm(a, b)               [B, M, K] x [B, K, N], no broadcasting
//   linear(x, w, bias)      x [.., in] . w [out, in]^T + bias [out]  (the nn.Linear layer)
//
// Layouts: the GEMM (loom::blas) takes each matrix as row-major with a leading dimension, or as the
// transpose of one. A view whose last two dims are transposed (strides [.., 1, ld]) is therefore
// handed over with the trans flag and never copied; only truly irregular layouts (stride-0 rows,
// stepped columns) are made contiguous first. Batch dims are walked as strided runs, each run one
// gemm_batched call (stride 0 for a broadcast operand); when the right operand is shared by the whole
// batch and the left one's rows form one strided sequence, the batch is folded into a single GEMM.
// bf16 converts its operands to float, multiplies in fp32 and rounds the result once.
//
// CUDA tensors: cuBLAS (kernels/gemm.cu) with the same no-copy rule, the strides -> (op, ld, batch
// stride) mapping in loom/cuda/gemm_layout.hpp; fp32 (TF32 when loom::cuda::set_allow_tf32(true)),
// bf16 in and out with fp32 accumulation (no conversion pass), fp64. The bias is broadcast into the
// output by a small kernel and the GEMM adds onto it (beta = 1); sums over broadcast dims (bias and
// batch-broadcast gradients) are detail::sum_to's device reduction.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <vector>

#include "loom/autograd/engine.hpp"
#include "loom/core/gemm.hpp"
#include "loom/core/iterate.hpp"
#include "loom/core/parallel.hpp"
#include "loom/core/tensor.hpp"
#include "loom/cuda/gemm.hpp"
#include "loom/ops/view.hpp"

namespace loom {
namespace detail {

// How one [rows, cols] matrix is passed to the GEMM: row-major with leading dimension `ld`, or
// (trans) as the transpose of a row-major [cols, rows] matrix.
struct GemmOperand {
  bool trans = false;
  int64_t ld = 1;
};

// The GEMM operand for a matrix with the given extents and strides, if one exists without copying.
// Extent-1 dims may have any stride, so a single row or column fits either way.
inline std::optional<GemmOperand> gemm_operand(int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride) {
  const int64_t min_row_ld = std::max<int64_t>(cols, 1), min_col_ld = std::max<int64_t>(rows, 1);
  if ((cols == 1 || col_stride == 1) && (rows == 1 || row_stride >= min_row_ld))
    return GemmOperand{false, rows == 1 ? min_row_ld : row_stride};
  if ((rows == 1 || row_stride == 1) && (cols == 1 || col_stride >= min_col_ld))
    return GemmOperand{true, cols == 1 ? min_col_ld : col_stride};
  return std::nullopt;
}

// Strides that walk operand x's batch dims (all but its last two) over the broadcast `batch`
// shape: 0 where x is broadcast (missing or extent-1 dims).
template <class T, class Dev>
Strides batch_strides(const Tensor<T, Dev>& x, const Shape& batch) {
  Strides out = Strides::filled(batch.size(), 0);
  const int own = x.dim() - 2, lead = batch.size() - own;
  for (int d = 0; d < own; ++d) out[lead + d] = x.shape()[d] == 1 ? 0 : x.strides()[d];
  return out;
}

// The broadcast batch shape of two matrix operands (rank >= 2 each); `what` names the op, and the
// message names both full shapes.
inline Shape matmul_batch_shape(const Shape& a, const Shape& b, const char* what) {
  const int na = a.size() - 2, nb = b.size() - 2, n = std::max(na, nb);
  Shape out = Shape::filled(n, 1);
  for (int i = 0; i < n; ++i) {
    const int ia = i - (n - na), ib = i - (n - nb);
    const int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    LOOM_CHECK(da == db || da == 1 || db == 1, what, ": batch dimensions of ", a, " and ", b,
               " cannot be broadcast (", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// c[batch.., M, N] = a[.., M, K] . b[.., K, N] + beta * c, for float/double on the CPU. c is
// contiguous with the broadcast batch shape; beta == 0 never reads it.
template <class T, class Dev>
void gemm_into(Tensor<T, Dev> a, Tensor<T, Dev> b, const Tensor<T, Dev>& c, T beta) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "gemm_into: float or double only");
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  if (c.numel() == 0) return;
  auto operand = [](Tensor<T, Dev>& x) {
    const int r = x.dim();
    auto op = gemm_operand(x.shape()[r - 2], x.shape()[r - 1], x.strides()[r - 2], x.strides()[r - 1]);
    if (op) return *op;
    x = x.contiguous();  // irregular inner layout: the one case that copies
    return *gemm_operand(x.shape()[r - 2], x.shape()[r - 1], x.strides()[r - 2], x.strides()[r - 1]);
  };
  const GemmOperand oa = operand(a), ob = operand(b);

  Shape batch;
  for (int d = 0; d + 2 < c.dim(); ++d) batch.push_back(c.shape()[d]);
  const Strides sa = batch_strides(a, batch), sb = batch_strides(b, batch);
  Strides sc;
  for (int d = 0; d + 2 < c.dim(); ++d) sc.push_back(c.strides()[d]);
  const T* pa = a.data();
  const T* pb = b.data();
  T* pc = c.data();

  // b shared by the whole batch and a's rows one strided sequence: one (batch*M) x N GEMM.
  const bool b_shared = std::all_of(sb.begin(), sb.end(), [](int64_t s) { return s == 0; });
  if (b_shared && !oa.trans) {
    Shape rows = batch;
    Strides a_rows = sa, c_rows = sc;
    rows.push_back(M);
    a_rows.push_back(oa.ld);
    c_rows.push_back(N);
    const StridedLayout<2> lay = coalesce<2>(rows, {a_rows, c_rows});
    if (lay.shape.size() == 1) {
      const int64_t total = lay.shape[0];
      const int64_t lda = total == 1 ? oa.ld : lay.strides[0][0];
      if (lda >= std::max<int64_t>(K, 1)) {
        blas::gemm(false, ob.trans, total, N, K, T(1), pa, lda, pb, ob.ld, beta, pc, N);
        return;
      }
    }
  }
  for_each_run_serial<3>(batch, {sa, sb, sc}, [&](auto off, int64_t n, auto st) {
    blas::gemm_batched(oa.trans, ob.trans, M, N, K, T(1), pa + off[0], oa.ld, pb + off[1], ob.ld, beta,
                       pc + off[2], N, n, st[0], st[1], st[2]);
  });
}

// The device counterpart of gemm_into: c (contiguous, broadcast batch shape) = a . b + beta * c
// through cuBLAS. Operands without a cuBLAS description of their last two dims are made contiguous.
template <class T, class Dev>
void gemm_into_device(Tensor<T, Dev> a, Tensor<T, Dev> b, const Tensor<T, Dev>& c, float beta) {
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  if (c.numel() == 0) return;
  if (K == 0) {  // an empty sum: c = beta * c, and beta is 0 (fresh c) or 1 (c holds the bias)
    if (beta == 0) Tensor<T, Dev>(c).fill_(T(0));
    return;
  }
  auto operand = [](Tensor<T, Dev>& x) {
    const int r = x.dim();
    auto op = cuda::cublas_operand(x.shape()[r - 2], x.shape()[r - 1], x.strides()[r - 2], x.strides()[r - 1]);
    if (op) return *op;
    x = x.contiguous();  // irregular inner layout: the one case that copies
    return *cuda::cublas_operand(x.shape()[r - 2], x.shape()[r - 1], x.strides()[r - 2], x.strides()[r - 1]);
  };
  const cuda::CublasOperand oa = operand(a), ob = operand(b);
  Shape batch;
  Strides sc;
  for (int d = 0; d + 2 < c.dim(); ++d) batch.push_back(c.shape()[d]), sc.push_back(c.strides()[d]);
  for (const cuda::CublasGemmCall& call :
       cuda::plan_cublas_gemm(M, N, K, oa, ob, batch, batch_strides(a, batch), batch_strides(b, batch), sc, N))
    cuda::gemm(dtype_traits<T>::tag, call, a.data(), b.data(), beta, c.data());
}

// a[.., M, K] . b[.., K, N] (+ bias[N] on every row) as a new contiguous tensor, without recording.
// Shapes are checked by the caller. The bias is written into C first and the GEMM adds onto it
// (beta = 1), so the add happens in the GEMM's own epilogue instead of a second pass.
template <class T, class Dev>
Tensor<T, Dev> matmul_product(const Tensor<T, Dev>& a, const Tensor<T, Dev>& b, const Tensor<T, Dev>& bias = {}) {
  NoGradGuard no_grad;
  if constexpr (Tensor<T, Dev>::kOnDevice) {  // cuBLAS takes bf16 as it is: no conversion pass
    Shape out_shape = matmul_batch_shape(a.shape(), b.shape(), "matmul");
    const int64_t M = a.size(-2), N = b.size(-1);
    out_shape.push_back(M);
    out_shape.push_back(N);
    Tensor<T, Dev> c = Tensor<T, Dev>::empty(out_shape);  // [batch.., M, N]
    float beta = 0;
    if (bias.defined() && c.numel() > 0) {
      cuda::broadcast_rows(dtype_traits<T>::tag, c.data(), bias.data(), bias.stride(0), c.numel() / N, N);
      beta = 1;
    }
    gemm_into_device(a, b, c, beta);
    return c;
  } else if constexpr (std::is_same_v<T, bf16>) {
    const Tensor<float, Dev> bias_f = bias.defined() ? bias.template to<float>() : Tensor<float, Dev>();
    return matmul_product(a.template to<float>(), b.template to<float>(), bias_f).template to<bf16>();
  } else {
    Shape out_shape = matmul_batch_shape(a.shape(), b.shape(), "matmul");
    const int64_t M = a.size(-2), N = b.size(-1);
    out_shape.push_back(M);
    out_shape.push_back(N);
    Tensor<T, Dev> c = Tensor<T, Dev>::empty(out_shape);
    T beta = T(0);
    if (bias.defined() && c.numel() > 0) {
      const T* pb = bias.data();
      const int64_t bias_stride = bias.stride(0);
      T* pc = c.data();
      parallel_for(0, c.numel() / N, std::max<int64_t>(1, 32768 / N), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t j = 0; j < N; ++j) pc[r * N + j] = pb[j * bias_stride];
      });
      beta = T(1);
    }
    gemm_into(a, b, c, beta);
    return c;
  }
}

// Column sums of a [rows, cols] matrix (any strides) -> [cols], accumulated in double.
// Rows of unit column stride (a linear layer's bias gradient) are summed in fixed blocks of rows,
// each block's partial sums merged in block order: reads stay sequential, and the result does not
// depend on the thread count. (Splitting by columns instead made every thread walk all rows for a
// few columns, re-reading each cache line once per chunk: 2.5% of the MAE training step.) Other
// layouts split by columns, in row order.
template <class T, class Dev>
Tensor<T, Dev> sum_rows(const Tensor<T, Dev>& m) {
  const int64_t rows = m.size(0), cols = m.size(1), s0 = m.stride(0), s1 = m.stride(1);
  Tensor<T, Dev> out = Tensor<T, Dev>::empty({cols});
  const T* pm = m.data();
  T* po = out.data();
  if (s1 == 1 && cols > 0 && rows > 0) {
    const int64_t block = std::max<int64_t>(1, 32768 / cols), blocks = (rows + block - 1) / block;
    std::vector<double> partial(size_t(blocks * cols), 0.0);  // [blocks, cols]
    parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        double* acc = partial.data() + b * cols;
        for (int64_t r = b * block; r < std::min(rows, (b + 1) * block); ++r) {
          const T* row = pm + r * s0;
          for (int64_t c = 0; c < cols; ++c) acc[c] += double(compute_t<T>(row[c]));
        }
      }
    });
    for (int64_t c = 0; c < cols; ++c) {
      double s = 0;
      for (int64_t b = 0; b < blocks; ++b) s += partial[size_t(b * cols + c)];
      po[c] = T(static_cast<compute_t<T>>(s));
    }
    return out;
  }
  parallel_for(0, cols, std::max<int64_t>(1, 32768 / std::max<int64_t>(rows, 1)), [&](int64_t c0, int64_t c1) {
    std::vector<double> acc(size_t(c1 - c0), 0.0);
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = pm + r * s0;
      for (int64_t c = c0; c < c1; ++c) acc[size_t(c - c0)] += double(compute_t<T>(row[c * s1]));
    }
    for (int64_t c = c0; c < c1; ++c) po[c] = T(static_cast<compute_t<T>>(acc[size_t(c - c0)]));
  });
  return out;
}

// matmul for rank >= 2 on both sides (shapes already checked), recording its backward:
//   dA = dC . B^T,  dB = A^T . dC,  each summed back over the batch dims its operand was broadcast in.
template <class T, class Dev>
Tensor<T, Dev> matmul_batched(const Tensor<T, Dev>& a, const Tensor<T, Dev>& b) {
  Tensor<T, Dev> out = matmul_product(a, b);  // [batch.., M, N]
  if (autograd::should_record(a.impl(), b.impl())) {
    const bool need_a = autograd::needs_grad(a.impl()), need_b = autograd::needs_grad(b.impl());
    autograd::record(
        "MatmulBackward", out, {a.impl(), b.impl()},
        [sa = autograd::SavedTensor<T, Dev>(need_b ? a : Tensor<T, Dev>(), "matmul"),
         sb = autograd::SavedTensor<T, Dev>(need_a ? b : Tensor<T, Dev>(), "matmul"), a_shape = a.shape(),
         b_shape = b.shape(), need_a, need_b](const Tensor<T, Dev>& g) {
          Tensor<T, Dev> ga, gb;
          if (need_a) ga = sum_to(matmul_product(g, sb.get().transpose(-2, -1)), a_shape);
          if (need_b) {
            const Tensor<T, Dev>& a_saved = sa.get();
            if (b_shape.size() == 2 && a_shape.size() > 2) {
              // B was shared by every batch entry: sum_i A_i^T dC_i is one GEMM over the stacked rows.
              const int64_t K = a_shape.back(), N = b_shape.back();
              gb = matmul_product(a_saved.reshape({-1, K}).transpose(0, 1), g.reshape({-1, N}));
            } else {
              gb = sum_to(matmul_product(a_saved.transpose(-2, -1), g), b_shape);
            }
          }
          return std::vector<Tensor<T, Dev>>{ga, gb};
        });
  }
  return out;
}

template <class T, class Dev>
void check_matmul_operands() {
  static_assert(Dev::kind == DeviceKind::cpu || cuda_backend_for<T>,
                "matrix products on CUDA tensors need LOOM_WITH_CUDA (link loom::kernels)");
  static_assert(FloatElement<T>, "matrix products need a floating-point element type (float, double, bf16)");
}

}  // namespace detail

// torch.matmul: 1-D x 1-D -> [] (dot), [M, K] x [K] -> [M], [K] x [K, N] -> [N], and rank >= 2 on
// both sides -> [broadcast(batch_a, batch_b).., M, N]; a 1-D operand of a batched product is a
// matrix with its extra dim removed from the result.
template <class T, class Dev>
Tensor<T, Dev> matmul(const Tensor<T, Dev>& a, const Tensor<T, Dev>& b) {
  detail::check_matmul_operands<T, Dev>();
  LOOM_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: both operands need at least one dimension, got shapes ",
             a.shape(), " and ", b.shape());
  const int64_t k_a = a.shape().back(), k_b = b.dim() == 1 ? b.shape()[0] : b.shape()[b.dim() - 2];
  LOOM_CHECK(k_a == k_b, "matmul: inner dimensions differ: ", a.shape(), " x ", b.shape(), " (", k_a, " vs ", k_b,
             ")");
  if (a.dim() >= 2 && b.dim() >= 2) detail::matmul_batch_shape(a.shape(), b.shape(), "matmul");
  if (a.dim() == 1 && b.dim() == 1) return detail::matmul_batched(a.unsqueeze(0), b.unsqueeze(1)).reshape(Shape{});
  if (a.dim() == 1) return detail::matmul_batched(a.unsqueeze(0), b).squeeze(-2);
  if (b.dim() == 1) return detail::matmul_batched(a, b.unsqueeze(1)).squeeze(-1);
  return detail::matmul_batched(a, b);
}

// Batched matrix product without broadcasting: [B, M, K] x [B, K, N] -> [B, M, N].
template <class T, class Dev>
Tensor<T, Dev> bmm(const Tensor<T, Dev>& a, const Tensor<T, Dev>& b) {
  detail::check_matmul_operands<T, Dev>();
  LOOM_CHECK(a.dim() == 3 && b.dim() == 3, "bmm: expected two 3-D tensors [B, M, K] and [B, K, N], got shapes ",
             a.shape(), " and ", b.shape());
  LOOM_CHECK(a.shape()[0] == b.shape()[0], "bmm: batch sizes differ: ", a.shape(), " and ", b.shape());
  LOOM_CHECK(a.shape()[2] == b.shape()[1], "bmm: inner dimensions differ: ", a.shape(), " x ", b.shape(), " (",
             a.shape()[2], " vs ", b.shape()[1], ")");
  return detail::matmul_batched(a, b);
}

// y = x . weight^T + bias:  x [.., in], weight [out, in], bias [out] (optional) -> y [.., out].
// The weight is read in place through the GEMM's trans flag; the bias is fused into the GEMM.
// Backward: dx = dy . W,  dW = dy^T . x over all rows,  dbias = column sums of dy.
template <class T, class Dev>
Tensor<T, Dev> linear(const Tensor<T, Dev>& x, const Tensor<T, Dev>& weight, const Tensor<T, Dev>& bias = {}) {
  detail::check_matmul_operands<T, Dev>();
  LOOM_CHECK(weight.dim() == 2, "linear: weight must be 2-D [out, in], got shape ", weight.shape(), " (input ",
             x.shape(), ")");
  LOOM_CHECK(x.dim() >= 1 && x.shape().back() == weight.shape()[1], "linear: input features differ from the weight's: input ",
             x.shape(), ", weight ", weight.shape(), " (expected [.., ", weight.shape()[1], "])");
  const int64_t out_features = weight.shape()[0], in_features = weight.shape()[1];
  LOOM_CHECK(!bias.defined() || (bias.dim() == 1 && bias.shape()[0] == out_features), "linear: bias must have shape [",
             out_features, "] for weight ", weight.shape(), ", got ", bias.shape());

  // [rows.., out]; a 1-D input is a single row.
  Tensor<T, Dev> out = [&] {
    NoGradGuard no_grad;
    const Tensor<T, Dev> x2 = x.dim() == 1 ? x.detach().view({1, in_features}) : x;
    Tensor<T, Dev> y = detail::matmul_product(x2, weight.transpose(0, 1), bias);
    return x.dim() == 1 ? y.view({out_features}) : y;
  }();
  if (autograd::should_record(x.impl(), weight.impl(), bias.defined() ? bias.impl() : nullptr)) {
    const bool need_x = autograd::needs_grad(x.impl()), need_w = autograd::needs_grad(weight.impl());
    const bool need_bias = bias.defined() && autograd::needs_grad(bias.impl());
    autograd::record(
        "LinearBackward", out, {x.impl(), weight.impl(), bias.defined() ? bias.impl() : nullptr},
        [sx = autograd::SavedTensor<T, Dev>(need_w ? x : Tensor<T, Dev>(), "linear"),
         sw = autograd::SavedTensor<T, Dev>(need_x ? weight : Tensor<T, Dev>(), "linear"), x_shape = x.shape(),
         in_features, out_features, need_x, need_w, need_bias](const Tensor<T, Dev>& g) {
          const Tensor<T, Dev> g_rows = g.reshape({-1, out_features});  // [rows, out]
          Tensor<T, Dev> gx, gw, gb;
          if (need_x) gx = detail::matmul_product(g_rows, sw.get()).reshape(x_shape);  // [rows, in]
          if (need_w)
            gw = detail::matmul_product(g_rows.transpose(0, 1), sx.get().reshape({-1, in_features}));  // [out, in]
          if (need_bias) {  // [out]
            if constexpr (Tensor<T, Dev>::kOnDevice) gb = detail::sum_to(g_rows, Shape{out_features});
            else gb = detail::sum_rows(g_rows);
          }
          return std::vector<Tensor<T, Dev>>{gx, gw, gb};
        });
  }
  return out;
}

}  // namespace loom
