// Shapes (Dims, contiguous strides, wrap_dim, broadcasting), element-type tags, and bf16's
// round-to-nearest-even conversion checked against a reference computed with double arithmetic.
#include <catch2/catch.hpp>

#include <bit>
#include <cfenv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "loom/core/bf16.hpp"
#include "loom/core/dtype.hpp"
#include "loom/core/shape.hpp"
#include "support/check.hpp"

using loom::bf16;
using loom::Dims;
using loom::Shape;
using loom::Strides;

// ---- Dims --------------------------------------------------------------------------------------------

TEST_CASE("Dims: construction, editing, numel, printing", "[shape]") {
  const Shape s{2, 3, 4};
  CHECK(s.size() == 3);
  CHECK(s[0] == 2);
  CHECK(s.back() == 4);
  CHECK(s.numel() == 24);
  CHECK(s.str() == "[2, 3, 4]");
  CHECK(s.vec() == std::vector<int64_t>{2, 3, 4});
  CHECK(Shape{}.numel() == 1);  // a scalar holds one element
  CHECK(Shape{}.empty());
  CHECK(Shape{}.str() == "[]");
  CHECK(Shape{5, 0, 3}.numel() == 0);
  CHECK(Shape(std::vector<int64_t>{7, 1}) == Shape{7, 1});
  const int64_t raw[] = {1, 97};
  CHECK(Shape(std::span<const int64_t>(raw)) == Shape{1, 97});
  CHECK(Dims::filled(3, 7) == Shape{7, 7, 7});
  CHECK_FALSE(Shape{2, 3} == Shape{2, 3, 1});
  CHECK_FALSE(Shape{2, 3} == Shape{3, 2});

  Shape e{2, 3};
  e.insert(0, 9);
  CHECK(e == Shape{9, 2, 3});
  e.insert(3, 8);
  CHECK(e == Shape{9, 2, 3, 8});
  e.insert(2, 1);
  CHECK(e == Shape{9, 2, 1, 3, 8});
  e.erase(0);
  CHECK(e == Shape{2, 1, 3, 8});
  e.erase(3);
  CHECK(e == Shape{2, 1, 3});
  e.resize(5, 4);
  CHECK(e == Shape{2, 1, 3, 4, 4});
  e.resize(1);
  CHECK(e == Shape{2});
}

TEST_CASE("Dims: rank limit and bad positions throw loom::Error", "[shape][errors]") {
  Shape s = Dims::filled(loom::kMaxRank, 1);
  REQUIRE_THROWS_AS(s.push_back(1), loom::Error);
  REQUIRE_THROWS_WITH(s.push_back(1), Catch::Contains("rank") && Catch::Contains("6"));
  REQUIRE_THROWS_AS((Shape{1, 2, 3, 4, 5, 6, 7}), loom::Error);
  REQUIRE_THROWS_AS(s.resize(7), loom::Error);
  REQUIRE_THROWS_AS(s.resize(-1), loom::Error);
  Shape small{1, 2};
  REQUIRE_THROWS_WITH(small.insert(3, 5), Catch::Contains("insert") && Catch::Contains("3"));
  REQUIRE_THROWS_AS(small.insert(-1, 5), loom::Error);
  REQUIRE_THROWS_WITH(small.erase(2), Catch::Contains("erase"));
  Shape none;
  REQUIRE_THROWS_AS(none.erase(0), loom::Error);
  CHECK(small == Shape{1, 2});  // failed edits change nothing
  CHECK(none.empty());
}

TEST_CASE("contiguous_strides: row-major, zero extents do not zero the strides", "[shape]") {
  CHECK(loom::contiguous_strides(Shape{2, 3, 4}) == Strides{12, 4, 1});
  CHECK(loom::contiguous_strides(Shape{7}) == Strides{1});
  CHECK(loom::contiguous_strides(Shape{}) == Strides{});
  CHECK(loom::contiguous_strides(Shape{1, 97, 1}) == Strides{97, 1, 1});
  CHECK(loom::contiguous_strides(Shape{3, 0, 5}) == Strides{5, 5, 1});
}

