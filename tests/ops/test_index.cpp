// index_select / gather / scatter_add and concat / stack / split / chunk against naive loops in
// double: duplicates, odd sizes, non-contiguous and expanded inputs, determinism, bf16, errors and
// gradchecks.
#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <vector>

#include "loom/autograd/gradcheck.hpp"
#include "loom/ops/concat.hpp"
#include "loom/ops/index.hpp"
#include "support/check.hpp"
#include "support/gradcheck.hpp"
#include "support/random.hpp"

namespace {

using loom::bf16;
using loom::Shape;
using loom::Tensor;
using loom::test::random_leaf;
using loom::test::random_tensor;
using loom::test::require_close;
using loom::test::require_gradcheck;
using loom::test::to_double;
using loom::test::transposed_leaf;
using Index = Tensor<int64_t>;
using Coords = std::vector<int64_t>;

Index random_index(const Shape& shape, int64_t limit, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> dist(0, limit - 1);
  std::vector<int64_t> values(size_t(shape.numel()));
  for (auto& v : values) v = dist(rng);
  return Index::from_vector(shape, values);
}

Index index_of(std::vector<int64_t> values) { return Index::from_vector({int64_t(values.size())}, values); }

// Row-major coordinates of element `flat` of a shape, and back.
Coords coords_of(int64_t flat, const Coords& shape) {
  Coords c(shape.size());
  for (size_t i = shape.size(); i-- > 0;) {
    c[i] = flat % shape[i];
    flat /= shape[i];
  }
  return c;
}
int64_t flat_of(const Coords& c, const Coords& shape) {
  int64_t flat = 0;
  for (size_t i = 0; i < shape.size(); ++i) flat = flat * shape[i] + c[i];
  return flat;
}
int64_t count(const Coords& shape) {
  int64_t n = 1;
  for (int64_t e : shape) n *= e;
  return n;
}

template <class T>
std::vector<double> ref_index_select(const Tensor<T>& t, int dim, const Index& index) {
  const Coords ts = t.shape().vec();
  Coords os = ts;
  os[size_t(dim)] = index.numel();
  const auto tv = to_double(t);
  const auto iv = index.to_vector();
  std::vector<double> out(size_t(count(os)));
  for (int64_t p = 0; p < count(os); ++p) {
    Coords c = coords_of(p, os);
    c[size_t(dim)] = iv[size_t(c[size_t(dim)])];
    out[size_t(p)] = tv[size_t(flat_of(c, ts))];
  }
  return out;
}

template <class T>
std::vector<double> ref_gather(const Tensor<T>& t, int dim, const Index& index) {
  const Coords ts = t.shape().vec(), is = index.shape().vec();
  const auto tv = to_double(t);
  const auto iv = index.to_vector();
  std::vector<double> out(size_t(count(is)));
  for (int64_t p = 0; p < count(is); ++p) {
    Coords c = coords_of(p, is);
    c[size_t(dim)] = iv[size_t(p)];
    out[size_t(p)] = tv[size_t(flat_of(c, ts))];
  }
  return out;
}

template <class T>
std::vector<double> ref_scatter_add(const Tensor<T>& base, int dim, const Index& index, const Tensor<T>& src) {
  const Coords bs = base.shape().vec(), is = index.shape().vec(), ss = src.shape().vec();
  std::vector<double> out = to_double(base);
  const auto sv = to_double(src);
  const auto iv = index.to_vector();
  for (int64_t p = 0; p < count(is); ++p) {
    const Coords c = coords_of(p, is);
    Coords target = c;
    target[size_t(dim)] = iv[size_t(p)];
    out[size_t(flat_of(target, bs))] += sv[size_t(flat_of(c, ss))];
  }
  return out;
}

}  // namespace

