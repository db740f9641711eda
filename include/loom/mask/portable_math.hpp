#pragma once
// log, exp and cos(2π·u) in double from +, −, ×, ÷, sqrt and fma alone — operations IEEE 754
// rounds exactly on every CPU and GPU — so host and device compute the same bits. glibc's and
// CUDA's libm may differ in the last bit, which would let a Dirichlet draw (gamma_draw) differ
// between make_mask_plan and the device plans. Accuracy: within a few ulp of the true value (tested
// against std:: in tests/mask/test_mask_plan_device_logic.cpp); determinism is the point.
//
// No compiler may fuse a product into a later addition differently on the two sides (GCC contracts
// across statements by default, nvcc with --fmad=true): every multiply-add below is an explicit
// fma, and a product that feeds an addition elsewhere goes through rounded_product. Not valid under
// -ffast-math (which licenses reassociation).
#include <math.h>

#include <bit>
#include <cstdint>

#include "loom/core/host_device.hpp"

namespace loom::portable {

LOOM_HOST_DEVICE inline uint64_t double_bits(double x) {
#if defined(__CUDA_ARCH__)
  return uint64_t(__double_as_longlong(x));
#else
  return std::bit_cast<uint64_t>(x);
#endif
}
LOOM_HOST_DEVICE inline double double_from_bits(uint64_t b) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double((long long)b);
#else
  return std::bit_cast<double>(b);
#endif
}
LOOM_HOST_DEVICE inline uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  return std::bit_cast<uint32_t>(x);
#endif
}

// a·b rounded once, as an fma with a −0 addend (exact for every sign of zero): a value no compiler
// can later fuse into an addition.
LOOM_HOST_DEVICE inline double rounded_product(double a, double b) { return ::fma(a, b, -0.0); }

// ln 2 split so that k·ln2_hi is exact for |k| < 2^21 (fdlibm's split).
inline constexpr double kLn2Hi = 0x1.62e42fee00000p-1;
inline constexpr double kLn2Lo = 0x1.a39ef35793c76p-33;

// Natural log for finite x > 0 (0 → −inf, negative → NaN). x = m·2^e with m in (√½, √2];
// log m = 2·atanh(s), s = (m − 1)/(m + 1), |s| ≤ 0.172: the odd series to s^23 is below 1e-17.
LOOM_HOST_DEVICE inline double log(double x) {
  if (!(x > 0)) return x == 0 ? -HUGE_VAL : (x - x) / (x - x);
  if (x == HUGE_VAL) return x;
  int e = 0;
  if (x < 0x1p-1022) {  // subnormal: scale into the normal range (exact)
    x *= 0x1p54;
    e = -54;
  }
  const uint64_t b = double_bits(x);
  e += int((b >> 52) & 0x7ff) - 1023;
  double m = double_from_bits((b & 0x000fffffffffffffull) | 0x3ff0000000000000ull);  // [1, 2)
  if (m > 0x1.6a09e667f3bcdp+0) {  // √2
    m *= 0.5;                      // exact
    ++e;
  }
  const double f = m - 1.0;  // exact (Sterbenz)
  const double s = f / (2.0 + f), s2 = s * s, two_s = 2.0 * s;
  double p = 1.0 / 23;
  for (int k = 21; k >= 3; k -= 2) p = ::fma(p, s2, 1.0 / k);
  const double log_m = ::fma(two_s * s2, p, two_s);
  return ::fma(double(e), kLn2Hi, ::fma(double(e), kLn2Lo, log_m));
}

// e^y. y = k·ln2 + r with |r| ≤ ½ln2 (+ rounding); e^r by its Taylor series to r^13 (error below
// 1e-17), scaled by 2^k in at most two exact-or-once-rounded steps.
LOOM_HOST_DEVICE inline double exp(double y) {
  if (y != y) return y;
  if (y > 709.8) return HUGE_VAL;
  if (y < -745.2) return 0.0;
  const double k = ::floor(::fma(y, 0x1.71547652b82fep+0, 0.5));  // nearest integer of y / ln 2
  const double r = ::fma(-k, kLn2Lo, ::fma(-k, kLn2Hi, y));
  // 1/n! for n = 13 .. 1; n! is exact in double, so each quotient is one correctly rounded division.
  double p = 1.0 / 6227020800.0;
  double factorial = 6227020800.0;
  for (int n = 13; n >= 1; --n) {
    factorial /= n;  // (n−1)!, exact
    p = ::fma(p, r, 1.0 / factorial);
  }
  int ki = int(k);
  if (ki < -1000) {  // keep 2^ki normal; the one rounding (a subnormal result) happens in the last product
    p *= 0x1p-100;
    ki += 100;
  } else if (ki > 1000) {
    p *= 0x1p100;
    ki -= 100;
  }
  return p * double_from_bits(uint64_t(ki + 1023) << 52);
}

// cos(2π·u) for |u| < 2^40 (the argument in turns, so the reduction is exact: u − q/4 is a
// difference of nearby multiples of a power of two). r = u − q/4 lies in [−1/8, 1/8]; the
// quadrant q picks ±cos or ±sin of 2π·r, each a Taylor polynomial in r (error below 1e-17).
LOOM_HOST_DEVICE inline double cos_two_pi(double u) {
  const double q = ::floor(::fma(u, 4.0, 0.5));
  const double r = ::fma(q, -0.25, u), r2 = r * r;
  const int quadrant = int(int64_t(q) & 3);
  if (quadrant == 0 || quadrant == 2) {
    // (−1)^k (2π)^(2k) / (2k)!, k = 8 .. 0
    double c = 0x1.20c62c2f2d7f5p-2;
    c = ::fma(c, r2, -0x1.b6e24f44b128fp+0);
    c = ::fma(c, r2, 0x1.f9d38a3763cc3p+2);
    c = ::fma(c, r2, -0x1.a6d1f2a204a8cp+4);
    c = ::fma(c, r2, 0x1.e1f506891babbp+5);
    c = ::fma(c, r2, -0x1.55d3c7e3cbffap+6);
    c = ::fma(c, r2, 0x1.03c1f081b5ac4p+6);
    c = ::fma(c, r2, -0x1.3bd3cc9be45dep+4);
    c = ::fma(c, r2, 1.0);
    return quadrant == 0 ? c : -c;
  }
  // (−1)^k (2π)^(2k+1) / (2k+1)!, k = 8 .. 0
  double s = 0x1.aaec32af93359p-4;
  s = ::fma(s, r2, -0x1.6fadb9f155744p-1);
  s = ::fma(s, r2, 0x1.e8f434d018d63p+1);
  s = ::fma(s, r2, -0x1.e3074fde8871fp+3);
  s = ::fma(s, r2, 0x1.50783487ee782p+5);
  s = ::fma(s, r2, -0x1.32d2cce62bd86p+6);
  s = ::fma(s, r2, 0x1.466bc6775aae2p+6);
  s = ::fma(s, r2, -0x1.4abbce625be53p+5);
  s = ::fma(s, r2, 0x1.921fb54442d18p+2);
  s = rounded_product(s, r);  // sin(2π·r)
  return quadrant == 1 ? -s : s;  // cos(2πr + π/2) = −sin, cos(2πr + 3π/2) = sin
}

}  // namespace loom::portable
