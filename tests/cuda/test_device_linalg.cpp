// matmul, bmm, linear and the fused attention on CUDA tensors against the CPU ops, forward and
// backward through autograd. SKIPs with the reason when no usable GPU is present; the stride ->
// cuBLAS mapping itself is checked on the CPU by test_gemm_layout.
//
// Tolerances: fp32 products are held to the rigorous rounding bound of a length-n dot product in any
// summation order, |ours - exact| <= (n + 2)·u·(|A|·|B|) with u = 2^-24 (the bound's |A|·|B| is the
// same computation run in double on absolute values, which for these bilinear ops also bounds the
// gradients). TF32 rounds inputs to 10 mantissa bits (u = 2^-11 per input): 2·2^-11 + n·2^-24 per
// unit of |A|·|B|. bf16 results are compared with the CPU's bf16 op (both accumulate in fp32 and
// round once: they may differ by one bf16 ulp, the suite's bf16 tolerance). Attention uses
// test_cuda_kernels' rules: fp32 within {3e-5, 3e-4} of exact attention, bf16 error at most twice
// a naive bf16 attention's.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <tuple>
#include <vector>

#include "attention_reference.hpp"
#include "loom/core/random.hpp"
#include "loom/cuda/device_info.hpp"
#include "loom/cuda/gemm.hpp"
#include "loom/ops/attention.hpp"
#include "loom/ops/elementwise.hpp"
#include "loom/ops/linalg.hpp"
#include "support/check.hpp"
#include "support/gpu.hpp"

using loom::bf16;
using loom::CPU;
using loom::CUDA;
using loom::Shape;
using loom::Tensor;
using loom::test::to_double;

