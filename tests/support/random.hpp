#pragma once
// Deterministic test inputs in [-1, 1), drawn independently of loom's own generators so that a bug
// in those cannot hide in the inputs of the tests that check them.
#include <cstdint>
#include <random>
#include <vector>

#include "loom/core/tensor.hpp"

namespace loom::test {

// n values from a small LCG, as doubles (a reference computes on them unrounded).
inline std::vector<double> random_values(int64_t n, uint64_t seed) {
  std::vector<double> v(static_cast<size_t>(n));
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (double& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = double(s >> 11) / double(1ull << 53) * 2.0 - 1.0;
  }
  return v;
}

// A contiguous tensor of the values v, rounded to T.
template <class T>
Tensor<T> from_doubles(const Shape& shape, const std::vector<double>& v) {
  std::vector<T> values;
  values.reserve(v.size());
  for (double d : v) values.push_back(T(compute_t<T>(d)));
  return Tensor<T>::from_vector(shape, values);
}

// random_values(numel, seed) · scale + shift, as a contiguous Tensor<T>.
template <class T>
Tensor<T> random_values_as(const Shape& shape, uint64_t seed, double scale = 1.0, double shift = 0.0) {
  std::vector<double> v = random_values(shape.numel(), seed);
  for (double& x : v) x = x * scale + shift;
  return from_doubles<T>(shape, v);
}

// A contiguous tensor of uniform draws from std::mt19937(seed).
template <class T>
Tensor<T> random_tensor(const Shape& shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  std::vector<T> values(size_t(shape.numel()));
  for (T& v : values) v = T(static_cast<compute_t<T>>(uniform(rng)));
  return Tensor<T>::from_vector(shape, values);
}

// random_tensor<double> as a leaf that requires grad (gradcheck input).
inline Tensor<double> random_leaf(const Shape& shape, uint32_t seed) {
  Tensor<double> t = random_tensor<double>(shape, seed);
  t.requires_grad_();
  return t;
}

// A non-contiguous leaf [rows, cols]: the transpose of a random [cols, rows] matrix.
inline Tensor<double> transposed_leaf(int64_t rows, int64_t cols, uint32_t seed) {
  return random_tensor<double>({cols, rows}, seed).transpose(0, 1).detach().requires_grad_();
}

}  // namespace loom::test
