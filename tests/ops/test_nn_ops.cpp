// softmax / log_softmax, layer_norm and gelu against naive references computed in double.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "loom/autograd/gradcheck.hpp"
#include "loom/ops/gelu.hpp"
#include "loom/ops/layer_norm.hpp"
#include "loom/ops/reduce.hpp"
#include "loom/ops/softmax.hpp"
#include "support/check.hpp"
#include "support/gradcheck.hpp"
#include "support/random.hpp"

using loom::bf16;
using loom::GeluApprox;
using loom::Shape;
using loom::Tensor;
using loom::test::from_doubles;
using loom::test::random_values;
using loom::test::random_values_as;
using loom::test::require_close;
using loom::test::require_gradcheck;
using loom::test::to_double;

namespace {

// For each element (row-major), the id of its line: the elements sharing every index but `dim`.
std::vector<int64_t> line_ids(const Shape& shape, int dim) {
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < shape.numel(); ++i) {
    int64_t rem = i, id = 0, mult = 1;
    for (int d = shape.size() - 1; d >= 0; --d) {
      const int64_t k = rem % shape[d];
      rem /= shape[d];
      if (d != dim) {
        id += k * mult;
        mult *= shape[d];
      }
    }
    ids.push_back(id);
  }
  return ids;
}

// softmax (or log_softmax) of each line along dim, in double.
std::vector<double> ref_softmax(const std::vector<double>& x, const Shape& shape, int dim, bool log) {
  const std::vector<int64_t> ids = line_ids(shape, dim);
  const int64_t n_lines = shape.size() ? shape.numel() / shape[dim] : 1;
  std::vector<double> mx(size_t(n_lines), -INFINITY), sum(size_t(n_lines), 0.0), y(x.size());
  for (size_t i = 0; i < x.size(); ++i) mx[size_t(ids[i])] = std::max(mx[size_t(ids[i])], x[i]);
  for (size_t i = 0; i < x.size(); ++i) sum[size_t(ids[i])] += std::exp(x[i] - mx[size_t(ids[i])]);
  for (size_t i = 0; i < x.size(); ++i) {
    const size_t l = size_t(ids[i]);
    y[i] = log ? x[i] - mx[l] - std::log(sum[l]) : std::exp(x[i] - mx[l]) / sum[l];
  }
  return y;
}

// dx_i = sum_j g_j dy_j/dx_i with the full Jacobian of each line (dy_j/dx_i = y_j (delta_ij - y_i)
// for softmax, delta_ij - softmax_i for log_softmax): O(n^2) per line, nothing shared with loom.
std::vector<double> ref_softmax_backward(const std::vector<double>& x, const std::vector<double>& g,
                                         const Shape& shape, int dim, bool log) {
  const std::vector<int64_t> ids = line_ids(shape, dim);
  const std::vector<double> p = ref_softmax(x, shape, dim, false);
  std::vector<double> dx(x.size(), 0.0);
  for (size_t i = 0; i < x.size(); ++i)
    for (size_t j = 0; j < x.size(); ++j) {
      if (ids[i] != ids[j]) continue;
      const double delta = i == j ? 1.0 : 0.0;
      const double dyj_dxi = log ? delta - p[i] : p[j] * (delta - p[i]);
      dx[i] += g[j] * dyj_dxi;
    }
  return dx;
}

// layer_norm over the last `cols` elements of each row, in double.
std::vector<double> ref_layer_norm(const std::vector<double>& x, int64_t cols, const std::vector<double>& w,
                                   const std::vector<double>& b, double eps) {
  std::vector<double> y(x.size());
  for (size_t r = 0; r * size_t(cols) < x.size(); ++r) {
    const double* row = x.data() + r * size_t(cols);
    double mean = 0, var = 0;
    for (int64_t j = 0; j < cols; ++j) mean += row[j];
    mean /= double(cols);
    for (int64_t j = 0; j < cols; ++j) var += (row[j] - mean) * (row[j] - mean);
    var /= double(cols);
    for (int64_t j = 0; j < cols; ++j) {
      double v = (row[j] - mean) / std::sqrt(var + eps);
      if (!w.empty()) v *= w[size_t(j)];
      if (!b.empty()) v += b[size_t(j)];
      y[r * size_t(cols) + size_t(j)] = v;
    }
  }
  return y;
}