namespace {

constexpr double kFp32Unit = 1.0 / (1 << 24);

// Normal values, rounded to bf16 so that float and bf16 runs see the same inputs.
Tensor<float> bf16_exact_normal(const Shape& shape, uint64_t seed) {
  loom::Generator gen(seed);
  return loom::randn<float>(shape, gen).to<bf16>().to<float>();
}

// |ours - exact| <= rel * bound elementwise (bound = the |A|·|B| computation); a failure names the
// worst element.
void require_within(const std::vector<double>& ours, const std::vector<double>& exact, const std::vector<double>& bound,
                    double rel) {
  REQUIRE(ours.size() == exact.size());
  REQUIRE(bound.size() == exact.size());
  int64_t worst = -1, failures = 0;
  double worst_ratio = 0;
  for (size_t i = 0; i < ours.size(); ++i) {
    const double err = std::abs(ours[i] - exact[i]), allowed = rel * bound[i] + 1e-30;
    if (err <= allowed) continue;  // (NaN fails)
    ++failures;
    const double ratio = std::isnan(err) ? INFINITY : err / allowed;
    if (worst < 0 || ratio > worst_ratio) worst = int64_t(i), worst_ratio = ratio;
  }
  if (failures > 0) {
    const size_t w = size_t(worst);
    FAIL(failures << " of " << ours.size() << " elements outside the bound; worst [" << w << "] ours " << ours[w]
                  << " exact " << exact[w] << " allowed +-" << rel * bound[w]);
  }
}

double max_error(const std::vector<double>& ours, const std::vector<double>& exact) {
  double e = 0;
  for (size_t i = 0; i < ours.size(); ++i) e = std::max(e, std::abs(ours[i] - exact[i]));
  return e;
}

// One product to check: operands are built on the CPU by `make` (views included) from base tensors,
// then the same views are taken of the device copies, so layouts match exactly.
struct Product {
  const char* name;
  Shape a_base, b_base;
  // Turns the base tensors into the operands (transposes, slices, expands) on either device.
  std::function<std::pair<Tensor<float>, Tensor<float>>(const Tensor<float>&, const Tensor<float>&)> make_cpu;
  std::function<std::pair<Tensor<float, CUDA>, Tensor<float, CUDA>>(const Tensor<float, CUDA>&,
                                                                    const Tensor<float, CUDA>&)>
      make_dev;
  bool bmm = false;
};

template <class A, class B>
auto product(bool use_bmm, const A& a, const B& b) {
  return use_bmm ? loom::bmm(a, b) : loom::matmul(a, b);
}

// Forward and gradients of one product on the device (float) against the CPU in double, with the
// fp32 bound; `n` is the longest sum any of them involves.
void check_float_product(const Product& p, int64_t n, uint64_t seed) {
  INFO(p.name);
  const Tensor<float> a0 = bf16_exact_normal(p.a_base, seed), b0 = bf16_exact_normal(p.b_base, seed + 1);
  auto [a_cpu, b_cpu] = p.make_cpu(a0, b0);
  // Exact: double on the CPU; bound: the same on absolute values.
  auto run_cpu = [&](const Tensor<double>& a, const Tensor<double>& b, const Tensor<double>& dy) {
    const Tensor<double> la = a.detach().requires_grad_(), lb = b.detach().requires_grad_();
    const Tensor<double> y = product(p.bmm, la, lb);
    y.backward(dy);
    return std::vector<std::vector<double>>{to_double(y), to_double(la.grad()), to_double(lb.grad())};
  };
  const Tensor<double> ad = a_cpu.to<double>(), bd = b_cpu.to<double>();
  const Shape y_shape = product(p.bmm, ad, bd).shape();
  const Tensor<double> dy = bf16_exact_normal(y_shape, seed + 2).to<double>();
  const auto exact = run_cpu(ad, bd, dy);
  const auto bound = run_cpu(loom::abs(ad), loom::abs(bd), loom::abs(dy));

  const Tensor<float, CUDA> a_dev0 = a0.to_device<CUDA>(), b_dev0 = b0.to_device<CUDA>();
  auto [a_view, b_view] = p.make_dev(a_dev0, b_dev0);
  REQUIRE(a_view.strides() == a_cpu.strides());
  REQUIRE(b_view.strides() == b_cpu.strides());
  // The device operands are leaves with the views' own strides, so the GEMMs read those layouts.
  const Tensor<float, CUDA> la = a_view.detach().requires_grad_(), lb = b_view.detach().requires_grad_();
  REQUIRE(la.strides() == a_cpu.strides());
  const Tensor<float, CUDA> y = product(p.bmm, la, lb);
  REQUIRE(y.shape() == y_shape);
  const double rel = double(n + 2) * kFp32Unit * 1.01;
  require_within(to_double(y), exact[0], bound[0], rel);
  y.backward(dy.to<float>().to_device<CUDA>());
  require_within(to_double(la.grad()), exact[1], bound[1], rel);
  require_within(to_double(lb.grad()), exact[2], bound[2], rel);
}

}  // namespace

