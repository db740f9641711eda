#pragma once
// bf16: bfloat16 storage type (1 sign, 8 exponent, 7 mantissa bits): the top half of an IEEE float.
// Conversion from float rounds to nearest, ties to even; NaN stays a (quiet) NaN; widening is exact.
#include <bit>
#include <cstdint>
#include <limits>

namespace loom {

struct bf16 {
  uint16_t bits = 0;

  constexpr bf16() = default;
  constexpr bf16(float f) : bits(round_from_float(f)) {}  // NOLINT: implicit like a float
  constexpr operator float() const { return std::bit_cast<float>(uint32_t(bits) << 16); }

  static constexpr bf16 from_bits(uint16_t b) {
    bf16 h;
    h.bits = b;
    return h;
  }
  static constexpr uint16_t round_from_float(float f) {
    const uint32_t u = std::bit_cast<uint32_t>(f);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0)
      return uint16_t((u >> 16) | 0x0040u);  // NaN: keep sign and payload top, force quiet bit
    const uint32_t lsb = (u >> 16) & 1u;
    return uint16_t((u + 0x7fffu + lsb) >> 16);  // round to nearest even; overflow carries to inf
  }
};

}  // namespace loom

template <>
class std::numeric_limits<loom::bf16> {
 public:
  static constexpr bool is_specialized = true;
  static constexpr bool has_quiet_NaN = true;
  static constexpr bool has_infinity = true;
  static constexpr loom::bf16 epsilon() { return loom::bf16::from_bits(0x3c00); }  // 2^-7
  static constexpr loom::bf16 infinity() { return loom::bf16::from_bits(0x7f80); }
  static constexpr loom::bf16 quiet_NaN() { return loom::bf16::from_bits(0x7fc0); }
  static constexpr loom::bf16 lowest() { return loom::bf16::from_bits(0xff7f); }
  static constexpr loom::bf16 max() { return loom::bf16::from_bits(0x7f7f); }
  static constexpr loom::bf16 min() { return loom::bf16::from_bits(0x0080); }
  static constexpr loom::bf16 denorm_min() { return loom::bf16::from_bits(0x0001); }
};