// ---- index_select ----------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("index_select picks slices in any order with repeats", "[index]", float, double, bf16) {
  using T = TestType;
  const Tensor<T> t = random_tensor<T>({7, 5}, 1);
  const Index rows = index_of({3, 0, 6, 3, 3});
  const Tensor<T> picked = loom::index_select(t, 0, rows);
  REQUIRE(picked.shape() == Shape{5, 5});
  require_close(picked, ref_index_select(t, 0, rows), {0, 0});  // a copy: exact
  const Index cols = index_of({4, 0});
  require_close(loom::index_select(t, 1, cols), ref_index_select(t, 1, cols), {0, 0});
  require_close(loom::index_select(t, -1, cols), ref_index_select(t, 1, cols), {0, 0});
  const Tensor<T> t3 = random_tensor<T>({2, 7, 3}, 2);
  require_close(loom::index_select(t3, 1, rows), ref_index_select(t3, 1, rows), {0, 0});
}

TEST_CASE("index_select at odd sizes and on non-contiguous inputs", "[index]") {
  const Tensor<float> big = random_tensor<float>({97, 225}, 3);
  const Index many = random_index({225}, 97, 4);
  require_close(loom::index_select(big, 0, many), ref_index_select(big, 0, many), {0, 0});
  const Index many_cols = random_index({97}, 225, 5);
  require_close(loom::index_select(big, 1, many_cols), ref_index_select(big, 1, many_cols), {0, 0});
  const Tensor<float> one = random_tensor<float>({1}, 6);
  require_close(loom::index_select(one, 0, index_of({0, 0, 0})), ref_index_select(one, 0, index_of({0, 0, 0})), {0, 0});
  // Transposed and stepped inputs, a stepped index, and an expanded (stride-0) index.
  const Tensor<float> transposed = random_tensor<float>({5, 7}, 7).transpose(0, 1);  // [7, 5]
  const Tensor<float> stepped = random_tensor<float>({7, 10}, 8).slice(1, 1, 10, 2);  // [7, 5]
  const Index stepped_index = index_of({4, 9, 1, 9, 0, 9, 4, 9}).slice(0, 0, 8, 2);  // {4, 1, 0, 4}
  const Index expanded_index = index_of({2}).expand({4});
  for (const Tensor<float>& t : {transposed, stepped})
    for (const Index& ix : {stepped_index, expanded_index}) {
      INFO("t strides " << t.strides() << ", index strides " << ix.strides());
      require_close(loom::index_select(t, 0, ix), ref_index_select(t, 0, ix), {0, 0});
      require_close(loom::index_select(t, 1, ix), ref_index_select(t, 1, ix), {0, 0});
    }
  // An empty index selects nothing; integer tensors work too.
  REQUIRE(loom::index_select(big, 0, Index::empty({0})).shape() == Shape{0, 225});
  const Index ints = index_of({10, 11, 12, 13});
  REQUIRE(loom::index_select(ints, 0, index_of({3, 3, 0})).to_vector() == std::vector<int64_t>{13, 13, 10});
}

TEST_CASE("index_select errors name the index, the dim and the shape", "[index][errors]") {
  const Tensor<float> t = Tensor<float>::zeros({7, 5});
  REQUIRE_THROWS_AS(loom::index_select(t, 0, index_of({1, 7})), loom::Error);
  REQUIRE_THROWS_WITH(loom::index_select(t, 0, index_of({1, 7})),
                      Catch::Contains("index_select") && Catch::Contains("index 7") &&
                          Catch::Contains("dimension 0") && Catch::Contains("[7, 5]"));
  REQUIRE_THROWS_WITH(loom::index_select(t, 1, index_of({-1})),
                      Catch::Contains("index -1") && Catch::Contains("dimension 1") && Catch::Contains("[7, 5]"));
  REQUIRE_THROWS_WITH(loom::index_select(t, 0, Index::zeros({2, 2})),
                      Catch::Contains("1-D") && Catch::Contains("[2, 2]") && Catch::Contains("[7, 5]"));
  REQUIRE_THROWS_WITH(loom::index_select(t, 2, index_of({0})), Catch::Contains("index_select") && Catch::Contains("dimension 2"));
  REQUIRE_THROWS_AS(loom::index_select(Tensor<float>::scalar(1.f), 0, index_of({0})), loom::Error);
}