TEST_CASE("CUDA matmul / bmm (fp32): odd sizes, transposed, padded, stepped and broadcast operands match the CPU",
          "[cuda][linalg]") {
  REQUIRE_GPU();
  loom::cuda::set_allow_tf32(false);
  using TF = Tensor<float>;
  using TD = Tensor<float, CUDA>;
  const int64_t sizes[][3] = {{1, 1, 1}, {7, 97, 1}, {1, 225, 7}, {97, 7, 225}, {225, 97, 97}};
  uint64_t seed = 100;
  for (const auto& s : sizes) {
    const int64_t M = s[0], K = s[1], N = s[2];
    INFO("M " << M << " K " << K << " N " << N);
    const int64_t n = std::max({K, N, M});
    // Row-major operands.
    check_float_product({"plain", {M, K}, {K, N}, [](const TF& a, const TF& b) { return std::pair{a, b}; },
                         [](const TD& a, const TD& b) { return std::pair{a, b}; }},
                        n, seed += 3);
    // Both transposed views (column-major): cuBLAS's op T, no copy.
    check_float_product({"transposed", {K, M}, {N, K},
                         [](const TF& a, const TF& b) { return std::pair{a.transpose(0, 1), b.transpose(0, 1)}; },
                         [](const TD& a, const TD& b) { return std::pair{a.transpose(0, 1), b.transpose(0, 1)}; }},
                        n, seed += 3);
    // Padded rows (a column block) on the left, stepped columns (copied first) on the right.
    check_float_product({"padded / stepped", {M, K + 3}, {K, 2 * N},
                         [K, N](const TF& a, const TF& b) { return std::pair{a.narrow(1, 1, K), b.slice(1, 0, 2 * N, 2)}; },
                         [K, N](const TD& a, const TD& b) { return std::pair{a.narrow(1, 1, K), b.slice(1, 0, 2 * N, 2)}; }},
                        n, seed += 3);
    // Batched: a [3, M, K] x shared b [K, N] (one folded GEMM; dB sums over the batch).
    check_float_product({"batch x shared", {3, M, K}, {K, N}, [](const TF& a, const TF& b) { return std::pair{a, b}; },
                         [](const TD& a, const TD& b) { return std::pair{a, b}; }},
                        std::max(n, 3 * M), seed += 3);
    // Broadcast both ways: a [2, 1, M, K] x b [3, K, N] -> [2, 3, M, N]; gradients summed over the
    // broadcast dims.
    check_float_product({"broadcast batch", {2, 1, M, K}, {3, K, N},
                         [](const TF& a, const TF& b) { return std::pair{a, b}; },
                         [](const TD& a, const TD& b) { return std::pair{a, b}; }},
                        std::max({K, 3 * N, 2 * M}), seed += 3);
    // bmm with a permuted batch (a from [M, 4, K]) and a transposed right operand.
    check_float_product(
        {"bmm permuted", {M, 4, K}, {4, N, K},
         [](const TF& a, const TF& b) { return std::pair{a.permute({1, 0, 2}), b.transpose(1, 2)}; },
         [](const TD& a, const TD& b) { return std::pair{a.permute({1, 0, 2}), b.transpose(1, 2)}; }, true},
        n, seed += 3);
  }
  // Vectors: dot, matrix x vector, vector x matrix.
  check_float_product({"dot", {97}, {97}, [](const TF& a, const TF& b) { return std::pair{a, b}; },
                       [](const TD& a, const TD& b) { return std::pair{a, b}; }},
                      97, 7);
  check_float_product({"matrix x vector", {7, 225}, {225}, [](const TF& a, const TF& b) { return std::pair{a, b}; },
                       [](const TD& a, const TD& b) { return std::pair{a, b}; }},
                      225, 8);
  check_float_product({"vector x matrix", {97}, {97, 7}, [](const TF& a, const TF& b) { return std::pair{a, b}; },
                       [](const TD& a, const TD& b) { return std::pair{a, b}; }},
                      97, 9);
}

TEST_CASE("CUDA matmul: TF32 is opt-in, fp32 stays within the fp32 bound, TF32 within its own", "[cuda][linalg]") {
  REQUIRE_GPU();
  const int64_t n = 225;
  const Tensor<float> a = loom::randn<float>({n, n}), b = loom::randn<float>({n, n});
  const Tensor<double> ad = a.to<double>(), bd = b.to<double>();
  const std::vector<double> exact = to_double(loom::matmul(ad, bd));
  const std::vector<double> bound = to_double(loom::matmul(loom::abs(ad), loom::abs(bd)));
  const Tensor<float, CUDA> a_dev = a.to_device<CUDA>(), b_dev = b.to_device<CUDA>();
  REQUIRE_FALSE(loom::cuda::allow_tf32());  // the default
  const std::vector<double> fp32 = to_double(loom::matmul(a_dev, b_dev));
  loom::cuda::set_allow_tf32(true);
  const std::vector<double> tf32 = to_double(loom::matmul(a_dev, b_dev));
  loom::cuda::set_allow_tf32(false);
  const std::vector<double> fp32_again = to_double(loom::matmul(a_dev, b_dev));
  require_within(fp32, exact, bound, double(n + 2) * kFp32Unit * 1.01);
  require_within(fp32_again, exact, bound, double(n + 2) * kFp32Unit * 1.01);
  require_within(tf32, exact, bound, 2.0 / 2048 + double(n + 2) * kFp32Unit);
  // The setting takes effect: inputs rounded to 10 mantissa bits err far more than fp32 does.
  INFO("max error fp32 " << max_error(fp32, exact) << ", tf32 " << max_error(tf32, exact));
  REQUIRE(max_error(tf32, exact) > 10 * max_error(fp32, exact));
}

