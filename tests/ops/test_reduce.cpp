// Reductions (loom/ops/reduce.hpp) against naive row-major references computed in double.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "loom/autograd/gradcheck.hpp"
#include "loom/ops/reduce.hpp"
#include "support/check.hpp"
#include "support/gradcheck.hpp"
#include "support/random.hpp"

using loom::bf16;
using loom::Shape;
using loom::Tensor;
using loom::test::from_doubles;
using loom::test::random_values;
using loom::test::random_values_as;
using loom::test::require_close;
using loom::test::require_gradcheck;
using loom::test::to_double;
using loom::test::tol_for;

namespace {

// ---- the naive reference: walk every input element in row-major order -------------------------

std::vector<bool> reduced_mask(const Shape& shape, const std::vector<int64_t>& dims) {
  std::vector<bool> red(size_t(shape.size()), dims.empty());
  for (int64_t d : dims) red[size_t(d < 0 ? d + shape.size() : d)] = true;
  return red;
}

Shape expected_shape(const Shape& shape, const std::vector<int64_t>& dims, bool keepdim) {
  const std::vector<bool> red = reduced_mask(shape, dims);
  Shape out;
  for (int d = 0; d < shape.size(); ++d) {
    if (!red[size_t(d)]) out.push_back(shape[d]);
    else if (keepdim) out.push_back(1);
  }
  return out;
}

struct Walk {
  std::vector<int64_t> out_of_input;   // output index fed by each input element
  std::vector<int64_t> pos_along_dim;  // position along the first reduced dim (for max/min)
  int64_t n_out = 1;
};

Walk walk(const Shape& shape, const std::vector<int64_t>& dims) {
  const std::vector<bool> red = reduced_mask(shape, dims);
  Walk w;
  for (int d = 0; d < shape.size(); ++d)
    if (!red[size_t(d)]) w.n_out *= shape[d];
  std::vector<int64_t> idx(size_t(shape.size()), 0);
  for (int64_t i = 0; i < shape.numel(); ++i) {
    int64_t rem = i, o = 0, pos = 0;
    for (int d = shape.size() - 1; d >= 0; --d) {
      idx[size_t(d)] = rem % shape[d];
      rem /= shape[d];
    }
    for (int d = 0; d < shape.size(); ++d) {
      if (!red[size_t(d)]) o = o * shape[d] + idx[size_t(d)];
    }
    for (int d = 0; d < shape.size(); ++d)
      if (red[size_t(d)]) {
        pos = idx[size_t(d)];
        break;
      }
    w.out_of_input.push_back(o);
    w.pos_along_dim.push_back(pos);
  }
  return w;
}

std::vector<double> ref_sum(const std::vector<double>& x, const Shape& shape, const std::vector<int64_t>& dims) {
  const Walk w = walk(shape, dims);
  std::vector<double> out(size_t(w.n_out), 0.0);
  for (size_t i = 0; i < x.size(); ++i) out[size_t(w.out_of_input[i])] += x[i];
  return out;
}

std::vector<double> ref_mean(const std::vector<double>& x, const Shape& shape, const std::vector<int64_t>& dims) {
  std::vector<double> s = ref_sum(x, shape, dims);
  const double n = double(x.size()) / double(s.size());
  for (double& v : s) v /= n;
  return s;
}

std::vector<double> ref_var(const std::vector<double>& x, const Shape& shape, const std::vector<int64_t>& dims,
                            bool unbiased, bool take_sqrt) {
  const Walk w = walk(shape, dims);
  const std::vector<double> m = ref_mean(x, shape, dims);
  std::vector<double> ss(m.size(), 0.0);
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = x[i] - m[size_t(w.out_of_input[i])];
    ss[size_t(w.out_of_input[i])] += d * d;
  }
  const double n = double(x.size()) / double(m.size());
  for (double& v : ss) {
    v /= n - (unbiased ? 1 : 0);
    if (take_sqrt) v = std::sqrt(v);
  }
  return ss;
}

// Extreme value and the position of its first occurrence along the (single) reduced dim.
struct RefExtreme {
  std::vector<double> values;
  std::vector<double> indices;
};

RefExtreme ref_extreme(const std::vector<double>& x, const Shape& shape, const std::vector<int64_t>& dims,
                       bool take_max) {
  const Walk w = walk(shape, dims);
  RefExtreme r{std::vector<double>(size_t(w.n_out), 0.0), std::vector<double>(size_t(w.n_out), -1.0)};
  for (size_t i = 0; i < x.size(); ++i) {
    const size_t o = size_t(w.out_of_input[i]);
    const double cur = r.values[o];
    const bool first = r.indices[o] < 0;
    const bool better = std::isnan(x[i]) ? !std::isnan(cur) : (take_max ? x[i] > cur : x[i] < cur);
    if (first || (better && !std::isnan(cur))) {
      r.values[o] = x[i];
      r.indices[o] = double(w.pos_along_dim[i]);
    }
  }
  return r;
}