TEST_CASE("wrap_dim: negative dims count from the end, out of range names the op", "[shape]") {
  CHECK(loom::wrap_dim(0, 3, "op") == 0);
  CHECK(loom::wrap_dim(2, 3, "op") == 2);
  CHECK(loom::wrap_dim(-1, 3, "op") == 2);
  CHECK(loom::wrap_dim(-3, 3, "op") == 0);
  // A scalar accepts 0 and -1 (as PyTorch does for reductions over "the" dim of a scalar).
  CHECK(loom::wrap_dim(0, 0, "op") == 0);
  CHECK(loom::wrap_dim(-1, 0, "op") == 0);
  REQUIRE_THROWS_AS(loom::wrap_dim(3, 3, "op"), loom::Error);
  REQUIRE_THROWS_WITH(loom::wrap_dim(-4, 3, "softmax"),
                      Catch::Contains("softmax") && Catch::Contains("-4") && Catch::Contains("rank 3"));
  REQUIRE_THROWS_AS(loom::wrap_dim(1, 0, "op"), loom::Error);
}

TEST_CASE("broadcast_shapes: NumPy rules and corner cases", "[shape]") {
  auto bc = [](const Shape& a, const Shape& b) { return loom::broadcast_shapes(a, b, "test"); };
  CHECK(bc({2, 3}, {2, 3}) == Shape{2, 3});
  CHECK(bc({}, {}) == Shape{});
  CHECK(bc({}, {7, 1}) == Shape{7, 1});
  CHECK(bc({7, 1}, {}) == Shape{7, 1});
  CHECK(bc({3, 1}, {1, 4}) == Shape{3, 4});
  CHECK(bc({4}, {3, 1}) == Shape{3, 4});
  CHECK(bc({5, 1, 97}, {225, 1}) == Shape{5, 225, 97});
  CHECK(bc({1}, {0}) == Shape{0});  // 1 broadcasts to an empty dim
  CHECK(bc({2, 0}, {1}) == Shape{2, 0});
  CHECK(bc({1, 1, 1, 1, 1, 1}, {2}) == Shape{1, 1, 1, 1, 1, 2});
  // Symmetric.
  const std::vector<std::pair<Shape, Shape>> pairs{{{3, 1, 5}, {4, 1}}, {{1}, {6, 2}}, {{2, 1}, {}}};
  for (const auto& [a, b] : pairs) CHECK(bc(a, b) == bc(b, a));

  REQUIRE_THROWS_AS(bc({2, 3}, {3, 2}), loom::Error);
  REQUIRE_THROWS_WITH(bc({2, 3}, {4}),
                      Catch::Contains("test") && Catch::Contains("[2, 3]") && Catch::Contains("[4]"));
  REQUIRE_THROWS_WITH(bc({3}, {0}), Catch::Contains("[3]") && Catch::Contains("[0]"));
}

// ---- dtype -----------------------------------------------------------------------------------------

TEST_CASE("dtype tags, names, sizes and compute types", "[dtype]") {
  using loom::DType;
  CHECK(loom::dtype_traits<float>::tag == DType::f32);
  CHECK(loom::dtype_traits<double>::tag == DType::f64);
  CHECK(loom::dtype_traits<bf16>::tag == DType::bf16);
  CHECK(loom::dtype_traits<int64_t>::tag == DType::i64);
  CHECK(loom::dtype_traits<int32_t>::tag == DType::i32);
  CHECK(loom::dtype_traits<uint8_t>::tag == DType::u8);
  CHECK(std::string(loom::dtype_name(DType::bf16)) == "bfloat16");
  CHECK(std::string(loom::dtype_name(DType::u8)) == loom::dtype_traits<uint8_t>::name);
  CHECK(loom::dtype_size(DType::f32) == sizeof(float));
  CHECK(loom::dtype_size(DType::f64) == sizeof(double));
  CHECK(loom::dtype_size(DType::bf16) == sizeof(bf16));
  CHECK(loom::dtype_size(DType::i64) == 8);
  CHECK(loom::dtype_size(DType::i32) == 4);
  CHECK(loom::dtype_size(DType::u8) == 1);
  STATIC_REQUIRE(sizeof(bf16) == 2);
  STATIC_REQUIRE(std::is_same_v<loom::compute_t<bf16>, float>);
  STATIC_REQUIRE(std::is_same_v<loom::compute_t<double>, double>);
  STATIC_REQUIRE(loom::FloatElement<bf16>);
  STATIC_REQUIRE_FALSE(loom::FloatElement<int64_t>);
  STATIC_REQUIRE(loom::Element<uint8_t>);
  STATIC_REQUIRE_FALSE(loom::Element<int16_t>);
}