TEST_CASE("CUDA matmul / bmm / linear (bf16): fp32 accumulation, one rounding, as the CPU op", "[cuda][linalg]") {
  REQUIRE_GPU();
  const loom::test::Tol tol = loom::test::tol_for<bf16>();
  const int64_t sizes[][3] = {{1, 1, 1}, {7, 97, 1}, {97, 7, 225}, {225, 225, 97}};
  uint64_t seed = 300;
  for (const auto& s : sizes) {
    const int64_t M = s[0], K = s[1], N = s[2];
    INFO("M " << M << " K " << K << " N " << N);
    const Tensor<bf16> a = bf16_exact_normal({3, M, K}, ++seed).to<bf16>(), b = bf16_exact_normal({K, N}, ++seed).to<bf16>();
    const Tensor<bf16> bt = bf16_exact_normal({3, N, K}, ++seed).to<bf16>();
    const Tensor<bf16> dy = bf16_exact_normal({3, M, N}, ++seed).to<bf16>();
    // matmul with a shared right operand, forward and both gradients (each a single GEMM).
    {
      const Tensor<bf16> la = a.detach().requires_grad_(), lb = b.detach().requires_grad_();
      const Tensor<bf16> y = loom::matmul(la, lb);
      y.backward(dy);
      const Tensor<bf16, CUDA> da = a.to_device<CUDA>().detach().requires_grad_(),
                               db = b.to_device<CUDA>().detach().requires_grad_();
      const Tensor<bf16, CUDA> yd = loom::matmul(da, db);
      yd.backward(dy.to_device<CUDA>());
      loom::test::require_close(to_double(yd), to_double(y), tol);
      loom::test::require_close(to_double(da.grad()), to_double(la.grad()), tol);
      loom::test::require_close(to_double(db.grad()), to_double(lb.grad()), tol);
    }
    // bmm with a transposed right operand.
    {
      const Tensor<bf16> y = loom::bmm(a, bt.transpose(1, 2));
      const Tensor<bf16, CUDA> yd = loom::bmm(a.to_device<CUDA>(), bt.to_device<CUDA>().transpose(1, 2));
      loom::test::require_close(to_double(yd), to_double(y), tol);
    }
    // linear with bias: weight [N, K], x [3, M, K].
    {
      const Tensor<bf16> w = bf16_exact_normal({N, K}, ++seed).to<bf16>(), bias = bf16_exact_normal({N}, ++seed).to<bf16>();
      const Tensor<bf16> lx = a.detach().requires_grad_(), lw = w.detach().requires_grad_(),
                         lbias = bias.detach().requires_grad_();
      const Tensor<bf16> y = loom::linear(lx, lw, lbias);
      y.backward(dy);
      const Tensor<bf16, CUDA> dx = a.to_device<CUDA>().detach().requires_grad_(),
                               dw = w.to_device<CUDA>().detach().requires_grad_(),
                               dbias = bias.to_device<CUDA>().detach().requires_grad_();
      const Tensor<bf16, CUDA> yd = loom::linear(dx, dw, dbias);
      yd.backward(dy.to_device<CUDA>());
      loom::test::require_close(to_double(yd), to_double(y), tol);
      loom::test::require_close(to_double(dx.grad()), to_double(lx.grad()), tol);
      loom::test::require_close(to_double(dw.grad()), to_double(lw.grad()), tol);
      loom::test::require_close(to_double(dbias.grad()), to_double(lbias.grad()), tol);
    }
  }
}