template <class I>
std::vector<double> index_values(const Tensor<I>& t) {
  std::vector<double> out;
  for (I v : t.to_vector()) out.push_back(double(v));
  return out;
}

template <class T>
void check_sum_mean_each_dim(const Shape& shape) {
  const Tensor<T> x = random_values_as<T>(shape, 3 + uint64_t(shape.numel()));
  const std::vector<double> xv = to_double(x);
  for (int64_t d = -shape.size(); d < shape.size(); ++d) {
    for (bool keep : {false, true}) {
      INFO("shape " << shape << " dim " << d << " keepdim " << keep);
      const Tensor<T> s = loom::sum(x, {d}, keep);
      REQUIRE(s.shape() == expected_shape(shape, {d}, keep));
      require_close(s, ref_sum(xv, shape, {d}));
      const Tensor<T> m = loom::mean(x, {d}, keep);
      REQUIRE(m.shape() == expected_shape(shape, {d}, keep));
      require_close(m, ref_mean(xv, shape, {d}));
    }
  }
}

}  // namespace

// ---- sum / mean ---------------------------------------------------------------------------------

TEST_CASE("sum and mean over each dim, odd sizes, keepdim both ways, negative dims", "[reduce]") {
  for (const Shape& shape : {Shape{1}, Shape{7}, Shape{97}, Shape{225}, Shape{7, 97}, Shape{225, 7}, Shape{1, 7, 1},
                             Shape{3, 1, 225}}) {
    check_sum_mean_each_dim<float>(shape);
    check_sum_mean_each_dim<double>(shape);
    check_sum_mean_each_dim<bf16>(shape);
  }
}

TEST_CASE("sum and mean over several dims and over all elements", "[reduce]") {
  const Shape shape{3, 7, 5, 2};
  const Tensor<float> x = random_values_as<float>(shape, 7);
  const std::vector<double> xv = to_double(x);
  for (const std::vector<int64_t>& dims : {std::vector<int64_t>{0, 2}, {-1, 1}, {3, 0, 1}, {0, 1, 2, 3}, {}}) {
    for (bool keep : {false, true}) {
      INFO("dims of size " << dims.size() << " keepdim " << keep);
      const Tensor<float> s = loom::sum(x, dims, keep);
      REQUIRE(s.shape() == expected_shape(shape, dims, keep));
      require_close(s, ref_sum(xv, shape, dims));
      require_close(loom::mean(x, dims, keep), ref_mean(xv, shape, dims));
    }
  }
  const Tensor<float> all = loom::sum(x);
  REQUIRE(all.shape() == Shape{});
  require_close(all, ref_sum(xv, shape, {}));
  require_close(loom::mean(x), ref_mean(xv, shape, {}));
  // A rank-0 input reduces to itself.
  const Tensor<double> s = Tensor<double>::scalar(2.5);
  REQUIRE(loom::sum(s).item() == 2.5);
  REQUIRE(loom::sum(s, {-1}, true).shape() == Shape{});
}

TEST_CASE("sum and mean of non-contiguous inputs: permuted, transposed, sliced, expanded", "[reduce]") {
  const Tensor<double> base = random_values_as<double>({5, 7, 3}, 9);
  const Tensor<double> permuted = base.permute({2, 0, 1});  // [3, 5, 7]
  for (const std::vector<int64_t>& dims : {std::vector<int64_t>{0}, {1}, {2}, {0, 2}, {1, 2}, {}}) {
    require_close(loom::sum(permuted, dims), ref_sum(to_double(permuted), permuted.shape(), dims));
    require_close(loom::mean(permuted, dims, true), ref_mean(to_double(permuted), permuted.shape(), dims));
  }
  const Tensor<float> t = random_values_as<float>({97, 7}, 4).transpose(0, 1);  // [7, 97]
  require_close(loom::sum(t, {1}), ref_sum(to_double(t), t.shape(), {1}));
  require_close(loom::sum(t, {0}), ref_sum(to_double(t), t.shape(), {0}));
  const Tensor<float> sliced = random_values_as<float>({9, 225}, 5).slice(0, 1, 9, 3).slice(1, 0, 225, 2);  // [3, 113]
  require_close(loom::sum(sliced, {1}), ref_sum(to_double(sliced), sliced.shape(), {1}));
  require_close(loom::mean(sliced, {0}), ref_mean(to_double(sliced), sliced.shape(), {0}));
  // Stride-0 (expanded) inputs, along the reduced dim and along the kept dim.
  const Tensor<float> rows = random_values_as<float>({1, 7}, 6).expand({97, 7});
  const Tensor<float> cols = random_values_as<float>({97, 1}, 8).expand({97, 7});
  for (int64_t d : {0, 1}) {
    require_close(loom::sum(rows, {d}), ref_sum(to_double(rows), rows.shape(), {d}));
    require_close(loom::sum(cols, {d}), ref_sum(to_double(cols), cols.shape(), {d}));
  }
  require_close(loom::sum(rows), ref_sum(to_double(rows), rows.shape(), {}));
}