TEST_CASE("index_select backward accumulates repeated picks", "[index][autograd]") {
  auto select_rows = [](const std::vector<Tensor<double>>& in) {
    return loom::index_select(in[0], 0, index_of({3, 0, 4, 3, 3}));
  };
  require_gradcheck(select_rows, {random_leaf({5, 4}, 11)});
  require_gradcheck(select_rows, {transposed_leaf(5, 4, 12)});
  require_gradcheck([](const std::vector<Tensor<double>>& in) { return loom::index_select(in[0], 1, index_of({2, 2, 0})); },
                    {random_leaf({2, 3, 4}, 13)});
  // Float, larger, many duplicates: the gradient row r is the sum of the gradient rows that picked r.
  Tensor<float> t = random_tensor<float>({7, 225}, 14);
  t.requires_grad_();
  const Index picks = random_index({97}, 7, 15);
  const Tensor<float> g = random_tensor<float>({97, 225}, 16);
  loom::index_select(t, 0, picks).backward(g);
  std::vector<double> ref(7 * 225, 0.0);
  const auto gv = to_double(g);
  const auto pv = picks.to_vector();
  for (size_t k = 0; k < 97; ++k)
    for (size_t j = 0; j < 225; ++j) ref[size_t(pv[k]) * 225 + j] += gv[k * 225 + j];
  require_close(t.grad(), ref, {97 * 0x1p-24, 1e-5});
}

// ---- gather --------------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("gather follows torch.gather along every dim", "[index]", float, double, bf16) {
  using T = TestType;
  const Tensor<T> t = random_tensor<T>({4, 7, 5}, 21);
  const Index along0 = random_index({9, 7, 5}, 4, 22);   // extent along dim may exceed t's
  const Index along1 = random_index({3, 9, 2}, 7, 23);   // smaller elsewhere
  const Index along2 = random_index({4, 1, 225}, 5, 24);
  require_close(loom::gather(t, 0, along0), ref_gather(t, 0, along0), {0, 0});
  require_close(loom::gather(t, 1, along1), ref_gather(t, 1, along1), {0, 0});
  require_close(loom::gather(t, -1, along2), ref_gather(t, 2, along2), {0, 0});
  REQUIRE(loom::gather(t, 1, along1).shape() == Shape{3, 9, 2});
}

TEST_CASE("gather on non-contiguous inputs and indices", "[index]") {
  const Tensor<float> t = random_tensor<float>({5, 7}, 31).transpose(0, 1);  // [7, 5]
  const Index ix = random_index({5, 97}, 7, 32).transpose(0, 1);              // [97, 5]
  require_close(loom::gather(t, 0, ix), ref_gather(t, 0, ix), {0, 0});
  const Index row = random_index({1, 3}, 5, 33).expand({7, 3});  // stride-0 rows
  require_close(loom::gather(t, 1, row), ref_gather(t, 1, row), {0, 0});
  const Tensor<float> broadcast = random_tensor<float>({1, 5}, 34).expand({7, 5});
  require_close(loom::gather(broadcast, 1, row), ref_gather(broadcast, 1, row), {0, 0});
}

TEST_CASE("gather errors name the shapes and the bad index", "[index][errors]") {
  const Tensor<float> t = Tensor<float>::zeros({4, 7});
  REQUIRE_THROWS_AS(loom::gather(t, 1, Index::zeros({4})), loom::Error);
  REQUIRE_THROWS_WITH(loom::gather(t, 1, Index::zeros({4})),
                      Catch::Contains("gather") && Catch::Contains("[4, 7]") && Catch::Contains("[4]"));
  REQUIRE_THROWS_WITH(loom::gather(t, 1, Index::zeros({5, 2})),
                      Catch::Contains("[5, 2]") && Catch::Contains("[4, 7]") && Catch::Contains("dimension 0"));
  Index bad = Index::zeros({2, 3});
  bad.at_mut({1, 2}) = 7;
  REQUIRE_THROWS_WITH(loom::gather(t, 1, bad),
                      Catch::Contains("index 7") && Catch::Contains("dimension 1") && Catch::Contains("[4, 7]"));
  REQUIRE_THROWS_WITH(loom::gather(t, 0, bad), Catch::Contains("index 7") && Catch::Contains("dimension 0"));
}

