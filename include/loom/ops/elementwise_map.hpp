#pragma once
// The one loop every elementwise op runs: out[i] = f(in_0[i], in_1[i], ...) over the NumPy broadcast
// of its operands. Two ways through it:
//   - all operands contiguous with the output's shape: a flat range split across loom's threads;
//   - otherwise detail::for_each_run over strided runs (stride 0 along broadcast dims).
// Either way each run goes to one kernel per (op, element types), whose inner loop has a unit-stride
// version (vectorized: bias adds and contiguous tensors land there) and a general strided one.
// The walk itself is compiled once per operand count, not once per op: the kernel is handed over
// as a function pointer, which keeps the build of ~30 ops x 3 types in check.
// f receives each operand in its compute type (bf16 -> float) and returns the output's compute
// value, which is stored as TOut. `cost_per_element` (about 1 for add, 10+ for exp/tanh/erf) lowers
// the size at which the work is split across threads.
// On CUDA tensors the same f runs as a device kernel (loom/cuda/elementwise.hpp): f must then be
// one of the functors of loom/ops/elementwise_functors.hpp listed in LOOM_CUDA_ELEMENTWISE_KERNELS
// for these element types (float, bf16) — anything else (a lambda) is a compile-time error.
#include <algorithm>
#include <array>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>

#include "loom/core/tensor.hpp"
#include "loom/core/device_backend.hpp"
#include "loom/cuda/elementwise.hpp"
#include "loom/ops/elementwise_functors.hpp"

namespace loom::detail {

// Whether F marks itself as runnable on the device (static constexpr bool kDevice = true).
template <class F>
concept DeviceFunctor = requires { requires F::kDevice; };

// The CUDA branch of map_elements / map_elements_inplace / map_blocks: checks at compile time that
// a kernel exists for f and these element types, then launches it. float64 has no kernels: a
// loom::Error at run time, so that code generic over the element type still compiles.
template <bool in_place, class F, class TOut, class... Ts>
void launch_on_device(const F& f, const Shape& shape, TOut* out, const Strides& out_strides,
                      const std::array<Strides, sizeof...(Ts)>& in_strides, const Ts*... in) {
  static_assert(cuda_backend_for<TOut>, "elementwise ops on CUDA tensors need LOOM_WITH_CUDA (link loom::kernels)");
  static_assert(DeviceFunctor<F>,
                "elementwise op on CUDA tensors: no CUDA kernel for this functor (a lambda?); write the op's math as "
                "a functor in loom/ops/elementwise_functors.hpp and list it in LOOM_CUDA_ELEMENTWISE_KERNELS "
                "(docs/cuda.md, Device ops)");
  if constexpr (std::is_same_v<TOut, double> || (std::is_same_v<Ts, double> || ...)) {
    fail("elementwise ops: float64 is not supported on CUDA (shape ", shape, ")");
  } else if constexpr (DeviceFunctor<F>) {  // (else the assertion above has said it all)
    static_assert(cuda::has_elementwise_kernel<in_place, F, TOut, Ts...>,
                  "elementwise op on CUDA tensors: no CUDA kernel for this functor with these element types (CUDA "
                  "kernels exist for float and bf16); list it in LOOM_CUDA_ELEMENTWISE_KERNELS");
    std::array<Strides, sizeof...(Ts) + 1> strides{out_strides};
    std::copy(in_strides.begin(), in_strides.end(), strides.begin() + 1);
    cuda::ElementwiseKernel<in_place, F, TOut, Ts...>::launch(
        f, out, cuda::make_offset_map<sizeof...(Ts) + 1>(shape, strides), shape.numel(), in...);
  }
}

// Elements one thread should get at least, for work of the given relative cost per element.
inline int64_t elementwise_grain(int64_t cost_per_element) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(cost_per_element, 1));
}