TEST_CASE("sum of large tensors: several chunks in row and column order", "[reduce]") {
  // 100000 elements: the all-reduce is split into chunks merged in order.
  const Tensor<float> big = random_values_as<float>({100000}, 12);
  require_close(loom::sum(big), ref_sum(to_double(big), big.shape(), {}));
  // [1100, 70] over dim 0: outputs are neighbours in memory (column blocks of 64 + 6), 3 chunks.
  const Tensor<float> wide = random_values_as<float>({1100, 70}, 13);
  require_close(loom::sum(wide, {0}), ref_sum(to_double(wide), wide.shape(), {0}));
  require_close(loom::mean(wide, {0}, true), ref_mean(to_double(wide), wide.shape(), {0}));
  const Tensor<bf16> wide_bf16 = random_values_as<bf16>({1100, 70}, 14);
  require_close(loom::sum(wide_bf16, {0}), ref_sum(to_double(wide_bf16), wide_bf16.shape(), {0}));
}

TEST_CASE("sum and mean of empty inputs follow PyTorch (0 and NaN)", "[reduce]") {
  const Tensor<float> e = Tensor<float>::zeros({3, 0});
  require_close(loom::sum(e, {1}), {0, 0, 0});
  const Tensor<float> m = loom::mean(e, {1});
  for (float v : m.to_vector()) REQUIRE(std::isnan(v));
  REQUIRE(loom::sum(e, {0}).shape() == Shape{0});
}

TEST_CASE("sum and mean backward broadcast the gradient back", "[reduce][grad]") {
  Tensor<float> x = random_values_as<float>({3, 4}, 2);
  x.requires_grad_();
  const Tensor<float> s = loom::sum(x, {0});  // [4]
  s.backward(Tensor<float>::from_vector({4}, std::vector<float>{1, 2, 3, 4}));
  REQUIRE(x.grad().shape() == Shape{3, 4});
  require_close(x.grad(), {1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4});
  x.zero_grad();
  loom::mean(x, {1}, true).backward(Tensor<float>::from_vector({3, 1}, std::vector<float>{4, 8, 12}));
  require_close(x.grad(), {1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3});
  Tensor<bf16> xb = random_values_as<bf16>({7, 3}, 2);
  xb.requires_grad_();
  loom::sum(xb).backward();
  require_close(xb.grad(), std::vector<double>(21, 1.0));
}

TEST_CASE("sum and mean gradcheck: dims, keepdim, non-contiguous and broadcast leaves", "[reduce][grad]") {
  const Tensor<double> a = random_values_as<double>({3, 4, 5}, 21).requires_grad_();
  for (const std::vector<int64_t>& dims : {std::vector<int64_t>{1}, {0, 2}, {-1}, {}}) {
    for (bool keep : {false, true}) {
      require_gradcheck([&](const auto& in) { return loom::sum(in[0], dims, keep); }, {a});
      require_gradcheck([&](const auto& in) { return loom::mean(in[0], dims, keep); }, {a});
    }
  }
  const Tensor<double> t = random_values_as<double>({5, 7}, 22).transpose(0, 1).detach().requires_grad_();  // [7, 5]
  require_gradcheck([](const auto& in) { return loom::sum(in[0], {0}); }, {t});
  require_gradcheck([](const auto& in) { return loom::mean(in[0], {1}, true); }, {t});
  // A broadcast input: the leaf [1, 5] is expanded to [4, 5] before the reduction.
  const Tensor<double> b = random_values_as<double>({1, 5}, 23).requires_grad_();
  require_gradcheck([](const auto& in) { return loom::sum(in[0].expand({4, 5}), {0}); }, {b});
  require_gradcheck([](const auto& in) { return loom::mean(in[0].expand({4, 5}), {1}); }, {b});
}