TEST_CASE("gather backward scatters the gradient, repeats accumulated", "[index][autograd]") {
  const Index ix = Index::from_vector({3, 4}, std::vector<int64_t>{0, 2, 2, 1, 2, 2, 2, 0, 1, 1, 0, 2});
  require_gradcheck([&](const std::vector<Tensor<double>>& in) { return loom::gather(in[0], 1, ix); },
                    {random_leaf({3, 3}, 41)});
  require_gradcheck([&](const std::vector<Tensor<double>>& in) { return loom::gather(in[0], 0, ix.narrow(0, 0, 2)); },
                    {transposed_leaf(3, 5, 42)});
  const Index ix3 = random_index({2, 5, 3}, 4, 43);
  require_gradcheck([&](const std::vector<Tensor<double>>& in) { return loom::gather(in[0], 1, ix3); },
                    {random_leaf({2, 4, 3}, 44)});
}

// ---- scatter_add ---------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("scatter_add accumulates duplicates, src beyond index ignored", "[index]", float, double) {
  using T = TestType;
  const Tensor<T> base = random_tensor<T>({5, 7}, 51);
  const Index ix1 = random_index({5, 9}, 7, 52);  // 9 contributions into 7 slots per row
  const Tensor<T> src = random_tensor<T>({6, 11}, 53);
  const Tensor<T> out = loom::scatter_add(base, 1, ix1, src);
  REQUIRE(out.shape() == Shape{5, 7});
  require_close(out, ref_scatter_add(base, 1, ix1, src));
  const Index ix0 = random_index({6, 7}, 5, 54);
  require_close(loom::scatter_add(base, 0, ix0, src), ref_scatter_add(base, 0, ix0, src));
  // Non-contiguous base / src / index.
  const Tensor<T> base_t = random_tensor<T>({7, 5}, 55).transpose(0, 1);
  const Tensor<T> src_t = random_tensor<T>({11, 6}, 56).transpose(0, 1);
  const Index ix_t = random_index({9, 5}, 7, 57).transpose(0, 1);
  require_close(loom::scatter_add(base_t, 1, ix_t, src_t), ref_scatter_add(base_t, 1, ix_t, src_t));
  const Index ix_row = random_index({1, 9}, 7, 58).expand({5, 9});
  require_close(loom::scatter_add(base, -1, ix_row, src), ref_scatter_add(base, 1, ix_row, src));
  // The input is not modified.
  REQUIRE(to_double(base) == to_double(random_tensor<T>({5, 7}, 51)));
}

TEST_CASE("scatter_add is deterministic across runs and thread counts", "[index]") {
  const Tensor<float> base = random_tensor<float>({97, 225}, 61);
  const Index ix = random_index({225, 225}, 97, 62);
  const Tensor<float> src = random_tensor<float>({225, 225}, 63);
  const Tensor<float> first = loom::scatter_add(base, 0, ix, src);
  require_close(first, ref_scatter_add(base, 0, ix, src), {225 * 0x1p-24, 1e-5});
  REQUIRE(loom::scatter_add(base, 0, ix, src).to_vector() == first.to_vector());
  const int threads = loom::num_threads();
  loom::set_num_threads(1);
  const std::vector<float> serial = loom::scatter_add(base, 0, ix, src).to_vector();
  loom::set_num_threads(threads);
  REQUIRE(serial == first.to_vector());
  // One long row (embedding-gradient shape): split into blocks across threads, same result.
  const Tensor<float> table = Tensor<float>::zeros({7, 4096});
  const Index rows = random_index({97}, 7, 64);
  const Tensor<float> grads = random_tensor<float>({97, 4096}, 65);
  const Index spread = rows.reshape({97, 1}).expand({97, 4096});
  const Tensor<float> summed = loom::scatter_add(table, 0, spread, grads);
  require_close(summed, ref_scatter_add(table, 0, spread, grads), {97 * 0x1p-24, 1e-5});
  loom::set_num_threads(1);
  const std::vector<float> summed_serial = loom::scatter_add(table, 0, spread, grads).to_vector();
  loom::set_num_threads(threads);
  REQUIRE(summed_serial == summed.to_vector());
}