constexpr double kPi = 3.14159265358979323846;

double ref_gelu(double x, GeluApprox a) {
  if (a == GeluApprox::tanh) return 0.5 * x * (1 + std::tanh(std::sqrt(2 / kPi) * (x + 0.044715 * x * x * x)));
  return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
}

double ref_gelu_derivative(double x, GeluApprox a) {
  if (a == GeluApprox::tanh) {
    const double k = std::sqrt(2 / kPi), u = k * (x + 0.044715 * x * x * x), t = std::tanh(u);
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x);
  }
  const double cdf = 0.5 * (1 + std::erf(x / std::sqrt(2.0)));
  const double pdf = std::exp(-0.5 * x * x) / std::sqrt(2 * kPi);
  return cdf + x * pdf;
}

template <class T>
void check_softmax_each_dim(const Shape& shape, double scale) {
  const Tensor<T> x = random_values_as<T>(shape, 100 + uint64_t(shape.numel()), scale);
  const std::vector<double> xv = to_double(x);
  for (int64_t d = -shape.size(); d < shape.size(); ++d) {
    const int dim = int(d < 0 ? d + shape.size() : d);
    INFO("shape " << shape << " dim " << d);
    const Tensor<T> y = loom::softmax(x, d);
    REQUIRE(y.shape() == shape);
    require_close(y, ref_softmax(xv, shape, dim, false));
    require_close(loom::log_softmax(x, d), ref_softmax(xv, shape, dim, true));
  }
}

}  // namespace

// ---- softmax / log_softmax -----------------------------------------------------------------------

TEST_CASE("softmax and log_softmax over each dim, odd sizes, float/double/bf16", "[softmax]") {
  for (const Shape& shape : {Shape{1}, Shape{7}, Shape{97}, Shape{225}, Shape{7, 97}, Shape{225, 7}, Shape{3, 1, 5}}) {
    check_softmax_each_dim<float>(shape, 4.0);
    check_softmax_each_dim<double>(shape, 4.0);
    check_softmax_each_dim<bf16>(shape, 4.0);
  }
  const Tensor<double> s = loom::softmax(Tensor<double>::scalar(3.0), 0);  // a rank-0 line of one
  REQUIRE(s.shape() == Shape{});
  REQUIRE(s.item() == 1.0);
}

TEST_CASE("softmax of non-contiguous inputs: permuted, transposed, sliced, expanded", "[softmax]") {
  const Tensor<double> p = random_values_as<double>({5, 7, 3}, 11, 3.0).permute({2, 0, 1});  // [3, 5, 7]
  for (int dim : {0, 1, 2}) {
    require_close(loom::softmax(p, dim), ref_softmax(to_double(p), p.shape(), dim, false));
    require_close(loom::log_softmax(p, dim), ref_softmax(to_double(p), p.shape(), dim, true));
  }
  const Tensor<float> t = random_values_as<float>({97, 7}, 12, 3.0).transpose(0, 1);  // [7, 97]
  require_close(loom::softmax(t, 1), ref_softmax(to_double(t), t.shape(), 1, false));
  const Tensor<float> sl = random_values_as<float>({9, 225}, 13, 3.0).slice(1, 1, 225, 4);  // [9, 56]
  require_close(loom::log_softmax(sl, -1), ref_softmax(to_double(sl), sl.shape(), 1, true));
  const Tensor<float> e = random_values_as<float>({1, 7}, 14, 3.0).expand({97, 7});
  require_close(loom::softmax(e, 1), ref_softmax(to_double(e), e.shape(), 1, false));
  require_close(loom::softmax(e, 0), std::vector<double>(97 * 7, 1.0 / 97));
}