// ---- var / stddev -------------------------------------------------------------------------------

TEST_CASE("var and stddev: unbiased and biased, dims, keepdim, odd sizes", "[reduce][var]") {
  for (const Shape& shape : {Shape{7}, Shape{97}, Shape{225}, Shape{7, 97}, Shape{5, 3, 7}}) {
    const Tensor<float> x = random_values_as<float>(shape, 31, 3.0);
    const Tensor<double> xd = random_values_as<double>(shape, 32, 3.0);
    const Tensor<bf16> xb = random_values_as<bf16>(shape, 33, 3.0);
    std::vector<std::vector<int64_t>> dim_lists{{}, {-1}, {0}};
    if (shape.size() == 3) dim_lists.push_back({0, 2});
    for (const auto& dims : dim_lists) {
      for (bool unbiased : {true, false}) {
        for (bool keep : {false, true}) {
          INFO("shape " << shape << " unbiased " << unbiased << " keepdim " << keep);
          const Tensor<float> v = loom::var(x, dims, unbiased, keep);
          REQUIRE(v.shape() == expected_shape(shape, dims, keep));
          require_close(v, ref_var(to_double(x), shape, dims, unbiased, false));
          require_close(loom::stddev(x, dims, unbiased, keep), ref_var(to_double(x), shape, dims, unbiased, true));
          require_close(loom::var(xd, dims, unbiased, keep), ref_var(to_double(xd), shape, dims, unbiased, false));
          require_close(loom::stddev(xd, dims, unbiased, keep), ref_var(to_double(xd), shape, dims, unbiased, true));
          require_close(loom::var(xb, dims, unbiased, keep), ref_var(to_double(xb), shape, dims, unbiased, false));
          require_close(loom::stddev(xb, dims, unbiased, keep), ref_var(to_double(xb), shape, dims, unbiased, true));
        }
      }
    }
  }
}

TEST_CASE("var of a large offset keeps precision (two-pass in double)", "[reduce][var]") {
  // Values 1e4 + small noise: a one-pass E[x^2] - E[x]^2 in float would lose every digit.
  std::vector<double> v = random_values(225, 41);
  for (double& e : v) e = 1e4 + e;
  const Tensor<float> x = from_doubles<float>({225}, v);
  require_close(loom::var(x), ref_var(to_double(x), {225}, {}, true, false));
}

TEST_CASE("var and stddev of non-contiguous inputs", "[reduce][var]") {
  const Tensor<double> p = random_values_as<double>({4, 7, 3}, 34).permute({1, 2, 0});  // [7, 3, 4]
  for (const std::vector<int64_t>& dims : {std::vector<int64_t>{0}, {2}, {0, 1}, {}}) {
    require_close(loom::var(p, dims), ref_var(to_double(p), p.shape(), dims, true, false));
    require_close(loom::stddev(p, dims, false), ref_var(to_double(p), p.shape(), dims, false, true));
  }
  const Tensor<float> e = random_values_as<float>({1, 97}, 35).expand({7, 97});
  require_close(loom::var(e, {0}), std::vector<double>(97, 0.0));
  require_close(loom::var(e, {1}), ref_var(to_double(e), e.shape(), {1}, true, false));
  const Tensor<float> wide = random_values_as<float>({1100, 70}, 36);  // column blocks, several chunks
  require_close(loom::var(wide, {0}), ref_var(to_double(wide), wide.shape(), {0}, true, false));
}

TEST_CASE("var with one element: unbiased gives NaN (0/0) as PyTorch, biased gives 0", "[reduce][var]") {
  Tensor<double> x = Tensor<double>::from_vector({3, 1}, std::vector<double>{1, 2, 3});
  x.requires_grad_();
  const Tensor<double> v = loom::var(x, {1});
  for (double e : v.to_vector()) REQUIRE(std::isnan(e));
  for (double e : loom::stddev(x, {1}).to_vector()) REQUIRE(std::isnan(e));
  require_close(loom::var(x, {1}, false), {0, 0, 0});
  // The unbiased gradient is NaN as well (2 (x - mean) / 0 = 0 / 0).
  loom::sum(v).backward();
  for (double g : x.grad().to_vector()) REQUIRE(std::isnan(g));
}

TEST_CASE("stddev backward is 0 where the std is 0 (as PyTorch)", "[reduce][var][grad]") {
  Tensor<double> x = Tensor<double>::full({2, 5}, 3.0);
  x.requires_grad_();
  loom::sum(loom::stddev(x, {1})).backward();
  require_close(x.grad(), std::vector<double>(10, 0.0));
}

