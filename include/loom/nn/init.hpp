#pragma once
// Parameter initialization as the MAE reference does it: xavier-uniform for Linear weights (and the
// patch-embedding weight viewed as a matrix), zeros for biases, N(0, 0.02) for cls/mask tokens,
// LayerNorm weight 1 / bias 0. All draws come from an explicit Generator, so a model is a
// function of its seed.
#include <cmath>

#include "loom/autograd/grad_mode.hpp"
#include "loom/core/random.hpp"
#include "loom/core/tensor.hpp"

namespace loom::nn::init {

// U(-a, a) with a = sqrt(6 / (fan_in + fan_out)) for a weight [fan_out, fan_in, ...]; trailing dims
// (conv kernels) multiply both fans, as PyTorch's xavier_uniform_.
template <class T, class Dev>
void xavier_uniform_(const Tensor<T, Dev>& w, Generator& gen) {
  LOOM_CHECK(w.dim() >= 2, "xavier_uniform_: needs a weight of rank >= 2, got shape ", w.shape());
  int64_t receptive = 1;
  for (int d = 2; d < w.dim(); ++d) receptive *= w.size(d);
  const double fan_in = double(w.size(1) * receptive), fan_out = double(w.size(0) * receptive);
  const double a = std::sqrt(6.0 / (fan_in + fan_out));
  NoGradGuard guard;
  Tensor<T, Dev>(w).copy_(uniform<T, Dev>(w.shape(), -a, a, gen));
}

template <class T, class Dev>
void normal_(const Tensor<T, Dev>& w, double mean, double std, Generator& gen) {
  NoGradGuard guard;
  Tensor<T, Dev>(w).copy_(normal<T, Dev>(w.shape(), mean, std, gen));
}

template <class T, class Dev>
void constant_(const Tensor<T, Dev>& w, double value) {
  NoGradGuard guard;
  Tensor<T, Dev>(w).fill_(T(value));
}

}  // namespace loom::nn::init