TEST_CASE("softmax stays finite and exact on large-magnitude inputs", "[softmax]") {
  // exp(1e4) and exp(3e38) overflow: only the max subtraction keeps these finite (differences stay
  // within float range, so log_softmax is finite too).
  const std::vector<double> v{1e4, 1e4 - 1, -1e4, 3e38, 1e38, 3e38 - 1e32};
  for (int64_t shift : {0, 1}) {
    const Tensor<float> x = from_doubles<float>({2, 3}, v).slice(0, shift, 2);
    const std::vector<double> xv = to_double(x);
    const Tensor<float> y = loom::softmax(x, 1), ly = loom::log_softmax(x, 1);
    for (float e : y.to_vector()) REQUIRE(std::isfinite(e));
    for (float e : ly.to_vector()) REQUIRE(std::isfinite(e));
    require_close(y, ref_softmax(xv, x.shape(), 1, false));
    require_close(ly, ref_softmax(xv, x.shape(), 1, true));
  }
  const Tensor<bf16> xb = from_doubles<bf16>({3}, {1e30, -1e30, 1e30});
  require_close(loom::softmax(xb, 0), {0.5, 0, 0.5});
}

TEST_CASE("softmax with -inf entries (masking), an all -inf line gives NaN as PyTorch", "[softmax]") {
  const double inf = INFINITY;
  const Tensor<float> x = from_doubles<float>({2, 3}, {0.5, -inf, 0.5, -inf, -inf, -inf});
  const std::vector<float> y = loom::softmax(x, 1).to_vector();
  REQUIRE(y[0] == 0.5f);
  REQUIRE(y[1] == 0.0f);
  REQUIRE(y[2] == 0.5f);
  for (int i = 3; i < 6; ++i) REQUIRE(std::isnan(y[size_t(i)]));
  const std::vector<float> ly = loom::log_softmax(x, 1).to_vector();
  REQUIRE(ly[1] == -INFINITY);
  REQUIRE(std::abs(ly[0] - std::log(0.5f)) < 1e-6f);
}

TEST_CASE("softmax on long lines: masked entries give exactly 0, NaN and +inf poison the line", "[softmax]") {
  // 37 elements per line: the vectorized path, not only the scalar tail.
  std::vector<double> v = random_values(3 * 37, 61);
  for (int i : {2, 9, 20, 33}) v[size_t(i)] = -INFINITY;          // line 0: masked entries
  v[37 + 12] = std::numeric_limits<double>::quiet_NaN();          // line 1: a NaN
  v[74 + 5] = INFINITY;                                           // line 2: a +inf
  Tensor<float> x = from_doubles<float>({3, 37}, v);
  x.requires_grad_();
  const std::vector<float> y = loom::softmax(x, 1).to_vector();
  const std::vector<float> ly = loom::log_softmax(x, 1).to_vector();
  std::vector<double> line0(v.begin(), v.begin() + 37);
  const std::vector<double> ref0 = ref_softmax(line0, {37}, 0, false);
  for (int i = 0; i < 37; ++i) {
    if (std::isinf(line0[size_t(i)])) {
      REQUIRE(y[size_t(i)] == 0.0f);
      REQUIRE(ly[size_t(i)] == -INFINITY);
    } else {
      REQUIRE(std::abs(y[size_t(i)] - ref0[size_t(i)]) <= 1e-6 + 1e-5 * ref0[size_t(i)]);
    }
  }
  for (int i = 37; i < 111; ++i) {
    REQUIRE(std::isnan(y[size_t(i)]));
    REQUIRE(std::isnan(ly[size_t(i)]));
  }
  // log_softmax backward through masked entries: exp(-inf) = 0, so their gradient is g itself.
  const Tensor<float> g = random_values_as<float>({1, 37}, 62);
  loom::log_softmax(x.narrow(0, 0, 1), 1).backward(g);
  const std::vector<float> gx = x.grad().to_vector(), gv = g.to_vector();
  for (int i : {2, 9, 20, 33}) REQUIRE(gx[size_t(i)] == gv[size_t(i)]);
}

TEST_CASE("softmax over one very long line (scratch buffers beyond their kept size)", "[softmax]") {
  const Tensor<float> x = random_values_as<float>({100003}, 63, 8.0);
  const std::vector<double> xv = to_double(x);
  require_close(loom::softmax(x, 0), ref_softmax(xv, x.shape(), 0, false));
  require_close(loom::log_softmax(x, 0), ref_softmax(xv, x.shape(), 0, true));
  const Tensor<bf16> xb = random_values_as<bf16>({2, 100003}, 64, 8.0).transpose(0, 1);  // strided lines of 100003
  require_close(loom::softmax(xb, 0), ref_softmax(to_double(xb), xb.shape(), 0, false));
}