TEST_CASE("bf16 scatter_add accumulates in float and rounds once", "[index][bf16]") {
  // 225 additions of 0.01 into one element: bf16 accumulation would stall near 2 (ulp 1/64).
  const Tensor<bf16> base = Tensor<bf16>::zeros({1});
  const Tensor<bf16> src = Tensor<bf16>::full({225}, bf16(0.01f));
  const Index ix = Index::zeros({225});
  const Tensor<bf16> out = loom::scatter_add(base, 0, ix, src);
  require_close(out, ref_scatter_add(base, 0, ix, src));
  const Tensor<bf16> b2 = random_tensor<bf16>({4, 7}, 66), s2 = random_tensor<bf16>({4, 9}, 67);
  const Index i2 = random_index({4, 9}, 7, 68);
  require_close(loom::scatter_add(b2, 1, i2, s2), ref_scatter_add(b2, 1, i2, s2));
}

TEST_CASE("scatter_add errors name the shapes and the bad index", "[index][errors]") {
  const Tensor<float> base = Tensor<float>::zeros({4, 7}), src = Tensor<float>::zeros({4, 9});
  REQUIRE_THROWS_AS(loom::scatter_add(base, 1, Index::zeros({4}), src), loom::Error);
  REQUIRE_THROWS_WITH(loom::scatter_add(base, 1, Index::zeros({4}), src),
                      Catch::Contains("scatter_add") && Catch::Contains("[4, 7]") && Catch::Contains("[4]") &&
                          Catch::Contains("[4, 9]"));
  REQUIRE_THROWS_WITH(loom::scatter_add(base, 1, Index::zeros({4, 10}), src),
                      Catch::Contains("[4, 10]") && Catch::Contains("[4, 9]"));
  REQUIRE_THROWS_WITH(loom::scatter_add(base, 1, Index::zeros({5, 3}), Tensor<float>::zeros({5, 3})),
                      Catch::Contains("[5, 3]") && Catch::Contains("[4, 7]") && Catch::Contains("dimension 0"));
  Index bad = Index::zeros({4, 9});
  bad.at_mut({3, 8}) = 7;
  REQUIRE_THROWS_WITH(loom::scatter_add(base, 1, bad, src),
                      Catch::Contains("index 7") && Catch::Contains("dimension 1") && Catch::Contains("[4, 7]"));
  bad.at_mut({3, 8}) = -2;
  REQUIRE_THROWS_WITH(loom::scatter_add(base, 1, bad, src), Catch::Contains("index -2"));
}

TEST_CASE("scatter_add backward: base gets the gradient, src gets it gathered", "[index][autograd]") {
  const Index ix = Index::from_vector({2, 4}, std::vector<int64_t>{1, 1, 0, 2, 2, 2, 2, 0});
  auto f = [&](const std::vector<Tensor<double>>& in) { return loom::scatter_add(in[0], 1, ix, in[1]); };
  require_gradcheck(f, {random_leaf({2, 3}, 71), random_leaf({2, 4}, 72)});
  require_gradcheck(f, {transposed_leaf(2, 3, 73), random_leaf({3, 5}, 74)});  // src larger than index
  require_gradcheck(f, {random_tensor<double>({2, 3}, 75), transposed_leaf(2, 4, 76)});
  require_gradcheck([&](const std::vector<Tensor<double>>& in) { return loom::scatter_add(in[0], 0, ix, in[1]); },
                    {random_leaf({3, 4}, 77), random_leaf({2, 4}, 78)});
}

// ---- concat / stack ---------------------------------------------------------------------------