// Whether two shapes broadcast together (NumPy rules), without throwing.
inline bool broadcastable(const Shape& a, const Shape& b) {
  for (int i = 1; i <= std::min(a.size(), b.size()); ++i) {
    const int64_t da = a[a.size() - i], db = b[b.size() - i];
    if (da != db && da != 1 && db != 1) return false;
  }
  return true;
}

// One run of N operands (operand 0 is the destination): element offsets at its start, its length
// and each operand's stride along it.
template <size_t N>
using RunKernel = void (*)(const void* state, const std::array<int64_t, N>& offsets, int64_t length,
                           const std::array<int64_t, N>& strides);

// Calls kernel(state, ...) over every run of the layout; `flat` says all operands are contiguous
// with `shape`, so the whole range is one run that is cut into per-thread pieces.
template <size_t N>
void run_elementwise(const Shape& shape, const std::array<Strides, N>& strides, bool flat, RunKernel<N> kernel,
                     const void* state, int64_t cost_per_element) {
  const int64_t n = shape.numel();
  if (n == 0) return;
  if (flat) {
    std::array<int64_t, N> unit;
    unit.fill(1);
    parallel_for(0, n, elementwise_grain(cost_per_element), [&](int64_t begin, int64_t end) {
      std::array<int64_t, N> offsets;
      offsets.fill(begin);
      kernel(state, offsets, end - begin, unit);
    });
    return;
  }
  for_each_run<N>(
      shape, strides,
      [&](const std::array<int64_t, N>& offsets, int64_t length, const std::array<int64_t, N>& run_strides) {
        kernel(state, offsets, length, run_strides);
      },
      cost_per_element);
}

// out = f(in...): the state and kernel of map_elements. With `in_place`, operand 0 is also read
// and passed to f first (t = f(t, in...)).
template <bool in_place, class TOut, class F, class... Ts>
struct MapKernel {
  static constexpr size_t N = sizeof...(Ts) + 1;
  TOut* out;
  std::tuple<const Ts*...> in;
  F f;

  static void run(const void* state, const std::array<int64_t, N>& off, int64_t n, const std::array<int64_t, N>& st) {
    const auto& self = *static_cast<const MapKernel*>(state);
    self.run_impl(off, n, st, std::index_sequence_for<Ts...>{});
  }

  template <size_t... K>
  void run_impl(const std::array<int64_t, N>& off, int64_t n, const std::array<int64_t, N>& st,
                std::index_sequence<K...>) const {
    TOut* o = out + off[0];
    const std::tuple<const Ts*...> p{(std::get<K>(in) + off[K + 1])...};
    const bool unit = st[0] == 1 && ((st[K + 1] == 1) && ...);
    if constexpr (in_place) {
      if (unit) {
        for (int64_t i = 0; i < n; ++i) o[i] = TOut(f(compute_t<TOut>(o[i]), compute_t<Ts>(std::get<K>(p)[i])...));
      } else {
        for (int64_t i = 0; i < n; ++i)
          o[i * st[0]] =
              TOut(f(compute_t<TOut>(o[i * st[0]]), compute_t<Ts>(std::get<K>(p)[i * st[K + 1]])...));
      }
    } else {
      if (unit) {
        for (int64_t i = 0; i < n; ++i) o[i] = TOut(f(compute_t<Ts>(std::get<K>(p)[i])...));
      } else {
        for (int64_t i = 0; i < n; ++i) o[i * st[0]] = TOut(f(compute_t<Ts>(std::get<K>(p)[i * st[K + 1]])...));
      }
    }
  }
};

// Elements per block of map_blocks: its buffers stay in L1.
inline constexpr int64_t kMapBlock = 256;

// out = block(in) for unary math that runs on whole blocks of floats (vectorized exp, erf, tanh):
// block(const float* x, float* y, n) with n <= kMapBlock and y not aliasing x. Contiguous float
// runs are handed to it in place; other runs (bf16, strided) go through buffers.
template <class T, class Block>
struct BlockKernel {
  T* out;
  const T* in;
  Block block;