TEST_CASE("var and stddev gradcheck, including non-contiguous leaves", "[reduce][var][grad]") {
  const Tensor<double> a = random_values_as<double>({3, 4, 5}, 37).requires_grad_();
  const Tensor<double> t = random_values_as<double>({5, 6}, 38).transpose(0, 1).detach().requires_grad_();  // [6, 5]
  for (bool unbiased : {true, false}) {
    for (const std::vector<int64_t>& dims : {std::vector<int64_t>{1}, {0, 2}, {}}) {
      require_gradcheck([&](const auto& in) { return loom::var(in[0], dims, unbiased); }, {a});
      require_gradcheck([&](const auto& in) { return loom::stddev(in[0], dims, unbiased, true); }, {a});
    }
    require_gradcheck([&](const auto& in) { return loom::var(in[0], {0}, unbiased); }, {t});
    require_gradcheck([&](const auto& in) { return loom::stddev(in[0], {1}, unbiased); }, {t});
  }
  const Tensor<double> b = random_values_as<double>({1, 5}, 39).requires_grad_();
  require_gradcheck([](const auto& in) { return loom::var(in[0].expand({4, 5}), {1}); }, {b});
}

TEST_CASE("stddev backward refuses a saved input modified in place", "[reduce][var][grad]") {
  Tensor<double> leaf = random_values_as<double>({3, 4}, 40).requires_grad_();
  const Tensor<double> x = loom::sum(leaf.unsqueeze(0), {0});  // a non-leaf copy of leaf, [3, 4]
  const Tensor<double> s1 = loom::sum(loom::stddev(x, {1}));
  const Tensor<double> s2 = loom::sum(loom::stddev(x, {1}));
  {
    loom::NoGradGuard no_grad;
    Tensor<double>(x).fill_(1.0);
  }
  REQUIRE_THROWS_AS(s1.backward(), loom::Error);
  REQUIRE_THROWS_WITH(s2.backward(), Catch::Contains("stddev") && Catch::Contains("modified in place"));
}

// ---- max / min / argmax / argmin ----------------------------------------------------------------

TEST_CASE("max and min over a dim: values and first-occurrence indices", "[reduce][max]") {
  for (const Shape& shape : {Shape{1}, Shape{7}, Shape{225}, Shape{7, 97}, Shape{97, 7}, Shape{3, 1, 5}}) {
    const Tensor<float> x = random_values_as<float>(shape, 51);
    const Tensor<bf16> xb = random_values_as<bf16>(shape, 52);
    for (int64_t d = -shape.size(); d < shape.size(); ++d) {
      for (bool keep : {false, true}) {
        INFO("shape " << shape << " dim " << d << " keepdim " << keep);
        const RefExtreme rmax = ref_extreme(to_double(x), shape, {d}, true);
        const RefExtreme rmin = ref_extreme(to_double(x), shape, {d}, false);
        const auto mx = loom::max(x, d, keep);
        const auto mn = loom::min(x, d, keep);
        REQUIRE(mx.values.shape() == expected_shape(shape, {d}, keep));
        REQUIRE(mx.indices.shape() == expected_shape(shape, {d}, keep));
        require_close(mx.values, rmax.values);
        require_close(index_values(mx.indices), rmax.indices, {0, 0});
        require_close(mn.values, rmin.values);
        require_close(index_values(mn.indices), rmin.indices, {0, 0});
        require_close(index_values(loom::argmax(x, d, keep)), rmax.indices, {0, 0});
        require_close(index_values(loom::argmin(x, d, keep)), rmin.indices, {0, 0});
        const auto mb = loom::max(xb, d, keep);
        require_close(mb.values, ref_extreme(to_double(xb), shape, {d}, true).values);
      }
    }
  }
}

TEST_CASE("max and min with ties return the first occurrence, also across chunks and columns", "[reduce][max]") {
  const Tensor<float> x = Tensor<float>::from_vector({2, 5}, std::vector<float>{1, 3, 3, 0, 3, 2, 2, -1, -1, 2});
  const auto mx = loom::max(x, 1);
  require_close(mx.values, {3, 2});
  require_close(index_values(mx.indices), {1, 0}, {0, 0});
  require_close(index_values(loom::min(x, 1).indices), {3, 2}, {0, 0});
  require_close(index_values(loom::max(x, 0).indices), {1, 0, 0, 0, 0}, {0, 0});
  // Ties 40000 apart: the reduction is split into chunks, the earlier chunk must win.
  std::vector<double> v = random_values(70000, 53);
  v[5] = 2.0;
  v[40005] = 2.0;
  REQUIRE(loom::argmax(from_doubles<float>({70000}, v)).item() == 5);
  // Column-block path ([1100, 70] over dim 0): ties in rows 10 and 900 of column 65.
  std::vector<double> w = random_values(1100 * 70, 54);
  w[10 * 70 + 65] = -3.0;
  w[900 * 70 + 65] = -3.0;
  const auto wide = loom::min(from_doubles<double>({1100, 70}, w), 0);
  REQUIRE(wide.indices.at({65}) == 10);
  REQUIRE(wide.values.at({65}) == -3.0);
  require_close(index_values(wide.indices),
                ref_extreme(w, {1100, 70}, {0}, false).indices, {0, 0});
}

