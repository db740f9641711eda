// Tensor factories, element access, views (view/reshape, permute/transpose, slice/narrow/select,
// expand, unsqueeze/squeeze, flatten), views of views and writes through them, contiguous/clone,
// to<U>() conversions and copy_, every error path, and each view's gradient by gradcheck.
// References are index formulas written out here, applied to the base tensor's row-major values.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <vector>

#include "loom/autograd/gradcheck.hpp"
#include "support/check.hpp"

using loom::Shape;
using loom::Strides;
using loom::Tensor;
using Index = std::vector<int64_t>;

namespace {

// 0, 1, 2, ... (times `scale`) in row-major order.
template <class T = double>
Tensor<T> iota(const Shape& shape, double scale = 1.0) {
  std::vector<T> v(static_cast<size_t>(shape.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = T(static_cast<loom::compute_t<T>>(double(i) * scale));
  return Tensor<T>::from_vector(shape, v);
}

// Calls f(index) for every multi-index of `shape` in row-major order.
void for_each_index(const Shape& shape, const std::function<void(const Index&)>& f) {
  if (shape.numel() == 0) return;
  Index idx(static_cast<size_t>(shape.size()), 0);
  for (int64_t n = 0; n < shape.numel(); ++n) {
    f(idx);
    for (int d = shape.size() - 1; d >= 0; --d) {
      if (++idx[size_t(d)] < shape[d]) break;
      idx[size_t(d)] = 0;
    }
  }
}

int64_t row_major(const Shape& shape, const Index& idx) {
  int64_t lin = 0;
  for (int d = 0; d < shape.size(); ++d) lin = lin * shape[d] + idx[size_t(d)];
  return lin;
}

// The values a view of `base` should hold: base[source(index)] for every index of `view_shape`.
std::vector<double> expected_values(const Tensor<double>& base, const Shape& view_shape,
                                    const std::function<Index(const Index&)>& source) {
  const std::vector<double> b = base.to_vector();
  std::vector<double> out;
  for_each_index(view_shape, [&](const Index& i) { out.push_back(b[size_t(row_major(base.shape(), source(i)))]); });
  return out;
}

template <class T>
bool shares_storage(const Tensor<T>& a, const Tensor<T>& b) {
  return a.impl()->storage == b.impl()->storage;
}

void require_gradcheck(const loom::autograd::GradcheckFn& f, const std::vector<Tensor<double>>& inputs) {
  const loom::autograd::GradcheckResult r = loom::autograd::gradcheck(f, inputs);
  INFO(r.message);
  REQUIRE(r.ok);
}

// A leaf with the values of `base` laid out transposed in memory: [a, b] values over a [b, a] buffer.
Tensor<double> transposed_leaf(int64_t a, int64_t b) {
  return iota<double>({b, a}, 0.37).transpose(0, 1).detach().requires_grad_();
}

// Whether some strides let `new_shape` address exactly the elements of `t` in row-major order,
// decided by brute force: the stride of each new dim must be the memory step of its first move.
bool viewable_by_brute_force(const Tensor<double>& t, const Shape& new_shape) {
  if (t.numel() == 0) return true;
  std::vector<int64_t> memory;  // memory offset of each element of t, row-major
  for_each_index(t.shape(), [&](const Index& i) {
    int64_t off = 0;
    for (int d = 0; d < t.dim(); ++d) off += i[size_t(d)] * t.strides()[d];
    memory.push_back(off);
  });
  const Strides dense = loom::contiguous_strides(new_shape);
  std::vector<int64_t> stride(static_cast<size_t>(new_shape.size()), 0);
  for (int d = 0; d < new_shape.size(); ++d)
    if (new_shape[d] > 1) stride[size_t(d)] = memory[size_t(dense[d])] - memory[0];
  bool ok = true;
  for_each_index(new_shape, [&](const Index& i) {
    int64_t off = memory[0];
    for (int d = 0; d < new_shape.size(); ++d) off += i[size_t(d)] * stride[size_t(d)];
    ok = ok && off == memory[size_t(row_major(new_shape, i))];
  });
  return ok;
}

}  // namespace

// ---- factories and element access -------------------------------------------------------------------

TEST_CASE("factories: shapes, contiguous strides, values", "[tensor]") {
  const Tensor<float> e = Tensor<float>::empty({2, 3, 4});
  CHECK(e.shape() == Shape{2, 3, 4});
  CHECK(e.strides() == Strides{12, 4, 1});
  CHECK(e.is_contiguous());
  CHECK(e.dim() == 3);
  CHECK(e.numel() == 24);
  CHECK(e.size(-1) == 4);
  CHECK(e.stride(0) == 12);
  CHECK(e.offset() == 0);
  for (float v : Tensor<float>::zeros({7}).to_vector()) CHECK(v == 0.f);
  for (double v : Tensor<double>::ones({1, 97}).to_vector()) CHECK(v == 1.0);
  for (loom::bf16 v : Tensor<loom::bf16>::full({3, 1}, loom::bf16(2.5f)).to_vector()) CHECK(float(v) == 2.5f);
  const Tensor<int64_t> s = Tensor<int64_t>::scalar(-5);
  CHECK(s.dim() == 0);
  CHECK(s.numel() == 1);
  CHECK(s.item() == -5);
  CHECK(s.at({}) == -5);
  const Tensor<uint8_t> fv = Tensor<uint8_t>::from_vector({2, 2}, {1, 2, 3, 4});
  CHECK(fv.at({1, 0}) == 3);
  CHECK(Tensor<double>::arange(5).to_vector() == std::vector<double>{0, 1, 2, 3, 4});
  CHECK(Tensor<float>::arange(0).numel() == 0);
  CHECK(float(Tensor<loom::bf16>::arange(3).to_vector()[2]) == 2.f);
  // Integer arange is exact beyond float's 24-bit significand.
  const Tensor<int32_t> big = Tensor<int32_t>::arange((1 << 24) + 3);
  CHECK(big.at({(1 << 24) + 1}) == (1 << 24) + 1);
  CHECK(big.at({(1 << 24) + 2}) == (1 << 24) + 2);
}

TEST_CASE("factory and accessor errors name the shapes", "[tensor][errors]") {
  REQUIRE_THROWS_AS(Tensor<float>::from_vector({2, 3}, std::vector<float>(5)), loom::Error);
  REQUIRE_THROWS_WITH(Tensor<float>::from_vector({2, 3}, std::vector<float>(5)),
                      Catch::Contains("from_vector") && Catch::Contains("5") && Catch::Contains("[2, 3]"));
  REQUIRE_THROWS_WITH(Tensor<float>::empty({2, -1}), Catch::Contains("empty") && Catch::Contains("[2, -1]"));
  const Tensor<double> t = iota({2, 3});
  REQUIRE_THROWS_WITH(t.at({2, 0}), Catch::Contains("at") && Catch::Contains("index 2") && Catch::Contains("[2, 3]"));
  REQUIRE_THROWS_AS(t.at({0, -1}), loom::Error);
  REQUIRE_THROWS_WITH(t.at({0}), Catch::Contains("at") && Catch::Contains("rank 2"));
  REQUIRE_THROWS_WITH(t.item(), Catch::Contains("item") && Catch::Contains("[2, 3]"));
  REQUIRE_THROWS_AS(t.size(2), loom::Error);
  REQUIRE_THROWS_WITH(Tensor<double>::scalar(1).size(0), Catch::Contains("rank 0"));
  REQUIRE_THROWS_AS(Tensor<double>::scalar(1).stride(-1), loom::Error);
  const Tensor<float> undefined;
  CHECK_FALSE(undefined.defined());
  REQUIRE_THROWS_WITH(undefined.shape(), Catch::Contains("undefined Tensor"));
  // Re-typing an untyped handle checks the element type.
  REQUIRE_THROWS_WITH(Tensor<float>(t.impl()), Catch::Contains("float32") && Catch::Contains("float64"));
}

// ---- view and reshape ------------------------------------------------------------------------------

TEST_CASE("a CUDA tensor in a build without the CUDA backend is an error that says how to get one", "[tensor][errors]") {
#if LOOM_WITH_CUDA
  LOOM_SKIP("this test binary links the CUDA backend");
#else
  using CudaFloat = Tensor<float, loom::CUDA>;
  REQUIRE_THROWS_WITH(CudaFloat::zeros({2, 3}), Catch::Contains("link loom::kernels"));
  REQUIRE_THROWS_WITH(Tensor<float>::ones({2}).to_device<loom::CUDA>(), Catch::Contains("CUDA backend"));
#endif
}

TEST_CASE("view/reshape: -1 inference, shared storage, copies when strides forbid a view", "[views]") {
  const Tensor<double> base = iota({2, 3, 4});
  const Tensor<double> v = base.view({4, -1});
  CHECK(v.shape() == Shape{4, 6});
  CHECK(shares_storage(v, base));
  CHECK(v.to_vector() == base.to_vector());
  CHECK(base.reshape({-1}).shape() == Shape{24});
  CHECK(base.view({2, 1, 12, 1}).shape() == Shape{2, 1, 12, 1});
  CHECK(Tensor<double>::scalar(3).view({1, 1}).shape() == Shape{1, 1});
  CHECK(Tensor<float>::zeros({0, 5}).view({5, 0, 1}).shape() == Shape{5, 0, 1});
  // With zero elements a -1 could be anything: refused, as in PyTorch.
  REQUIRE_THROWS_WITH(Tensor<float>::zeros({0, 5}).view({5, -1, 0}), Catch::Contains("cannot infer -1"));

  // A transposed tensor cannot be flattened by a view; reshape copies instead.
  const Tensor<double> t = base.transpose(1, 2);  // [2, 4, 3]
  REQUIRE_THROWS_AS(t.view({24}), loom::Error);
  REQUIRE_THROWS_WITH(t.view({2, 12}), Catch::Contains("view") && Catch::Contains("[2, 12]") &&
                                           Catch::Contains("[2, 4, 3]") && Catch::Contains("reshape"));
  const Tensor<double> r = t.reshape({2, 12});
  CHECK_FALSE(shares_storage(r, base));
  CHECK(r.to_vector() == expected_values(base, {2, 12}, [](const Index& i) {
          const int64_t k = i[1] / 3, j = i[1] % 3;  // t[b, k, j] = base[b, j, k]
          return Index{i[0], j, k};
        }));
  // Splitting the outer dim of a transposed tensor is still a view.
  const Tensor<double> split = t.view({2, 2, 2, 3});
  CHECK(shares_storage(split, base));
  CHECK(split.to_vector() == t.to_vector());

  REQUIRE_THROWS_WITH(base.view({5, -1}), Catch::Contains("view") && Catch::Contains("[5, -1]"));
  REQUIRE_THROWS_WITH(base.reshape({-1, -1}), Catch::Contains("reshape") && Catch::Contains("more than one -1"));
  REQUIRE_THROWS_WITH(base.reshape({5, 5}), Catch::Contains("[5, 5]") && Catch::Contains("[2, 3, 4]"));
  REQUIRE_THROWS_AS(base.reshape({-2, 12}), loom::Error);
  REQUIRE_THROWS_AS(Tensor<double>::zeros({0, 3}).reshape({0, -1}), loom::Error);
}

TEST_CASE("view succeeds exactly when strides for the new shape exist (brute-force reference)", "[views]") {
  // Layouts: contiguous, transposed, step-sliced, expanded, with unit dims, and combinations.
  const Tensor<double> b3 = iota({2, 3, 4});
  const std::vector<Tensor<double>> layouts{
      b3,
      b3.transpose(0, 2),
      b3.permute({1, 0, 2}),
      b3.slice(2, 0, 4, 2),
      b3.slice(1, 1, 3),
      b3.narrow(0, 1, 1),
      iota({3, 1, 4}).expand({3, 2, 4}),
      iota({1, 4}).expand({3, 4}),
      iota({6, 4}).unsqueeze(1).transpose(0, 2),
      iota({2, 6}).slice(1, 0, 6, 3).unsqueeze(0),
      iota({4, 1, 3}).permute({2, 1, 0}),
  };
  int64_t views = 0, refusals = 0;
  for (const Tensor<double>& t : layouts) {
    const int64_t n = t.numel();
    std::vector<Shape> targets{{n}, {n, 1}, {1, n}};
    for (int64_t a = 1; a <= n; ++a) {
      if (n % a) continue;
      targets.push_back({a, n / a});
      targets.push_back({a, 1, n / a});
      for (int64_t b = 1; b <= n / a; ++b)
        if ((n / a) % b == 0) targets.push_back({a, b, n / a / b});
    }
    for (const Shape& target : targets) {
      INFO("layout " << t.shape() << " strides " << t.strides() << " -> " << target);
      const bool expected = viewable_by_brute_force(t, target);
      bool got = true;
      try {
        const Tensor<double> v = t.view(target);
        CHECK(shares_storage(v, t));
        CHECK(v.to_vector() == t.to_vector());  // the same elements in row-major order
      } catch (const loom::Error&) {
        got = false;
      }
      CHECK(got == expected);
      (got ? views : refusals)++;
      CHECK(t.reshape(target).to_vector() == t.to_vector());
    }
  }
  CHECK(views > 0);
  CHECK(refusals > 0);
}

// ---- permute, transpose --------------------------------------------------------------------------

TEST_CASE("permute and transpose move dims without copying", "[views]") {
  const Tensor<double> base = iota({2, 3, 5});
  const Tensor<double> p = base.permute({2, 0, 1});  // [5, 2, 3]
  CHECK(p.shape() == Shape{5, 2, 3});
  CHECK(p.strides() == Strides{1, 15, 5});
  CHECK_FALSE(p.is_contiguous());
  CHECK(shares_storage(p, base));
  CHECK(p.to_vector() == expected_values(base, p.shape(), [](const Index& i) { return Index{i[1], i[2], i[0]}; }));
  CHECK(base.permute({-1, 0, 1}).strides() == p.strides());
  const Tensor<double> t = base.transpose(-1, 0);  // [5, 3, 2]
  CHECK(t.to_vector() == expected_values(base, t.shape(), [](const Index& i) { return Index{i[2], i[1], i[0]}; }));
  CHECK(base.transpose(1, 1).strides() == base.strides());
  CHECK(Tensor<double>::scalar(2).transpose(0, -1).item() == 2);  // rank 0 transposes to itself

  REQUIRE_THROWS_WITH(base.permute({0, 1}), Catch::Contains("permute") && Catch::Contains("[2, 3, 5]"));
  REQUIRE_THROWS_WITH(base.permute({0, 1, 1}), Catch::Contains("permute") && Catch::Contains("repeated"));
  REQUIRE_THROWS_WITH(base.permute({0, 1, 3}), Catch::Contains("permute") && Catch::Contains("out of range"));
  REQUIRE_THROWS_WITH(base.transpose(0, 3), Catch::Contains("transpose"));
}

// ---- slice, narrow, select ---------------------------------------------------------------------------

TEST_CASE("slice with steps and negative bounds, narrow, select", "[views]") {
  const Tensor<double> base = iota({7, 5});
  struct SliceCase {
    int64_t start, end, step;
    std::vector<int64_t> rows;  // rows selected along dim 0, Python semantics
  };
  const SliceCase cases[] = {
      {0, 7, 1, {0, 1, 2, 3, 4, 5, 6}}, {1, 6, 2, {1, 3, 5}}, {-3, 7, 1, {4, 5, 6}}, {0, -1, 3, {0, 3}},
      {-100, 100, 4, {0, 4}},           {5, 2, 1, {}},        {7, 9, 1, {}},        {2, 3, 5, {2}},
  };
  for (const SliceCase& c : cases) {
    INFO("slice(0, " << c.start << ", " << c.end << ", " << c.step << ")");
    const Tensor<double> s = base.slice(0, c.start, c.end, c.step);
    CHECK(s.shape() == Shape{int64_t(c.rows.size()), 5});
    CHECK(s.to_vector() ==
          expected_values(base, s.shape(), [&](const Index& i) { return Index{c.rows[size_t(i[0])], i[1]}; }));
    if (!c.rows.empty()) CHECK(shares_storage(s, base));
  }
  const Tensor<double> cols = base.slice(-1, 1, 5, 3);  // columns 1, 4
  CHECK(cols.to_vector() == expected_values(base, {7, 2}, [](const Index& i) { return Index{i[0], 1 + 3 * i[1]}; }));

  const Tensor<double> n = base.narrow(1, 2, 3);
  CHECK(n.to_vector() == expected_values(base, {7, 3}, [](const Index& i) { return Index{i[0], i[1] + 2}; }));
  CHECK(base.narrow(0, -2, 2).to_vector() == base.narrow(0, 5, 2).to_vector());
  CHECK(base.narrow(0, 3, 0).numel() == 0);

  const Tensor<double> row = base.select(0, 4);
  CHECK(row.shape() == Shape{5});
  CHECK(row.to_vector() == expected_values(base, {5}, [](const Index& i) { return Index{4, i[0]}; }));
  CHECK(base.select(1, -1).to_vector() == expected_values(base, {7}, [](const Index& i) { return Index{i[0], 4}; }));
  CHECK(base.select(0, 2).select(0, 3).item() == base.at({2, 3}));

  REQUIRE_THROWS_WITH(base.slice(0, 0, 7, 0), Catch::Contains("slice") && Catch::Contains("step"));
  REQUIRE_THROWS_WITH(base.slice(2, 0, 1), Catch::Contains("slice") && Catch::Contains("out of range"));
  REQUIRE_THROWS_WITH(base.narrow(1, 3, 3), Catch::Contains("narrow") && Catch::Contains("[7, 5]"));
  REQUIRE_THROWS_AS(base.narrow(1, -6, 1), loom::Error);
  REQUIRE_THROWS_AS(base.narrow(1, 0, -1), loom::Error);
  REQUIRE_THROWS_WITH(base.select(0, 7), Catch::Contains("select") && Catch::Contains("[7, 5]"));
  REQUIRE_THROWS_AS(base.select(0, -8), loom::Error);
  const Tensor<double> scalar = Tensor<double>::scalar(1);
  REQUIRE_THROWS_WITH(scalar.slice(0, 0, 1), Catch::Contains("rank 0"));
  REQUIRE_THROWS_WITH(scalar.narrow(0, 0, 1), Catch::Contains("rank 0"));
  REQUIRE_THROWS_WITH(scalar.select(0, 0), Catch::Contains("rank 0"));
}

// ---- expand, unsqueeze, squeeze, flatten --------------------------------------------------------------

TEST_CASE("expand broadcasts with stride 0", "[views]") {
  const Tensor<double> col = iota({3, 1});
  const Tensor<double> e = col.expand({2, 3, 4});
  CHECK(e.shape() == Shape{2, 3, 4});
  CHECK(e.strides() == Strides{0, 1, 0});
  CHECK(shares_storage(e, col));
  CHECK(e.to_vector() == expected_values(col, e.shape(), [](const Index& i) { return Index{i[1], 0}; }));
  CHECK(col.expand({-1, 5}).shape() == Shape{3, 5});
  CHECK(Tensor<double>::scalar(7).expand({2, 2}).to_vector() == std::vector<double>(4, 7.0));
  CHECK(iota({1}).expand({0}).numel() == 0);
  REQUIRE_THROWS_WITH(col.expand({3, 4, 2}), Catch::Contains("expand") && Catch::Contains("[3, 1]") &&
                                                 Catch::Contains("[3, 4, 2]"));
  REQUIRE_THROWS_WITH(col.expand({4}), Catch::Contains("expand") && Catch::Contains("[4]"));
  REQUIRE_THROWS_WITH(col.expand({-1, 3, 1}), Catch::Contains("expand") && Catch::Contains("[-1, 3, 1]"));
}

TEST_CASE("unsqueeze, squeeze and flatten", "[views]") {
  const Tensor<double> base = iota({3, 1, 4});
  CHECK(base.unsqueeze(0).shape() == Shape{1, 3, 1, 4});
  CHECK(base.unsqueeze(3).shape() == Shape{3, 1, 4, 1});
  CHECK(base.unsqueeze(-1).shape() == Shape{3, 1, 4, 1});
  CHECK(base.unsqueeze(-4).shape() == Shape{1, 3, 1, 4});
  CHECK(base.squeeze(1).shape() == Shape{3, 4});
  CHECK(base.squeeze(0).shape() == Shape{3, 1, 4});  // not a unit dim: unchanged
  CHECK(base.squeeze().shape() == Shape{3, 4});
  CHECK(iota({1, 1}).squeeze().shape() == Shape{});
  CHECK(Tensor<double>::scalar(1).squeeze(0).dim() == 0);
  CHECK(Tensor<double>::scalar(1).unsqueeze(0).shape() == Shape{1});
  // On non-contiguous inputs these are still views.
  const Tensor<double> t = iota({4, 3}).transpose(0, 1);  // [3, 4]
  CHECK(shares_storage(t.unsqueeze(1), t));
  CHECK(t.unsqueeze(1).to_vector() == t.to_vector());
  CHECK(t.unsqueeze(1).squeeze(1).strides() == t.strides());
  REQUIRE_THROWS_WITH(base.unsqueeze(4), Catch::Contains("unsqueeze"));
  REQUIRE_THROWS_WITH(base.squeeze(3), Catch::Contains("squeeze"));

  const Tensor<double> f = iota({2, 3, 4, 5});
  CHECK(f.flatten().shape() == Shape{120});
  CHECK(f.flatten(1).shape() == Shape{2, 60});
  CHECK(f.flatten(1, 2).shape() == Shape{2, 12, 5});
  CHECK(f.flatten(-2, -1).shape() == Shape{2, 3, 20});
  CHECK(f.flatten(2, 2).shape() == f.shape());
  CHECK(Tensor<double>::scalar(4).flatten().shape() == Shape{1});
  const Tensor<double> ft = f.transpose(0, 3).flatten(1, 2);  // copies: merged dims not contiguous
  CHECK(ft.to_vector() == expected_values(f, {5, 12, 2}, [](const Index& i) {
          return Index{i[2], i[1] / 4, i[1] % 4, i[0]};
        }));
  REQUIRE_THROWS_WITH(f.flatten(2, 1), Catch::Contains("flatten"));
}

// ---- views of views, shared storage, copies ----------------------------------------------------------

TEST_CASE("views of views address the right elements, writes through views reach the base", "[views]") {
  Tensor<double> base = iota({4, 6, 5});
  // [4, 6, 5] -> permute [5, 4, 6] -> slice dim 2 step 2 [5, 4, 3] -> select row 1 [4, 3] -> transpose [3, 4]
  const Tensor<double> v = base.permute({2, 0, 1}).slice(2, 1, 6, 2).select(0, 1).transpose(0, 1);
  CHECK(v.shape() == Shape{3, 4});
  CHECK(shares_storage(v, base));
  CHECK(v.to_vector() == expected_values(base, {3, 4}, [](const Index& i) { return Index{i[1], 1 + 2 * i[0], 1}; }));

  const uint64_t version = base.version();
  Tensor<double>(v).fill_(-1.0);  // a handle on the view: fill_ writes through it
  CHECK(base.version() > version);  // views share the version counter
  for (int64_t a = 0; a < 4; ++a)
    for (int64_t b = 0; b < 6; ++b)
      for (int64_t c = 0; c < 5; ++c) {
        const bool in_view = c == 1 && b % 2 == 1;
        CHECK((base.at({a, b, c}) == -1.0) == in_view);
      }
  Tensor<double> cell = base.select(0, 2).select(0, 3);  // [5]
  cell.at_mut({4}) = 42.0;
  CHECK(base.at({2, 3, 4}) == 42.0);
  // copy_ into a view broadcasts the source.
  Tensor<double> block = base.narrow(1, 0, 2).narrow(2, 2, 3);  // [4, 2, 3]
  block.copy_(Tensor<double>::from_vector({3}, {7, 8, 9}));
  CHECK(base.at({3, 1, 4}) == 9.0);
  CHECK(base.at({0, 0, 2}) == 7.0);
  CHECK(base.at({0, 2, 2}) != 7.0);
  // Writes into the base are visible in every view.
  base.at_mut({0, 1, 1}) = 1234.0;
  CHECK(v.at({0, 0}) == 1234.0);
}

TEST_CASE("contiguous() and clone() semantics", "[views]") {
  const Tensor<double> base = iota({3, 4});
  CHECK(shares_storage(base.contiguous(), base));  // already contiguous: itself
  const Tensor<double> narrowed = base.narrow(0, 1, 2);  // contiguous with an offset
  CHECK(narrowed.is_contiguous());
  CHECK(shares_storage(narrowed.contiguous(), base));
  const Tensor<double> t = base.transpose(0, 1);
  const Tensor<double> c = t.contiguous();
  CHECK_FALSE(shares_storage(c, base));
  CHECK(c.is_contiguous());
  CHECK(c.strides() == Strides{3, 1});
  CHECK(c.to_vector() == t.to_vector());
  // clone always copies, and the copy is independent.
  Tensor<double> k = base.clone();
  CHECK_FALSE(shares_storage(k, base));
  k.fill_(0.0);
  CHECK(base.at({2, 3}) == 11.0);
  const Tensor<double> e = iota({3, 1}).expand({3, 4}).clone();  // a stride-0 source becomes dense
  CHECK(e.strides() == Strides{4, 1});
  CHECK(e.to_vector() == std::vector<double>{0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2});
  // Unit dims with arbitrary strides do not break contiguity.
  CHECK(iota({3, 1}).transpose(0, 1).is_contiguous());
}

TEST_CASE("to<U>() converts element types", "[views][dtype]") {
  const Tensor<double> d = Tensor<double>::from_vector({2, 3}, {1.5, -2.75, 1e10, -0.0, 3.0000001, 65537.0});
  CHECK(shares_storage(d.to<double>(), d));  // same type: the same tensor
  const Tensor<float> f = d.to<float>();
  std::vector<double> ref;
  for (double v : d.to_vector()) ref.push_back(double(float(v)));
  loom::test::require_close(f, ref, {0, 0});
  // bf16 rounds to nearest even; widening back is exact.
  const Tensor<loom::bf16> b = d.to<loom::bf16>();
  const std::vector<loom::bf16> bits = b.to_vector();
  CHECK(bits[0].bits == 0x3fc0);                      // 1.5 exact
  CHECK(float(bits[5]) == 65536.f);                   // 65537 rounds to 65536 (8-bit significand)
  CHECK(b.to<float>().to_vector()[1] == -2.75f);      // -2.75 exact
  CHECK(std::signbit(b.to<double>().to_vector()[3]));  // -0 keeps its sign
  // Floating to integer truncates toward zero; integer to floating is exact for small values.
  CHECK(Tensor<double>::from_vector({4}, {2.7, -2.7, 0.2, 100.0}).to<int64_t>().to_vector() ==
        std::vector<int64_t>{2, -2, 0, 100});
  CHECK(Tensor<int32_t>::from_vector({3}, {-3, 0, 1 << 20}).to<double>().to_vector() ==
        std::vector<double>{-3, 0, double(1 << 20)});
  CHECK(Tensor<uint8_t>::from_vector({2}, {0, 255}).to<float>().to_vector() == std::vector<float>{0, 255});
  // A non-contiguous source converts in logical order.
  const Tensor<float> tf = iota({2, 3}).transpose(0, 1).to<float>();
  CHECK(tf.to_vector() == std::vector<float>{0, 3, 1, 4, 2, 5});
  CHECK(tf.is_contiguous());
}

TEST_CASE("copy_ broadcasts and converts, mismatched shapes name both", "[views][errors]") {
  Tensor<float> dst = Tensor<float>::zeros({2, 3});
  dst.copy_(Tensor<double>::from_vector({3}, {1, 2, 3}));
  CHECK(dst.to_vector() == std::vector<float>{1, 2, 3, 1, 2, 3});
  dst.copy_(Tensor<int64_t>::scalar(4));
  CHECK(dst.to_vector() == std::vector<float>(6, 4.f));
  REQUIRE_THROWS_WITH(dst.copy_(Tensor<float>::zeros({3, 2})), Catch::Contains("[2, 3]") && Catch::Contains("[3, 2]"));
  REQUIRE_THROWS_WITH(dst.copy_(Tensor<float>::zeros({2, 2, 3})),
                      Catch::Contains("copy_") && Catch::Contains("[2, 2, 3]") && Catch::Contains("[2, 3]"));
}

// ---- gradients ----------------------------------------------------------------------------------------

TEST_CASE("gradcheck of every view op, on contiguous and non-contiguous leaves", "[views][grad]") {
  using V = std::vector<Tensor<double>>;
  const Tensor<double> dense = iota({4, 3}, 0.37).requires_grad_();  // [4, 3]
  const Tensor<double> strided = transposed_leaf(4, 3);              // [4, 3] over a [3, 4] buffer
  REQUIRE_FALSE(strided.is_contiguous());
  for (const Tensor<double>& x : {dense, strided}) {
    INFO("leaf strides " << x.strides());
    if (x.is_contiguous()) require_gradcheck([](const V& in) { return in[0].view({2, 6}); }, {x});
    require_gradcheck([](const V& in) { return in[0].reshape({6, -1}); }, {x});  // copies for the strided leaf
    require_gradcheck([](const V& in) { return in[0].view({2, 2, 3}); }, {x});   // splitting dim 0 is a view
    require_gradcheck([](const V& in) { return in[0].permute({1, 0}); }, {x});
    require_gradcheck([](const V& in) { return in[0].transpose(0, 1); }, {x});
    require_gradcheck([](const V& in) { return in[0].slice(0, 1, 4, 2); }, {x});
    require_gradcheck([](const V& in) { return in[0].slice(1, -2, 3); }, {x});
    require_gradcheck([](const V& in) { return in[0].narrow(1, 1, 2); }, {x});
    require_gradcheck([](const V& in) { return in[0].select(0, -1); }, {x});
    require_gradcheck([](const V& in) { return in[0].unsqueeze(1); }, {x});
    require_gradcheck([](const V& in) { return in[0].unsqueeze(0).squeeze(0); }, {x});
    require_gradcheck([](const V& in) { return in[0].flatten(); }, {x});
    require_gradcheck([](const V& in) { return in[0].contiguous(); }, {x});
    require_gradcheck([](const V& in) { return in[0].clone(); }, {x});
    require_gradcheck([](const V& in) { return in[0].unsqueeze(0).expand({5, 4, 3}); }, {x});
    // A chain of views of views, ending in a copy.
    require_gradcheck(
        [](const V& in) {
          return in[0].transpose(0, 1).slice(1, 0, 4, 3).unsqueeze(0).expand({2, 3, 2}).reshape({-1});
        },
        {x});
  }
  // Broadcast inputs: expanding unit dims sums the gradient back.
  const Tensor<double> col = iota({3, 1}, 0.5).requires_grad_();
  require_gradcheck([](const V& in) { return in[0].expand({2, 3, 7}); }, {col});
  require_gradcheck([](const V& in) { return in[0].squeeze(); }, {iota({1, 3, 1}, 0.5).requires_grad_()});
  // The gradient of a view reused twice accumulates.
  require_gradcheck(
      [](const V& in) { return in[0].narrow(0, 0, 2).expand({2, 2, 3}).flatten(0, 1).slice(0, 1, 4); },
      {strided});
}

TEST_CASE("view gradients have the input's shape and land in the right places", "[views][grad]") {
  const Tensor<double> x = iota({3, 4}).requires_grad_();
  x.slice(1, 1, 4, 2).backward(Tensor<double>::ones({3, 2}));
  CHECK(x.grad().shape() == Shape{3, 4});
  CHECK(x.grad().to_vector() == std::vector<double>{0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1});
  x.zero_grad();
  x.select(0, 1).unsqueeze(0).expand({5, 4}).backward(Tensor<double>::ones({5, 4}));
  CHECK(x.grad().to_vector() == std::vector<double>{0, 0, 0, 0, 5, 5, 5, 5, 0, 0, 0, 0});
  // to<U>() passes gradients between floating types.
  const Tensor<double> y = Tensor<double>::from_vector({2}, {1.0, 2.0}).requires_grad_();
  y.to<float>().backward(Tensor<float>::from_vector({2}, {0.5f, -3.f}));
  CHECK(y.grad().to_vector() == std::vector<double>{0.5, -3.0});
  CHECK(y.to<float>().grad_fn_name() == "ToBackward");
  CHECK_FALSE(y.to<int64_t>().requires_grad());  // integers carry no gradient
}
