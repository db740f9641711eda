// The cuDNN backends (docs/cuda.md "cuDNN"): the patch-embedding convolution (loom::conv_patch_embed,
// nn::PatchEmbed::use_conv) and cuDNN's fused SDPA forward and backward (loom/cuda/cudnn_attention.hpp).
// CPU tests (always run): the descriptor arithmetic of loom/cuda/cudnn_layout.hpp, the op's CPU path
// against a direct convolution loop in double, argument checks. GPU tests SKIP, saying why, without a
// usable GPU or when loom was built without cuDNN.
//
// Tolerances: fp32 convolution results and gradients are held to the rigorous rounding bound of a
// length-n sum in any order, |ours - exact| <= (n + 2)·2^-24·(the same computation on absolute
// values), the exact values and the bound both from the CPU composite in double. bf16 attention
// follows tests/cuda/test_cuda_kernels.cpp: max error at most twice a naive bf16 attention's; the fp32
// statistics (log-sum-exp) from bf16 inputs are computed in fp32 throughout.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "attention_reference.hpp"
#include "loom/core/random.hpp"
#include "loom/cuda/attention_backend.hpp"
#include "loom/cuda/cudnn_attention.hpp"
#include "loom/cuda/cudnn_layout.hpp"
#include "loom/cuda/cudnn_support.hpp"
#include "loom/cuda/device_memory.hpp"
#include "loom/nn/patch_embed.hpp"
#include "loom/ops/attention.hpp"
#include "loom/ops/conv_patch_embed.hpp"
#include "support/check.hpp"

using loom::bf16;
using loom::CPU;
using loom::CUDA;
using loom::Shape;
using loom::Tensor;
using loom::test::to_double;

#define REQUIRE_CUDNN()                                                  \
  do {                                                                   \
    if (const char* why = loom::cuda::no_cudnn_reason()) LOOM_SKIP(why); \
  } while (0)

namespace {

Tensor<float> normal_tensor(const Shape& shape, uint64_t seed) {
  loom::Generator gen(seed);
  return loom::randn<float>(shape, gen);
}

// Direct convolution, stride = kernel = p, in double: y [B, L, D] (token-major, as the op returns).
std::vector<double> direct_conv(const Tensor<float>& x, const Tensor<float>& w4, const Tensor<float>& b, int64_t p) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), D = w4.size(0);
  const int64_t h = H / p, w = W / p;
  std::vector<double> y;
  for (int64_t n = 0; n < B; ++n)
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j)
        for (int64_t d = 0; d < D; ++d) {
          double acc = b.at({d});
          for (int64_t c = 0; c < C; ++c)
            for (int64_t r = 0; r < p; ++r)
              for (int64_t s = 0; s < p; ++s) acc += double(x.at({n, c, i * p + r, j * p + s})) * w4.at({d, c, r, s});
          y.push_back(acc);
        }
  return y;
}

}  // namespace

// ---- CPU: descriptor arithmetic and the op's CPU path ----------------------------------------------

TEST_CASE("cudnn layout: patch convolution dims and checks", "[cudnn][cpu]") {
  const auto d = loom::cuda::patch_conv_dims({3, 12, 120, 96}, {40, 12 * 8 * 8}, 8);
  REQUIRE(d.batch == 3);
  REQUIRE(d.channels == 12);
  REQUIRE(d.dim == 40);
  REQUIRE(d.grid_h() == 15);
  REQUIRE(d.grid_w() == 12);
  REQUIRE(d.tokens() == 180);
  REQUIRE(d.conv_output() == std::array<int64_t, 4>{3, 40, 15, 12});
  REQUIRE(loom::cuda::patch_conv_dims({1, 2, 24, 24}, {5, 2, 4, 4}, 4).dim == 5);  // conv-shaped weight
  REQUIRE_THROWS_AS(loom::cuda::patch_conv_dims({1, 2, 24, 24}, {5, 2 * 16}, 5), loom::Error);   // 24 % 5
  REQUIRE_THROWS_AS(loom::cuda::patch_conv_dims({1, 2, 24, 24}, {5, 3 * 16}, 4), loom::Error);   // C·p·p
  REQUIRE_THROWS_AS(loom::cuda::patch_conv_dims({1, 2, 24, 24}, {5, 2, 4, 3}, 4), loom::Error);  // kernel
  REQUIRE_THROWS_AS(loom::cuda::patch_conv_dims({2, 24, 24}, {5, 2 * 16}, 4), loom::Error);      // not 4-d
}

