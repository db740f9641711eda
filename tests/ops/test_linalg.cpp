// matmul / bmm / linear against naive loops in double: odd sizes, K = 1, transposed operands (with
// a check that they are not copied), batch broadcasting, 1-D operands, bf16, errors, gradchecks.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "loom/autograd/gradcheck.hpp"
#include "loom/core/allocator.hpp"
#include "loom/ops/linalg.hpp"
#include "support/check.hpp"
#include "support/gradcheck.hpp"
#include "support/random.hpp"

namespace {

using loom::bf16;
using loom::Shape;
using loom::Tensor;
using loom::test::Tol;
using loom::test::random_leaf;
using loom::test::random_tensor;
using loom::test::require_close;
using loom::test::require_gradcheck;
using loom::test::to_double;
using loom::test::transposed_leaf;

// A tensor as a logical shape plus row-major values in double.
struct Dense {
  std::vector<int64_t> shape;
  std::vector<double> v;
};
template <class T>
Dense dense(const Tensor<T>& t) {
  return {t.shape().vec(), to_double(t)};
}

// Reference batched product for rank >= 2 operands with NumPy batch broadcasting, one output
// element at a time.
Dense ref_matmul(const Dense& a, const Dense& b) {
  const size_t ra = a.shape.size(), rb = b.shape.size();
  const int64_t M = a.shape[ra - 2], K = a.shape[ra - 1], N = b.shape[rb - 1];
  REQUIRE(b.shape[rb - 2] == K);
  const size_t nb = std::max(ra, rb) - 2;
  std::vector<int64_t> batch(nb), a_batch(nb, 1), b_batch(nb, 1);
  for (size_t i = 0; i < nb; ++i) {
    if (i + (ra - 2) >= nb) a_batch[i] = a.shape[i + (ra - 2) - nb];
    if (i + (rb - 2) >= nb) b_batch[i] = b.shape[i + (rb - 2) - nb];
    batch[i] = std::max(a_batch[i], b_batch[i]);
  }
  int64_t batch_count = 1;
  for (int64_t e : batch) batch_count *= e;
  Dense out;
  out.shape = batch;
  out.shape.push_back(M);
  out.shape.push_back(N);
  out.v.assign(size_t(batch_count * M * N), 0.0);
  for (int64_t flat = 0; flat < batch_count; ++flat) {
    // Decompose the output batch index, then clamp broadcast dims to 0 for each operand.
    int64_t rem = flat, ia = 0, ib = 0, sa = 1, sb = 1;
    for (size_t i = nb; i-- > 0;) {
      const int64_t idx = rem % batch[i];
      rem /= batch[i];
      ia += (a_batch[i] == 1 ? 0 : idx) * sa;
      ib += (b_batch[i] == 1 ? 0 : idx) * sb;
      sa *= a_batch[i];
      sb *= b_batch[i];
    }
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double acc = 0;
        for (int64_t k = 0; k < K; ++k) acc += a.v[size_t((ia * M + m) * K + k)] * b.v[size_t((ib * K + k) * N + n)];
        out.v[size_t((flat * M + m) * N + n)] = acc;
      }
  }
  return out;
}

// A float K-term dot product of values in [-1, 1] rounds K partial sums of size ~sqrt(K)/3; the
// errors add like a random walk, about K * u / 3 in all (u = 2^-24), whatever the final value:
// allow 2 K u absolute on top of the float default.
template <class T>
Tol product_tol(int64_t K) {
  if constexpr (std::is_same_v<T, float>) return {2 * double(std::max<int64_t>(K, 1)) * 0x1p-24, 1e-5};
  return loom::test::tol_for<T>();
}

// Bytes the allocator hands out for one fresh tensor of this shape (its rounding included).
template <class T>
int64_t allocation_bytes(const Shape& shape) {
  const int64_t before = loom::memory_stats().current_bytes;
  Tensor<T> probe = Tensor<T>::empty(shape);
  return loom::memory_stats().current_bytes - before;
}