// ---- bf16 --------------------------------------------------------------------------------------------

namespace {

uint32_t bits_of(float f) { return std::bit_cast<uint32_t>(f); }
float float_of(uint32_t u) { return std::bit_cast<float>(u); }

// Round-to-nearest-even of a finite float to bf16's grid, computed in double: scale to a count of
// bf16 units in the last place (the ulp of an 8-bit significand, never finer than the subnormal
// spacing 2^-133), round half to even with nearbyint, scale back. Overflow past the largest finite
// bf16 gives infinity.
double reference_bf16(float f) {
  const double x = f;
  if (x == 0) return x;  // keeps the sign of zero
  int exponent;
  std::frexp(std::abs(x), &exponent);             // |x| = m 2^exponent, m in [0.5, 1)
  const int lead = std::max(exponent - 1, -126);  // exponent of the leading bit, subnormals share -126
  const double ulp = std::ldexp(1.0, lead - 7);
  const double rounded = std::nearbyint(x / ulp) * ulp;  // x / ulp is exact: a power-of-two scaling
  if (std::abs(rounded) >= std::ldexp(1.0, 128)) return std::copysign(INFINITY, x);
  return rounded;
}

// Checks one float: finite and infinite inputs against the reference, NaN by its properties.
// Returns "" when the conversion is right, else what went wrong (cheap on the passing path, which
// the sweeps below take a million times).
std::string bf16_conversion_error(uint32_t u) {
  const float f = float_of(u);
  const bf16 h(f);
  bool ok;
  if (std::isnan(f)) {
    ok = std::isnan(float(h)) && (h.bits & 0x8000) == ((u >> 16) & 0x8000)  // sign kept
         && (h.bits & 0x0040) != 0                                           // quiet
         && (h.bits & 0x003f) == ((u >> 16) & 0x003f);                       // top payload kept
  } else {
    const float widened = float(h);
    ok = double(widened) == reference_bf16(f) && std::signbit(widened) == std::signbit(f);
  }
  if (ok) return {};
  std::ostringstream out;
  out << "float bits 0x" << std::hex << u << " -> bf16 bits 0x" << h.bits << std::dec << " = " << float(h)
      << ", reference " << (std::isnan(f) ? NAN : reference_bf16(f));
  return out.str();
}

void check_bf16_conversion(uint32_t u) {
  const std::string error = bf16_conversion_error(u);
  INFO(error);
  REQUIRE(error.empty());
}

}  // namespace

TEST_CASE("bf16 rounds to nearest even on edge values", "[bf16]") {
  REQUIRE(std::fegetround() == FE_TONEAREST);  // the reference's nearbyint rounds half to even
  struct Case {
    uint32_t in;
    uint16_t out;
    const char* what;
  };
  const Case cases[] = {
      {0x00000000, 0x0000, "+0"},
      {0x80000000, 0x8000, "-0"},
      {0x3f800000, 0x3f80, "1 exact"},
      {0x3f808000, 0x3f80, "1 + half ulp: tie, down to even"},
      {0x3f818000, 0x3f82, "1 + 3 half ulps: tie, up to even"},
      {0x3f808001, 0x3f81, "just above a tie"},
      {0x3f807fff, 0x3f80, "just below a tie"},
      {0xbf808000, 0xbf80, "negative tie, down to even"},
      {0xbf818000, 0xbf82, "negative tie, up to even"},
      {0x7f7f0000, 0x7f7f, "largest finite bf16"},
      {0x7f7f7fff, 0x7f7f, "below the overflow tie stays finite"},
      {0x7f7f8000, 0x7f80, "overflow tie rounds to even = inf"},
      {0x7f7fffff, 0x7f80, "FLT_MAX overflows to inf"},
      {0xff7fffff, 0xff80, "-FLT_MAX overflows to -inf"},
      {0x7f7e8000, 0x7f7e, "tie below the largest, to even"},
      {0x7f800000, 0x7f80, "+inf"},
      {0xff800000, 0xff80, "-inf"},
      {0x00800000, 0x0080, "smallest normal"},
      {0x007fffff, 0x0080, "largest subnormal rounds up to the smallest normal"},
      {0x00010000, 0x0001, "smallest bf16 subnormal"},
      {0x00008000, 0x0000, "half the smallest subnormal: tie to even zero"},
      {0x00018000, 0x0002, "1.5 smallest subnormals: tie up to even"},
      {0x00008001, 0x0001, "just above half the smallest subnormal"},
      {0x00000001, 0x0000, "smallest float subnormal underflows to +0"},
      {0x80000001, 0x8000, "negative tiny underflows to -0"},
      {0x80018000, 0x8002, "negative subnormal tie"},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    CHECK(bf16(float_of(c.in)).bits == c.out);
    check_bf16_conversion(c.in);
  }
}