TEST_CASE("cudnn layout: packed strides and the transposed K view address the same elements", "[cudnn][cpu]") {
  const std::array<int64_t, 4> dims{2, 3, 7, 5};  // K [B, H, S, D]
  const auto k = loom::cuda::packed_layout(dims);
  REQUIRE(k.strides == std::array<int64_t, 4>{3 * 7 * 5, 7 * 5, 5, 1});
  const auto kt = loom::cuda::transpose_last_two(k);  // Kᵀ [B, H, D, S]
  REQUIRE(kt.dims == std::array<int64_t, 4>{2, 3, 5, 7});
  int64_t visited = 0;
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t h = 0; h < 3; ++h)
      for (int64_t s = 0; s < 7; ++s)
        for (int64_t d = 0; d < 5; ++d) {
          const int64_t linear = ((b * 3 + h) * 7 + s) * 5 + d;  // K's row-major position
          REQUIRE(k.offset_of({b, h, s, d}) == linear);
          REQUIRE(kt.offset_of({b, h, d, s}) == linear);
          ++visited;
        }
  REQUIRE(visited == 2 * 3 * 7 * 5);
  REQUIRE(loom::cuda::packed_layout({4, 2, 9, 1}).strides == std::array<int64_t, 4>{18, 9, 1, 1});  // stats
}

TEST_CASE("conv_patch_embed on the CPU matches a direct convolution", "[cudnn][cpu]") {
  for (auto [B, C, HW, p, D] : {std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>{1, 2, 24, 4, 7},
                                {3, 12, 40, 8, 5}}) {
    const Tensor<float> x = normal_tensor({B, C, HW, HW}, 1), w4 = normal_tensor({D, C, p, p}, 2),
                        b = normal_tensor({D}, 3);
    const auto exact = direct_conv(x, w4, b, p);
    loom::test::require_close(loom::conv_patch_embed(x, w4.reshape({D, C * p * p}), b, p), exact, {1e-4, 1e-4});
    loom::test::require_close(loom::conv_patch_embed(x, w4, b, p), exact, {1e-4, 1e-4});  // [D, C, p, p] weight
    // nn::PatchEmbed's conv switch gives the same as its default path
    loom::nn::PatchEmbed<float> pe(p, C, D);
    const auto plain = to_double(pe.forward(x));
    pe.use_conv = true;
    loom::test::require_close(pe.forward(x), plain, {0, 0});
  }
  REQUIRE_THROWS_AS(loom::conv_patch_embed(normal_tensor({1, 2, 8, 8}, 1), normal_tensor({3, 32}, 2),
                                           normal_tensor({4}, 3), 4),
                    loom::Error);  // bias [4] for D = 3
}

TEST_CASE("cudnn sdpa: dims checks, and the message of a build without cuDNN", "[cudnn][cpu]") {
  loom::cuda::CudnnSdpaDims d{2, 3, 97, 113, 64, 0.125f};
  REQUIRE_NOTHROW(loom::cuda::check_cudnn_sdpa_dims(d));
  d.head_dim = 36;  // not a multiple of 8
  REQUIRE_THROWS_AS(loom::cuda::check_cudnn_sdpa_dims(d), loom::Error);
  d.head_dim = 136;
  REQUIRE_THROWS_AS(loom::cuda::check_cudnn_sdpa_dims(d), loom::Error);
  if (!loom::cuda::kCudnnBuilt) {
    REQUIRE_THROWS_WITH(loom::cuda::set_attention_backend(loom::cuda::AttentionBackend::cudnn),
                        Catch::Contains("built without cuDNN"));
    REQUIRE(loom::cuda::attention_backend() == loom::cuda::AttentionBackend::loom_flash);
    d.head_dim = 64;
    REQUIRE_THROWS_WITH(loom::cuda::cudnn_sdpa_forward(d, nullptr, nullptr, nullptr, nullptr, nullptr),
                        Catch::Contains("built without cuDNN"));
    REQUIRE_THROWS_WITH(loom::cuda::cudnn_patch_conv_forward(loom::DType::f32, loom::cuda::PatchConvDims{}, nullptr,
                                                             nullptr, nullptr),
                        Catch::Contains("built without cuDNN"));
  }
}