TEST_CASE("softmax and log_softmax backward against the naive Jacobian", "[softmax][grad]") {
  for (const Shape& shape : {Shape{7}, Shape{97}, Shape{5, 9}, Shape{3, 1, 7}}) {
    for (int dim = 0; dim < shape.size(); ++dim) {
      for (bool log : {false, true}) {
        INFO("shape " << shape << " dim " << dim << " log " << log);
        Tensor<float> x = random_values_as<float>(shape, 21, 3.0);
        x.requires_grad_();
        const Tensor<float> g = random_values_as<float>(shape, 22);
        const Tensor<float> y = log ? loom::log_softmax(x, dim) : loom::softmax(x, dim);
        y.backward(g);
        require_close(x.grad(), ref_softmax_backward(to_double(x), to_double(g), shape, dim, log));
        Tensor<double> xd = random_values_as<double>(shape, 23, 3.0);
        xd.requires_grad_();
        const Tensor<double> gd = random_values_as<double>(shape, 24);
        (log ? loom::log_softmax(xd, dim) : loom::softmax(xd, dim)).backward(gd);
        require_close(xd.grad(), ref_softmax_backward(to_double(xd), to_double(gd), shape, dim, log));
      }
    }
  }
}

TEST_CASE("softmax backward with a non-contiguous incoming gradient", "[softmax][grad]") {
  Tensor<double> x = random_values_as<double>({5, 7}, 25, 2.0);
  x.requires_grad_();
  const Tensor<double> g = random_values_as<double>({7, 5}, 26).transpose(0, 1);  // [5, 7], strided
  loom::softmax(x, 1).backward(g);
  require_close(x.grad(), ref_softmax_backward(to_double(x), to_double(g), {5, 7}, 1, false));
  x.zero_grad();
  const Tensor<double> g0 = random_values_as<double>({1, 7}, 27).expand({5, 7});  // stride 0
  loom::log_softmax(x, 0).backward(g0);
  require_close(x.grad(), ref_softmax_backward(to_double(x), to_double(g0), {5, 7}, 0, true));
}

TEST_CASE("softmax and log_softmax gradcheck: each dim, non-contiguous and broadcast leaves", "[softmax][grad]") {
  const Tensor<double> a = random_values_as<double>({3, 4, 5}, 31, 2.0).requires_grad_();
  for (int64_t d : {0, 1, -1}) {
    require_gradcheck([&](const auto& in) { return loom::softmax(in[0], d); }, {a});
    require_gradcheck([&](const auto& in) { return loom::log_softmax(in[0], d); }, {a});
  }
  const Tensor<double> t = random_values_as<double>({6, 7}, 32, 2.0).transpose(0, 1).detach().requires_grad_();  // [7, 6]
  require_gradcheck([](const auto& in) { return loom::softmax(in[0], 1); }, {t});
  require_gradcheck([](const auto& in) { return loom::log_softmax(in[0], 0); }, {t});
  const Tensor<double> b = random_values_as<double>({1, 6}, 33, 2.0).requires_grad_();
  require_gradcheck([](const auto& in) { return loom::softmax(in[0].expand({4, 6}), 1); }, {b});
  require_gradcheck([](const auto& in) { return loom::log_softmax(in[0].expand({4, 6}), 0); }, {b});
}

TEST_CASE("softmax errors name the op and the shape", "[softmax][errors]") {
  const Tensor<float> x = random_values_as<float>({3, 4}, 41);
  REQUIRE_THROWS_AS(loom::softmax(x, 2), loom::Error);
  REQUIRE_THROWS_WITH(loom::softmax(x, 2), Catch::Contains("softmax") && Catch::Contains("[3, 4]"));
  REQUIRE_THROWS_WITH(loom::log_softmax(x, -3), Catch::Contains("log_softmax") && Catch::Contains("[3, 4]"));
  REQUIRE_THROWS_AS(loom::softmax(Tensor<float>(), 0), loom::Error);
}

// ---- layer_norm ------------------------------------------------------------------------------------

