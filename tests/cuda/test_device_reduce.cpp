// Reductions, softmax and layer norm on CUDA tensors (kernels/reduce.cu, kernels/norm.cu) against the
// same ops on CPU tensors: forward, and backward through autograd from device leaves, in float and
// bf16, for reduced extents 1, 7, 97, 225, 1025, reducing leading / middle / trailing / several / all
// dims, transposed inputs, keepdim, and shapes long enough that the kernels split the reduced range.
// Reruns must be bit-identical. SKIPs with the reason when no usable GPU is present; the index maps
// are checked on the CPU by test_kernel_math (tests/cuda/test_reduce_map.cpp).
#include <catch2/catch.hpp>

#include <cstring>
#include <random>

#include "loom/cuda/device_info.hpp"
#include "loom/cuda/reduce.hpp"
#include "loom/loom.hpp"
#include "support/check.hpp"
#include "support/gpu.hpp"

using loom::bf16;
using loom::CPU;
using loom::CUDA;
using loom::Shape;
using loom::Tensor;

namespace {

constexpr int64_t kSizes[] = {1, 7, 97, 225, 1025};

// Values in [offset - 1, offset + 1); the positive offset keeps sums away from zero, where a
// relative tolerance would judge only the cancellation.
template <class T>
Tensor<T> random_tensor(const Shape& shape, uint32_t seed, float offset = 0.25f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<T> v(size_t(shape.numel()));
  for (auto& e : v) e = T(offset + u(rng));
  return Tensor<T>::from_vector(shape, v);
}

// Few distinct values, so amax / amin have ties.
template <class T>
Tensor<T> tied_tensor(const Shape& shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<T> v(size_t(shape.numel()));
  for (auto& e : v) e = T(float(int(rng() % 5)) - 2.f);
  return Tensor<T>::from_vector(shape, v);
}

// [rows, cols] with columns alternating around +3 and -3: every column's normalized values share a
// sign, so column sums over many rows (layer norm's dweight, dbias) stay far from zero, where an
// fp32 sum of thousands of terms would be judged by its cancellation rather than its accuracy.
template <class T>
Tensor<T> striped_tensor(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<T> v(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) v[size_t(r * cols + j)] = T((j % 2 ? -3.f : 3.f) + u(rng));
  return Tensor<T>::from_vector({rows, cols}, v);
}

template <class T>
Tensor<T, CUDA> device_leaf(const Tensor<T>& x) {
  return x.template to_device<CUDA>().detach().requires_grad_();
}

template <class T>
std::vector<double> values(const Tensor<T>& t) {
  return loom::test::to_double(t);
}

// The views of a leaf the checks run an op on: the tensor itself, or its transpose (strided input).
constexpr auto same = [](const auto& t) { return t; };
constexpr auto transposed = [](const auto& t) { return t.transpose(0, 1); };

// check(T{}) for each device element type.
template <class Check>
void for_float_and_bf16(const Check& check) {
  check(float{});
  check(bf16{});
}

// Runs op on a CPU leaf and on a device leaf made from `x_view(base)`, compares the outputs, then
// back-propagates the same random output gradient through both and compares the input gradients.
template <class T, class XView, class Op>
void check_against_cpu(const Tensor<T>& base, XView&& x_view, Op&& op, loom::test::Tol tol, uint32_t seed) {
  Tensor<T> cpu_base = base.clone().requires_grad_();
  Tensor<T, CUDA> dev_base = device_leaf(base);
  const Tensor<T> y_cpu = op(x_view(cpu_base));
  const Tensor<T, CUDA> y_dev = op(x_view(dev_base));
  REQUIRE(y_dev.shape() == y_cpu.shape());
  loom::test::require_close(y_dev, values(y_cpu), tol);
  const Tensor<T> g = random_tensor<T>(y_cpu.shape(), seed + 1, 0.f);
  y_cpu.backward(g);
  y_dev.backward(g.template to_device<CUDA>());
  REQUIRE(dev_base.grad().defined());
  loom::test::require_close(dev_base.grad(), values(cpu_base.grad()), tol);
}

template <class T>
void check_reductions() {
  const auto tol = loom::test::tol_for<T>();
  uint32_t seed = 1;
  for (int64_t n : kSizes) {
    INFO("reduced extent " << n);
    for (bool keepdim : {false, true}) {
      INFO("keepdim " << keepdim);
      // trailing, leading, middle, several, all dims
      const std::vector<std::pair<Shape, std::vector<int64_t>>> cases = {
          {{3, n}, {1}}, {{n, 5}, {0}}, {{2, n, 3}, {1}}, {{n, 3, 4}, {0, 2}}, {{n, 3}, {}}, {{4, 2, n}, {-1, 0}}};
      for (const auto& [shape, dims] : cases) {
        INFO("shape " << shape << " dims " << dims.size());
        const Tensor<T> x = random_tensor<T>(shape, seed++);
        check_against_cpu<T>(x, same, [&](const auto& t) { return loom::sum(t, dims, keepdim); }, tol, seed++);
        check_against_cpu<T>(x, same, [&](const auto& t) { return loom::mean(t, dims, keepdim); }, tol, seed++);
        const Tensor<T> ties = tied_tensor<T>(shape, seed++);
        check_against_cpu<T>(ties, same, [&](const auto& t) { return loom::amax(t, dims, keepdim); }, tol, seed++);
        check_against_cpu<T>(ties, same, [&](const auto& t) { return loom::amin(t, dims, keepdim); }, tol, seed++);
      }
      // Transposed input [n, 5] (memory [5, n]), reduced over each dim.
      const Tensor<T> base = random_tensor<T>({5, n}, seed++);
      for (int64_t d : {0, 1}) {
        check_against_cpu<T>(base, transposed, [&](const auto& t) { return loom::sum(t, {d}, keepdim); }, tol, seed++);
        check_against_cpu<T>(base, transposed, [&](const auto& t) { return loom::amax(t, {d}, keepdim); }, tol,
                             seed++);
      }
    }
  }
}

}  // namespace

