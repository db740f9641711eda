// Fused attention (scaled_dot_product_attention) against a naive double loop and against
// attention_reference (the unfused matmul/softmax/matmul composition): O, dQ, dK, dV on odd sizes,
// non-contiguous and expanded inputs, custom scale, large scores, gradcheck, determinism, errors,
// bf16, and peak memory that does not grow with S².
#include <catch2/catch.hpp>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "loom/autograd/gradcheck.hpp"
#include "loom/core/allocator.hpp"
#include "loom/core/parallel.hpp"
#include "loom/core/random.hpp"
#include "loom/ops/attention.hpp"
#include "loom/ops/reduce.hpp"
#include "support/check.hpp"

using loom::Tensor;
using loom::test::require_close;
using loom::test::to_double;
using loom::test::Tol;

namespace {

struct Sizes {
  int64_t b, h, sq, sk, d, dv;
};

// Everything the naive loop computes, [B, H, S, D] in row-major logical order.
struct Naive {
  std::vector<double> o, dq, dk, dv, scores;  // scores [B, H, Sq, Sk] (scaled)
};

// softmax(scale·q·kᵀ)·v and its gradients for output gradient dout, by plain loops in double.
Naive naive_attention(const Sizes& n, const std::vector<double>& q, const std::vector<double>& k,
                      const std::vector<double>& v, const std::vector<double>& dout, double scale) {
  Naive r;
  const int64_t heads = n.b * n.h;
  r.o.assign(size_t(heads * n.sq * n.dv), 0.0);
  r.dq.assign(size_t(heads * n.sq * n.d), 0.0);
  r.dk.assign(size_t(heads * n.sk * n.d), 0.0);
  r.dv.assign(size_t(heads * n.sk * n.dv), 0.0);
  r.scores.assign(size_t(heads * n.sq * n.sk), 0.0);
  std::vector<double> p(size_t(n.sk)), dp(size_t(n.sk));
  for (int64_t hd = 0; hd < heads; ++hd) {
    const double* Q = q.data() + hd * n.sq * n.d;
    const double* K = k.data() + hd * n.sk * n.d;
    const double* V = v.data() + hd * n.sk * n.dv;
    const double* G = dout.data() + hd * n.sq * n.dv;
    for (int64_t i = 0; i < n.sq; ++i) {
      double top = -INFINITY;
      for (int64_t j = 0; j < n.sk; ++j) {
        double s = 0;
        for (int64_t c = 0; c < n.d; ++c) s += Q[i * n.d + c] * K[j * n.d + c];
        p[size_t(j)] = s * scale;
        r.scores[size_t((hd * n.sq + i) * n.sk + j)] = s * scale;
        top = std::max(top, p[size_t(j)]);
      }
      double total = 0;
      for (int64_t j = 0; j < n.sk; ++j) total += (p[size_t(j)] = std::exp(p[size_t(j)] - top));
      for (int64_t j = 0; j < n.sk; ++j) p[size_t(j)] /= total;
      // o_i = sum_j p_j v_j;  dv_j += p_j g_i;  dp_j = g_i · v_j
      double p_dot_dp = 0;
      for (int64_t j = 0; j < n.sk; ++j) {
        double dpj = 0;
        for (int64_t c = 0; c < n.dv; ++c) {
          r.o[size_t((hd * n.sq + i) * n.dv + c)] += p[size_t(j)] * V[j * n.dv + c];
          r.dv[size_t((hd * n.sk + j) * n.dv + c)] += p[size_t(j)] * G[i * n.dv + c];
          dpj += G[i * n.dv + c] * V[j * n.dv + c];
        }
        dp[size_t(j)] = dpj;
        p_dot_dp += p[size_t(j)] * dpj;
      }
      // ds_j = p_j (dp_j − Σ p dp);  dq_i += scale ds_j k_j;  dk_j += scale ds_j q_i
      for (int64_t j = 0; j < n.sk; ++j) {
        const double ds = p[size_t(j)] * (dp[size_t(j)] - p_dot_dp) * scale;
        for (int64_t c = 0; c < n.d; ++c) {
          r.dq[size_t((hd * n.sq + i) * n.d + c)] += ds * K[j * n.d + c];
          r.dk[size_t((hd * n.sk + j) * n.d + c)] += ds * Q[i * n.d + c];
        }
      }
    }
  }
  return r;
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

template <class T>
Tensor<T> leaf(const Tensor<T>& t) {
  return t.detach().requires_grad_();
}

// Runs forward and backward with output gradient dout; returns {o, dq, dk, dv} as doubles.
template <class T, class F>
std::vector<std::vector<double>> run(F attention, const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v,
                                     const Tensor<T>& dout) {
  for (const auto* x : {&q, &k, &v}) x->zero_grad();
  const Tensor<T> o = attention(q, k, v);
  o.backward(dout);
  return {to_double(o), to_double(q.grad()), to_double(k.grad()), to_double(v.grad())};
}

const auto fused = [](const auto& q, const auto& k, const auto& v) { return loom::scaled_dot_product_attention(q, k, v); };
const auto reference = [](const auto& q, const auto& k, const auto& v) { return loom::attention_reference(q, k, v); };

// Float tolerance for results built from O(D + Sk) float products and sums of magnitude ~1.
constexpr Tol kFloatTol{2e-5, 1e-4};

void check_against_naive_and_reference(const Sizes& n) {
  loom::Generator gen(uint64_t(n.sq * 1000 + n.sk * 10 + n.d));
  const Tensor<float> q = leaf(loom::randn<float>({n.b, n.h, n.sq, n.d}, gen));
  const Tensor<float> k = leaf(loom::randn<float>({n.b, n.h, n.sk, n.d}, gen));
  const Tensor<float> v = leaf(loom::randn<float>({n.b, n.h, n.sk, n.dv}, gen));
  const Tensor<float> dout = loom::randn<float>({n.b, n.h, n.sq, n.dv}, gen);
  const Naive want = naive_attention(n, to_double(q), to_double(k), to_double(v), to_double(dout),
                                     1 / std::sqrt(double(n.d)));
  const auto got = run<float>(fused, q, k, v, dout);
  INFO("Sq " << n.sq << " Sk " << n.sk << " D " << n.d << " Dv " << n.dv);
  require_close(got[0], want.o, kFloatTol);
  require_close(got[1], want.dq, kFloatTol);
  require_close(got[2], want.dk, kFloatTol);
  require_close(got[3], want.dv, kFloatTol);
  const auto ref = run<float>(reference, q, k, v, dout);
  for (size_t i = 0; i < 4; ++i) require_close(got[i], ref[i], kFloatTol);
}

}  // namespace

TEST_CASE("attention tiles: block ranges, key-block groups, online softmax", "[attention]") {
  namespace tiles = loom::attention_tiles;
  for (int64_t n : {1, 7, 96, 97, 225}) {
    const int64_t count = tiles::block_count(n, 96);
    int64_t next = 0;
    for (int64_t b = 0; b < count; ++b) {  // blocks tile [0, n) in order, all but the last full
      const tiles::BlockRange r = tiles::block_range(b, 96, n);
      REQUIRE(r.begin == next);
      REQUIRE(r.size() == (b + 1 < count ? 96 : n - 96 * (count - 1)));
      next = r.end;
    }
    REQUIRE(next == n);
    for (int64_t groups = 1; groups <= count; ++groups) {  // groups cover the blocks, none empty
      int64_t covered = 0;
      for (int64_t g = 0; g < groups; ++g) {
        const tiles::BlockRange r = tiles::group_range(g, groups, count);
        REQUIRE(r.begin == covered);
        REQUIRE(r.size() >= 1);
        covered = r.end;
      }
      REQUIRE(covered == count);
    }
  }
  // Folding blocks of scores one at a time gives the row's log-sum-exp, and the rescale factors
  // turn a running sum of weighted values into the softmax average.
  const std::vector<double> scores{3.0, -1.0, 250.0, 249.5, -1e3, 7.0, 251.0};
  const std::vector<double> values{1, 2, 3, 4, 5, 6, 7};
  tiles::OnlineSoftmax<double> state;
  double acc = 0;
  for (size_t b0 = 0; b0 < scores.size(); b0 += 3) {
    const size_t b1 = std::min(scores.size(), b0 + 3);
    double block_max = -INFINITY;
    for (size_t j = b0; j < b1; ++j) block_max = std::max(block_max, scores[j]);
    const double rescale = tiles::rescale_for_tile(state, block_max);
    const double m = state.max;
    double block_sum = 0, block_acc = 0;
    for (size_t j = b0; j < b1; ++j) {
      block_sum += std::exp(scores[j] - m);
      block_acc += std::exp(scores[j] - m) * values[j];
    }
    tiles::accumulate_weight_sum(state, block_sum);
    acc = acc * rescale + block_acc;
  }
  double top = -INFINITY, total = 0, weighted = 0;
  for (double x : scores) top = std::max(top, x);
  for (size_t j = 0; j < scores.size(); ++j) {
    total += std::exp(scores[j] - top);
    weighted += std::exp(scores[j] - top) * values[j];
  }
  require_close(std::vector<double>{tiles::log_sum_exp(state), acc / state.sum},
                {top + std::log(total), weighted / total}, {1e-12, 1e-12});
  // An empty state starting an all -inf tile rescales by exactly 0 instead of exp(-inf + inf) = NaN.
  tiles::OnlineSoftmax<float> empty;
  REQUIRE(tiles::rescale_for_tile(empty, -INFINITY) == 0.f);
  REQUIRE(empty.sum == 0.f);
}

TEST_CASE("attention: fused matches the naive loop and the reference on odd sizes", "[attention]") {
  for (const Sizes& n : {Sizes{1, 1, 1, 1, 40, 40}, Sizes{1, 2, 7, 97, 59, 59}, Sizes{1, 1, 97, 7, 64, 64},
                         Sizes{1, 3, 113, 200, 40, 40}, Sizes{1, 1, 200, 113, 64, 64}, Sizes{2, 1, 200, 200, 59, 59},
                         Sizes{1, 2, 65, 129, 64, 23}})
    check_against_naive_and_reference(n);
}

TEST_CASE("attention: double matches the naive loop tightly", "[attention]") {
  const Sizes n{1, 2, 97, 130, 59, 40};
  loom::Generator gen(7);
  const Tensor<double> q = leaf(loom::randn<double>({n.b, n.h, n.sq, n.d}, gen));
  const Tensor<double> k = leaf(loom::randn<double>({n.b, n.h, n.sk, n.d}, gen));
  const Tensor<double> v = leaf(loom::randn<double>({n.b, n.h, n.sk, n.dv}, gen));
  const Tensor<double> dout = loom::randn<double>({n.b, n.h, n.sq, n.dv}, gen);
  const Naive want = naive_attention(n, to_double(q), to_double(k), to_double(v), to_double(dout),
                                     1 / std::sqrt(double(n.d)));
  const auto got = run<double>(fused, q, k, v, dout);
  const Tol tol{1e-12, 1e-10};
  require_close(got[0], want.o, tol);
  require_close(got[1], want.dq, tol);
  require_close(got[2], want.dk, tol);
  require_close(got[3], want.dv, tol);
}

TEST_CASE("attention: non-contiguous and expanded inputs", "[attention]") {
  const Sizes n{2, 3, 75, 170, 40, 40};
  loom::Generator gen(11);
  // q: [B, Sq, H, D] transposed (row stride H·D); k: narrowed from a wider head dim (row stride
  // 48); v: stored [B, H, Dv, Sk] and transposed (inner stride != 1: copied by the kernel).
  const Tensor<float> q = leaf(loom::randn<float>({n.b, n.sq, n.h, n.d}, gen).transpose(1, 2));
  const Tensor<float> k = leaf(loom::randn<float>({n.b, n.h, n.sk, 48}, gen).narrow(3, 5, n.d));
  const Tensor<float> v = leaf(loom::randn<float>({n.b, n.h, n.dv, n.sk}, gen).transpose(2, 3));
  REQUIRE(!q.is_contiguous());
  REQUIRE(!k.is_contiguous());
  REQUIRE(!v.is_contiguous());
  const Tensor<float> dout = loom::randn<float>({n.b, n.h, n.dv, n.sq}, gen).transpose(2, 3);  // strided dO too
  const Naive want = naive_attention(n, to_double(q), to_double(k), to_double(v), to_double(dout),
                                     1 / std::sqrt(double(n.d)));
  const auto got = run<float>(fused, q, k, v, dout);
  require_close(got[0], want.o, kFloatTol);
  require_close(got[1], want.dq, kFloatTol);
  require_close(got[2], want.dk, kFloatTol);
  require_close(got[3], want.dv, kFloatTol);

  SECTION("the qkv slices nn::Attention passes") {
    const Tensor<float> qkv = leaf(loom::randn<float>({n.b, n.sq, 3, n.h, n.d}, gen));
    const Tensor<float> heads = qkv.permute({2, 0, 3, 1, 4});  // [3, B, H, N, D]
    const Tensor<float> o = loom::scaled_dot_product_attention(heads.select(0, 0), heads.select(0, 1), heads.select(0, 2));
    const Tensor<float> g = loom::randn<float>(o.shape(), gen);
    o.backward(g);
    const Tensor<float> qkv_ref = leaf(qkv);
    const Tensor<float> heads_ref = qkv_ref.permute({2, 0, 3, 1, 4});
    const Tensor<float> o_ref = loom::attention_reference(heads_ref.select(0, 0), heads_ref.select(0, 1), heads_ref.select(0, 2));
    o_ref.backward(g);
    require_close(o, to_double(o_ref), kFloatTol);
    require_close(qkv.grad(), to_double(qkv_ref.grad()), kFloatTol);
  }

  SECTION("stride-0 (expanded) keys and values shared by every batch and head") {
    const Tensor<float> k1 = leaf(loom::randn<float>({1, 1, n.sk, n.d}, gen));
    const Tensor<float> v1 = leaf(loom::randn<float>({1, 1, n.sk, n.dv}, gen));
    const Tensor<float> q2 = leaf(q);
    const Tensor<float> o = loom::scaled_dot_product_attention(q2, k1.expand({n.b, n.h, n.sk, n.d}),
                                                               v1.expand({n.b, n.h, n.sk, n.dv}));
    o.backward(dout);
    // Naive on the materialized copies; the leaves' gradients sum over batch and heads.
    const Tensor<float> kx = k1.expand({n.b, n.h, n.sk, n.d}).contiguous(), vx = v1.expand({n.b, n.h, n.sk, n.dv}).contiguous();
    const Naive w = naive_attention(n, to_double(q2), to_double(kx), to_double(vx), to_double(dout),
                                    1 / std::sqrt(double(n.d)));
    std::vector<double> dk_sum(size_t(n.sk * n.d), 0.0), dv_sum(size_t(n.sk * n.dv), 0.0);
    for (size_t i = 0; i < w.dk.size(); ++i) dk_sum[i % dk_sum.size()] += w.dk[i];
    for (size_t i = 0; i < w.dv.size(); ++i) dv_sum[i % dv_sum.size()] += w.dv[i];
    require_close(o, w.o, kFloatTol);
    require_close(q2.grad(), w.dq, kFloatTol);
    require_close(k1.grad(), dk_sum, kFloatTol);
    require_close(v1.grad(), dv_sum, kFloatTol);
  }
}

TEST_CASE("attention: custom scale", "[attention]") {
  const Sizes n{1, 2, 33, 190, 59, 17};
  loom::Generator gen(5);
  const Tensor<float> q = leaf(loom::randn<float>({n.b, n.h, n.sq, n.d}, gen));
  const Tensor<float> k = leaf(loom::randn<float>({n.b, n.h, n.sk, n.d}, gen));
  const Tensor<float> v = leaf(loom::randn<float>({n.b, n.h, n.sk, n.dv}, gen));
  const Tensor<float> dout = loom::randn<float>({n.b, n.h, n.sq, n.dv}, gen);
  for (double scale : {0.37, -0.2}) {
    const Naive want = naive_attention(n, to_double(q), to_double(k), to_double(v), to_double(dout), scale);
    const auto got = run<float>([&](const auto& a, const auto& b, const auto& c) {
      return loom::scaled_dot_product_attention(a, b, c, scale);
    }, q, k, v, dout);
    require_close(got[0], want.o, kFloatTol);
    require_close(got[1], want.dq, kFloatTol);
    require_close(got[2], want.dk, kFloatTol);
    require_close(got[3], want.dv, kFloatTol);
  }
}

TEST_CASE("attention: large-magnitude scores stay finite and accurate", "[attention]") {
  const Sizes n{1, 1, 70, 150, 64, 64};
  loom::Generator gen(3);
  // Scores of magnitude ~1e3..1e4: exp without the running max would overflow at 89.
  const Tensor<float> q = leaf((loom::randn<float>({n.b, n.h, n.sq, n.d}, gen) * 60.0).detach());
  const Tensor<float> k = leaf((loom::randn<float>({n.b, n.h, n.sk, n.d}, gen) * 30.0).detach());
  const Tensor<float> v = leaf(loom::randn<float>({n.b, n.h, n.sk, n.dv}, gen));
  const Tensor<float> dout = loom::randn<float>({n.b, n.h, n.sq, n.dv}, gen);
  const Naive want = naive_attention(n, to_double(q), to_double(k), to_double(v), to_double(dout),
                                     1 / std::sqrt(double(n.d)));
  REQUIRE(max_abs(want.scores) > 1000);
  const auto got = run<float>(fused, q, k, v, dout);
  for (const auto& x : got)
    for (double e : x) REQUIRE(std::isfinite(e));
  // A score of magnitude |s| carries a float rounding error of about |s|·D·eps, which exp turns
  // into a relative error of the same size in every probability.
  const double score_err = max_abs(want.scores) * double(n.d) * FLT_EPSILON;
  require_close(got[0], want.o, {score_err, score_err});
  // Gradients scale with q and k (dq ~ scale·|k|, dk ~ scale·|q|).
  const double grad_err = score_err * 60;
  require_close(got[1], want.dq, {grad_err, score_err});
  require_close(got[2], want.dk, {grad_err, score_err});
  require_close(got[3], want.dv, {score_err, score_err});
}

TEST_CASE("attention: gradcheck in double, several tiles, non-contiguous and expanded leaves", "[attention]") {
  loom::Generator gen(17);
  auto sdpa = [](const std::vector<Tensor<double>>& x) { return loom::scaled_dot_product_attention(x[0], x[1], x[2], 0.7); };
  SECTION("one tile") {
    const Tensor<double> q = leaf(loom::randn<double>({1, 2, 5, 3}, gen));
    const Tensor<double> k = leaf(loom::randn<double>({1, 2, 7, 3}, gen));
    const Tensor<double> v = leaf(loom::randn<double>({1, 2, 7, 4}, gen));
    const auto r = loom::autograd::gradcheck(sdpa, {q, k, v});
    INFO(r.message);
    REQUIRE(r.ok);
  }
  SECTION("query and key blocks, dQ split over key-block groups, non-contiguous leaves") {
    const Tensor<double> q = leaf(loom::randn<double>({1, 3, 100, 1}, gen).transpose(1, 3).detach());  // [1, 1, 100, 3]
    const Tensor<double> k = leaf(loom::randn<double>({1, 1, 3, 130}, gen).transpose(2, 3).detach());  // [1, 1, 130, 3]
    const Tensor<double> v = leaf(loom::randn<double>({1, 1, 130, 2}, gen));
    REQUIRE(!q.is_contiguous());
    REQUIRE(!k.is_contiguous());
    const auto r = loom::autograd::gradcheck(sdpa, {q, k, v});
    INFO(r.message);
    REQUIRE(r.ok);
  }
  SECTION("expanded key shared by two heads") {
    const Tensor<double> q = leaf(loom::randn<double>({1, 2, 4, 3}, gen));
    const Tensor<double> k = leaf(loom::randn<double>({1, 1, 6, 3}, gen));
    const Tensor<double> v = leaf(loom::randn<double>({1, 2, 6, 2}, gen));
    auto f = [](const std::vector<Tensor<double>>& x) {
      return loom::scaled_dot_product_attention(x[0], x[1].expand({1, 2, 6, 3}), x[2]);
    };
    const auto r = loom::autograd::gradcheck(f, {q, k, v});
    INFO(r.message);
    REQUIRE(r.ok);
  }
}

TEST_CASE("attention: backward is deterministic and independent of the thread count", "[attention]") {
  const Sizes n{1, 1, 150, 300, 40, 40};  // one head: dQ is split over key-block groups
  loom::Generator gen(23);
  const Tensor<float> q = leaf(loom::randn<float>({n.b, n.h, n.sq, n.d}, gen));
  const Tensor<float> k = leaf(loom::randn<float>({n.b, n.h, n.sk, n.d}, gen));
  const Tensor<float> v = leaf(loom::randn<float>({n.b, n.h, n.sk, n.dv}, gen));
  const Tensor<float> dout = loom::randn<float>({n.b, n.h, n.sq, n.dv}, gen);
  const int threads = loom::num_threads();
  const auto first = run<float>(fused, q, k, v, dout);
  const auto again = run<float>(fused, q, k, v, dout);
  loom::set_num_threads(1);
  const auto serial = run<float>(fused, q, k, v, dout);
  loom::set_num_threads(threads);
  for (size_t i = 0; i < 4; ++i) {
    REQUIRE(first[i] == again[i]);
    REQUIRE(first[i] == serial[i]);
  }
}

TEST_CASE("attention: bf16 is no less accurate than the bf16 reference", "[attention]") {
  const Sizes n{1, 2, 97, 113, 64, 64};
  loom::Generator gen(29);
  const Tensor<loom::bf16> q = leaf(loom::randn<float>({n.b, n.h, n.sq, n.d}, gen).to<loom::bf16>());
  const Tensor<loom::bf16> k = leaf(loom::randn<float>({n.b, n.h, n.sk, n.d}, gen).to<loom::bf16>());
  const Tensor<loom::bf16> v = leaf(loom::randn<float>({n.b, n.h, n.sk, n.dv}, gen).to<loom::bf16>());
  const Tensor<loom::bf16> dout = loom::randn<float>({n.b, n.h, n.sq, n.dv}, gen).to<loom::bf16>();
  const Naive want = naive_attention(n, to_double(q), to_double(k), to_double(v), to_double(dout),
                                     1 / std::sqrt(double(n.d)));
  const auto got = run<loom::bf16>(fused, q, k, v, dout);
  const auto ref = run<loom::bf16>(reference, q, k, v, dout);
  const std::vector<const std::vector<double>*> exact{&want.o, &want.dq, &want.dk, &want.dv};
  auto max_err = [](const std::vector<double>& a, const std::vector<double>& b) {
    double m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
    return m;
  };
  for (size_t i = 0; i < 4; ++i) {
    const double fused_err = max_err(got[i], *exact[i]), ref_err = max_err(ref[i], *exact[i]);
    INFO("output " << i << ": fused bf16 error " << fused_err << ", reference bf16 error " << ref_err);
    REQUIRE(fused_err <= 2 * ref_err);
    require_close(got[i], *exact[i], loom::test::tol_for<loom::bf16>());
  }
}

TEST_CASE("attention: empty query sequence", "[attention]") {
  const Tensor<float> q = leaf(Tensor<float>::zeros({1, 2, 0, 8}));
  const Tensor<float> k = leaf(Tensor<float>::ones({1, 2, 5, 8}));
  const Tensor<float> v = leaf(Tensor<float>::ones({1, 2, 5, 3}));
  const Tensor<float> o = loom::scaled_dot_product_attention(q, k, v);
  REQUIRE(o.shape() == loom::Shape{1, 2, 0, 3});
  o.backward(Tensor<float>::zeros({1, 2, 0, 3}));
  require_close(k.grad(), std::vector<double>(80, 0.0), kFloatTol);
  require_close(v.grad(), std::vector<double>(30, 0.0), kFloatTol);
}

TEST_CASE("attention: errors name the shapes", "[attention]") {
  const auto q = Tensor<float>::ones({1, 2, 5, 8});
  const auto k = Tensor<float>::ones({1, 2, 6, 8});
  const auto v = Tensor<float>::ones({1, 2, 6, 4});
  using Catch::Contains;
  REQUIRE_THROWS_AS(loom::scaled_dot_product_attention(q.flatten(0, 1), k, v), loom::Error);
  REQUIRE_THROWS_WITH(loom::scaled_dot_product_attention(q.flatten(0, 1), k, v), Contains("[2, 5, 8]"));
  REQUIRE_THROWS_WITH(loom::scaled_dot_product_attention(q, Tensor<float>::ones({1, 2, 6, 7}), v),
                      Contains("q [1, 2, 5, 8] and k [1, 2, 6, 7]") && Contains("head dim"));
  REQUIRE_THROWS_WITH(loom::scaled_dot_product_attention(q, k, Tensor<float>::ones({1, 2, 9, 4})),
                      Contains("k [1, 2, 6, 8] and v [1, 2, 9, 4]") && Contains("sequence length"));
  REQUIRE_THROWS_WITH(loom::scaled_dot_product_attention(q, Tensor<float>::ones({2, 2, 6, 8}), v),
                      Contains("q [1, 2, 5, 8] and k [2, 2, 6, 8]") && Contains("[B, H]"));
  REQUIRE_THROWS_WITH(loom::scaled_dot_product_attention(q, k, Tensor<float>::ones({1, 3, 6, 4})),
                      Contains("k [1, 2, 6, 8] and v [1, 3, 6, 4]"));
  REQUIRE_THROWS_WITH(loom::scaled_dot_product_attention(q, Tensor<float>::ones({1, 2, 0, 8}), Tensor<float>::ones({1, 2, 0, 4})),
                      Contains("no keys") && Contains("[1, 2, 0, 8]"));
  REQUIRE_THROWS_WITH(loom::scaled_dot_product_attention(q, k, Tensor<float>::ones({1, 2, 6, 0})),
                      Contains("head dims") && Contains("[1, 2, 6, 0]"));
  REQUIRE_THROWS_WITH(loom::scaled_dot_product_attention(q, k, v, INFINITY), Contains("scale"));
  // A saved input changed in place before backward is caught, not silently used.
  const Tensor<float> ql = leaf(Tensor<float>::ones({1, 2, 5, 8}));
  Tensor<float> kk = Tensor<float>::ones({1, 2, 6, 8});
  const Tensor<float> o = loom::scaled_dot_product_attention(ql, kk, v);
  kk.fill_(2.f);
  REQUIRE_THROWS_WITH(o.backward(Tensor<float>::ones(o.shape())), Contains("modified in place"));
}

TEST_CASE("attention: peak memory of forward + backward does not grow with S^2", "[attention]") {
  const int64_t B = 1, H = 2, D = 64;
  // Peak bytes above what was live before, for forward + backward at sequence length S.
  auto peak_for = [&](int64_t S, bool use_fused) {
    loom::Generator gen(31);
    const Tensor<float> q = leaf(loom::randn<float>({B, H, S, D}, gen));
    const Tensor<float> k = leaf(loom::randn<float>({B, H, S, D}, gen));
    const Tensor<float> v = leaf(loom::randn<float>({B, H, S, D}, gen));
    const Tensor<float> dout = loom::randn<float>({B, H, S, D}, gen);
    const int64_t before = loom::memory_stats().current_bytes;
    loom::reset_peak_memory();
    {
      const Tensor<float> o = use_fused ? loom::scaled_dot_product_attention(q, k, v) : loom::attention_reference(q, k, v);
      o.backward(dout);
    }
    return loom::memory_stats().peak_bytes - before;
  };
  // One thread: the kernels' per-task scratch is then live for one task at a time, so the peak is
  // the same on every run (with more threads it depends on how tasks happen to overlap).
  const int threads = loom::num_threads();
  loom::set_num_threads(1);
  const int64_t S = 451;
  const int64_t scores_bytes = B * H * S * S * int64_t(sizeof(float));  // one [B, H, S, S] matrix
  const int64_t fused = peak_for(S, true), ref = peak_for(S, false);
  const int64_t fused_2s = peak_for(2 * S, true), ref_2s = peak_for(2 * S, false);
  loom::set_num_threads(threads);
  INFO("S = " << S << ": fused " << fused << " B, reference " << ref << " B (one score matrix " << scores_bytes
              << " B); S = " << 2 * S << ": fused " << fused_2s << " B, reference " << ref_2s << " B");
  REQUIRE(ref > 2 * scores_bytes);  // the reference materializes scores and probabilities
  REQUIRE(fused < ref);
  // Doubling S: the reference's peak grows ~4x (S²), the fused one ~2x (O, gradients, packed
  // tiles and dQ partials are all [S, D]).
  REQUIRE(ref_2s > 3 * ref);
  REQUIRE(fused_2s * 10 <= fused * 22);
}