namespace {
// Reference concat of row-major values along dim.
std::vector<double> ref_concat(const std::vector<std::vector<double>>& values, const std::vector<Coords>& shapes,
                               int dim) {
  Coords out_shape = shapes[0];
  out_shape[size_t(dim)] = 0;
  for (const auto& s : shapes) out_shape[size_t(dim)] += s[size_t(dim)];
  std::vector<double> out(size_t(count(out_shape)));
  int64_t offset = 0;
  for (size_t k = 0; k < values.size(); ++k) {
    for (int64_t p = 0; p < count(shapes[k]); ++p) {
      Coords c = coords_of(p, shapes[k]);
      c[size_t(dim)] += offset;
      out[size_t(flat_of(c, out_shape))] = values[k][size_t(p)];
    }
    offset += shapes[k][size_t(dim)];
  }
  return out;
}

template <class T>
void check_concat(const std::vector<Tensor<T>>& parts, int dim, int64_t dim_arg) {
  std::vector<std::vector<double>> values;
  std::vector<Coords> shapes;
  for (const auto& p : parts) {
    values.push_back(to_double(p));
    shapes.push_back(p.shape().vec());
  }
  require_close(loom::concat(parts, dim_arg), ref_concat(values, shapes, dim), {0, 0});
}
}  // namespace

TEMPLATE_TEST_CASE("concat joins along any dim, any layout", "[concat]", float, double, bf16) {
  using T = TestType;
  check_concat<T>({random_tensor<T>({2, 3}, 81), random_tensor<T>({4, 3}, 82), random_tensor<T>({1, 3}, 83)}, 0, 0);
  check_concat<T>({random_tensor<T>({3, 2}, 84), random_tensor<T>({3, 5}, 85)}, 1, -1);
  check_concat<T>({random_tensor<T>({2, 7, 3}, 86), random_tensor<T>({2, 1, 3}, 87), random_tensor<T>({2, 97, 3}, 88)},
                  1, 1);
  // Transposed, stepped and expanded inputs; an empty part; a single tensor.
  check_concat<T>({random_tensor<T>({3, 4}, 89).transpose(0, 1), random_tensor<T>({4, 6}, 90).slice(1, 0, 6, 2),
                   random_tensor<T>({4, 1}, 91).expand({4, 3}), Tensor<T>::zeros({4, 0})},
                  1, 1);
  check_concat<T>({random_tensor<T>({225}, 92)}, 0, 0);
  const Tensor<T> big = loom::concat(std::vector<Tensor<T>>{random_tensor<T>({97, 225}, 93), random_tensor<T>({97, 225}, 94)}, 0);
  REQUIRE(big.shape() == Shape{194, 225});
}

TEST_CASE("concat and stack of integer tensors", "[concat]") {
  const Index a = index_of({1, 2}), b = index_of({3});
  REQUIRE(loom::concat(std::vector<Index>{a, b}, 0).to_vector() == std::vector<int64_t>{1, 2, 3});
  REQUIRE(loom::stack(std::vector<Index>{a, a}, 1).to_vector() == std::vector<int64_t>{1, 1, 2, 2});
}

TEST_CASE("stack adds a dim at any position", "[concat]") {
  const std::vector<Tensor<float>> parts = {random_tensor<float>({2, 3}, 101), random_tensor<float>({3, 2}, 102).transpose(0, 1),
                                            random_tensor<float>({2, 3}, 103)};
  const auto v0 = to_double(parts[0]), v1 = to_double(parts[1]), v2 = to_double(parts[2]);
  for (int64_t dim : {0, 1, 2, -1, -3}) {
    const int d = int(dim < 0 ? dim + 3 : dim);
    const Tensor<float> s = loom::stack(parts, dim);
    Coords expected = {2, 3};
    expected.insert(expected.begin() + d, 3);
    REQUIRE(s.shape().vec() == expected);
    // Stacking = concat of the parts, each with an extent-1 dim inserted at d.
    Coords part_shape = {2, 3};
    part_shape.insert(part_shape.begin() + d, 1);
    require_close(s, ref_concat({v0, v1, v2}, {part_shape, part_shape, part_shape}, d), {0, 0});
  }
}