// Peak bytes allocated above the current level while f runs (its result stays alive until then).
template <class F>
int64_t peak_extra_bytes(F&& f) {
  loom::reset_peak_memory();
  const int64_t before = loom::memory_stats().current_bytes;
  auto result = f();
  const int64_t peak = loom::memory_stats().peak_bytes;
  return peak - before;
}

template <class T>
void check_matmul(const Tensor<T>& a, const Tensor<T>& b) {
  INFO("a " << a.shape() << " strides " << a.strides() << ", b " << b.shape() << " strides " << b.strides());
  const Tensor<T> c = loom::matmul(a, b);
  const Dense ref = ref_matmul(dense(a), dense(b));
  REQUIRE(c.shape().vec() == ref.shape);
  require_close(c, ref.v, product_tol<T>(a.shape().back()));
}

}  // namespace

TEMPLATE_TEST_CASE("matmul 2-D x 2-D matches the naive product at odd sizes", "[linalg]", float, double) {
  const std::vector<std::array<int64_t, 3>> sizes = {{1, 1, 1}, {7, 1, 5}, {1, 97, 1}, {7, 97, 225},
                                                     {225, 7, 97}, {97, 225, 7}, {97, 225, 97}};
  uint32_t seed = 1;
  for (auto [M, K, N] : sizes) {
    check_matmul(random_tensor<TestType>({M, K}, seed), random_tensor<TestType>({K, N}, seed + 1));
    seed += 2;
  }
}

TEST_CASE("matmul on transposed views: right values and no copy of the operands", "[linalg]") {
  const int64_t M = 97, K = 225, N = 7;
  const Tensor<float> a_rows = random_tensor<float>({M, K}, 11), b_rows = random_tensor<float>({K, N}, 12);
  const Tensor<float> a_cols = random_tensor<float>({K, M}, 13).transpose(0, 1);  // [M, K], strides [1, M]
  const Tensor<float> b_cols = random_tensor<float>({N, K}, 14).transpose(0, 1);  // [K, N], strides [1, K]
  REQUIRE_FALSE(a_cols.is_contiguous());
  const int64_t out_bytes = allocation_bytes<float>({M, N});
  for (const Tensor<float>& a : {a_rows, a_cols})
    for (const Tensor<float>& b : {b_rows, b_cols}) {
      check_matmul(a, b);
      INFO("a strides " << a.strides() << ", b strides " << b.strides());
      CHECK(peak_extra_bytes([&] { return loom::matmul(a, b); }) == out_bytes);
    }
}

TEST_CASE("batched matmul with transposed last dims ([B, H, S, D] x [B, H, D, S]) copies nothing", "[linalg]") {
  const int64_t B = 2, H = 3, S = 97, D = 7;
  const Tensor<float> q = random_tensor<float>({B, H, S, D}, 21);
  const Tensor<float> k = random_tensor<float>({B, H, S, D}, 22);
  const Tensor<float> kt = k.transpose(-2, -1);  // [B, H, D, S]
  check_matmul(q, kt);
  CHECK(peak_extra_bytes([&] { return loom::matmul(q, kt); }) == allocation_bytes<float>({B, H, S, S}));
  // Batch dims out of order (a permuted view): strided batch runs, still no copy.
  const Tensor<float> base = random_tensor<float>({S, B, D}, 23);
  const Tensor<float> a = base.transpose(0, 1);  // [B, S, D], strides [D, B*D, 1]
  const Tensor<float> w = random_tensor<float>({B, D, 5}, 24);
  check_matmul(a, w);
  CHECK(peak_extra_bytes([&] { return loom::matmul(a, w); }) == allocation_bytes<float>({B, S, 5}));
}

TEST_CASE("matmul on irregular layouts (stepped columns, stride-0 rows) still gives the right values", "[linalg]") {
  const Tensor<double> stepped = random_tensor<double>({7, 18}, 31).slice(1, 0, 18, 2);  // [7, 9], strides [18, 2]
  check_matmul(stepped, random_tensor<double>({9, 5}, 32));
  const Tensor<float> row = random_tensor<float>({1, 9}, 33).expand({7, 9});  // strides [0, 1]
  check_matmul(random_tensor<float>({5, 7}, 34), row);
  check_matmul(row, random_tensor<float>({9, 5}, 35));
}