TEST_CASE("max propagates NaN and returns its index, as PyTorch", "[reduce][max]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const Tensor<float> x = Tensor<float>::from_vector({5}, std::vector<float>{1, nan, 7, nan, 2});
  const auto mx = loom::max(x, 0);
  REQUIRE(std::isnan(mx.values.item()));
  REQUIRE(mx.indices.item() == 1);
  REQUIRE(loom::min(x, 0).indices.item() == 1);
  REQUIRE(std::isnan(loom::amax(x).item()));
}

TEST_CASE("max, min and amax on long contiguous lines: ties, NaN and infinities", "[reduce][max]") {
  // Lines of 40: the vectorized path for finite lines, the exact scalar path otherwise.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> v = random_values(5 * 40, 56);
  v[0 * 40 + 7] = v[0 * 40 + 31] = 3.0;      // line 0: a tie for the max, first at 7
  v[1 * 40 + 20] = -3.0;                     // line 1: a single min
  v[1 * 40 + 35] = -3.0;                     //         tied at 35: index stays 20
  v[2 * 40 + 17] = nan;                      // line 2: NaN wins at 17
  v[2 * 40 + 30] = nan;
  v[3 * 40 + 25] = INFINITY;                 // line 3: +inf is the max
  v[4 * 40 + 3] = -INFINITY;                 // line 4: -inf is the min
  for (auto run : {0, 1}) {
    INFO((run ? "double" : "float"));
    const auto check = [&](auto tag) {
      using T = decltype(tag);
      const Tensor<T> x = from_doubles<T>({5, 40}, v);
      const RefExtreme rmax = ref_extreme(to_double(x), x.shape(), {1}, true);
      const RefExtreme rmin = ref_extreme(to_double(x), x.shape(), {1}, false);
      const auto mx = loom::max(x, 1);
      const auto mn = loom::min(x, 1);
      require_close(mx.values, rmax.values);
      require_close(index_values(mx.indices), rmax.indices, {0, 0});
      require_close(mn.values, rmin.values);
      require_close(index_values(mn.indices), rmin.indices, {0, 0});
      require_close(loom::amax(x, {1}), rmax.values);
      require_close(loom::amin(x, {1}), rmin.values);
      REQUIRE(mx.indices.at({0}) == 7);
      REQUIRE(mn.indices.at({1}) == 20);
      REQUIRE(mx.indices.at({2}) == 17);
    };
    if (run) check(double{});
    else check(float{});
  }
}

TEST_CASE("max, argmax and amax of non-contiguous and integer inputs", "[reduce][max]") {
  const Tensor<double> p = random_values_as<double>({4, 7, 5}, 55).permute({2, 0, 1});  // [5, 4, 7]
  for (int64_t d : {0, 1, 2}) {
    const RefExtreme r = ref_extreme(to_double(p), p.shape(), {d}, true);
    require_close(loom::max(p, d).values, r.values);
    require_close(index_values(loom::argmax(p, d)), r.indices, {0, 0});
  }
  const Tensor<float> e = random_values_as<float>({1, 7}, 56).expand({97, 7});  // all rows tie: index 0
  require_close(index_values(loom::max(e, 0).indices), std::vector<double>(7, 0.0), {0, 0});
  const Tensor<int64_t> ints = Tensor<int64_t>::from_vector({2, 3}, std::vector<int64_t>{4, 9, 9, -2, -7, 0});
  require_close(index_values(loom::argmax(ints, 1)), {1, 2}, {0, 0});
  require_close(index_values(loom::amax(ints, {0})), {4, 9, 9}, {0, 0});
  require_close(index_values(loom::amin(ints)), {-7}, {0, 0});
  REQUIRE(loom::argmax(ints).item() == 1);  // flat index of the first 9
  REQUIRE(loom::argmin(ints).item() == 4);
  const Tensor<float> t = random_values_as<float>({5, 9}, 57).transpose(0, 1);  // flat argmax follows the view's order
  const std::vector<double> tv = to_double(t);
  int64_t best = 0;
  for (size_t i = 1; i < tv.size(); ++i)
    if (tv[i] > tv[size_t(best)]) best = int64_t(i);
  REQUIRE(loom::argmax(t).item() == best);
}

