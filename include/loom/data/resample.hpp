#pragma once
// Bilinear resizing of image bands with half-pixel centres, the convention of PyTorch's
// interpolate(mode='bilinear', align_corners=False) (and of OpenCV's INTER_LINEAR):
//
//   source coordinate of output pixel i = max((i + 0.5) * in / out - 0.5, 0)
//   i0 = floor(source), i1 = min(i0 + 1, in - 1), weight of i1 = source - i0
//
// so pixel centres line up, upsampling repeats the edge values (clamping) and a 2x upsample puts
// each input value at weights 0.75/0.25 between its neighbours. Used to bring BigEarthNet's 20 m
// and 60 m bands to the 10 m grid. It is a data transform: the output records no gradient.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "loom/core/error.hpp"
#include "loom/core/parallel.hpp"
#include "loom/core/tensor.hpp"

namespace loom::data {

namespace detail {

// For each output index along one axis: the two source indices and the weight of the second.
template <class C>
struct LinearTaps {
  std::vector<int64_t> lo, hi;
  std::vector<C> weight_hi;
};

// PyTorch (1.13, CPU) keeps the scale in the tensor's type (float for float tensors), evaluates
// scale * (i + 0.5) - 0.5 and the floor in double, and rounds only the weight to the tensor's type;
// doing the same keeps loom's weights identical to PyTorch's (measured against its output).
template <class C>
LinearTaps<C> linear_taps(int64_t in, int64_t out) {
  LinearTaps<C> taps;
  taps.lo.resize(size_t(out));
  taps.hi.resize(size_t(out));
  taps.weight_hi.resize(size_t(out));
  const double scale = double(C(in) / C(out));
  for (int64_t i = 0; i < out; ++i) {
    const double src = std::max(scale * (double(i) + 0.5) - 0.5, 0.0);
    const int64_t lo = std::min<int64_t>(int64_t(std::floor(src)), in - 1);
    taps.lo[size_t(i)] = lo;
    taps.hi[size_t(i)] = std::min(lo + 1, in - 1);
    taps.weight_hi[size_t(i)] = C(src - double(lo));
  }
  return taps;
}

}  // namespace detail

// Resizes the last two dimensions of x [..., h, w] (any strides) to [..., out_h, out_w].
// Returns a new contiguous tensor; an unchanged size returns a contiguous copy.
template <class T, class Dev>
Tensor<T, Dev> resize_bilinear(const Tensor<T, Dev>& x, int64_t out_h, int64_t out_w) {
  static_assert(std::is_same_v<Dev, CPU>, "resize_bilinear: CPU only for now");
  static_assert(std::is_floating_point_v<compute_t<T>>, "resize_bilinear: floating-point tensors only");
  LOOM_CHECK(x.defined() && x.dim() >= 2, "resize_bilinear: expected a tensor [..., h, w], got shape ",
             x.defined() ? x.shape() : Shape{});
  LOOM_CHECK(out_h > 0 && out_w > 0, "resize_bilinear: output size ", out_h, " x ", out_w,
             " must be positive (input shape ", x.shape(), ")");
  const int64_t in_h = x.size(-2), in_w = x.size(-1);
  LOOM_CHECK(in_h > 0 && in_w > 0, "resize_bilinear: cannot resize an empty image of shape ", x.shape(),
             " to ", out_h, " x ", out_w);
  Shape out_shape = x.shape();
  out_shape[out_shape.size() - 2] = out_h;
  out_shape[out_shape.size() - 1] = out_w;
  Tensor<T, Dev> out = Tensor<T, Dev>::empty(out_shape);  // [..., out_h, out_w]
  if (out.numel() == 0) return out;

  const Tensor<T, Dev> src = x.contiguous();  // [..., in_h, in_w]
  const int64_t planes = src.numel() / (in_h * in_w);
  using C = compute_t<T>;
  const detail::LinearTaps<C> rows = detail::linear_taps<C>(in_h, out_h);
  const detail::LinearTaps<C> cols = detail::linear_taps<C>(in_w, out_w);
  const T* in = src.data();
  T* o = out.data();
  parallel_for(0, planes * out_h, std::max<int64_t>(1, 4096 / out_w), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t plane = r / out_h, i = r % out_h;
      const T* top = in + (plane * in_h + rows.lo[size_t(i)]) * in_w;
      const T* bottom = in + (plane * in_h + rows.hi[size_t(i)]) * in_w;
      const C wy = rows.weight_hi[size_t(i)];
      T* dst = o + r * out_w;
      for (int64_t j = 0; j < out_w; ++j) {
        const int64_t x0 = cols.lo[size_t(j)], x1 = cols.hi[size_t(j)];
        const C wx = cols.weight_hi[size_t(j)];
        // Same association as PyTorch: h0lambda * (w0lambda * a + w1lambda * b) + h1lambda * (...)
        const C t = (C(1) - wx) * C(top[x0]) + wx * C(top[x1]);
        const C b = (C(1) - wx) * C(bottom[x0]) + wx * C(bottom[x1]);
        dst[j] = T((C(1) - wy) * t + wy * b);
      }
    }
  });
  return out;
}

}  // namespace loom::data
