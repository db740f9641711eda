#pragma once
// layer_norm over the trailing dims named by normalized_shape, as torch.nn.functional.layer_norm:
//   y = (x - mean) * rstd * weight + bias,   rstd = 1 / sqrt(var + eps),   var biased (divides by N)
// with weight and bias optional (an undefined Tensor means none). The forward saves mean and rstd
// per row; the backward is the fused closed form (per row, with xhat = (x - mean) * rstd and
// gw = g * weight):
//   dx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat)),   dweight = sum_rows g * xhat,   dbias = sum_rows g
// Row statistics and the weight/bias sums are accumulated in double; the column sums of dweight and
// dbias use a fixed split of the rows (partials merged in order), so they do not depend on threads.
// On CUDA tensors (float, bf16) forward and backward run on the device, one block per row with fp32
// statistics, dweight / dbias as deterministic column sums (loom/cuda/norm.hpp, kernels/norm.cu).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "loom/autograd/engine.hpp"
#include "loom/core/parallel.hpp"
#include "loom/core/shape.hpp"
#include "loom/core/tensor.hpp"
#include "loom/cuda/norm.hpp"
#include "loom/ops/view.hpp"

namespace loom {
namespace detail {

// Row blocks of the dweight/dbias reduction: fixed, so the summation order is too.
inline constexpr int64_t kLayerNormGradChunks = 32;

// Sum of (p[i] - center) and of its square over a contiguous row, in double (8 partial sums).
template <class T>
void deviation_sums(const T* p, int64_t n, double center, double& sum, double& sum_sq) {
  double s[8] = {0, 0, 0, 0, 0, 0, 0, 0}, q[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) {
      const double d = double(compute_t<T>(p[i + k])) - center;
      s[k] += d;
      q[k] += d * d;
    }
  double ts = 0, tq = 0;
  for (; i < n; ++i) {
    const double d = double(compute_t<T>(p[i])) - center;
    ts += d;
    tq += d * d;
  }
  sum = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + ts;
  sum_sq = ((q[0] + q[1]) + (q[2] + q[3])) + ((q[4] + q[5]) + (q[6] + q[7])) + tq;
}

}  // namespace detail

template <FloatElement T, class Dev>
Tensor<T, Dev> layer_norm(const Tensor<T, Dev>& x, const Shape& normalized_shape, const Tensor<T, Dev>& weight = {},
                          const Tensor<T, Dev>& bias = {}, double eps = 1e-5) {
  using C = compute_t<T>;
  const Shape& shape = x.shape();
  const int lead = shape.size() - normalized_shape.size();
  bool trailing_match = normalized_shape.size() > 0 && lead >= 0;
  for (int d = 0; trailing_match && d < normalized_shape.size(); ++d)
    trailing_match = shape[lead + d] == normalized_shape[d];
  LOOM_CHECK(trailing_match, "layer_norm: normalized_shape ", normalized_shape,
             " does not match the trailing dimensions of input shape ", shape);
  LOOM_CHECK(!weight.defined() || weight.shape() == normalized_shape, "layer_norm: weight of shape ",
             weight.defined() ? weight.shape() : Shape{}, " does not match normalized_shape ", normalized_shape,
             " (input shape ", shape, ")");
  LOOM_CHECK(!bias.defined() || bias.shape() == normalized_shape, "layer_norm: bias of shape ",
             bias.defined() ? bias.shape() : Shape{}, " does not match normalized_shape ", normalized_shape,
             " (input shape ", shape, ")");
  LOOM_CHECK(eps >= 0, "layer_norm: eps must be >= 0, got ", eps);

  const int64_t cols = normalized_shape.numel();  // N: elements normalized together
  int64_t rows = 1;                                // M
  for (int d = 0; d < lead; ++d) rows *= shape[d];

  Tensor<T, Dev> xc, wc, bc;  // dense copies where needed (not recorded: this op records itself)
  {
    NoGradGuard no_grad;
    xc = x.contiguous();
    if (weight.defined()) wc = weight.contiguous();
    if (bias.defined()) bc = bias.contiguous();
  }
  Tensor<T, Dev> y = Tensor<T, Dev>::empty(shape);
  Tensor<C, Dev> mean = Tensor<C, Dev>::empty({rows});  // [M]
  Tensor<C, Dev> rstd = Tensor<C, Dev>::empty({rows});  // [M]
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    static_assert(detail::cuda_backend_for<T>, "layer_norm on CUDA tensors needs LOOM_WITH_CUDA (link loom::kernels)");
    if constexpr (!std::is_same_v<C, float>) {
      detail::fail("layer_norm: float64 is not supported on CUDA");
    } else {
      cuda::layer_norm_forward(dtype_traits<T>::tag, y.data(), mean.data(), rstd.data(), xc.data(),
                               weight.defined() ? wc.data() : nullptr, bias.defined() ? bc.data() : nullptr, rows,
                               cols, eps);
    }
  } else {
    const T* px = xc.data();
    const T* pw = weight.defined() ? wc.data() : nullptr;
    const T* pb = bias.defined() ? bc.data() : nullptr;
    T* py = y.data();
    C *pmean = mean.data(), *prstd = rstd.data();
    parallel_for(0, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* xr = px + r * cols;
        T* yr = py + r * cols;
        double s, unused;
        detail::deviation_sums(xr, cols, 0.0, s, unused);
        const double mu = s / double(cols);
        double dev, dev2;
        detail::deviation_sums(xr, cols, mu, dev, dev2);
        const double var = (dev2 - dev * dev / double(cols)) / double(cols);
        const C m = C(mu), rs = C(1.0 / std::sqrt(var + eps));
        pmean[r] = m;
        prstd[r] = rs;
        for (int64_t j = 0; j < cols; ++j) {
          C v = (C(xr[j]) - m) * rs;
          if (pw) v *= C(pw[j]);
          if (pb) v += C(pb[j]);
          yr[j] = T(v);
        }
      }
    });
  }

  if (autograd::should_record(x.impl(), weight.impl(), bias.impl())) {
    const bool need_dx = autograd::needs_grad(x.impl()), need_dw = autograd::needs_grad(weight.impl()),
               need_db = autograd::needs_grad(bias.impl());
    autograd::record(
        "LayerNormBackward", y, {x.impl(), weight.impl(), bias.impl()},
        [rows, cols, need_dx, need_dw, need_db, shape, normalized_shape,
         sx = autograd::SavedTensor<T, Dev>(xc, "layer_norm"), sw = autograd::SavedTensor<T, Dev>(wc, "layer_norm"),
         smean = autograd::SavedTensor<C, Dev>(mean, "layer_norm"),
         srstd = autograd::SavedTensor<C, Dev>(rstd, "layer_norm")](const Tensor<T, Dev>& g) {
          const Tensor<T, Dev> gc = g.contiguous();
          if constexpr (Tensor<T, Dev>::kOnDevice) {
            Tensor<T, Dev> dx = need_dx ? Tensor<T, Dev>::empty(shape) : Tensor<T, Dev>();
            Tensor<T, Dev> dw = need_dw ? Tensor<T, Dev>::empty(normalized_shape) : Tensor<T, Dev>();
            Tensor<T, Dev> db = need_db ? Tensor<T, Dev>::empty(normalized_shape) : Tensor<T, Dev>();
            if constexpr (std::is_same_v<C, float>) {
              const void* pw = sw.get().defined() ? sw.get().data() : nullptr;
              if (need_dx)
                cuda::layer_norm_backward_input(dtype_traits<T>::tag, dx.data(), gc.data(), sx.get().data(), pw,
                                                smean.get().data(), srstd.get().data(), rows, cols);
              cuda::layer_norm_backward_params(dtype_traits<T>::tag, need_dw ? dw.data() : nullptr,
                                               need_db ? db.data() : nullptr, gc.data(), sx.get().data(),
                                               smean.get().data(), srstd.get().data(), rows, cols);
            }
            return std::vector<Tensor<T, Dev>>{dx, dw, db};
          } else {
            const T* pg = gc.data();
            const T* px = sx.get().data();
            const T* pw = sw.get().defined() ? sw.get().data() : nullptr;
            const C *pmean = smean.get().data(), *prstd = srstd.get().data();
            Tensor<T, Dev> dx = need_dx ? Tensor<T, Dev>::empty(shape) : Tensor<T, Dev>();
            T* pdx = need_dx ? dx.data() : nullptr;
            const bool need_cols = need_dw || need_db;
            const int64_t chunks =
                need_cols ? std::min(rows, detail::kLayerNormGradChunks) : std::min<int64_t>(rows, 1);
            std::vector<double> dw_part(need_dw ? size_t(chunks * cols) : 0),
                db_part(need_db ? size_t(chunks * cols) : 0);

            auto do_rows = [&](int64_t c, int64_t r0, int64_t r1) {
              double* dw = need_dw ? dw_part.data() + c * cols : nullptr;
              double* db = need_db ? db_part.data() + c * cols : nullptr;
              for (int64_t r = r0; r < r1; ++r) {
                const T *xr = px + r * cols, *gr = pg + r * cols;
                const double m = double(pmean[r]), rs = double(prstd[r]);
                if (need_dx) {
                  double sum_gw = 0, sum_gw_xhat = 0;
                  for (int64_t j = 0; j < cols; ++j) {
                    const double xhat = (double(C(xr[j])) - m) * rs;
                    const double gw = double(C(gr[j])) * (pw ? double(C(pw[j])) : 1.0);
                    sum_gw += gw;
                    sum_gw_xhat += gw * xhat;
                  }
                  const double a = sum_gw / double(cols), b = sum_gw_xhat / double(cols);
                  T* dr = pdx + r * cols;
                  for (int64_t j = 0; j < cols; ++j) {
                    const double xhat = (double(C(xr[j])) - m) * rs;
                    const double gw = double(C(gr[j])) * (pw ? double(C(pw[j])) : 1.0);
                    dr[j] = T(C(rs * (gw - a - xhat * b)));
                  }
                }
                if (dw)
                  for (int64_t j = 0; j < cols; ++j) dw[j] += double(C(gr[j])) * (double(C(xr[j])) - m) * rs;
                if (db)
                  for (int64_t j = 0; j < cols; ++j) db[j] += double(C(gr[j]));
              }
            };
            if (need_cols) {
              parallel_tasks(chunks, [&](int64_t c) { do_rows(c, rows * c / chunks, rows * (c + 1) / chunks); });
            } else {
              parallel_for(0, rows, std::max<int64_t>(1, 8192 / std::max<int64_t>(cols, 1)),
                           [&](int64_t r0, int64_t r1) { do_rows(0, r0, r1); });
            }
            // Merge the row blocks' partial column sums in block order.
            auto merged = [&](const std::vector<double>& part) {
              Tensor<T, Dev> out = Tensor<T, Dev>::empty(normalized_shape);
              T* po = out.data();
              for (int64_t j = 0; j < cols; ++j) {
                double s = 0;
                for (int64_t c = 0; c < chunks; ++c) s += part[size_t(c * cols + j)];
                po[j] = T(C(s));
              }
              return out;
            };
            return std::vector<Tensor<T, Dev>>{dx, need_dw ? merged(dw_part) : Tensor<T, Dev>(),
                                               need_db ? merged(db_part) : Tensor<T, Dev>()};
          }
        });
  }
  return y;
}

}  // namespace loom
