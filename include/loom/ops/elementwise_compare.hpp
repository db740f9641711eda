#pragma once
// Elementwise comparisons returning Tensor<uint8_t> (1 = true), never recorded by autograd:
//   eq, ne, lt, le, gt, ge    tensor-tensor (broadcast) and tensor-scalar
//   isfinite(t)               1 where t is neither inf nor nan
//   all_finite(t)             whether every element is finite: the trainers' fast overflow check
// Tensor-scalar comparisons first convert the scalar to the tensor's element type for floating
// tensors (so a bf16 tensor holding bf16(0.1) equals 0.1, as in PyTorch), and compare in double for
// integer tensors (so an int tensor is < 0.5 where it is <= 0).
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "loom/core/tensor.hpp"
#include "loom/ops/elementwise_functors.hpp"
#include "loom/ops/elementwise_map.hpp"
#include "loom/ops/reduce.hpp"

namespace loom {
namespace detail {

// Pred: fn::Eq, fn::Lt, ...
template <class Pred, class T, class Dev>
Tensor<uint8_t, Dev> compare_tensors(const char* op, const Tensor<T, Dev>& a, const Tensor<T, Dev>& b) {
  LOOM_CHECK(a.defined() && b.defined(), op, ": undefined input tensor");
  return map_elements<uint8_t>(broadcast_shapes(a.shape(), b.shape(), op), 1, fn::Compare<Pred>{}, a, b);
}

template <class Pred, class T, class Dev>
Tensor<uint8_t, Dev> compare_scalar(const char* op, const Tensor<T, Dev>& a, double s) {
  LOOM_CHECK(a.defined(), op, ": undefined input tensor");
  if constexpr (FloatElement<T>) {
    using C = compute_t<T>;
    const C c = static_cast<C>(static_cast<T>(s));  // round the scalar to T first (bf16)
    return map_elements<uint8_t>(a.shape(), 1, fn::CompareScalar<Pred, C>{c}, a);
  } else {
    return map_elements<uint8_t>(a.shape(), 1, fn::CompareScalar<Pred, double>{s}, a);
  }
}

// Bits of a float type's exponent field: all ones means inf or nan.
template <class T>
bool is_finite_element(T x) {
  if constexpr (std::is_same_v<T, float>) {
    return (std::bit_cast<uint32_t>(x) & 0x7f800000u) != 0x7f800000u;
  } else if constexpr (std::is_same_v<T, double>) {
    return (std::bit_cast<uint64_t>(x) & 0x7ff0000000000000ull) != 0x7ff0000000000000ull;
  } else if constexpr (std::is_same_v<T, bf16>) {
    return (x.bits & 0x7f80u) != 0x7f80u;
  } else {
    return true;  // integers are always finite
  }
}

}  // namespace detail

#define LOOM_DEFINE_COMPARISON(name, Pred)                                      \
  template <class T, class Dev>                                                 \
  Tensor<uint8_t, Dev> name(const Tensor<T, Dev>& a, const Tensor<T, Dev>& b) { \
    return detail::compare_tensors<fn::Pred>(#name, a, b);                      \
  }                                                                             \
  template <class T, class Dev>                                                 \
  Tensor<uint8_t, Dev> name(const Tensor<T, Dev>& a, double s) {                \
    return detail::compare_scalar<fn::Pred>(#name, a, s);                       \
  }

LOOM_DEFINE_COMPARISON(eq, Eq)  // a == b
LOOM_DEFINE_COMPARISON(ne, Ne)  // a != b (true where either is nan)
LOOM_DEFINE_COMPARISON(lt, Lt)  // a < b
LOOM_DEFINE_COMPARISON(le, Le)  // a <= b
LOOM_DEFINE_COMPARISON(gt, Gt)  // a > b
LOOM_DEFINE_COMPARISON(ge, Ge)  // a >= b
#undef LOOM_DEFINE_COMPARISON

// 1 where t is finite (not inf, not nan); all ones for integer tensors.
template <class T, class Dev>
Tensor<uint8_t, Dev> isfinite(const Tensor<T, Dev>& t) {
  LOOM_CHECK(t.defined(), "isfinite: undefined input tensor");
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    return detail::map_elements<uint8_t>(t.shape(), 1, fn::IsFinite{}, t);
  } else {
    // Read the raw elements (not their compute value) so the bit test sees bf16 as stored.
    Tensor<uint8_t, Dev> out = Tensor<uint8_t, Dev>::empty(t.shape());
    uint8_t* po = out.data();
    const T* pt = t.data();
    detail::for_each_run<2>(t.shape(), {out.strides(), t.strides()}, [&](auto off, int64_t n, auto st) {
      for (int64_t i = 0; i < n; ++i)
        po[off[0] + i * st[0]] = uint8_t(detail::is_finite_element(pt[off[1] + i * st[1]]));
    });
    return out;
  }
}

// Whether every element of t is finite (true for an empty tensor). Reads each element once, in
// parallel, with a branch-free inner loop; allocates nothing.
template <class T, class Dev>
bool all_finite(const Tensor<T, Dev>& t) {
  LOOM_CHECK(t.defined(), "all_finite: undefined input tensor");
  if constexpr (!FloatElement<T>) {
    return true;
  } else if constexpr (Tensor<T, Dev>::kOnDevice) {
    // The isfinite mask, widened to float, reduced to its minimum on the device: one scalar read back.
    if (t.numel() == 0) return true;
    NoGradGuard guard;
    return amin(isfinite(t).template to<float>()).item() > 0.5f;
  } else {
    std::atomic<bool> finite{true};
    const T* pt = t.data();
    auto scan = [&](const T* p, int64_t n, int64_t stride) {
      bool ok = true;
      if (stride == 1) {
        for (int64_t i = 0; i < n; ++i) ok &= detail::is_finite_element(p[i]);
      } else {
        for (int64_t i = 0; i < n; ++i) ok &= detail::is_finite_element(p[i * stride]);
      }
      if (!ok) finite.store(false, std::memory_order_relaxed);
    };
    if (t.is_contiguous()) {
      parallel_for(0, t.numel(), detail::elementwise_grain(1),
                   [&](int64_t begin, int64_t end) { scan(pt + begin, end - begin, 1); });
    } else {
      detail::for_each_run<1>(t.shape(), {t.strides()}, [&](auto off, int64_t n, auto st) { scan(pt + off[0], n, st[0]); });
    }
    return finite.load();
  }
}

}  // namespace loom