TEMPLATE_TEST_CASE("matmul broadcasts batch dims", "[linalg]", float, double) {
  using T = TestType;
  check_matmul(random_tensor<T>({2, 3, 7, 5}, 41), random_tensor<T>({5, 4}, 42));       // shared right operand
  check_matmul(random_tensor<T>({7, 5}, 43), random_tensor<T>({2, 3, 5, 4}, 44));       // shared left operand
  check_matmul(random_tensor<T>({2, 1, 7, 5}, 45), random_tensor<T>({3, 5, 4}, 46));    // both broadcast
  check_matmul(random_tensor<T>({1, 7, 5}, 47), random_tensor<T>({4, 5, 9}, 48));       // extent-1 batch
  check_matmul(random_tensor<T>({1, 1, 1}, 49), random_tensor<T>({1, 1, 1}, 50));       // all ones
  check_matmul(random_tensor<T>({3, 7, 1}, 51), random_tensor<T>({3, 1, 225}, 52));     // K = 1
  // Expanded (stride-0) batch inputs are read in place, not materialized.
  const Tensor<T> shared = random_tensor<T>({1, 7, 5}, 53).expand({4, 7, 5});
  const Tensor<T> per_batch = random_tensor<T>({4, 5, 3}, 54);
  check_matmul(shared, per_batch);
  check_matmul(per_batch.transpose(-2, -1), shared.transpose(-2, -1));
  CHECK(peak_extra_bytes([&] { return loom::matmul(shared, per_batch); }) == allocation_bytes<T>({4, 7, 3}));
}

TEST_CASE("empty products: K = 0 gives zeros (or the bias), empty extents give empty results", "[linalg]") {
  const Tensor<float> zero_k = loom::matmul(Tensor<float>::ones({3, 0}), Tensor<float>::ones({0, 4}));
  REQUIRE(zero_k.shape() == Shape{3, 4});
  require_close(zero_k, std::vector<double>(12, 0.0), {0, 0});
  REQUIRE(loom::matmul(Tensor<float>::ones({0, 3}), Tensor<float>::ones({3, 4})).shape() == Shape{0, 4});
  REQUIRE(loom::matmul(Tensor<double>::ones({2, 0, 7, 3}), Tensor<double>::ones({3, 4})).shape() == Shape{2, 0, 7, 4});
  const Tensor<float> bias = random_tensor<float>({3}, 55);
  const auto bv = to_double(bias);
  const Tensor<float> only_bias = loom::linear(Tensor<float>::ones({2, 0}), Tensor<float>::ones({3, 0}), bias);
  require_close(only_bias, {bv[0], bv[1], bv[2], bv[0], bv[1], bv[2]}, {0, 0});
}