// ---- GPU: the cuDNN convolution against the CPU composite --------------------------------------------

TEST_CASE("conv_patch_embed on CUDA (cuDNN): forward and gradients vs the CPU composite, fp32", "[cudnn][gpu]") {
  REQUIRE_CUDNN();
  constexpr double u = 1.0 / (1 << 24);
  for (auto [B, C, HW, p, D] : {std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>{1, 2, 24, 4, 37},
                                {3, 12, 120, 8, 20},
                                {3, 2, 120, 4, 8},
                                {1, 12, 24, 8, 33}}) {
    INFO("B " << B << " C " << C << " H=W " << HW << " p " << p << " D " << D);
    const int64_t L = (HW / p) * (HW / p);
    const Tensor<float> x = normal_tensor({B, C, HW, HW}, 11), w = normal_tensor({D, C * p * p}, 12),
                        b = normal_tensor({D}, 13), g = normal_tensor({B, L, D}, 14);
    // exact (double) and the rounding bound's |.| computation, through the CPU composite
    const auto run_double = [&](bool absolute) {
      const auto cvt = [&](const Tensor<float>& t) {
        Tensor<double> d = t.to<double>();
        return (absolute ? loom::abs(d) : d).detach().requires_grad_();
      };
      const Tensor<double> xd = cvt(x), wd = cvt(w), bd = cvt(b);
      const Tensor<double> y = loom::conv_patch_embed(xd, wd, bd, p);
      y.backward(absolute ? loom::abs(g.to<double>()) : g.to<double>());
      return std::vector<std::vector<double>>{to_double(y), to_double(xd.grad()), to_double(wd.grad()), to_double(bd.grad())};
    };
    const auto exact = run_double(false), bound = run_double(true);

    const Tensor<float, CUDA> xc = x.to_device<CUDA>().detach().requires_grad_(),
                              wc = w.to_device<CUDA>().detach().requires_grad_(),
                              bc = b.to_device<CUDA>().detach().requires_grad_();
    const Tensor<float, CUDA> y = loom::conv_patch_embed(xc, wc, bc, p);
    REQUIRE(y.shape() == Shape{B, L, D});
    y.backward(g.to_device<CUDA>());
    const std::vector<std::vector<double>> ours{to_double(y), to_double(xc.grad()), to_double(wc.grad()), to_double(bc.grad())};
    const int64_t lengths[] = {C * p * p + 1, D, B * L, B * L};  // summation length of y, dx, dw, db
    const char* names[] = {"y", "dx", "dw", "db"};
    for (int k = 0; k < 4; ++k) {
      INFO(names[k]);
      REQUIRE(ours[k].size() == exact[k].size());
      double worst = 0;
      for (size_t i = 0; i < exact[k].size(); ++i)
        worst = std::max(worst, std::abs(ours[k][i] - exact[k][i]) - (lengths[k] + 2) * u * bound[k][i]);
      REQUIRE(worst <= 0);
    }
  }
}

