#pragma once
// The device side of every elementwise op: out[i] = f(in_0[i], in_1[i], ...) with f one of the
// functors of loom/ops/elementwise_functors.hpp, over operands laid out by an OffsetMap (strided,
// transposed, broadcast with stride 0). detail::map_elements / map_elements_inplace call it for
// CUDA tensors. Plain C++ (no CUDA types): the kernel template is kernels/elementwise_map.cuh,
// its instantiations kernels/elementwise.cu (target loom::kernels).
//
// Only the combinations listed in LOOM_CUDA_ELEMENTWISE_KERNELS exist, for element types float
// and bf16 (compute type float). has_elementwise_kernel<...> says whether one does, so that an op
// asking for another fails to compile with a message instead of failing to link.
#include <cstdint>

#include "loom/core/bf16.hpp"
#include "loom/cuda/offset_map.hpp"
#include "loom/ops/elementwise_functors.hpp"

namespace loom::cuda {

// One compiled kernel: f over Ts... inputs into TOut; with InPlace, operand 0 is also f's first
// argument (t = f(t, in...)). Pointers are device pointers at each operand's first element; the
// map's operand 0 is the output.
template <bool InPlace, class F, class TOut, class... Ts>
struct ElementwiseKernel {
  static void launch(const F& f, TOut* out, const OffsetMap<sizeof...(Ts) + 1>& map, int64_t numel, const Ts*... in);
};

// X(in_place, functor, output type, input types...) for every kernel, with T the element type
// (float or bf16; functor scalars are float, the compute type of both). Porting an op: add its
// functors here.
#define LOOM_CUDA_ELEMENTWISE_KERNELS(X, T)                                             \
  /* T -> T */                                                                          \
  X(false, ::loom::fn::Neg, T, T)                                                       \
  X(false, ::loom::fn::Square, T, T)                                                    \
  X(false, ::loom::fn::AddScalar<float>, T, T)                                          \
  X(false, ::loom::fn::SubScalar<float>, T, T)                                          \
  X(false, ::loom::fn::RsubScalar<float>, T, T)                                         \
  X(false, ::loom::fn::MulScalar<float>, T, T)                                          \
  X(false, ::loom::fn::DivScalar<float>, T, T)                                          \
  X(false, ::loom::fn::RdivScalar<float>, T, T)                                         \
  X(false, ::loom::fn::PowScalar<float>, T, T)                                          \
  X(false, ::loom::fn::Exp, T, T)                                                       \
  X(false, ::loom::fn::Log, T, T)                                                       \
  X(false, ::loom::fn::Sqrt, T, T)                                                      \
  X(false, ::loom::fn::Rsqrt, T, T)                                                     \
  X(false, ::loom::fn::Tanh, T, T)                                                      \
  X(false, ::loom::fn::Erf, T, T)                                                       \
  X(false, ::loom::fn::Abs, T, T)                                                       \
  X(false, ::loom::fn::Sigmoid, T, T)                                                   \
  X(false, ::loom::fn::Relu, T, T)                                                      \
  X(false, ::loom::fn::Clamp<float>, T, T)                                              \
  X(false, ::loom::fn::GeluErf, T, T)                                                   \
  X(false, ::loom::fn::GeluTanh, T, T)                                                  \
  /* T, T -> T: binary ops and the backward of unary ones (g, saved) */                 \
  X(false, ::loom::fn::Add, T, T, T)                                                    \
  X(false, ::loom::fn::Sub, T, T, T)                                                    \
  X(false, ::loom::fn::Mul, T, T, T)                                                    \
  X(false, ::loom::fn::Div, T, T, T)                                                    \
  X(false, ::loom::fn::Pow, T, T, T)                                                    \
  X(false, ::loom::fn::Maximum, T, T, T)                                                \
  X(false, ::loom::fn::Minimum, T, T, T)                                                \
  X(false, ::loom::fn::RdivScalarGrad<float>, T, T, T)                                  \
  X(false, ::loom::fn::PowScalarGrad<float>, T, T, T)                                   \
  X(false, ::loom::fn::SqrtGrad, T, T, T)                                               \
  X(false, ::loom::fn::RsqrtGrad, T, T, T)                                              \
  X(false, ::loom::fn::TanhGrad, T, T, T)                                               \
  X(false, ::loom::fn::ErfGrad, T, T, T)                                                \
  X(false, ::loom::fn::AbsGrad, T, T, T)                                                \
  X(false, ::loom::fn::SigmoidGrad, T, T, T)                                            \
  X(false, ::loom::fn::ReluGrad, T, T, T)                                               \
  X(false, ::loom::fn::SquareGrad, T, T, T)                                             \
  X(false, ::loom::fn::ClampGrad<float>, T, T, T)                                       \
  X(false, ::loom::fn::GeluErfGrad, T, T, T)                                            \
  X(false, ::loom::fn::GeluTanhGrad, T, T, T)                                           \
  /* T, T, T -> T: binary ops' backward (g, a, b) */                                    \
  X(false, ::loom::fn::DivGradDenominator, T, T, T, T)                                  \
  X(false, ::loom::fn::PowGradBase, T, T, T, T)                                         \
  X(false, ::loom::fn::PowGradExponent, T, T, T, T)                                     \
  X(false, ::loom::fn::MaximumGrad, T, T, T, T)                                         \
  X(false, ::loom::fn::MinimumGrad, T, T, T, T)                                         \
  /* selections by a uint8 mask */                                                      \
  X(false, ::loom::fn::Where, T, uint8_t, T, T)                                         \
  X(false, ::loom::fn::PassWhere, T, T, uint8_t)                                        \
  X(false, ::loom::fn::PassWhereNot, T, T, uint8_t)                                     \
  X(false, ::loom::fn::MaskedFill<float>, T, T, uint8_t)                                \
  /* comparisons -> uint8 */                                                            \
  X(false, ::loom::fn::Compare<::loom::fn::Eq>, uint8_t, T, T)                          \
  X(false, ::loom::fn::Compare<::loom::fn::Ne>, uint8_t, T, T)                          \
  X(false, ::loom::fn::Compare<::loom::fn::Lt>, uint8_t, T, T)                          \
  X(false, ::loom::fn::Compare<::loom::fn::Le>, uint8_t, T, T)                          \
  X(false, ::loom::fn::Compare<::loom::fn::Gt>, uint8_t, T, T)                          \
  X(false, ::loom::fn::Compare<::loom::fn::Ge>, uint8_t, T, T)                          \
  X(false, ::loom::fn::CompareFloatScalar<::loom::fn::Eq>, uint8_t, T)                  \
  X(false, ::loom::fn::CompareFloatScalar<::loom::fn::Ne>, uint8_t, T)                  \
  X(false, ::loom::fn::CompareFloatScalar<::loom::fn::Lt>, uint8_t, T)                  \
  X(false, ::loom::fn::CompareFloatScalar<::loom::fn::Le>, uint8_t, T)                  \
  X(false, ::loom::fn::CompareFloatScalar<::loom::fn::Gt>, uint8_t, T)                  \
  X(false, ::loom::fn::CompareFloatScalar<::loom::fn::Ge>, uint8_t, T)                  \
  X(false, ::loom::fn::IsFinite, uint8_t, T)                                            \
  /* in place (add_, mul_) */                                                           \
  X(true, ::loom::fn::Add, T, T)                                                        \
  X(true, ::loom::fn::AddScaled<float>, T, T)                                           \
  X(true, ::loom::fn::MulScalar<float>, T)

template <bool InPlace, class F, class TOut, class... Ts>
inline constexpr bool has_elementwise_kernel = false;

#define LOOM_CUDA_ELEMENTWISE_DECLARE(in_place, F, ...) \
  template <>                                           \
  inline constexpr bool has_elementwise_kernel<in_place, F, __VA_ARGS__> = true;
LOOM_CUDA_ELEMENTWISE_KERNELS(LOOM_CUDA_ELEMENTWISE_DECLARE, float)
LOOM_CUDA_ELEMENTWISE_KERNELS(LOOM_CUDA_ELEMENTWISE_DECLARE, ::loom::bf16)
#undef LOOM_CUDA_ELEMENTWISE_DECLARE

}  // namespace loom::cuda