TEST_CASE("matmul with 1-D operands follows torch.matmul", "[linalg]") {
  const Tensor<double> v = random_tensor<double>({97}, 61), w = random_tensor<double>({97}, 62);
  const Tensor<double> m = random_tensor<double>({7, 97}, 63), n = random_tensor<double>({97, 5}, 64);
  const auto vv = to_double(v), wv = to_double(w), mv = to_double(m), nv = to_double(n);

  const Tensor<double> dot = loom::matmul(v, w);
  REQUIRE(dot.dim() == 0);
  double ref_dot = 0;
  for (size_t k = 0; k < 97; ++k) ref_dot += vv[k] * wv[k];
  require_close(dot, {ref_dot});

  std::vector<double> ref_mv(7, 0.0), ref_vm(5, 0.0);
  for (size_t i = 0; i < 7; ++i)
    for (size_t k = 0; k < 97; ++k) ref_mv[i] += mv[i * 97 + k] * vv[k];
  for (size_t j = 0; j < 5; ++j)
    for (size_t k = 0; k < 97; ++k) ref_vm[j] += vv[k] * nv[k * 5 + j];
  const Tensor<double> matvec = loom::matmul(m, v), vecmat = loom::matmul(v, n);
  REQUIRE(matvec.shape() == Shape{7});
  REQUIRE(vecmat.shape() == Shape{5});
  require_close(matvec, ref_mv);
  require_close(vecmat, ref_vm);

  // Batched matrix x vector and vector x batched matrix.
  const Tensor<double> batch_m = random_tensor<double>({2, 3, 7, 97}, 65);
  const Tensor<double> bmv = loom::matmul(batch_m, v);
  REQUIRE(bmv.shape() == Shape{2, 3, 7});
  Dense v_col{{97, 1}, vv};
  require_close(bmv, ref_matmul(dense(batch_m), v_col).v);
  const Tensor<double> batch_n = random_tensor<double>({2, 97, 5}, 66);
  const Tensor<double> vbm = loom::matmul(v, batch_n);
  REQUIRE(vbm.shape() == Shape{2, 5});
  Dense v_row{{1, 97}, vv};
  require_close(vbm, ref_matmul(v_row, dense(batch_n)).v);
  // A strided vector (every other element).
  const Tensor<double> strided = random_tensor<double>({194}, 67).slice(0, 0, 194, 2);
  const Dense s_col{{97, 1}, to_double(strided)};
  require_close(loom::matmul(m, strided), ref_matmul(dense(m), s_col).v);
}

TEST_CASE("bmm multiplies matching batches", "[linalg]") {
  const Tensor<float> a = random_tensor<float>({3, 7, 97}, 71);
  const Tensor<float> b = random_tensor<float>({3, 5, 97}, 72).transpose(1, 2);  // [3, 97, 5]
  const Tensor<float> c = loom::bmm(a, b);
  REQUIRE(c.shape() == Shape{3, 7, 5});
  require_close(c, ref_matmul(dense(a), dense(b)).v, product_tol<float>(97));
}

TEST_CASE("bf16 matmul multiplies in fp32 and rounds once", "[linalg][bf16]") {
  const Tensor<bf16> a = random_tensor<bf16>({2, 7, 97}, 81);
  const Tensor<bf16> b = random_tensor<bf16>({5, 97}, 82).transpose(0, 1);  // [97, 5]
  const Tensor<bf16> c = loom::matmul(a, b);
  REQUIRE(c.shape() == Shape{2, 7, 5});
  require_close(c, ref_matmul(dense(a), dense(b)).v);  // bf16 tolerance: one rounding of the result
  const Tensor<bf16> x = random_tensor<bf16>({7, 97}, 83), w = random_tensor<bf16>({5, 97}, 84);
  const Tensor<bf16> bias = random_tensor<bf16>({5}, 85);
  Dense ref = ref_matmul(dense(x), dense(w.transpose(0, 1)));
  const auto bv = to_double(bias);
  for (size_t i = 0; i < ref.v.size(); ++i) ref.v[i] += bv[i % 5];
  require_close(loom::linear(x, w, bias), ref.v);
}