TEST_CASE("conv_patch_embed on CUDA (cuDNN): bf16 gradients within fp32 accumulation + one bf16 rounding",
          "[cudnn][gpu]") {
  REQUIRE_CUDNN();
  // fp32 accumulation; bf16 rounding: 8 significant bits, so a rounding is within 2^-8 relative
  constexpr double u = 1.0 / (1 << 24), r = 1.0 / 256;
  for (auto [B, C, HW, p, D] : {std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>{3, 2, 24, 4, 16},
                                {1, 12, 24, 8, 33}}) {
    INFO("B " << B << " C " << C << " H=W " << HW << " p " << p << " D " << D);
    const int64_t L = (HW / p) * (HW / p);
    const auto bf16_exact = [](const Tensor<float>& t) { return t.to<bf16>().to<float>(); };
    const Tensor<float> x = bf16_exact(normal_tensor({B, C, HW, HW}, 41)),
                        w = bf16_exact(normal_tensor({D, C * p * p}, 42)), b = bf16_exact(normal_tensor({D}, 43)),
                        g = bf16_exact(normal_tensor({B, L, D}, 44));
    const auto run_double = [&](bool absolute) {
      const auto cvt = [&](const Tensor<float>& t) {
        Tensor<double> d = t.to<double>();
        return (absolute ? loom::abs(d) : d).detach().requires_grad_();
      };
      const Tensor<double> xd = cvt(x), wd = cvt(w), bd = cvt(b);
      loom::conv_patch_embed(xd, wd, bd, p).backward(absolute ? loom::abs(g.to<double>()) : g.to<double>());
      return std::vector<std::vector<double>>{to_double(xd.grad()), to_double(wd.grad()), to_double(bd.grad())};
    };
    const auto exact = run_double(false), bound = run_double(true);
    const auto leaf = [](const Tensor<float>& t) { return t.to<bf16>().to_device<CUDA>().detach().requires_grad_(); };
    const Tensor<bf16, CUDA> xc = leaf(x), wc = leaf(w), bc = leaf(b);
    loom::conv_patch_embed(xc, wc, bc, p).backward(g.to<bf16>().to_device<CUDA>());
    const std::vector<std::vector<double>> ours{to_double(xc.grad()), to_double(wc.grad()), to_double(bc.grad())};
    const int64_t lengths[] = {D, B * L, B * L};
    const char* names[] = {"dx", "dw", "db"};
    for (int k = 0; k < 3; ++k) {
      INFO(names[k]);
      double worst = 0;
      for (size_t i = 0; i < exact[k].size(); ++i) {
        const double e = (lengths[k] + 2) * u * bound[k][i];
        worst = std::max(worst, std::abs(ours[k][i] - exact[k][i]) - (e + r * (std::abs(exact[k][i]) + e)));
      }
      REQUIRE(worst <= 0);
    }
  }
}

TEST_CASE("nn::PatchEmbed use_conv on CUDA matches its default path, bf16 forward", "[cudnn][gpu]") {
  REQUIRE_CUDNN();
  const int64_t B = 3, C = 2, HW = 24, p = 4, D = 16;
  loom::nn::PatchEmbed<float, CUDA> pe(p, C, D);
  const Tensor<float, CUDA> x = normal_tensor({B, C, HW, HW}, 21).to_device<CUDA>();
  const auto plain = to_double(pe.forward(x));
  pe.use_conv = true;
  const auto conv = to_double(pe.forward(x));
  loom::test::require_close(conv, plain, {1e-5, 1e-5});

  // bf16: inputs exact in bf16. The convolution accumulates in fp32 (error e <= (n + 2)·2^-24·conv of
  // |.|), rounds c' to bf16 (2^-8·|c'|), the bias add rounds again (2^-8·|sum|): the bound below.
  const Tensor<float> xb = normal_tensor({B, C, HW, HW}, 22).to<bf16>().to<float>(),
                      wb = normal_tensor({D, C * p * p}, 23).to<bf16>().to<float>(),
                      bb = normal_tensor({D}, 24).to<bf16>().to<float>();
  const Tensor<double> xd = xb.to<double>(), wd = wb.to<double>(), bd = bb.to<double>();
  const auto exact = to_double(loom::conv_patch_embed(xd, wd, bd, p));
  const auto conv_only = to_double(loom::conv_patch_embed(xd, wd, Tensor<double>(), p));
  const auto conv_abs = to_double(loom::conv_patch_embed(loom::abs(xd), loom::abs(wd), Tensor<double>(), p));
  const Tensor<bf16, CUDA> y = loom::conv_patch_embed(xb.to<bf16>().to_device<CUDA>(), wb.to<bf16>().to_device<CUDA>(),
                                                      bb.to<bf16>().to_device<CUDA>(), p);
  const auto ours = to_double(y);
  constexpr double r = 1.0 / 256;  // bf16 rounding, relative (8 significant bits)
  double worst = 0;
  for (size_t i = 0; i < exact.size(); ++i) {
    const double e = (C * p * p + 2) * std::ldexp(1.0, -24) * conv_abs[i];
    const double bound = e * (1 + 2 * r) + r * std::abs(conv_only[i]) * (1 + r) + r * std::abs(exact[i]);
    worst = std::max(worst, std::abs(ours[i] - exact[i]) - bound);
  }
  REQUIRE(worst <= 0);
}

