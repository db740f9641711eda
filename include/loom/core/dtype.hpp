#pragma once
// Element types a Tensor may hold, and their runtime tags (checked when untyped handles are re-typed).
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "loom/core/bf16.hpp"

namespace loom {

enum class DType : uint8_t { f32, f64, bf16, i64, i32, u8 };

template <class T> struct dtype_traits;
template <> struct dtype_traits<float> { static constexpr DType tag = DType::f32; static constexpr const char* name = "float32"; };
template <> struct dtype_traits<double> { static constexpr DType tag = DType::f64; static constexpr const char* name = "float64"; };
template <> struct dtype_traits<bf16> { static constexpr DType tag = DType::bf16; static constexpr const char* name = "bfloat16"; };
template <> struct dtype_traits<int64_t> { static constexpr DType tag = DType::i64; static constexpr const char* name = "int64"; };
template <> struct dtype_traits<int32_t> { static constexpr DType tag = DType::i32; static constexpr const char* name = "int32"; };
template <> struct dtype_traits<uint8_t> { static constexpr DType tag = DType::u8; static constexpr const char* name = "uint8"; };

template <class T>
concept Element = requires { dtype_traits<T>::tag; };

// Types that carry gradients and run floating-point math.
template <class T>
concept FloatElement = std::same_as<T, float> || std::same_as<T, double> || std::same_as<T, bf16>;

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::bf16: return "bfloat16";
    case DType::i64: return "int64";
    case DType::i32: return "int32";
    case DType::u8: return "uint8";
  }
  return "?";
}

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: case DType::i32: return 4;
    case DType::f64: case DType::i64: return 8;
    case DType::bf16: return 2;
    case DType::u8: return 1;
  }
  return 0;
}

// The type arithmetic is carried out in: bf16 computes in float.
template <class T> struct compute_type { using type = T; };
template <> struct compute_type<bf16> { using type = float; };
template <class T> using compute_t = typename compute_type<T>::type;

}  // namespace loom