TEST_CASE("CUDA reductions: sum, mean, amax, amin and their gradients match the CPU (float)", "[cuda][reduce]") {
  REQUIRE_GPU();
  check_reductions<float>();
}

TEST_CASE("CUDA reductions: sum, mean, amax, amin and their gradients match the CPU (bf16)", "[cuda][reduce]") {
  REQUIRE_GPU();
  check_reductions<bf16>();
}

TEST_CASE("CUDA reductions: long reductions split into chunks (row and column mode) match the CPU",
          "[cuda][reduce]") {
  REQUIRE_GPU();
  const auto tol = loom::test::tol_for<float>();
  // Row mode, 25 chunks per output; column mode, 13 chunks; a full sum of 300k elements.
  check_against_cpu<float>(random_tensor<float>({4, 100000}, 1), same,
                           [](const auto& t) { return loom::sum(t, {1}); }, tol, 2);
  check_against_cpu<float>(random_tensor<float>({50000, 8}, 3), same,
                           [](const auto& t) { return loom::mean(t, {0}); }, tol, 4);
  check_against_cpu<float>(random_tensor<float>({300, 1000}, 5), same, [](const auto& t) { return loom::sum(t); },
                           tol, 6);
  check_against_cpu<float>(tied_tensor<float>({3, 70000}, 7), same, [](const auto& t) { return loom::amax(t, {1}); },
                           tol, 8);
  // NaN propagates through amax as on the CPU.
  std::vector<float> v(2000, 1.f);
  v[1234] = NAN;
  const Tensor<float> with_nan = Tensor<float>::from_vector({2, 1000}, v);
  loom::test::require_close(loom::amax(with_nan.to_device<CUDA>(), {1}), values(loom::amax(with_nan, {1})), tol);
}