TEST_CASE("CUDA linear (fp32): bias fused, gradients of x, weight and bias match the CPU", "[cuda][linalg]") {
  REQUIRE_GPU();
  loom::cuda::set_allow_tf32(false);
  for (const auto& [rows, in, out] : {std::tuple{1, 1, 1}, {7, 97, 225}, {225, 7, 97}, {97, 225, 1}}) {
    INFO("rows " << rows << " in " << in << " out " << out);
    const Tensor<float> x = bf16_exact_normal({rows, in}, 500 + rows), w = bf16_exact_normal({out, in}, 600 + in);
    const Tensor<float> bias = bf16_exact_normal({out}, 700 + out), dy = bf16_exact_normal({rows, out}, 800 + rows);
    auto run_cpu = [&](const Tensor<double>& xd, const Tensor<double>& wd, const Tensor<double>& bd,
                       const Tensor<double>& g) {
      const Tensor<double> lx = xd.detach().requires_grad_(), lw = wd.detach().requires_grad_(),
                           lb = bd.detach().requires_grad_();
      const Tensor<double> y = loom::linear(lx, lw, lb);
      y.backward(g);
      return std::vector<std::vector<double>>{to_double(y), to_double(lx.grad()), to_double(lw.grad()), to_double(lb.grad())};
    };
    const auto exact = run_cpu(x.to<double>(), w.to<double>(), bias.to<double>(), dy.to<double>());
    const auto bound = run_cpu(loom::abs(x.to<double>()), loom::abs(w.to<double>()), loom::abs(bias.to<double>()),
                               loom::abs(dy.to<double>()));
    const Tensor<float, CUDA> lx = x.to_device<CUDA>().detach().requires_grad_(),
                              lw = w.to_device<CUDA>().detach().requires_grad_(),
                              lb = bias.to_device<CUDA>().detach().requires_grad_();
    const Tensor<float, CUDA> y = loom::linear(lx, lw, lb);
    y.backward(dy.to_device<CUDA>());
    const double rel = double(std::max({rows, in, out}) + 2) * kFp32Unit * 1.01;
    require_within(to_double(y), exact[0], bound[0], rel);
    require_within(to_double(lx.grad()), exact[1], bound[1], rel);
    require_within(to_double(lw.grad()), exact[2], bound[2], rel);
    require_within(to_double(lb.grad()), exact[3], bound[3], rel);
    // No bias, a 1-D input.
    const Tensor<float, CUDA> v = loom::linear(x.to_device<CUDA>().select(0, rows - 1), w.to_device<CUDA>());
    const std::vector<double> v_exact = to_double(loom::linear(x.to<double>().select(0, rows - 1), w.to<double>()));
    const std::vector<double> v_bound =
        to_double(loom::linear(loom::abs(x.to<double>()).select(0, rows - 1), loom::abs(w.to<double>())));
    require_within(to_double(v), v_exact, v_bound, rel);
  }
}