TEST_CASE("concat and stack errors name the shapes", "[concat][errors]") {
  REQUIRE_THROWS_AS(loom::concat(std::vector<Tensor<float>>{}, 0), loom::Error);
  REQUIRE_THROWS_WITH(loom::concat(std::vector<Tensor<float>>{Tensor<float>::zeros({2, 3}), Tensor<float>::zeros({2, 4})}, 0),
                      Catch::Contains("concat") && Catch::Contains("[2, 3]") && Catch::Contains("[2, 4]"));
  REQUIRE_THROWS_WITH(loom::concat(std::vector<Tensor<float>>{Tensor<float>::zeros({2, 3}), Tensor<float>::zeros({2, 3, 1})}, 0),
                      Catch::Contains("[2, 3]") && Catch::Contains("[2, 3, 1]"));
  REQUIRE_THROWS_WITH(loom::concat(std::vector<Tensor<float>>{Tensor<float>::zeros({2, 3})}, 2),
                      Catch::Contains("concat") && Catch::Contains("dimension 2"));
  REQUIRE_THROWS_AS(loom::concat(std::vector<Tensor<float>>{Tensor<float>::scalar(1.f)}, 0), loom::Error);
  REQUIRE_THROWS_AS(loom::stack(std::vector<Tensor<float>>{}, 0), loom::Error);
  REQUIRE_THROWS_WITH(loom::stack(std::vector<Tensor<float>>{Tensor<float>::zeros({2, 3}), Tensor<float>::zeros({3, 2})}, 0),
                      Catch::Contains("stack") && Catch::Contains("[2, 3]") && Catch::Contains("[3, 2]"));
  REQUIRE_THROWS_WITH(loom::stack(std::vector<Tensor<float>>{Tensor<float>::zeros({2, 3})}, 3),
                      Catch::Contains("stack") && Catch::Contains("dimension 3"));
}

TEST_CASE("concat and stack backward narrow the gradient", "[concat][autograd]") {
  auto cat1 = [](const std::vector<Tensor<double>>& in) { return loom::concat(in, 1); };
  require_gradcheck(cat1, {random_leaf({3, 2}, 111), transposed_leaf(3, 4, 112), random_leaf({3, 1}, 113)});
  auto cat_with_constant = [](const std::vector<Tensor<double>>& in) {
    return loom::concat(std::vector<Tensor<double>>{in[0], random_tensor<double>({2, 3}, 114), in[1]}, 0);
  };
  require_gradcheck(cat_with_constant, {random_leaf({1, 3}, 115), random_leaf({4, 3}, 116)});
  require_gradcheck([](const std::vector<Tensor<double>>& in) { return loom::stack(in, 1); },
                    {random_leaf({2, 3}, 117), transposed_leaf(2, 3, 118)});
  require_gradcheck(
      [](const std::vector<Tensor<double>>& in) {
        return loom::concat(std::vector<Tensor<double>>{in[0].expand({3, 4}), in[1]}, 0);
      },
      {random_leaf({1, 4}, 119), random_leaf({2, 4}, 120)});
}

// ---- split / chunk ----------------------------------------------------------------------------

