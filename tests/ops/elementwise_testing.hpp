#pragma once
// Helpers shared by the elementwise tests: deterministic inputs, the same values laid out in
// several memory layouts, and a broadcasting index map written independently of loom's iterators,
// so references are plain loops in double.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "loom/core/tensor.hpp"
#include "support/check.hpp"

namespace loom::test {

// n values in [lo, hi] from a fixed LCG (seeded per call site), never closer than `gap` to 0 when
// gap > 0 (keeps divisors and kinks away from zero).
inline std::vector<double> values(int64_t n, double lo, double hi, uint64_t seed, double gap = 0) {
  std::vector<double> out;
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 12345;
  while (int64_t(out.size()) < n) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const double v = lo + (hi - lo) * (double(state >> 11) / double(1ull << 53));
    if (gap > 0 && std::abs(v) < gap) continue;
    out.push_back(v);
  }
  return out;
}

// The values as a tensor of type T would store them (bf16 and float round), back in double.
template <class T>
std::vector<double> stored(const std::vector<double>& v) {
  std::vector<double> out;
  for (double x : v) out.push_back(double(compute_t<T>(T(static_cast<compute_t<T>>(x)))));
  return out;
}

enum class Layout { contiguous, transposed, strided };
inline const char* layout_name(Layout l) {
  return l == Layout::contiguous ? "contiguous" : l == Layout::transposed ? "transposed" : "strided";
}

// A tensor of logical shape `shape` holding `v` (row-major) in the given layout:
//   transposed — a transpose of a contiguous tensor (rank >= 2; else contiguous);
//   strided    — every other element of a buffer filled with nan (99 for integers), starting at
//                offset 1 (rank >= 1), so reading a wrong element shows up.
template <class T>
Tensor<T> make_tensor(const Shape& shape, const std::vector<double>& v, Layout layout = Layout::contiguous) {
  std::vector<T> typed;
  for (double x : v) typed.push_back(T(static_cast<compute_t<T>>(x)));
  Tensor<T> dense = Tensor<T>::from_vector(shape, typed);
  if (layout == Layout::transposed && shape.size() >= 2) {
    Tensor<T> t = dense.transpose(-1, -2).contiguous().transpose(-1, -2);
    REQUIRE((!t.is_contiguous() || shape[shape.size() - 1] == 1 || shape[shape.size() - 2] == 1));
    return t;
  }
  if (layout == Layout::strided && shape.size() >= 1) {
    Shape wide = shape;
    wide[shape.size() - 1] = 2 * shape.back() + 1;
    const T filler = std::numeric_limits<T>::has_quiet_NaN ? std::numeric_limits<T>::quiet_NaN() : T(99);
    Tensor<T> base = Tensor<T>::full(wide, filler);
    Tensor<T> t = base.slice(-1, 1, wide.back(), 2);
    t.copy_(dense);
    return t;
  }
  return dense;
}

// Row-major index into an input of shape `in` of the element that output element `linear` (of
// shape `out`) reads under NumPy broadcasting.
inline int64_t broadcast_source(const Shape& out, const Shape& in, int64_t linear) {
  int64_t source = 0, in_stride = 1;
  for (int d = out.size() - 1; d >= 0; --d) {
    const int64_t index = linear % out[d];
    linear /= out[d];
    const int din = d - (out.size() - in.size());
    if (din < 0) continue;
    if (in[din] != 1) source += index * in_stride;
    in_stride *= in[din];
  }
  return source;
}

// Reference of a binary op under broadcasting, in double.
template <class F>
std::vector<double> binary_reference(const Shape& out, const Shape& sa, const std::vector<double>& a, const Shape& sb,
                                     const std::vector<double>& b, F f) {
  std::vector<double> r;
  for (int64_t i = 0; i < out.numel(); ++i)
    r.push_back(f(a[size_t(broadcast_source(out, sa, i))], b[size_t(broadcast_source(out, sb, i))]));
  return r;
}

// The reference gradient of a broadcast input: sum of per-output-element terms landing on it.
template <class F>
std::vector<double> reduce_to(const Shape& out, const Shape& in, F term) {
  std::vector<double> r(size_t(in.numel()), 0.0);
  for (int64_t i = 0; i < out.numel(); ++i) r[size_t(broadcast_source(out, in, i))] += term(i);
  return r;
}

// A double leaf for gradcheck in the given layout.
inline Tensor<double> leaf(const Shape& shape, const std::vector<double>& v, Layout layout = Layout::contiguous) {
  Tensor<double> t = make_tensor<double>(shape, v, layout).detach();
  t.requires_grad_();
  return t;
}

}  // namespace loom::test