// ---- GPU: cuDNN SDPA --------------------------------------------------------------------------

namespace {

// One attention problem [B, H, S, D] with bf16-exact inputs (seeds seed..seed+3 for q, k, v, dO), its
// exact answer in double and a naive bf16 implementation's (the bf16 rule: err(ours) <= 2 err(naive)).
struct SdpaProblem {
  int64_t B, H, S, D;
  double scale;
  std::vector<double> q, k, v, d_o;
  loom::test::AttentionGrads exact, naive;
};

SdpaProblem sdpa_problem(int64_t B, int64_t H, int64_t S, int64_t D, uint64_t seed) {
  const loom::test::AttentionCase c{B * H, S, S, int(D)};
  const double scale = 1.0 / std::sqrt(double(D));
  const int64_t n = B * H * S * D;
  SdpaProblem p{B, H, S, D, scale, loom::test::random_values(n, seed, 1.0, true),
                loom::test::random_values(n, seed + 1, 1.0, true), loom::test::random_values(n, seed + 2, 1.0, true),
                loom::test::random_values(n, seed + 3, 1.0, true), {}, {}};
  p.exact = loom::test::attention_exact(c, scale, p.q, p.k, p.v, p.d_o);
  p.naive = loom::test::attention_naive_bf16(c, scale, p.q, p.k, p.v, p.d_o);
  return p;
}

}  // namespace

TEST_CASE("cudnn_sdpa forward and backward: O, statistics, dQ, dK, dV vs a double reference (bf16 rule)",
          "[cudnn][gpu]") {
  REQUIRE_CUDNN();
  for (int64_t S : {97, 113}) {
    const int64_t B = 2, H = 3, D = 64;
    INFO("S " << S);
    const SdpaProblem pb = sdpa_problem(B, H, S, D, 31);
    const auto &q = pb.q, &k = pb.k, &v = pb.v, &d_o = pb.d_o;
    const auto &exact = pb.exact, &naive = pb.naive;
    const double scale = pb.scale;
    const int64_t n = B * H * S * D;
    const auto to_bf16 = [](const std::vector<double>& a) {
      std::vector<bf16> out;
      for (double x : a) out.push_back(bf16(float(x)));
      return out;
    };
    auto qd = loom::cuda::DeviceBuffer<bf16>::from_host(to_bf16(q)),
         kd = loom::cuda::DeviceBuffer<bf16>::from_host(to_bf16(k)),
         vd = loom::cuda::DeviceBuffer<bf16>::from_host(to_bf16(v));
    loom::cuda::DeviceBuffer<bf16> od{size_t(n)};
    loom::cuda::DeviceBuffer<float> stats(size_t(B * H * S));
    loom::cuda::cudnn_sdpa_forward({B, H, S, S, D, float(scale)}, qd.data(), kd.data(), vd.data(), od.data(),
                                   stats.data());
    std::vector<double> o, lse;
    for (bf16 x : od.to_host()) o.push_back(double(float(x)));
    for (float x : stats.to_host()) lse.push_back(double(x));
    const double err = loom::test::relative_max_error(o, exact.o),
                 err_naive = loom::test::relative_max_error(naive.o, exact.o);
    INFO("relative max error: cudnn " << err << ", naive bf16 " << err_naive);
    REQUIRE(err <= 2 * err_naive);
    // fp32 scores of bf16-exact inputs: D-term dot products of O(1) values, scaled; a few fp32 ulps of O(10)
    loom::test::require_close(lse, exact.lse, {1e-4, 1e-5});

    // backward from dO, O and the statistics (cuDNN's SDPA backward operation)
    auto dod = loom::cuda::DeviceBuffer<bf16>::from_host(to_bf16(d_o));
    loom::cuda::DeviceBuffer<bf16> dq{size_t(n)}, dk{size_t(n)}, dv{size_t(n)};
    const loom::cuda::CudnnSdpaDims dims{B, H, S, S, D, float(scale)};
    if (!loom::cuda::cudnn_sdpa_backward_supported(dims))  // a capability of this GPU / cuDNN, not a wrong result
      LOOM_SKIP("cudnn_sdpa_backward: this cuDNN has no engine for the SDPA backward (the attention backend "
                "falls back to loom's flash backward, tested below)");
    loom::cuda::cudnn_sdpa_backward(dims, qd.data(), kd.data(), vd.data(), od.data(), dod.data(), stats.data(),
                                    dq.data(), dk.data(), dv.data());
    const auto host = [](const loom::cuda::DeviceBuffer<bf16>& b) {
      std::vector<double> out;
      for (bf16 x : b.to_host()) out.push_back(double(float(x)));
      return out;
    };
    const std::vector<double> ours[] = {host(dq), host(dk), host(dv)};
    const std::vector<double>* refs[][2] = {{&exact.dq, &naive.dq}, {&exact.dk, &naive.dk}, {&exact.dv, &naive.dv}};
    const char* names[] = {"dQ", "dK", "dV"};
    for (int i = 0; i < 3; ++i) {
      const double e = loom::test::relative_max_error(ours[i], *refs[i][0]),
                   e_naive = loom::test::relative_max_error(*refs[i][1], *refs[i][0]);
      INFO(names[i] << " relative max error: cudnn " << e << ", naive bf16 " << e_naive);
      REQUIRE(e <= 2 * e_naive);
    }
  }
}