TEST_CASE("CUDA scaled_dot_product_attention: forward and backward vs the CPU op, fp32 and bf16", "[cuda][attention]") {
  REQUIRE_GPU();
  struct Case {
    int64_t b, h, s, d;
  };
  for (const Case c : {Case{2, 3, 97, 40}, Case{1, 2, 113, 64}, Case{2, 1, 113, 40}, Case{1, 3, 97, 64}}) {
    INFO("B " << c.b << " H " << c.h << " S " << c.s << " D " << c.d);
    const loom::test::AttentionCase ac{c.b * c.h, c.s, c.s, int(c.d)};
    const double scale = 1.0 / std::sqrt(double(c.d));
    const Shape shape{c.b, c.h, c.s, c.d};
    const auto q = loom::test::random_values(shape.numel(), 31 + c.s, 1.5, true);
    const auto k = loom::test::random_values(shape.numel(), 32 + c.s, 1.5, true);
    const auto v = loom::test::random_values(shape.numel(), 33 + c.s, 1.0, true);
    const auto d_o = loom::test::random_values(shape.numel(), 34 + c.s, 1.0, true);
    // The CPU op in double is the exact reference.
    auto cpu = [&](const std::vector<double>& x) {
      return Tensor<double>::from_vector(shape, x).detach().requires_grad_();
    };
    const Tensor<double> cq = cpu(q), ck = cpu(k), cv = cpu(v);
    const Tensor<double> co = loom::scaled_dot_product_attention(cq, ck, cv);
    co.backward(Tensor<double>::from_vector(shape, d_o));
    const std::vector<std::vector<double>> exact = {to_double(co), to_double(cq.grad()), to_double(ck.grad()),
                                                    to_double(cv.grad())};
    const char* names[] = {"O", "dQ", "dK", "dV"};

    auto run_device = [&](auto tag, bool permuted) {
      using T = decltype(tag);
      auto dev = [&](const std::vector<double>& x) {
        const Tensor<T> host = Tensor<double>::from_vector(shape, x).template to<T>();
        if (!permuted) return host.template to_device<CUDA>().detach().requires_grad_();
        // The same values stored as [B, S, H, D] (a projection's natural layout), viewed as [B, H, S, D].
        return host.permute({0, 2, 1, 3}).contiguous().template to_device<CUDA>().permute({0, 2, 1, 3})
            .detach().requires_grad_();
      };
      const Tensor<T, CUDA> dq = dev(q), dk = dev(k), dv = dev(v);
      const Tensor<T, CUDA> o = loom::scaled_dot_product_attention(dq, dk, dv, scale);
      o.backward(Tensor<double>::from_vector(shape, d_o).template to<T>().template to_device<CUDA>());
      return std::vector<std::vector<double>>{to_double(o), to_double(dq.grad()), to_double(dk.grad()), to_double(dv.grad())};
    };
    for (const bool permuted : {false, true}) {
      INFO("permuted inputs " << permuted);
      const auto fp32 = run_device(float{}, permuted);
      for (int t = 0; t < 4; ++t) {
        INFO(names[t]);
        loom::test::require_close(fp32[size_t(t)], exact[size_t(t)], {3e-5, 3e-4});
      }
    }
    const auto naive = loom::test::attention_naive_bf16(ac, scale, q, k, v, d_o);
    const std::vector<const std::vector<double>*> naive_out = {&naive.o, &naive.dq, &naive.dk, &naive.dv};
    const auto bf = run_device(bf16{}, false);
    for (int t = 0; t < 4; ++t) {
      const double err = loom::test::relative_max_error(bf[size_t(t)], exact[size_t(t)]);
      const double err_naive = loom::test::relative_max_error(*naive_out[size_t(t)], exact[size_t(t)]);
      INFO(names[t] << ": device bf16 " << err << ", naive bf16 " << err_naive);
      REQUIRE(err <= 2 * err_naive);
    }
  }
}

TEST_CASE("CUDA scaled_dot_product_attention: unsupported shapes are loom::Errors", "[cuda][attention]") {
  REQUIRE_GPU();
  const Tensor<float, CUDA> q = Tensor<float, CUDA>::zeros({1, 1, 4, 8}), v = Tensor<float, CUDA>::zeros({1, 1, 4, 6});
  REQUIRE_THROWS_WITH(loom::scaled_dot_product_attention(q, q, v), Catch::Contains("head dim"));
  const Tensor<float, CUDA> big = Tensor<float, CUDA>::zeros({1, 1, 4, 160});
  REQUIRE_THROWS_WITH(loom::scaled_dot_product_attention(big, big, big), Catch::Contains("128"));
}