TEST_CASE("CUDA max / min / argmax / argmin over a dim: values, first-occurrence indices, gradients",
          "[cuda][reduce]") {
  REQUIRE_GPU();
  for_float_and_bf16([](auto tag) {
    using T = decltype(tag);
    uint32_t seed = 300;
    for (int64_t n : kSizes) {
      INFO("extent " << n);
      for (bool keepdim : {false, true}) {
        const std::vector<std::pair<Shape, int64_t>> cases = {{{3, n}, 1}, {{n, 5}, 0}, {{2, n, 3}, -2}};
        for (const auto& [shape, dim] : cases) {
          const Tensor<T> ties = tied_tensor<T>(shape, seed++);  // ties: the first occurrence must win
          for (bool is_max : {true, false}) {
            auto op = [&, d = dim](const auto& t) {
              return is_max ? loom::max(t, d, keepdim).values : loom::min(t, d, keepdim).values;
            };
            check_against_cpu<T>(ties, same, op, loom::test::tol_for<T>(), seed++);
            const auto want = is_max ? loom::argmax(ties, dim, keepdim) : loom::argmin(ties, dim, keepdim);
            const Tensor<T, CUDA> dev = ties.template to_device<CUDA>();
            const auto got = is_max ? loom::argmax(dev, dim, keepdim) : loom::argmin(dev, dim, keepdim);
            REQUIRE(got.shape() == want.shape());
            REQUIRE(got.to_vector() == want.to_vector());
            REQUIRE((is_max ? loom::max(dev, dim, keepdim) : loom::min(dev, dim, keepdim)).indices.to_vector() ==
                    want.to_vector());
          }
        }
        const Tensor<T> base = tied_tensor<T>({5, n}, seed++);  // read as [n, 5]
        check_against_cpu<T>(base, transposed, [&](const auto& t) { return loom::max(t, 0, keepdim).values; },
                             loom::test::tol_for<T>(), seed++);
        check_against_cpu<T>(base, transposed, [&](const auto& t) { return loom::min(t, 1, keepdim).values; },
                             loom::test::tol_for<T>(), seed++);
      }
    }
    // Over all elements, and a NaN (the first one wins).
    const Tensor<T> x = tied_tensor<T>({37, 41}, 7);
    REQUIRE(loom::argmax(x.template to_device<CUDA>()).item() == loom::argmax(x).item());
    REQUIRE(loom::argmin(x.template to_device<CUDA>()).item() == loom::argmin(x).item());
    std::vector<T> v(3000, T(1.f));
    v[2100] = T(NAN);
    v[2500] = T(NAN);
    const Tensor<T> with_nan = Tensor<T>::from_vector({3, 1000}, v);
    const Tensor<T, CUDA> with_nan_dev = with_nan.template to_device<CUDA>();
    REQUIRE(loom::argmax(with_nan_dev, 1).to_vector() == loom::argmax(with_nan, 1).to_vector());
    REQUIRE(loom::argmin(with_nan_dev, 1).to_vector() == loom::argmin(with_nan, 1).to_vector());
  });
}

TEST_CASE("CUDA var and stddev (biased and unbiased), forward and backward, match the CPU", "[cuda][reduce]") {
  REQUIRE_GPU();
  for_float_and_bf16([](auto tag) {
    using T = decltype(tag);
    const auto tol = loom::test::tol_for<T>();
    uint32_t seed = 400;
    for (int64_t n : kSizes) {
      INFO("reduced extent " << n);
      for (bool unbiased : {true, false}) {
        const bool keepdim = unbiased;
        const std::vector<std::pair<Shape, std::vector<int64_t>>> cases = {
            {{3, n}, {1}}, {{n, 5}, {0}}, {{2, n, 3}, {0, 1}}, {{n, 3}, {}}};
        for (const auto& [shape, dims] : cases) {
          // n == 1 unbiased divides by zero: NaN values and gradients on both sides.
          const Tensor<T> x = random_tensor<T>(shape, seed++, 0.5f);
          check_against_cpu<T>(x, same, [&](const auto& t) { return loom::var(t, dims, unbiased, keepdim); }, tol,
                               seed++);
          check_against_cpu<T>(x, same, [&](const auto& t) { return loom::stddev(t, dims, unbiased, keepdim); }, tol,
                               seed++);
        }
        const Tensor<T> base = random_tensor<T>({5, n}, seed++, 0.5f);  // read as [n, 5]
        check_against_cpu<T>(base, transposed, [&](const auto& t) { return loom::var(t, {0}, unbiased); }, tol,
                             seed++);
      }
    }
    // Long rows split into chunks; a constant row (std 0: gradient 0 there, as on the CPU).
    check_against_cpu<T>(random_tensor<T>({2, 50000}, 9, 0.5f), same,
                         [](const auto& t) { return loom::stddev(t, {1}); }, tol, 10);
    check_against_cpu<T>(Tensor<T>::full({3, 40}, T(1.5f)), same, [](const auto& t) { return loom::stddev(t, {1}); },
                         tol, 11);
  });
}

