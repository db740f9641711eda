#pragma once
// gradcheck: compares the gradients autograd computes with central finite differences in double.
// The function's output is reduced with fixed pseudo-random weights w (loss = sum(w * f(x))), so
// every output element's gradient is exercised, then d loss / d x is checked for every element of
// every input that requires grad:  |analytic - numeric| <= atol + rtol * |numeric|.
// Inputs may be non-contiguous leaves (e.g. base.transpose(0, 1).detach().requires_grad_()).
#include <cmath>
#include <cstdint>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "loom/autograd/engine.hpp"
#include "loom/core/tensor.hpp"

namespace loom::autograd {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-4;
  GradcheckOptions& with_eps(double v) { eps = v; return *this; }
  GradcheckOptions& with_atol(double v) { atol = v; return *this; }
  GradcheckOptions& with_rtol(double v) { rtol = v; return *this; }
};

struct GradcheckResult {
  bool ok = true;
  double worst_excess = 0;  // max of |a - n| - (atol + rtol |n|); <= 0 when ok
  int worst_input = -1;
  int64_t worst_index = -1;  // row-major logical index within that input
  double analytic = 0, numeric = 0;
  std::string message;  // human-readable summary naming the worst element
};

using GradcheckFn = std::function<Tensor<double>(const std::vector<Tensor<double>>&)>;

namespace detail {
inline int64_t strided_offset(const Shape& shape, const Strides& strides, int64_t linear) {
  int64_t off = 0;
  for (int d = shape.size() - 1; d >= 0; --d) {
    off += (linear % shape[d]) * strides[d];
    linear /= shape[d];
  }
  return off;
}
}  // namespace detail

inline GradcheckResult gradcheck(const GradcheckFn& f, const std::vector<Tensor<double>>& inputs,
                                 const GradcheckOptions& opt = {}) {
  // Fixed weights from a tiny LCG: independent of loom's RNG, so gradcheck never depends on it.
  const Tensor<double> probe = [&] {
    NoGradGuard g;
    return f(inputs);
  }();
  std::vector<double> w(static_cast<size_t>(probe.numel()));
  uint64_t state = 0x9E3779B97F4A7C15ull;
  for (double& x : w) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    x = 0.5 + double(state >> 11) / double(1ull << 53);  // in [0.5, 1.5): no cancellation to zero
  }
  const Tensor<double> weights = Tensor<double>::from_vector(probe.shape(), w);
  auto weighted_sum = [&](const Tensor<double>& out) {
    const std::vector<double> v = out.to_vector();
    double s = 0;
    for (size_t i = 0; i < v.size(); ++i) s += v[i] * w[i];
    return s;
  };

  for (const auto& x : inputs) x.zero_grad();
  Tensor<double> out = f(inputs);
  LOOM_CHECK(out.requires_grad(), "gradcheck: the function's output does not require grad");
  out.backward(weights);

  GradcheckResult result;
  result.worst_excess = -INFINITY;
  for (size_t k = 0; k < inputs.size(); ++k) {
    const Tensor<double>& x = inputs[k];
    if (!x.requires_grad()) continue;
    const Tensor<double> grad = x.grad();
    const std::vector<double> analytic =
        grad.defined() ? grad.to_vector() : std::vector<double>(static_cast<size_t>(x.numel()), 0.0);
    double* base = x.data();
    for (int64_t i = 0; i < x.numel(); ++i) {
      double& xi = base[detail::strided_offset(x.shape(), x.strides(), i)];
      const double saved = xi;
      double plus, minus;
      {
        NoGradGuard g;
        xi = saved + opt.eps;
        plus = weighted_sum(f(inputs));
        xi = saved - opt.eps;
        minus = weighted_sum(f(inputs));
        xi = saved;
      }
      const double numeric = (plus - minus) / (2 * opt.eps);
      const double a = analytic[size_t(i)];
      const double excess = std::abs(a - numeric) - (opt.atol + opt.rtol * std::abs(numeric));
      if (excess > result.worst_excess || std::isnan(a)) {
        result.worst_excess = std::isnan(a) ? INFINITY : excess;
        result.worst_input = int(k);
        result.worst_index = i;
        result.analytic = a;
        result.numeric = numeric;
      }
    }
  }
  result.ok = result.worst_excess <= 0;
  std::ostringstream msg;
  msg << (result.ok ? "gradcheck passed" : "gradcheck FAILED") << ": worst at input " << result.worst_input
      << " element " << result.worst_index << ": analytic " << result.analytic << " vs numeric " << result.numeric
      << " (atol " << opt.atol << ", rtol " << opt.rtol << ", eps " << opt.eps << ")";
  result.message = msg.str();
  return result;
}

}  // namespace loom::autograd