  static void run(const void* state, const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& st) {
    const auto& self = *static_cast<const BlockKernel*>(state);
    T* o = self.out + off[0];
    const T* p = self.in + off[1];
    if constexpr (std::is_same_v<T, float>) {
      if (st[0] == 1 && st[1] == 1) {
        for (int64_t b = 0; b < n; b += kMapBlock) self.block(p + b, o + b, std::min(kMapBlock, n - b));
        return;
      }
    }
    alignas(64) float x[kMapBlock], y[kMapBlock];
    for (int64_t b = 0; b < n; b += kMapBlock) {
      const int64_t m = std::min(kMapBlock, n - b);
      for (int64_t i = 0; i < m; ++i) x[i] = float(p[(b + i) * st[1]]);
      self.block(x, y, m);
      for (int64_t i = 0; i < m; ++i) o[(b + i) * st[0]] = T(y[i]);
    }
  }
};

// out = block(a) elementwise, for float and bf16 tensors (compute type float). CUDA tensors run the
// functor f instead, the same function one element at a time.
template <class T, class Dev, class Block, class F>
Tensor<T, Dev> map_blocks(const Tensor<T, Dev>& a, int64_t cost_per_element, Block block, F f) {
  static_assert(std::is_same_v<compute_t<T>, float>, "map_blocks: the block functions work on float");
  Tensor<T, Dev> out = Tensor<T, Dev>::empty(a.shape());
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    launch_on_device<false>(f, a.shape(), out.data(), out.strides(), {a.strides()}, a.data());
  } else {
    using Kernel = BlockKernel<T, Block>;
    const Kernel state{out.data(), a.data(), block};
    run_elementwise<2>(a.shape(), {out.strides(), a.strides()}, a.is_contiguous(), &Kernel::run, &state,
                       cost_per_element);
  }
  return out;
}

// out = f(in...) broadcast to `shape` (which the caller has checked every input broadcasts to).
template <class TOut, class Dev, class F, class... Ts>
Tensor<TOut, Dev> map_elements(const Shape& shape, int64_t cost_per_element, F f, const Tensor<Ts, Dev>&... in) {
  Tensor<TOut, Dev> out = Tensor<TOut, Dev>::empty(shape);
  if constexpr (Tensor<TOut, Dev>::kOnDevice) {
    launch_on_device<false>(f, shape, out.data(), out.strides(), {in.expand_strides_to(shape)...}, in.data()...);
  } else {
    using Kernel = MapKernel<false, TOut, F, Ts...>;
    const Kernel state{out.data(), {in.data()...}, f};
    const bool flat = ((in.shape() == shape && in.is_contiguous()) && ...);
    run_elementwise<Kernel::N>(shape, {out.strides(), in.expand_strides_to(shape)...}, flat, &Kernel::run, &state,
                               cost_per_element);
  }
  return out;
}

// t = f(t, in...) in place, the inputs broadcast to t's shape (checked by the caller). t must not
// have several elements in one memory location. Does not bump the version: the public in-place ops
// do that once they are done.
template <class T, class Dev, class F, class... Ts>
void map_elements_inplace(const Tensor<T, Dev>& t, F f, const Tensor<Ts, Dev>&... in) {
  const Shape& shape = t.shape();
  if constexpr (Tensor<T, Dev>::kOnDevice) {
    launch_on_device<true>(f, shape, t.data(), t.strides(), {in.expand_strides_to(shape)...}, in.data()...);
  } else {
    using Kernel = MapKernel<true, T, F, Ts...>;
    const Kernel state{t.data(), {in.data()...}, f};
    const bool flat = t.is_contiguous() && ((in.shape() == shape && in.is_contiguous()) && ...);
    run_elementwise<Kernel::N>(shape, {t.strides(), in.expand_strides_to(shape)...}, flat, &Kernel::run, &state, 1);
  }
}

}  // namespace loom::detail