TEST_CASE("CUDA sum_squares (a gradient norm's reduction) matches a double sum, float and bf16", "[cuda][reduce]") {
  REQUIRE_GPU();
  for_float_and_bf16([](auto tag) {
    using T = decltype(tag);
    for (const Shape& shape : {Shape{1}, Shape{97}, Shape{225, 7}, Shape{1025, 300}}) {
      const Tensor<T> x = random_tensor<T>(shape, uint32_t(shape.numel()), 0.f);
      double want = 0;
      for (const T& v : x.to_vector()) want += double(v) * double(v);
      std::array<bool, loom::kMaxRank> all{};
      all.fill(true);
      const Tensor<T, CUDA> dev = x.template to_device<CUDA>().transpose(0, -1);  // strided when rank 2
      Tensor<float, CUDA> got = Tensor<float, CUDA>::empty({1});
      loom::cuda::reduce_tensor(loom::dtype_traits<T>::tag, loom::cuda::ReduceOp::sum_squares, got.data(), dev.data(),
                                dev.shape(), dev.strides(), all);
      INFO("shape " << shape);
      loom::test::require_close(got, {want}, loom::test::tol_for<float>());
    }
  });
}

TEST_CASE("CUDA sum_to (the broadcast-gradient reduction) matches the CPU", "[cuda][reduce]") {
  REQUIRE_GPU();
  for_float_and_bf16([](auto tag) {
    using T = decltype(tag);
    for (int64_t n : kSizes) {
      const std::vector<std::pair<Shape, Shape>> cases = {
          {{4, n, 3}, {n, 1}}, {{2, 5, n}, {5, 1}}, {{n, 6}, {6}},
          {{n, 6}, {1, 6}},    {{3, n}, {}},     {{2, n, 4}, {2, 1, 4}}};
      for (const auto& [from, to] : cases) {
        INFO("sum_to " << from << " -> " << to);
        const Tensor<T> x = random_tensor<T>(from, uint32_t(n + from.numel()));
        const Tensor<T, CUDA> got = loom::detail::sum_to(x.template to_device<CUDA>(), to);
        REQUIRE(got.shape() == to);
        loom::test::require_close(got, values(loom::detail::sum_to(x, to)), loom::test::tol_for<T>());
      }
      // A transposed source.
      const Tensor<T> xt = random_tensor<T>({6, n}, 99);
      loom::test::require_close(loom::detail::sum_to(xt.template to_device<CUDA>().transpose(0, 1), Shape{6}),
                                values(loom::detail::sum_to(xt.transpose(0, 1), Shape{6})), loom::test::tol_for<T>());
    }
  });
}

TEST_CASE("CUDA softmax and log_softmax, forward and backward, match the CPU", "[cuda][softmax]") {
  REQUIRE_GPU();
  for_float_and_bf16([](auto tag) {
    using T = decltype(tag);
    const auto tol = loom::test::tol_for<T>();
    uint32_t seed = 100;
    for (int64_t n : kSizes) {
      INFO("line length " << n);
      const std::vector<std::pair<Shape, int64_t>> cases = {{{3, n}, -1}, {{n, 4}, 0}, {{2, n, 3}, 1}};
      for (const auto& [shape, dim] : cases) {
        const Tensor<T> x = random_tensor<T>(shape, seed++, 0.f) * T(4.f);
        check_against_cpu<T>(x, same, [d = dim](const auto& t) { return loom::softmax(t, d); }, tol, seed++);
        check_against_cpu<T>(x, same, [d = dim](const auto& t) { return loom::log_softmax(t, d); }, tol, seed++);
      }
      const Tensor<T> base = random_tensor<T>({5, n}, seed++, 0.f);  // read as [n, 5]
      check_against_cpu<T>(base, transposed, [](const auto& t) { return loom::softmax(t, -1); }, tol, seed++);
      check_against_cpu<T>(base, transposed, [](const auto& t) { return loom::log_softmax(t, 0); }, tol, seed++);
    }
  });
}