TEST_CASE("layer_norm forward: last dim(s), with and without weight/bias, odd sizes", "[layer_norm]") {
  for (const Shape& shape : {Shape{5, 1}, Shape{1, 7}, Shape{3, 97}, Shape{2, 225}, Shape{2, 3, 7}}) {
    const Shape norm{shape.back()};
    const std::vector<double> w = random_values(shape.back(), 51), b = random_values(shape.back(), 52);
    auto check = [&](auto tag) {
      using T = decltype(tag);
      const Tensor<T> x = random_values_as<T>(shape, 53, 2.0, 0.5);
      const Tensor<T> wt = from_doubles<T>(norm, w), bt = from_doubles<T>(norm, b);
      const std::vector<double> xv = to_double(x), wv = to_double(wt), bv = to_double(bt);
      INFO("shape " << shape);
      require_close(loom::layer_norm(x, norm), ref_layer_norm(xv, shape.back(), {}, {}, 1e-5));
      require_close(loom::layer_norm(x, norm, wt, bt), ref_layer_norm(xv, shape.back(), wv, bv, 1e-5));
      require_close(loom::layer_norm(x, norm, wt), ref_layer_norm(xv, shape.back(), wv, {}, 1e-5));
      require_close(loom::layer_norm(x, norm, Tensor<T>(), bt, 1e-3), ref_layer_norm(xv, shape.back(), {}, bv, 1e-3));
    };
    check(float{});
    check(double{});
    check(bf16{});
  }
  // Normalizing over the last two dims.
  const Tensor<float> x = random_values_as<float>({3, 5, 7}, 54);
  const Tensor<float> w = random_values_as<float>({5, 7}, 55), b = random_values_as<float>({5, 7}, 56);
  require_close(loom::layer_norm(x, {5, 7}, w, b), ref_layer_norm(to_double(x), 35, to_double(w), to_double(b), 1e-5));
}

TEST_CASE("layer_norm of non-contiguous inputs, weight and bias", "[layer_norm]") {
  const Tensor<double> x = random_values_as<double>({97, 7}, 61).transpose(0, 1);  // [7, 97]
  const Tensor<double> w = random_values_as<double>({2 * 97}, 62).slice(0, 0, 2 * 97, 2);  // stride 2
  const Tensor<double> b = random_values_as<double>({1}, 63).expand({97});                // stride 0
  require_close(loom::layer_norm(x, {97}, w, b), ref_layer_norm(to_double(x), 97, to_double(w), to_double(b), 1e-5));
  const Tensor<float> e = random_values_as<float>({1, 225}, 64).expand({3, 225});
  require_close(loom::layer_norm(e, {225}), ref_layer_norm(to_double(e), 225, {}, {}, 1e-5));
}

TEST_CASE("layer_norm gradcheck: weight and bias as inputs, 1 and 2 normalized dims, non-contiguous", "[layer_norm][grad]") {
  const Tensor<double> x = random_values_as<double>({4, 6}, 71, 2.0).requires_grad_();
  const Tensor<double> w = random_values_as<double>({6}, 72).requires_grad_();
  const Tensor<double> b = random_values_as<double>({6}, 73).requires_grad_();
  require_gradcheck([](const auto& in) { return loom::layer_norm(in[0], {6}, in[1], in[2]); }, {x, w, b});
  require_gradcheck([](const auto& in) { return loom::layer_norm(in[0], {6}); }, {x});
  require_gradcheck([](const auto& in) { return loom::layer_norm(in[0], {6}, in[1]); }, {x, w});
  require_gradcheck([](const auto& in) { return loom::layer_norm(in[0], {6}, Tensor<double>(), in[1], 0.1); }, {x, b});
  // Only weight and bias require grad (a frozen input, as in a linear probe's head).
  const Tensor<double> frozen = random_values_as<double>({4, 6}, 74);
  require_gradcheck([&](const auto& in) { return loom::layer_norm(frozen, {6}, in[0], in[1]); }, {w, b});
  // Two normalized dims, non-contiguous leaves.
  const Tensor<double> x3 = random_values_as<double>({5, 3, 2}, 75).permute({1, 2, 0}).detach().requires_grad_();  // [3, 2, 5]
  const Tensor<double> w2 = random_values_as<double>({5, 2}, 76).transpose(0, 1).detach().requires_grad_();      // [2, 5]
  const Tensor<double> b2 = random_values_as<double>({2, 5}, 77).requires_grad_();
  require_gradcheck([](const auto& in) { return loom::layer_norm(in[0], {2, 5}, in[1], in[2]); }, {x3, w2, b2});
  // A broadcast input: one row expanded to 3, so its gradient sums the rows'.
  const Tensor<double> row = random_values_as<double>({1, 6}, 78, 2.0).requires_grad_();
  require_gradcheck([&](const auto& in) { return loom::layer_norm(in[0].expand({3, 6}), {6}, in[1], in[2]); },
                    {row, w, b});
  // One element per row: the output is the bias, x gets zero gradient.
  const Tensor<double> x1 = random_values_as<double>({4, 1}, 79).requires_grad_();
  const Tensor<double> w1 = random_values_as<double>({1}, 80).requires_grad_();
  require_gradcheck([&](const auto& in) { return loom::layer_norm(in[0], {1}, in[1], in[1]); }, {x1, w1});
}