TEST_CASE("max and min backward: the gradient goes to the returned (first) index", "[reduce][max][grad]") {
  Tensor<float> x = Tensor<float>::from_vector({2, 4}, std::vector<float>{1, 5, 5, 0, 2, 2, 2, 9});
  x.requires_grad_();
  const auto mx = loom::max(x, 1);
  REQUIRE_FALSE(mx.indices.requires_grad());
  mx.values.backward(Tensor<float>::from_vector({2}, std::vector<float>{10, 20}));
  require_close(x.grad(), {0, 10, 0, 0, 0, 0, 0, 20});
  x.zero_grad();
  loom::min(x, 0, true).values.backward(Tensor<float>::ones({1, 4}));
  require_close(x.grad(), {1, 0, 0, 1, 0, 1, 1, 0});
}

TEST_CASE("max and min gradcheck, including non-contiguous leaves", "[reduce][max][grad]") {
  const Tensor<double> a = random_values_as<double>({3, 4, 5}, 58).requires_grad_();
  for (int64_t d : {0, 1, -1}) {
    for (bool keep : {false, true}) {
      require_gradcheck([&](const auto& in) { return loom::max(in[0], d, keep).values; }, {a});
      require_gradcheck([&](const auto& in) { return loom::min(in[0], d, keep).values; }, {a});
    }
  }
  const Tensor<double> t = random_values_as<double>({6, 7}, 59).transpose(0, 1).detach().requires_grad_();  // [7, 6]
  require_gradcheck([](const auto& in) { return loom::max(in[0], 1).values; }, {t});
  require_gradcheck([](const auto& in) { return loom::min(in[0], 0).values; }, {t});
}

// ---- amax / amin ---------------------------------------------------------------------------------

TEST_CASE("amax and amin over several dims and over all", "[reduce][amax]") {
  const Shape shape{3, 7, 5};
  const Tensor<float> x = random_values_as<float>(shape, 61);
  const Tensor<double> p = random_values_as<double>({7, 5, 3}, 62).permute({2, 0, 1});  // [3, 7, 5], non-contiguous
  for (const std::vector<int64_t>& dims : {std::vector<int64_t>{0}, {1, 2}, {-1, 0}, {}}) {
    for (bool keep : {false, true}) {
      const Tensor<float> mx = loom::amax(x, dims, keep);
      REQUIRE(mx.shape() == expected_shape(shape, dims, keep));
      const Walk w = walk(shape, dims);
      const std::vector<double> xv = to_double(x), pv = to_double(p);
      std::vector<double> ref_max(size_t(w.n_out), -INFINITY), ref_min(size_t(w.n_out), INFINITY);
      std::vector<double> ref_pmax = ref_max;
      for (size_t i = 0; i < xv.size(); ++i) {
        const size_t o = size_t(w.out_of_input[i]);
        ref_max[o] = std::max(ref_max[o], xv[i]);
        ref_min[o] = std::min(ref_min[o], xv[i]);
        ref_pmax[o] = std::max(ref_pmax[o], pv[i]);
      }
      require_close(mx, ref_max);
      require_close(loom::amin(x, dims, keep), ref_min);
      require_close(loom::amax(p, dims, keep), ref_pmax);
    }
  }
}

TEST_CASE("amax and amin split the gradient evenly among ties", "[reduce][amax][grad]") {
  Tensor<float> x =
      Tensor<float>::from_vector({2, 2, 3}, std::vector<float>{4, 1, 4, 0, 4, 2, /**/ 5, 5, 5, 5, -1, 5});
  x.requires_grad_();
  const Tensor<float> m = loom::amax(x, {1, 2});  // [4, 5], ties 3 and 5 ways
  require_close(m, {4, 5});
  m.backward(Tensor<float>::from_vector({2}, std::vector<float>{3, 10}));
  require_close(x.grad(), {1, 0, 1, 0, 1, 0, 2, 2, 2, 2, 0, 2});
  x.zero_grad();
  loom::amin(x, {2}, true).backward(Tensor<float>::ones({2, 2, 1}));
  require_close(x.grad(), {0, 1, 0, 1, 0, 0, 1.0 / 3, 1.0 / 3, 1.0 / 3, 0, 1, 0});
}