TEST_CASE("bf16 keeps NaN a NaN, with its sign, quiet", "[bf16]") {
  // Quiet and signalling NaNs of both signs; a signalling NaN whose payload sits only in the low
  // 16 bits would truncate to infinity if the quiet bit were not forced.
  for (uint32_t u : {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7fa00000u, 0x7fffffffu, 0xffbfffffu}) {
    check_bf16_conversion(u);
  }
  CHECK(bf16(float_of(0x7f800001u)).bits == 0x7fc0);
  CHECK(bf16(float_of(0xff800001u)).bits == 0xffc0);
  CHECK(bf16(float_of(0x7fa00000u)).bits == 0x7fe0);
  CHECK(std::isnan(float(std::numeric_limits<bf16>::quiet_NaN())));
}

TEST_CASE("bf16 matches the double-arithmetic reference over a sweep of float bit patterns", "[bf16]") {
  // Every bf16 value with the three low halves around a tie, plus a stride through all floats.
  int64_t checked = 0, failures = 0;
  std::string first_failure;
  auto check = [&](uint32_t u) {
    ++checked;
    std::string error = bf16_conversion_error(u);
    if (!error.empty() && failures++ == 0) first_failure = error;
  };
  for (uint32_t high = 0; high <= 0xffff; ++high)
    for (uint32_t low : {0x0000u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu}) check((high << 16) | low);
  for (uint64_t u = 0; u <= 0xffffffffull; u += 4099) check(uint32_t(u));
  INFO(failures << " of " << checked << " wrong; first: " << first_failure);
  CHECK(failures == 0);
}

TEST_CASE("bf16 widening is exact and round-trips", "[bf16]") {
  for (uint32_t b = 0; b <= 0xffff; ++b) {
    const bf16 h = bf16::from_bits(uint16_t(b));
    const float f = float(h);
    REQUIRE(bits_of(f) == b << 16);  // widening appends 16 zero bits, NaN payloads included
    if (!std::isnan(f)) REQUIRE(bf16(f).bits == b);
  }
  // constexpr: usable in constant expressions.
  STATIC_REQUIRE(bf16(1.0f).bits == 0x3f80);
  STATIC_REQUIRE(float(bf16::from_bits(0x4049)) == 3.140625f);
}

TEST_CASE("numeric_limits<bf16> describes the format", "[bf16]") {
  using L = std::numeric_limits<bf16>;
  CHECK(double(float(L::epsilon())) == std::ldexp(1.0, -7));
  CHECK(double(float(L::max())) == (2 - std::ldexp(1.0, -7)) * std::ldexp(1.0, 127));
  CHECK(float(L::lowest()) == -float(L::max()));
  CHECK(double(float(L::min())) == std::ldexp(1.0, -126));
  CHECK(double(float(L::denorm_min())) == std::ldexp(1.0, -133));
  CHECK(std::isinf(float(L::infinity())));
  // 1 + epsilon is the next bf16 after 1.
  CHECK(bf16(1.0f + float(L::epsilon())).bits == 0x3f81);
}