TEST_CASE("layer_norm float and bf16 backward agree with the gradchecked double backward", "[layer_norm][grad]") {
  const Shape shape{13, 97};
  const std::vector<double> xv = random_values(shape.numel(), 81), gv = random_values(shape.numel(), 82);
  const std::vector<double> wv = random_values(97, 83), bv = random_values(97, 84);
  auto grads = [&](auto tag) {
    using T = decltype(tag);
    Tensor<T> x = from_doubles<T>(shape, xv), w = from_doubles<T>({97}, wv), b = from_doubles<T>({97}, bv);
    x.requires_grad_();
    w.requires_grad_();
    b.requires_grad_();
    loom::layer_norm(x, {97}, w, b).backward(from_doubles<T>(shape, gv));
    return std::vector<Tensor<T>>{x.grad(), w.grad(), b.grad()};
  };
  // References: the double op on the same (rounded) values.
  auto reference = [&](auto tag) {
    using T = decltype(tag);
    auto round = [](const std::vector<double>& v, const Shape& s) { return to_double(from_doubles<T>(s, v)); };
    Tensor<double> x = from_doubles<double>(shape, round(xv, shape)), w = from_doubles<double>({97}, round(wv, {97})),
                   b = from_doubles<double>({97}, round(bv, {97}));
    x.requires_grad_();
    w.requires_grad_();
    b.requires_grad_();
    loom::layer_norm(x, {97}, w, b).backward(from_doubles<double>(shape, round(gv, shape)));
    return std::vector<std::vector<double>>{to_double(x.grad()), to_double(w.grad()), to_double(b.grad())};
  };
  const auto gf = grads(float{});
  const auto rf = reference(float{});
  for (int k = 0; k < 3; ++k) require_close(gf[size_t(k)], rf[size_t(k)]);
  const auto gb = grads(bf16{});
  const auto rb = reference(bf16{});
  for (int k = 0; k < 3; ++k) require_close(gb[size_t(k)], rb[size_t(k)]);
}

TEST_CASE("layer_norm weight and bias gradients are bit-identical with 1 and 2 threads", "[layer_norm][determinism]") {
  const int previous = loom::num_threads();
  auto run = [] {
    Tensor<float> x = random_values_as<float>({777, 97}, 91), w = random_values_as<float>({97}, 92), b = random_values_as<float>({97}, 93);
    x.requires_grad_();
    w.requires_grad_();
    b.requires_grad_();
    loom::layer_norm(x, {97}, w, b).backward(random_values_as<float>({777, 97}, 94));
    return std::vector<std::vector<float>>{x.grad().to_vector(), w.grad().to_vector(), b.grad().to_vector()};
  };
  loom::set_num_threads(1);
  const auto one = run();
  loom::set_num_threads(2);
  const auto two = run();
  loom::set_num_threads(previous);
  for (size_t k = 0; k < one.size(); ++k)
    REQUIRE(std::memcmp(one[k].data(), two[k].data(), one[k].size() * sizeof(float)) == 0);
}