TEST_CASE("matmul rejects bad shapes naming both", "[linalg][errors]") {
  const Tensor<float> a = Tensor<float>::zeros({3, 4}), b = Tensor<float>::zeros({5, 2});
  REQUIRE_THROWS_AS(loom::matmul(a, b), loom::Error);
  REQUIRE_THROWS_WITH(loom::matmul(a, b), Catch::Contains("matmul") && Catch::Contains("[3, 4]") &&
                                               Catch::Contains("[5, 2]") && Catch::Contains("inner"));
  REQUIRE_THROWS_WITH(loom::matmul(Tensor<float>::zeros({4}), Tensor<float>::zeros({5})),
                      Catch::Contains("[4]") && Catch::Contains("[5]"));
  REQUIRE_THROWS_WITH(loom::matmul(Tensor<float>::zeros({2, 3, 4}), Tensor<float>::zeros({5})),
                      Catch::Contains("[2, 3, 4]") && Catch::Contains("[5]"));
  REQUIRE_THROWS_WITH(loom::matmul(Tensor<float>::zeros({2, 3, 4}), Tensor<float>::zeros({3, 4, 2})),
                      Catch::Contains("batch") && Catch::Contains("[2, 3, 4]") && Catch::Contains("[3, 4, 2]"));
  REQUIRE_THROWS_WITH(loom::matmul(Tensor<float>::scalar(1.f), Tensor<float>::zeros({3})),
                      Catch::Contains("matmul") && Catch::Contains("[]") && Catch::Contains("[3]"));

  REQUIRE_THROWS_WITH(loom::bmm(Tensor<float>::zeros({2, 3, 4}), Tensor<float>::zeros({4, 5})),
                      Catch::Contains("bmm") && Catch::Contains("[2, 3, 4]") && Catch::Contains("[4, 5]"));
  REQUIRE_THROWS_WITH(loom::bmm(Tensor<float>::zeros({2, 3, 4}), Tensor<float>::zeros({3, 4, 5})),
                      Catch::Contains("batch") && Catch::Contains("[2, 3, 4]") && Catch::Contains("[3, 4, 5]"));
  REQUIRE_THROWS_WITH(loom::bmm(Tensor<float>::zeros({2, 3, 4}), Tensor<float>::zeros({2, 5, 4})),
                      Catch::Contains("inner") && Catch::Contains("[2, 3, 4]") && Catch::Contains("[2, 5, 4]"));

  const Tensor<float> w = Tensor<float>::zeros({4, 3});
  REQUIRE_THROWS_AS(loom::linear(Tensor<float>::zeros({2, 5}), w), loom::Error);
  REQUIRE_THROWS_WITH(loom::linear(Tensor<float>::zeros({2, 5}), w),
                      Catch::Contains("linear") && Catch::Contains("[2, 5]") && Catch::Contains("[4, 3]"));
  REQUIRE_THROWS_WITH(loom::linear(Tensor<float>::zeros({2, 3}), Tensor<float>::zeros({4, 3, 1})),
                      Catch::Contains("2-D") && Catch::Contains("[4, 3, 1]"));
  REQUIRE_THROWS_WITH(loom::linear(Tensor<float>::zeros({2, 3}), w, Tensor<float>::zeros({3})),
                      Catch::Contains("bias") && Catch::Contains("[3]") && Catch::Contains("[4, 3]"));
}

TEMPLATE_TEST_CASE("linear = x W^T + b with the bias fused and W read in place", "[linalg]", float, double) {
  using T = TestType;
  const int64_t in = 97, out = 7;
  const Tensor<T> w = random_tensor<T>({out, in}, 91), bias = random_tensor<T>({out}, 92);
  const Tensor<T> x3 = random_tensor<T>({2, 5, in}, 93);
  const Tensor<T> x_permuted = random_tensor<T>({5, 2, in}, 94).transpose(0, 1);  // rows not one sequence
  const Tensor<T> x1 = random_tensor<T>({in}, 95);
  const Tensor<T> w_t = w.transpose(0, 1);
  for (const Tensor<T>& x : {x3, x_permuted, x1}) {
    INFO("x " << x.shape() << " strides " << x.strides());
    Dense ref = ref_matmul(x.dim() == 1 ? Dense{{1, in}, to_double(x)} : dense(x), dense(w_t));
    require_close(loom::linear(x, w), ref.v, product_tol<T>(in));
    const auto bv = to_double(bias);
    for (size_t i = 0; i < ref.v.size(); ++i) ref.v[i] += bv[i % size_t(out)];
    const Tensor<T> y = loom::linear(x, w, bias);
    Shape expected = x.shape();
    expected[expected.size() - 1] = out;
    REQUIRE(y.shape() == expected);
    require_close(y, ref.v, product_tol<T>(in));
    CHECK(peak_extra_bytes([&] { return loom::linear(x, w, bias); }) == allocation_bytes<T>(expected));
  }
  // A strided bias (every other element) and K = 1.
  const Tensor<T> strided_bias = random_tensor<T>({2 * out}, 96).slice(0, 0, 2 * out, 2);
  const Tensor<T> xk = random_tensor<T>({225, 1}, 97), wk = random_tensor<T>({out, 1}, 98);
  Dense ref = ref_matmul(dense(xk), dense(wk.transpose(0, 1)));
  const auto bv = to_double(strided_bias);
  for (size_t i = 0; i < ref.v.size(); ++i) ref.v[i] += bv[i % size_t(out)];
  require_close(loom::linear(xk, wk, strided_bias), ref.v, product_tol<T>(1));
}