TEST_CASE("split and chunk return views with torch's sizes", "[concat]") {
  const Tensor<float> t = random_tensor<float>({7, 5}, 121);
  auto extents = [](const std::vector<Tensor<float>>& parts, int dim) {
    std::vector<int64_t> e;
    for (const auto& p : parts) e.push_back(p.shape()[dim]);
    return e;
  };
  const auto by3 = loom::split(t, 3, 0);
  REQUIRE(extents(by3, 0) == std::vector<int64_t>{3, 3, 1});
  for (size_t i = 0; i < by3.size(); ++i) {
    REQUIRE(by3[i].data() == t.data() + int64_t(i) * 3 * t.stride(0));  // a view, no copy
    require_close(by3[i], ref_index_select(t, 0, index_of(i < 2 ? std::vector<int64_t>{int64_t(3 * i), int64_t(3 * i + 1), int64_t(3 * i + 2)} : std::vector<int64_t>{6})), {0, 0});
  }
  REQUIRE(extents(loom::split(t, 7, 0), 0) == std::vector<int64_t>{7});
  REQUIRE(extents(loom::split(t, 10, 0), 0) == std::vector<int64_t>{7});
  const auto sized = loom::split(t, {2, 0, 3}, -1);
  REQUIRE(extents(sized, 1) == std::vector<int64_t>{2, 0, 3});
  require_close(sized[2], ref_index_select(t, 1, index_of({2, 3, 4})), {0, 0});
  REQUIRE(extents(loom::chunk(t, 3, 0), 0) == std::vector<int64_t>{3, 3, 1});
  REQUIRE(extents(loom::chunk(random_tensor<float>({2, 6}, 122), 4, 1), 1) == std::vector<int64_t>{2, 2, 2});
  REQUIRE(extents(loom::chunk(t, 1, 1), 1) == std::vector<int64_t>{5});
  REQUIRE(extents(loom::chunk(Tensor<float>::zeros({3, 0}), 2, 1), 1) == std::vector<int64_t>{0, 0});
  REQUIRE(extents(loom::split(Tensor<float>::zeros({0}), 2, 0), 0) == std::vector<int64_t>{0});
  // Views of a non-contiguous tensor.
  const Tensor<float> tt = t.transpose(0, 1);  // [5, 7]
  const auto cols = loom::chunk(tt, 2, 1);
  REQUIRE(extents(cols, 1) == std::vector<int64_t>{4, 3});
  require_close(cols[1], ref_index_select(tt, 1, index_of({4, 5, 6})), {0, 0});
}

TEST_CASE("split and chunk errors", "[concat][errors]") {
  const Tensor<float> t = Tensor<float>::zeros({4, 7});
  REQUIRE_THROWS_AS(loom::split(t, {2, 3}, 1), loom::Error);
  REQUIRE_THROWS_WITH(loom::split(t, {2, 3}, 1),
                      Catch::Contains("split") && Catch::Contains("[2, 3]") && Catch::Contains("[4, 7]"));
  REQUIRE_THROWS_WITH(loom::split(t, {8, -1}, 1), Catch::Contains("negative"));
  REQUIRE_THROWS_WITH(loom::split(t, 0, 1), Catch::Contains("split") && Catch::Contains("[4, 7]"));
  REQUIRE_THROWS_WITH(loom::chunk(t, 0, 1), Catch::Contains("chunk") && Catch::Contains("[4, 7]"));
  REQUIRE_THROWS_WITH(loom::split(t, 2, 2), Catch::Contains("split") && Catch::Contains("dimension 2"));
  REQUIRE_THROWS_AS(loom::chunk(Tensor<float>::scalar(1.f), 2, 0), loom::Error);
}

TEST_CASE("split and chunk backward", "[concat][autograd]") {
  // Reassemble the parts in reverse order: every part's gradient lands in its own slice.
  auto reversed = [](std::vector<Tensor<double>> parts, int64_t dim) {
    std::reverse(parts.begin(), parts.end());
    return loom::concat(parts, dim);
  };
  require_gradcheck([&](const std::vector<Tensor<double>>& in) { return reversed(loom::split(in[0], 2, 1), 1); },
                    {random_leaf({3, 5}, 131)});
  require_gradcheck([&](const std::vector<Tensor<double>>& in) { return reversed(loom::split(in[0], {1, 3, 1}, 0), 0); },
                    {transposed_leaf(5, 3, 132)});
  require_gradcheck([&](const std::vector<Tensor<double>>& in) { return reversed(loom::chunk(in[0], 3, -1), -1); },
                    {random_leaf({2, 7}, 133)});
  // Only some parts used: the others get zero gradient.
  require_gradcheck([&](const std::vector<Tensor<double>>& in) { return loom::chunk(in[0], 3, 0)[1]; },
                    {random_leaf({7, 2}, 134)});
}