TEST_CASE("scaled_dot_product_attention with the cuDNN backend: output and gradients (bf16 rule), same as loom's",
          "[cudnn][gpu]") {
  REQUIRE_CUDNN();
  // Restores the process-wide choice whatever happens below.
  struct BackendGuard {
    ~BackendGuard() { loom::cuda::set_attention_backend(loom::cuda::AttentionBackend::loom_flash); }
  } guard;
  const int64_t B = 2, H = 3, S = 113, D = 64;
  const SdpaProblem pb = sdpa_problem(B, H, S, D, 41);
  const auto &q = pb.q, &k = pb.k, &v = pb.v, &d_o = pb.d_o;
  const auto &exact = pb.exact, &naive = pb.naive;
  const double scale = pb.scale;
  auto device = [&](const std::vector<double>& x) {  // [B, H, S, D] bf16 on the device
    std::vector<bf16> h;
    for (double e : x) h.push_back(bf16(float(e)));
    return Tensor<bf16>::from_vector({B, H, S, D}, h).to_device<CUDA>();
  };
  for (auto backend : {loom::cuda::AttentionBackend::cudnn, loom::cuda::AttentionBackend::loom_flash}) {
    loom::cuda::set_attention_backend(backend);
    INFO((backend == loom::cuda::AttentionBackend::cudnn ? "cudnn" : "loom_flash"));
    auto tq = device(q).detach().requires_grad_(), tk = device(k).detach().requires_grad_(),
         tv = device(v).detach().requires_grad_();
    const Tensor<bf16, CUDA> o = loom::scaled_dot_product_attention(tq, tk, tv, scale);
    REQUIRE(loom::test::relative_max_error(to_double(o), exact.o) <= 2 * loom::test::relative_max_error(naive.o, exact.o));
    o.backward(device(d_o));  // cuDNN's backward, or loom's on cuDNN's O and statistics where it has none
    const std::pair<Tensor<bf16, CUDA>, const std::vector<double>*> grads[] = {
        {tq.grad(), &exact.dq}, {tk.grad(), &exact.dk}, {tv.grad(), &exact.dv}};
    const std::vector<double>* naive_grads[] = {&naive.dq, &naive.dk, &naive.dv};
    for (int i = 0; i < 3; ++i)
      REQUIRE(loom::test::relative_max_error(to_double(grads[i].first), *grads[i].second) <=
              2 * loom::test::relative_max_error(*naive_grads[i], *grads[i].second));
  }
}