TEST_CASE("linear backward in float matches reference gradients", "[linalg][autograd]") {
  const int64_t rows = 97, in = 225, out = 7;
  Tensor<float> x = random_tensor<float>({rows, in}, 101), w = random_tensor<float>({out, in}, 102),
                b = random_tensor<float>({out}, 103);
  x.requires_grad_();
  w.requires_grad_();
  b.requires_grad_();
  const Tensor<float> g = random_tensor<float>({rows, out}, 104);
  loom::linear(x, w, b).backward(g);
  const auto xv = to_double(x), wv = to_double(w), gv = to_double(g);
  std::vector<double> dx(size_t(rows * in), 0.0), dw(size_t(out * in), 0.0), db(size_t(out), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      const double go = gv[size_t(r * out + o)];
      db[size_t(o)] += go;
      for (int64_t i = 0; i < in; ++i) {
        dx[size_t(r * in + i)] += go * wv[size_t(o * in + i)];
        dw[size_t(o * in + i)] += go * xv[size_t(r * in + i)];
      }
    }
  require_close(x.grad(), dx, product_tol<float>(out));
  require_close(w.grad(), dw, product_tol<float>(rows));
  require_close(b.grad(), db, product_tol<float>(rows));
}

TEST_CASE("gradcheck: matmul 2-D, transposed leaves, 1-D cases", "[linalg][autograd]") {
  auto mm = [](const std::vector<Tensor<double>>& in) { return loom::matmul(in[0], in[1]); };
  require_gradcheck(mm, {random_leaf({7, 5}, 111), random_leaf({5, 3}, 112)});
  require_gradcheck(mm, {transposed_leaf(7, 5, 113), transposed_leaf(5, 3, 114)});
  require_gradcheck(mm, {random_leaf({1, 1}, 115), random_leaf({1, 7}, 116)});
  require_gradcheck(mm, {random_leaf({5}, 117), random_leaf({5}, 118)});
  require_gradcheck(mm, {random_leaf({4, 5}, 119), random_leaf({5}, 120)});
  require_gradcheck(mm, {random_leaf({5}, 121), random_leaf({2, 5, 3}, 122)});
  // Only one side requires grad.
  require_gradcheck(mm, {random_leaf({3, 5}, 123), random_tensor<double>({5, 2}, 124)});
  require_gradcheck(mm, {random_tensor<double>({3, 5}, 125), random_leaf({5, 2}, 126)});
}

TEST_CASE("gradcheck: batched matmul with broadcasting and expanded operands", "[linalg][autograd]") {
  auto mm = [](const std::vector<Tensor<double>>& in) { return loom::matmul(in[0], in[1]); };
  require_gradcheck(mm, {random_leaf({2, 3, 4, 5}, 131), random_leaf({5, 3}, 132)});     // shared B: folded dB
  require_gradcheck(mm, {random_leaf({4, 5}, 133), random_leaf({2, 5, 3}, 134)});        // shared A: summed dA
  require_gradcheck(mm, {random_leaf({3, 1, 4, 5}, 135), random_leaf({2, 5, 3}, 136)});  // both broadcast
  require_gradcheck(mm, {random_leaf({2, 4, 5}, 137), random_tensor<double>({2, 3, 5}, 138).transpose(1, 2).detach().requires_grad_()});
  require_gradcheck(
      [](const std::vector<Tensor<double>>& in) { return loom::matmul(in[0].expand({3, 4, 5}), in[1]); },
      {random_leaf({1, 4, 5}, 139), random_leaf({3, 5, 2}, 140)});
  require_gradcheck([](const std::vector<Tensor<double>>& in) { return loom::bmm(in[0], in[1]); },
                    {random_leaf({2, 4, 5}, 141), random_leaf({2, 5, 3}, 142)});
}