TEST_CASE("layer_norm errors name the shapes", "[layer_norm][errors]") {
  const Tensor<float> x = random_values_as<float>({2, 3, 4}, 95);
  REQUIRE_THROWS_AS(loom::layer_norm(x, {5}), loom::Error);
  REQUIRE_THROWS_WITH(loom::layer_norm(x, {5}),
                      Catch::Contains("layer_norm") && Catch::Contains("[5]") && Catch::Contains("[2, 3, 4]"));
  REQUIRE_THROWS_WITH(loom::layer_norm(x, {2, 4}), Catch::Contains("[2, 4]") && Catch::Contains("[2, 3, 4]"));
  REQUIRE_THROWS_WITH(loom::layer_norm(x, {1, 2, 3, 4}), Catch::Contains("[1, 2, 3, 4]") && Catch::Contains("[2, 3, 4]"));
  REQUIRE_THROWS_WITH(loom::layer_norm(x, Shape{}), Catch::Contains("layer_norm") && Catch::Contains("[2, 3, 4]"));
  const Tensor<float> w3 = Tensor<float>::ones({3});
  REQUIRE_THROWS_WITH(loom::layer_norm(x, {4}, w3),
                      Catch::Contains("weight") && Catch::Contains("[3]") && Catch::Contains("[4]"));
  REQUIRE_THROWS_WITH(loom::layer_norm(x, {4}, Tensor<float>::ones({4}), w3),
                      Catch::Contains("bias") && Catch::Contains("[3]") && Catch::Contains("[4]"));
  REQUIRE_THROWS_WITH(loom::layer_norm(x, {4}, Tensor<float>(), Tensor<float>(), -1.0), Catch::Contains("eps"));
}

// ---- gelu --------------------------------------------------------------------------------------------

TEST_CASE("gelu forward, erf and tanh forms, float/double/bf16, odd sizes", "[gelu]") {
  for (const Shape& shape : {Shape{1}, Shape{7}, Shape{97}, Shape{225}, Shape{7, 97}}) {
    for (GeluApprox a : {GeluApprox::none, GeluApprox::tanh}) {
      auto check = [&](auto tag) {
        using T = decltype(tag);
        const Tensor<T> x = random_values_as<T>(shape, 201, 6.0);
        std::vector<double> ref;
        for (double v : to_double(x)) ref.push_back(ref_gelu(v, a));
        const Tensor<T> y = loom::gelu(x, a);
        REQUIRE(y.shape() == shape);
        require_close(y, ref);
      };
      check(float{});
      check(double{});
      check(bf16{});
    }
  }
}

TEST_CASE("gelu of non-contiguous inputs and extreme values", "[gelu]") {
  const Tensor<float> t = random_values_as<float>({97, 7}, 202, 5.0).transpose(0, 1);
  const Tensor<float> e = random_values_as<float>({1, 7}, 203, 5.0).expand({9, 7});
  for (GeluApprox a : {GeluApprox::none, GeluApprox::tanh}) {
    for (const Tensor<float>& x : {t, e, t.slice(1, 0, 97, 3)}) {
      std::vector<double> ref;
      for (double v : to_double(x)) ref.push_back(ref_gelu(v, a));
      require_close(loom::gelu(x, a), ref);
    }
    const Tensor<float> big = from_doubles<float>({4}, {-1e4, -30, 30, 1e4});
    require_close(loom::gelu(big, a), {0, 0, 30, 1e4});
    Tensor<float> bl = big.clone();
    bl.requires_grad_();
    loom::gelu(bl, a).backward(Tensor<float>::ones({4}));
    require_close(bl.grad(), {0, 0, 1, 1});
  }
}

TEST_CASE("gelu float: a dense sweep over [-12, 12], both forms, value and derivative", "[gelu][grad]") {
  // The float tails are where approximations break (1 + tanh(u) and 1 + erf(z) cancel for x < 0).
  std::vector<double> xs;
  for (int i = -1200; i <= 1200; ++i) xs.push_back(i / 100.0);
  for (GeluApprox a : {GeluApprox::none, GeluApprox::tanh}) {
    Tensor<float> x = from_doubles<float>({int64_t(xs.size())}, xs);
    x.requires_grad_();
    const Tensor<float> y = loom::gelu(x, a);
    y.backward(Tensor<float>::ones(x.shape()));
    std::vector<double> ref_y, ref_d;
    for (double v : to_double(x)) {
      ref_y.push_back(ref_gelu(v, a));
      ref_d.push_back(ref_gelu_derivative(v, a));
    }
    require_close(y, ref_y);
    require_close(x.grad(), ref_d);
  }
}