TEST_CASE("CUDA layer_norm, forward and backward for input, weight and bias, matches the CPU", "[cuda][layer_norm]") {
  REQUIRE_GPU();
  for_float_and_bf16([](auto tag) {
    using T = decltype(tag);
    const auto tol = loom::test::tol_for<T>();
    uint32_t seed = 200;
    // g_offset: the output gradient is uniform in [g_offset - 1, g_offset + 1).
    auto run = [&](const Tensor<T>& x_base, bool transpose, bool affine, float g_offset = 0.f) {
      const int64_t cols = transpose ? x_base.size(0) : x_base.size(-1);
      const Tensor<T> w0 = random_tensor<T>({cols}, seed++, 1.f), b0 = random_tensor<T>({cols}, seed++, 0.f);
      Tensor<T> x_cpu = x_base.clone().requires_grad_(), w_cpu = w0.clone().requires_grad_(),
                b_cpu = b0.clone().requires_grad_();
      Tensor<T, CUDA> x_dev = device_leaf(x_base), w_dev = device_leaf(w0), b_dev = device_leaf(b0);
      auto view = [&](const auto& t) { return transpose ? t.transpose(0, 1) : t; };
      const Tensor<T> y_cpu = affine ? loom::layer_norm(view(x_cpu), Shape{cols}, w_cpu, b_cpu)
                                     : loom::layer_norm(view(x_cpu), Shape{cols});
      const Tensor<T, CUDA> y_dev = affine ? loom::layer_norm(view(x_dev), Shape{cols}, w_dev, b_dev)
                                           : loom::layer_norm(view(x_dev), Shape{cols});
      loom::test::require_close(y_dev, values(y_cpu), tol);
      const Tensor<T> g = random_tensor<T>(y_cpu.shape(), seed++, g_offset);
      y_cpu.backward(g);
      y_dev.backward(g.template to_device<CUDA>());
      loom::test::require_close(x_dev.grad(), values(x_cpu.grad()), tol);
      if (affine) {
        loom::test::require_close(w_dev.grad(), values(w_cpu.grad()), tol);
        loom::test::require_close(b_dev.grad(), values(b_cpu.grad()), tol);
      }
    };
    for (int64_t n : kSizes) {
      INFO("normalized size " << n);
      for (bool affine : {true, false}) {
        run(random_tensor<T>({6, n}, seed++, 0.5f), false, affine);
        run(random_tensor<T>({n, 3}, seed++, 0.5f), true, affine);  // x [3, n] transposed
      }
    }
    // dweight / dbias over 9000 rows, split into row chunks; sums kept away from zero (striped_tensor).
    run(striped_tensor<T>(9000, 33, seed++), false, true, 1.5f);
  });
}

TEST_CASE("CUDA reductions, softmax and layer norm are bit-identical across reruns", "[cuda][reduce]") {
  REQUIRE_GPU();
  const Tensor<float, CUDA> a = random_tensor<float>({4, 100000}, 1).to_device<CUDA>();
  const Tensor<float, CUDA> b = random_tensor<float>({50000, 8}, 2).to_device<CUDA>();
  auto bits = [](const auto& t) {
    const auto v = t.to_vector();
    std::vector<uint32_t> out(v.size());
    std::memcpy(out.data(), v.data(), v.size() * sizeof(float));
    return out;
  };
  REQUIRE(bits(loom::sum(a, {1})) == bits(loom::sum(a, {1})));
  REQUIRE(bits(loom::sum(b, {0})) == bits(loom::sum(b, {0})));
  REQUIRE(bits(loom::sum(a)) == bits(loom::sum(a)));
  REQUIRE(bits(loom::softmax(a, 1)) == bits(loom::softmax(a, 1)));
  auto ln_grads = [&]() {
    Tensor<float, CUDA> x = random_tensor<float>({9000, 33}, 3).to_device<CUDA>().requires_grad_();
    Tensor<float, CUDA> w = random_tensor<float>({33}, 4, 1.f).to_device<CUDA>().requires_grad_();
    Tensor<float, CUDA> bias = random_tensor<float>({33}, 5).to_device<CUDA>().requires_grad_();
    loom::layer_norm(x, Shape{33}, w, bias).backward(random_tensor<float>({9000, 33}, 6).to_device<CUDA>());
    return std::vector{bits(x.grad()), bits(w.grad()), bits(bias.grad())};
  };
  REQUIRE(ln_grads() == ln_grads());
}