TEST_CASE("gradcheck: linear with and without bias, batched and strided inputs", "[linalg][autograd]") {
  auto lin = [](const std::vector<Tensor<double>>& in) { return loom::linear(in[0], in[1], in[2]); };
  auto lin_nobias = [](const std::vector<Tensor<double>>& in) { return loom::linear(in[0], in[1]); };
  require_gradcheck(lin, {random_leaf({7, 5}, 151), random_leaf({3, 5}, 152), random_leaf({3}, 153)});
  require_gradcheck(lin, {random_leaf({2, 3, 5}, 154), random_leaf({4, 5}, 155), random_leaf({4}, 156)});
  require_gradcheck(lin, {random_leaf({5}, 157), random_leaf({4, 5}, 158), random_leaf({4}, 159)});
  require_gradcheck(lin, {transposed_leaf(6, 5, 160), transposed_leaf(4, 5, 161), random_leaf({4}, 162)});
  require_gradcheck(lin, {random_tensor<double>({3, 2, 5}, 163).transpose(0, 1).detach().requires_grad_(),
                          random_leaf({4, 5}, 164), random_leaf({4}, 165)});
  require_gradcheck(lin_nobias, {random_leaf({6, 5}, 166), random_leaf({4, 5}, 167)});
  require_gradcheck(lin, {random_tensor<double>({6, 5}, 168), random_leaf({4, 5}, 169), random_tensor<double>({4}, 170)});
}

// The bias gradient sums dy over rows in fixed row blocks (loom::detail::sum_rows); these sizes
// span several blocks (block = 32768 / cols rows) with a partial last block, and an upstream
// gradient that is a transposed view takes the column-split path.
TEMPLATE_TEST_CASE("linear: bias gradient over many rows (row-blocked column sums)", "[linalg][autograd]", float, bf16) {
  using T = TestType;
  for (const int64_t out : {int64_t(1), int64_t(7), int64_t(97)}) {
    const int64_t rows = 32768 / out * 2 + 225, in = 3;
    const Tensor<T> x = random_tensor<T>({rows, in}, 201), w = random_tensor<T>({out, in}, 202);
    Tensor<T> bias = random_tensor<T>({out}, 203);
    bias.requires_grad_();
    const Tensor<T> g = random_tensor<T>({rows, out}, 204);  // [rows, out]
    loom::linear(x, w, bias).backward(g);
    std::vector<double> ref(static_cast<size_t>(out), 0.0);
    const auto gv = to_double(g);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < out; ++c) ref[size_t(c)] += gv[size_t(r * out + c)];
    // float: double accumulation, one rounding; bf16: one rounding of the result to 8 bits.
    require_close(bias.grad(), ref, std::is_same_v<T, float> ? Tol{1e-4, 1e-6} : Tol{1e-2, 8e-3});
    // The same sums from a transposed view (unit row stride): the column-split path.
    const Tensor<T> gt = random_tensor<T>({out, rows}, 205);  // [out, rows]
    const auto gtv = to_double(gt);
    bias.zero_grad();
    loom::linear(x, w, bias).backward(gt.transpose(0, 1));
    std::vector<double> ref_t(static_cast<size_t>(out), 0.0);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < out; ++c) ref_t[size_t(c)] += gtv[size_t(c * rows + r)];
    require_close(bias.grad(), ref_t, std::is_same_v<T, float> ? Tol{1e-4, 1e-6} : Tol{1e-2, 8e-3});
  }
}