TEST_CASE("gelu at the float range ends and NaN", "[gelu]") {
  // Repeated 5 times, so that the values pass through the vectorized code as well as the tail.
  const std::vector<double> ends{-3e38, -1e13, 1e13, 3e38, 0}, gelu_ends{0, 0, 1e13, 3e38, 0}, slopes{0, 0, 1, 1, 0.5};
  std::vector<double> xs, ys, ds;
  for (int r = 0; r < 5; ++r) {
    xs.insert(xs.end(), ends.begin(), ends.end());
    ys.insert(ys.end(), gelu_ends.begin(), gelu_ends.end());
    ds.insert(ds.end(), slopes.begin(), slopes.end());
  }
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (GeluApprox a : {GeluApprox::none, GeluApprox::tanh}) {
    Tensor<float> x = from_doubles<float>({25}, xs);
    x.requires_grad_();
    const Tensor<float> y = loom::gelu(x, a);
    require_close(y, ys);
    y.backward(Tensor<float>::ones({25}));
    require_close(x.grad(), ds);
    std::vector<float> with_nan(20, 1.0f);
    with_nan[3] = nan;
    const std::vector<float> yn = loom::gelu(Tensor<float>::from_vector({20}, with_nan), a).to_vector();
    REQUIRE(std::isnan(yn[3]));
    REQUIRE(std::abs(yn[4] - ref_gelu(1, a)) < 1e-6);
  }
}

TEST_CASE("gelu backward matches the analytic derivative, float/double/bf16", "[gelu][grad]") {
  for (GeluApprox a : {GeluApprox::none, GeluApprox::tanh}) {
    auto check = [&](auto tag) {
      using T = decltype(tag);
      Tensor<T> x = random_values_as<T>({225}, 211, 6.0);
      x.requires_grad_();
      const Tensor<T> g = random_values_as<T>({225}, 212);
      loom::gelu(x, a).backward(g);
      const std::vector<double> xv = to_double(x), gv = to_double(g);
      std::vector<double> ref;
      for (size_t i = 0; i < xv.size(); ++i) ref.push_back(gv[i] * ref_gelu_derivative(xv[i], a));
      require_close(x.grad(), ref);
    };
    check(float{});
    check(double{});
    check(bf16{});
  }
}

TEST_CASE("gelu gradcheck, both forms, non-contiguous and broadcast leaves", "[gelu][grad]") {
  const Tensor<double> a = random_values_as<double>({4, 6}, 221, 4.0).requires_grad_();
  const Tensor<double> t = random_values_as<double>({6, 5}, 222, 4.0).transpose(0, 1).detach().requires_grad_();
  const Tensor<double> b = random_values_as<double>({1, 6}, 223, 4.0).requires_grad_();
  for (GeluApprox approx : {GeluApprox::none, GeluApprox::tanh}) {
    require_gradcheck([&](const auto& in) { return loom::gelu(in[0], approx); }, {a});
    require_gradcheck([&](const auto& in) { return loom::gelu(in[0], approx); }, {t});
    require_gradcheck([&](const auto& in) { return loom::gelu(in[0].expand({3, 6}), approx); }, {b});
  }
}

TEST_CASE("gelu errors", "[gelu][errors]") {
  const Tensor<float> x = random_values_as<float>({2, 3}, 231);
  REQUIRE_THROWS_AS(loom::gelu(x, GeluApprox(7)), loom::Error);
  REQUIRE_THROWS_WITH(loom::gelu(x, GeluApprox(7)), Catch::Contains("gelu") && Catch::Contains("[2, 3]"));
  REQUIRE_THROWS_AS(loom::gelu(Tensor<float>()), loom::Error);
}

// ---- composition -------------------------------------------------------------------------------------

TEST_CASE("a transformer-style chain gradchecks end to end", "[nn_ops][grad]") {
  // layer_norm -> gelu -> softmax -> mean: the MLP/attention building blocks composed.
  const Tensor<double> x = random_values_as<double>({3, 5}, 241, 2.0).requires_grad_();
  const Tensor<double> w = random_values_as<double>({5}, 242).requires_grad_();
  const Tensor<double> b = random_values_as<double>({5}, 243).requires_grad_();
  require_gradcheck(
      [](const auto& in) {
        const Tensor<double> h = loom::gelu(loom::layer_norm(in[0], {5}, in[1], in[2]), GeluApprox::tanh);
        return loom::mean(loom::log_softmax(h, -1), {0});
      },
      {x, w, b});
}