TEST_CASE("amax and amin gradcheck (no ties), including a non-contiguous leaf", "[reduce][amax][grad]") {
  const Tensor<double> a = random_values_as<double>({3, 4, 5}, 63).requires_grad_();
  for (const std::vector<int64_t>& dims : {std::vector<int64_t>{1}, {0, 2}, {}}) {
    require_gradcheck([&](const auto& in) { return loom::amax(in[0], dims); }, {a});
    require_gradcheck([&](const auto& in) { return loom::amin(in[0], dims, true); }, {a});
  }
  const Tensor<double> t = random_values_as<double>({5, 6}, 64).transpose(0, 1).detach().requires_grad_();
  require_gradcheck([](const auto& in) { return loom::amax(in[0], {0}); }, {t});
}

// ---- errors ---------------------------------------------------------------------------------------

TEST_CASE("reductions reject bad dims and empty extremes, naming the shape", "[reduce][errors]") {
  const Tensor<float> x = random_values_as<float>({3, 4}, 71);
  REQUIRE_THROWS_AS(loom::sum(x, {2}), loom::Error);
  REQUIRE_THROWS_WITH(loom::sum(x, {2}), Catch::Contains("sum") && Catch::Contains("[3, 4]") &&
                                             Catch::Contains("out of range"));
  REQUIRE_THROWS_WITH(loom::mean(x, {-3}), Catch::Contains("mean") && Catch::Contains("[3, 4]"));
  REQUIRE_THROWS_WITH(loom::sum(x, {1, -1}), Catch::Contains("sum") && Catch::Contains("twice") &&
                                                 Catch::Contains("[3, 4]"));
  REQUIRE_THROWS_WITH(loom::var(x, {0, 0}), Catch::Contains("var") && Catch::Contains("[3, 4]"));
  REQUIRE_THROWS_WITH(loom::stddev(x, {5}), Catch::Contains("stddev") && Catch::Contains("[3, 4]"));
  REQUIRE_THROWS_WITH(loom::max(x, 2), Catch::Contains("max") && Catch::Contains("[3, 4]"));
  REQUIRE_THROWS_WITH(loom::argmin(x, -3), Catch::Contains("argmin") && Catch::Contains("[3, 4]"));
  REQUIRE_THROWS_WITH(loom::amax(x, {0, 0}), Catch::Contains("amax") && Catch::Contains("[3, 4]"));
  const Tensor<float> empty = Tensor<float>::zeros({3, 0});
  REQUIRE_THROWS_AS(loom::max(empty, 1), loom::Error);
  REQUIRE_THROWS_WITH(loom::max(empty, 1), Catch::Contains("max") && Catch::Contains("[3, 0]"));
  REQUIRE_THROWS_WITH(loom::argmax(empty, 1), Catch::Contains("argmax") && Catch::Contains("[3, 0]"));
  REQUIRE_THROWS_WITH(loom::amin(empty, {1}), Catch::Contains("amin") && Catch::Contains("[3, 0]"));
  REQUIRE_THROWS_WITH(loom::argmax(empty), Catch::Contains("argmax"));
  REQUIRE_THROWS_AS(loom::sum(Tensor<float>()), loom::Error);
}

// ---- determinism -------------------------------------------------------------------------------

TEST_CASE("float reductions are bit-identical with 1 and 2 threads", "[reduce][determinism]") {
  const int previous = loom::num_threads();
  const Tensor<float> x = random_values_as<float>({2048, 1025}, 81, 100.0);  // 2.1M elements
  auto run_all = [&] {
    std::vector<std::vector<float>> r;
    r.push_back(loom::sum(x).to_vector());
    r.push_back(loom::sum(x, {0}).to_vector());
    r.push_back(loom::sum(x, {1}).to_vector());
    r.push_back(loom::mean(x.transpose(0, 1), {1}).to_vector());
    r.push_back(loom::var(x, {0}).to_vector());
    return r;
  };
  loom::set_num_threads(1);
  const auto one = run_all();
  loom::set_num_threads(2);
  const auto two = run_all();
  loom::set_num_threads(previous);
  REQUIRE(one.size() == two.size());
  for (size_t k = 0; k < one.size(); ++k) {
    INFO("result " << k);
    REQUIRE(one[k].size() == two[k].size());
    REQUIRE(std::memcmp(one[k].data(), two[k].data(), one[k].size() * sizeof(float)) == 0);
  }
  // And the single-threaded total is right.
  require_close(std::vector<double>{double(one[0][0])}, ref_sum(to_double(x), x.shape(), {}), {1e-6, 1e-5});
}
