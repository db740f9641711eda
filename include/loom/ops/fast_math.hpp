#pragma once
// Vectorized exp and erf over contiguous blocks, for the CPU kernels of gelu and softmax.
// Eigen's array functions supply the vector code (its float exp and erf use AVX/FMA packets); the
// fix-ups below make their edge cases match the C library:
//   - Eigen's exp clamps its argument, so exp(-inf) and exp(-100) come out as ~3e-39 (float) /
//     ~6e-309 (double) instead of 0: arguments below kExpUnderflow give exactly 0 here.
//   - Eigen's fast float erf approaches +-1 without reaching it; for |z| >= 4 the float erf is
//     exactly +-1 (std::erff agrees), which keeps 1 + erf(z) = 0 for large negative z.
// Eigen's select() and sign() are scalar code, so the fix-ups are plain loops the compiler vectorizes.
#include <Eigen/Core>
#include <unsupported/Eigen/SpecialFunctions>

#include <cmath>
#include <cstdint>
#include <type_traits>

namespace loom::detail {

template <class C>
using ArrayMap = Eigen::Map<Eigen::Array<C, Eigen::Dynamic, 1>>;
template <class C>
using ConstArrayMap = Eigen::Map<const Eigen::Array<C, Eigen::Dynamic, 1>>;

// Below this argument exp() is treated as 0 (float: exp(-87) = 1.6e-38, the normal range ends).
template <class C>
inline constexpr C kExpUnderflow = std::is_same_v<C, float> ? C(-87) : C(-708);

// out[i] = exp(in[i]) for n contiguous elements; out must not alias in.
template <class C>
void exp_block(const C* in, C* out, int64_t n) {
  ArrayMap<C>(out, n) = ConstArrayMap<C>(in, n).exp();
  for (int64_t i = 0; i < n; ++i) out[i] = in[i] < kExpUnderflow<C> ? C(0) : out[i];
}

// out[i] = erf(in[i]) for n contiguous elements; out must not alias in.
template <class C>
void erf_block(const C* in, C* out, int64_t n) {
  ArrayMap<C>(out, n) = ConstArrayMap<C>(in, n).erf();
  if constexpr (std::is_same_v<C, float>)
    for (int64_t i = 0; i < n; ++i) out[i] = std::abs(in[i]) >= C(4) ? std::copysign(C(1), in[i]) : out[i];
}

}  // namespace loom::detail
