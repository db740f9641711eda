// The CUDA kernels against independent CPU references. Every test SKIPs with the reason when no
// usable GPU is present (the CPU-side arithmetic is covered by test_kernel_math either way).
#include <catch2/catch.hpp>

#include <cstring>

#include "adamw.cuh"
#include "attention_naive.cuh"
#include "attention_reference.hpp"
#include "loom/cuda/device_info.hpp"
#include "loom/cuda/device_memory.hpp"
#include "loom/cuda/flash_attention.hpp"
#include "loom/mask/tokens.hpp"
#include "loom/ops/elementwise.hpp"
#include "loom/ops/reduce.hpp"
#include "masked_mse.cuh"
#include "patch_tokens.cuh"
#include "random_fill.cuh"
#include "support/check.hpp"
#include "support/gpu.hpp"

using loom::bf16;
using loom::cuda::DeviceBuffer;
using loom::kernels::AttentionDims;
using loom::test::AttentionCase;

namespace {

template <class T>
std::vector<T> cast(const std::vector<double>& x) {
  return std::vector<T>(x.begin(), x.end());
}
template <class T>
std::vector<double> widen(const std::vector<T>& x) {
  std::vector<double> out;
  for (const T& v : x) out.push_back(double(float(v)));
  return out;
}

struct DeviceAttention {
  std::vector<double> o, lse, dq, dk, dv;
};

// Runs the fused kernel forward + backward on the device; `naive` runs the cuBLAS baseline instead.
template <class T>
DeviceAttention run_attention(const AttentionCase& c, double scale, const std::vector<double>& q,
                              const std::vector<double>& k, const std::vector<double>& v,
                              const std::vector<double>& d_o, bool naive = false) {
  auto dq_ = DeviceBuffer<T>::from_host(cast<T>(q)), dk_ = DeviceBuffer<T>::from_host(cast<T>(k)),
       dv_ = DeviceBuffer<T>::from_host(cast<T>(v)), ddo = DeviceBuffer<T>::from_host(cast<T>(d_o));
  DeviceBuffer<T> o(q.size()), gq(q.size()), gk(k.size()), gv(v.size());
  DeviceBuffer<float> lse{size_t(c.bh * c.sq)}, delta{size_t(c.bh * c.sq)};
  lse.zero();
  const AttentionDims dims{c.bh, c.sq, c.sk, c.d, float(scale)};
  if (naive) {
    loom::kernels::NaiveAttention<T> attn(dims);
    attn.forward(dq_.data(), dk_.data(), dv_.data(), o.data());
    attn.backward(dq_.data(), dk_.data(), dv_.data(), ddo.data(), gq.data(), gk.data(), gv.data());
  } else {
    loom::kernels::flash_attention_forward(dims, dq_.data(), dk_.data(), dv_.data(), o.data(), lse.data());
    loom::kernels::flash_attention_backward(dims, dq_.data(), dk_.data(), dv_.data(), o.data(), ddo.data(),
                                            lse.data(), delta.data(), gq.data(), gk.data(), gv.data());
  }
  loom::cuda::synchronize();
  return {widen(o.to_host()), widen(lse.to_host()), widen(gq.to_host()), widen(gk.to_host()), widen(gv.to_host())};
}

}  // namespace

TEST_CASE("cuda: flash attention fp32 matches exact attention on odd sizes", "[cuda][flash]") {
  REQUIRE_GPU();
  for (const AttentionCase c : {AttentionCase{1, 1, 1, 1}, AttentionCase{3, 97, 97, 32}, AttentionCase{2, 113, 113, 64},
                                AttentionCase{2, 97, 200, 40}, AttentionCase{1, 451, 451, 128},
                                AttentionCase{1, 1025, 1025, 64}, AttentionCase{2, 65, 31, 59}}) {
    INFO("bh " << c.bh << " sq " << c.sq << " sk " << c.sk << " d " << c.d);
    const double scale = 1.0 / std::sqrt(double(c.d));
    const auto q = loom::test::random_values(c.bh * c.sq * c.d, 11, 1.5, false);
    const auto k = loom::test::random_values(c.bh * c.sk * c.d, 12, 1.5, false);
    const auto v = loom::test::random_values(c.bh * c.sk * c.d, 13, 1.0, false);
    const auto d_o = loom::test::random_values(c.bh * c.sq * c.d, 14, 1.0, false);
    const auto ref = loom::test::attention_exact(c, scale, q, k, v, d_o);
    const auto got = run_attention<float>(c, scale, q, k, v, d_o);
    const loom::test::Tol tol{3e-5, 3e-4};  // fp32 accumulation over up to 128·1025 terms
    loom::test::require_close(got.o, ref.o, tol);
    loom::test::require_close(got.lse, ref.lse, tol);
    loom::test::require_close(got.dq, ref.dq, tol);
    loom::test::require_close(got.dk, ref.dk, tol);
    loom::test::require_close(got.dv, ref.dv, tol);
  }
}

TEST_CASE("cuda: flash attention on small odd shapes, fp32 and bf16 (the sanitizer's run)", "[cuda][small]") {
  REQUIRE_GPU();
  for (const AttentionCase c : {AttentionCase{1, 1, 1, 1}, AttentionCase{2, 37, 45, 40}, AttentionCase{1, 70, 33, 128}}) {
    INFO("bh " << c.bh << " sq " << c.sq << " sk " << c.sk << " d " << c.d);
    const double scale = 1.0 / std::sqrt(double(c.d));
    const auto q = loom::test::random_values(c.bh * c.sq * c.d, 61, 1.0, true);
    const auto k = loom::test::random_values(c.bh * c.sk * c.d, 62, 1.0, true);
    const auto v = loom::test::random_values(c.bh * c.sk * c.d, 63, 1.0, true);
    const auto d_o = loom::test::random_values(c.bh * c.sq * c.d, 64, 1.0, true);
    const auto ref = loom::test::attention_exact(c, scale, q, k, v, d_o);
    const auto got = run_attention<float>(c, scale, q, k, v, d_o);
    loom::test::require_close(got.o, ref.o, {3e-5, 3e-4});
    loom::test::require_close(got.dq, ref.dq, {3e-5, 3e-4});
    loom::test::require_close(got.dk, ref.dk, {3e-5, 3e-4});
    loom::test::require_close(got.dv, ref.dv, {3e-5, 3e-4});
    const auto got16 = run_attention<bf16>(c, scale, q, k, v, d_o);
    const auto naive = loom::test::attention_naive_bf16(c, scale, q, k, v, d_o);
    REQUIRE(loom::test::relative_max_error(got16.o, ref.o) <= 2 * loom::test::relative_max_error(naive.o, ref.o) + 1e-7);
    REQUIRE(loom::test::relative_max_error(got16.dq, ref.dq) <= 2 * loom::test::relative_max_error(naive.dq, ref.dq) + 1e-7);
  }
}

TEST_CASE("cuda: flash attention bf16 error is at most twice a naive bf16 attention's", "[cuda][flash]") {
  REQUIRE_GPU();
  for (const AttentionCase c : {AttentionCase{4, 113, 113, 64}, AttentionCase{2, 451, 451, 40},
                                AttentionCase{2, 97, 97, 128}, AttentionCase{1, 1025, 1025, 32}}) {
    INFO("bh " << c.bh << " sq " << c.sq << " sk " << c.sk << " d " << c.d);
    const double scale = 1.0 / std::sqrt(double(c.d));
    const auto q = loom::test::random_values(c.bh * c.sq * c.d, 21, 1.5, true);
    const auto k = loom::test::random_values(c.bh * c.sk * c.d, 22, 1.5, true);
    const auto v = loom::test::random_values(c.bh * c.sk * c.d, 23, 1.0, true);
    const auto d_o = loom::test::random_values(c.bh * c.sq * c.d, 24, 1.0, true);
    const auto exact = loom::test::attention_exact(c, scale, q, k, v, d_o);
    const auto naive = loom::test::attention_naive_bf16(c, scale, q, k, v, d_o);
    const auto fused = run_attention<bf16>(c, scale, q, k, v, d_o);
    const auto cublas = run_attention<bf16>(c, scale, q, k, v, d_o, true);
    const std::pair<const std::vector<double>*, const std::vector<double>*> outs[] = {
        {&fused.o, &naive.o}, {&fused.dq, &naive.dq}, {&fused.dk, &naive.dk}, {&fused.dv, &naive.dv}};
    const std::vector<double>* refs[] = {&exact.o, &exact.dq, &exact.dk, &exact.dv};
    const char* names[] = {"O", "dQ", "dK", "dV"};
    for (int t = 0; t < 4; ++t) {
      const double err_fused = loom::test::relative_max_error(*outs[t].first, *refs[t]);
      const double err_naive = loom::test::relative_max_error(*outs[t].second, *refs[t]);
      INFO(names[t] << ": fused " << err_fused << " naive bf16 " << err_naive);
      REQUIRE(err_fused <= 2 * err_naive);
    }
    // The cuBLAS baseline of the benchmarks computes the same attention (bf16 rounding of P and dS).
    INFO("cublas O error " << loom::test::relative_max_error(cublas.o, exact.o));
    REQUIRE(loom::test::relative_max_error(cublas.o, exact.o) <= 4 * loom::test::relative_max_error(naive.o, exact.o));
  }
}

TEST_CASE("cuda: cuBLAS baseline attention fp32 matches exact attention", "[cuda][flash]") {
  REQUIRE_GPU();
  const AttentionCase c{2, 113, 97, 64};
  const double scale = 0.125;
  const auto q = loom::test::random_values(c.bh * c.sq * c.d, 31, 1.0, false);
  const auto k = loom::test::random_values(c.bh * c.sk * c.d, 32, 1.0, false);
  const auto v = loom::test::random_values(c.bh * c.sk * c.d, 33, 1.0, false);
  const auto d_o = loom::test::random_values(c.bh * c.sq * c.d, 34, 1.0, false);
  const auto ref = loom::test::attention_exact(c, scale, q, k, v, d_o);
  const auto got = run_attention<float>(c, scale, q, k, v, d_o, true);
  // cuBLAS may use TF32 only when asked; the default fp32 path is exact-ish.
  const loom::test::Tol tol{3e-5, 3e-4};
  loom::test::require_close(got.o, ref.o, tol);
  loom::test::require_close(got.dq, ref.dq, tol);
  loom::test::require_close(got.dk, ref.dk, tol);
  loom::test::require_close(got.dv, ref.dv, tol);
}

TEST_CASE("cuda: flash attention backward is deterministic and large scores stay finite", "[cuda][flash]") {
  REQUIRE_GPU();
  const AttentionCase c{2, 200, 200, 64};
  const auto q = loom::test::random_values(c.bh * c.sq * c.d, 41, 30.0, false);  // scores in the thousands
  const auto k = loom::test::random_values(c.bh * c.sk * c.d, 42, 30.0, false);
  const auto v = loom::test::random_values(c.bh * c.sk * c.d, 43, 1.0, false);
  const auto d_o = loom::test::random_values(c.bh * c.sq * c.d, 44, 1.0, false);
  const auto a = run_attention<float>(c, 0.125, q, k, v, d_o);
  const auto b = run_attention<float>(c, 0.125, q, k, v, d_o);
  REQUIRE(a.dq == b.dq);
  REQUIRE(a.dk == b.dk);
  REQUIRE(a.dv == b.dv);
  const auto a16 = run_attention<bf16>(c, 0.125, q, k, v, d_o), b16 = run_attention<bf16>(c, 0.125, q, k, v, d_o);
  REQUIRE(a16.dq == b16.dq);
  REQUIRE(a16.dk == b16.dk);
  REQUIRE(a16.dv == b16.dv);
  for (const auto* t : {&a.o, &a.dq, &a.dk, &a.dv})
    for (double x : *t) REQUIRE(std::isfinite(x));
  // Scores of magnitude ~1e3 carry an fp32 rounding error of up to γ_D·Σ|q||k|·scale (γ_D = D·2⁻²⁴);
  // softmax moves O by at most twice the score error times max|v|. That bound, not a guess, is the
  // tolerance here.
  double score_error = 0, max_v = 0;
  for (int64_t h = 0; h < c.bh; ++h)
    for (int64_t i = 0; i < c.sq; ++i)
      for (int64_t j = 0; j < c.sk; ++j) {
        double abs_dot = 0;
        for (int64_t x = 0; x < c.d; ++x) abs_dot += std::abs(q[(h * c.sq + i) * c.d + x] * k[(h * c.sk + j) * c.d + x]);
        score_error = std::max(score_error, 0.125 * abs_dot * c.d * std::ldexp(1.0, -24));
      }
  for (double x : v) max_v = std::max(max_v, std::abs(x));
  INFO("score rounding bound " << score_error);
  const auto ref = loom::test::attention_exact(c, 0.125, q, k, v, d_o);
  loom::test::require_close(a.o, ref.o, {2 * score_error * max_v, 0});
}

TEST_CASE("cuda: patchify_gather matches patchify_group + gather_tokens", "[cuda][patch]") {
  REQUIRE_GPU();
  const loom::kernels::patch::ImageGeometry g{12, 24, 40, 8};  // 3 x 5 patches of 8 x 8 x 12
  const int64_t B = 3, K = 7;
  loom::Generator gen(3);
  const auto image = loom::randn<float>({B, g.channels, g.height, g.width}, gen);  // [B, C, H, W]
  std::vector<int64_t> ids;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < K; ++k) ids.push_back((k * 2 + b) % g.patches());
  const auto ids_t = loom::Tensor<int64_t>::from_vector({B, K}, ids);
  const auto expected = loom::mask::gather_tokens(loom::mask::patchify_group(image, g.patch), ids_t);  // [B, K, P]
  auto img = DeviceBuffer<float>::from_host(image.contiguous().to_vector());
  auto dids = DeviceBuffer<int64_t>::from_host(ids);
  DeviceBuffer<float> out{size_t(B * K * g.token_size())};
  loom::kernels::patchify_gather(img.data(), dids.data(), out.data(), B, K, g);
  const auto got = out.to_host();
  const auto want = expected.contiguous().to_vector();
  REQUIRE(got == want);  // a pure copy: bit-identical

  // Without ids: all patches in grid order, in bf16.
  auto img16 = DeviceBuffer<bf16>::from_host(cast<bf16>(widen(image.contiguous().to_vector())));
  DeviceBuffer<bf16> all{size_t(B * g.patches() * g.token_size())};
  loom::kernels::patchify_gather<bf16>(img16.data(), nullptr, all.data(), B, g.patches(), g);
  const auto full = loom::mask::patchify_group(image, g.patch).contiguous().to_vector();
  const auto got16 = all.to_host();
  for (size_t i = 0; i < full.size(); ++i) REQUIRE(got16[i].bits == bf16(full[i]).bits);
  REQUIRE_THROWS_WITH(loom::kernels::patchify_gather(img.data(), nullptr, out.data(), B, K, g),
                      Catch::Contains("without ids_keep"));

  // Odd patch size (the scalar kernel: p = 3 is no multiple of 4), 2 channels, all patches.
  const loom::kernels::patch::ImageGeometry odd{2, 9, 12, 3};
  const auto small = loom::randn<float>({B, odd.channels, odd.height, odd.width}, gen);  // [B, 2, 9, 12]
  auto dsmall = DeviceBuffer<float>::from_host(small.contiguous().to_vector());
  DeviceBuffer<float> odd_out(size_t(B * odd.patches() * odd.token_size()));
  loom::kernels::patchify_gather(dsmall.data(), nullptr, odd_out.data(), B, odd.patches(), odd);
  REQUIRE(odd_out.to_host() == loom::mask::patchify_group(small, odd.patch).contiguous().to_vector());
}

TEST_CASE("cuda: unshuffle forward and backward match the CPU token ops", "[cuda][patch]") {
  REQUIRE_GPU();
  for (const int64_t D : {70, 64}) {  // element-wise rows and 16-byte rows
    INFO("dim " << D);
    const int64_t B = 3, T = 49, K = 12;
    loom::Generator gen(4);
    auto visible = loom::randn<float>({B, K, D}, gen).requires_grad_();    // [B, K, D]
    auto mask_token = loom::randn<float>({1, 1, D}, gen).requires_grad_();  // [1, 1, D]
    std::vector<int64_t> restore;
    for (int64_t b = 0; b < B; ++b) {
      std::vector<int64_t> perm(T);
      for (int64_t t = 0; t < T; ++t) perm[t] = (t * 5 + b * 3) % T;  // 5 is coprime to 49: a permutation
      restore.insert(restore.end(), perm.begin(), perm.end());
    }
    const auto restore_t = loom::Tensor<int64_t>::from_vector({B, T}, restore);
    const auto out = loom::mask::unshuffle_tokens(visible, mask_token, restore_t);  // [B, T, D]
    const auto grad_out = loom::randn<float>({B, T, D}, gen);
    loom::sum(out * grad_out).backward();

    auto dvis = DeviceBuffer<float>::from_host(visible.detach().to_vector());
    auto dmt = DeviceBuffer<float>::from_host(mask_token.detach().to_vector());
    auto dres = DeviceBuffer<int64_t>::from_host(restore);
    DeviceBuffer<float> dout{size_t(B * T * D)}, gvis{size_t(B * K * D)}, gmt{size_t(D)};
    loom::kernels::unshuffle_forward(dvis.data(), dmt.data(), dres.data(), dout.data(), B, K, T, D);
    REQUIRE(dout.to_host() == out.detach().contiguous().to_vector());
    auto dgrad = DeviceBuffer<float>::from_host(grad_out.to_vector());
    loom::kernels::unshuffle_backward(dgrad.data(), dres.data(), gvis.data(), gmt.data(), B, K, T, D);
    REQUIRE(gvis.to_host() == visible.grad().to_vector());  // a permutation: exact
    loom::test::require_close(widen(gmt.to_host()), widen(mask_token.grad().to_vector()), {1e-5, 1e-5});
  }
}

TEST_CASE("cuda: masked MSE forward and backward match a double loop", "[cuda][loss]") {
  REQUIRE_GPU();
  const int64_t R = 301, P = 192;
  const auto pred = loom::test::random_values(R * P, 51, 1.0, false);
  const auto target = loom::test::random_values(R * P, 52, 3.0, false);
  std::vector<float> mask(R);
  for (int64_t r = 0; r < R; ++r) mask[r] = (r * 7) % 4 != 0 ? 1.0f : 0.0f;
  for (bool norm_pix : {false, true}) {
    INFO("norm_pix " << norm_pix);
    double hidden = 0, loss = 0;
    std::vector<double> grad(R * P, 0.0);
    for (int64_t r = 0; r < R; ++r) hidden += mask[r];
    for (int64_t r = 0; r < R; ++r) {
      double mean = 0, var = 0;
      for (int64_t e = 0; e < P; ++e) mean += target[r * P + e] / P;
      for (int64_t e = 0; e < P; ++e) var += (target[r * P + e] - mean) * (target[r * P + e] - mean) / (P - 1);
      double err = 0;
      for (int64_t e = 0; e < P; ++e) {
        const double t = norm_pix ? (target[r * P + e] - mean) / std::sqrt(var + 1e-6) : target[r * P + e];
        err += (pred[r * P + e] - t) * (pred[r * P + e] - t);
        grad[r * P + e] = 0.5 * mask[r] * 2 * (pred[r * P + e] - t) / (P * hidden);
      }
      loss += mask[r] * err / P;
    }
    loss /= hidden;
    auto dp = DeviceBuffer<float>::from_host(cast<float>(pred)), dt = DeviceBuffer<float>::from_host(cast<float>(target));
    auto dm = DeviceBuffer<float>::from_host(mask);
    DeviceBuffer<float> g{size_t(R * P)}, rows{size_t(R)}, result{2};
    loom::kernels::masked_mse_forward_backward(dp.data(), dt.data(), dm.data(), R, P, norm_pix, 0.5f, g.data(),
                                               rows.data(), result.data());
    const auto res = result.to_host();
    loom::test::require_close(std::vector<double>{res[0], res[1]}, {loss, hidden}, {1e-6, 1e-5});
    loom::test::require_close(widen(g.to_host()), grad, {1e-9, 1e-4});
  }
  // No hidden row: zero loss and zero gradient rather than a division by zero.
  std::vector<float> none(R, 0.0f);
  auto dm = DeviceBuffer<float>::from_host(none);
  auto dp = DeviceBuffer<float>::from_host(cast<float>(pred));
  DeviceBuffer<float> g{size_t(R * P)}, rows{size_t(R)}, result{2};
  loom::kernels::masked_mse_forward_backward(dp.data(), dp.data(), dm.data(), R, P, true, 1.0f, g.data(), rows.data(),
                                             result.data());
  REQUIRE(result.to_host() == std::vector<float>{0.0f, 0.0f});
  for (float x : g.to_host()) REQUIRE(x == 0.0f);
}

TEST_CASE("cuda: the caching allocator reuses blocks and reports failures as loom::Error", "[cuda][memory]") {
  REQUIRE_GPU();
  const auto before = loom::cuda::device_memory_stats();
  { DeviceBuffer<float> a(1 << 20); }
  const auto mid = loom::cuda::device_memory_stats();
  { DeviceBuffer<float> b(1 << 20); }  // same rounded size: served from the cache
  const auto after = loom::cuda::device_memory_stats();
  REQUIRE(after.device_mallocs == mid.device_mallocs);
  REQUIRE(mid.device_mallocs <= before.device_mallocs + 1);
  REQUIRE(after.allocated_bytes == before.allocated_bytes);
  REQUIRE(after.peak_bytes >= (size_t(4) << 20));
  REQUIRE_THROWS_WITH(DeviceBuffer<float>(size_t(1) << 50), Catch::Contains("cudaMalloc"));
  REQUIRE_THROWS_WITH(loom::cuda::device_release(reinterpret_cast<void*>(0x1234)),
                      Catch::Contains("not allocated by loom"));
}

TEST_CASE("cuda: device random fills reproduce the CPU generator's numbers", "[cuda][random]") {
  REQUIRE_GPU();
  const int64_t n = 1000003;  // not a multiple of 4: the last Philox block is partly used
  const uint64_t seed = 1234, offset = 17;
  {
    loom::Generator gen(seed, offset);
    const auto cpu = loom::uniform<float>({n}, -2.0, 3.0, gen).to_vector();
    DeviceBuffer<float> out{size_t(n)};
    loom::kernels::fill_uniform(out.data(), n, seed, offset, -2.0, 3.0);
    REQUIRE(out.to_host() == cpu);  // bit-identical
  }
  {
    loom::Generator gen(seed, offset);
    const auto cpu = loom::uniform<bf16>({n}, 0.0, 1.0, gen).to_vector();
    DeviceBuffer<bf16> out{size_t(n)};
    loom::kernels::fill_uniform(out.data(), n, seed, offset, 0.0, 1.0);
    const auto got = out.to_host();
    for (int64_t i = 0; i < n; ++i) REQUIRE(got[size_t(i)].bits == cpu[size_t(i)].bits);
  }
  {
    loom::Generator gen(seed, offset);
    const auto cpu = loom::bernoulli({n}, 0.3, gen).to_vector();
    DeviceBuffer<uint8_t> out{size_t(n)};
    loom::kernels::fill_bernoulli(out.data(), n, seed, offset, 0.3);
    REQUIRE(out.to_host() == cpu);
  }
  {
    // Box-Muller goes through log/cos/sin in double: the device's libm may differ from glibc's in
    // the last bit of a double, which moves the float result by at most one ulp.
    loom::Generator gen(seed, offset);
    const auto cpu = loom::normal<float>({n}, 0.5, 2.0, gen).to_vector();
    DeviceBuffer<float> out{size_t(n)};
    loom::kernels::fill_normal(out.data(), n, seed, offset, 0.5, 2.0);
    const auto got = out.to_host();
    int64_t identical = 0;
    for (int64_t i = 0; i < n; ++i) {
      identical += got[size_t(i)] == cpu[size_t(i)];
      REQUIRE(std::abs(got[size_t(i)] - cpu[size_t(i)]) <= std::nextafter(std::abs(cpu[size_t(i)]), INFINITY) -
                                                                std::abs(cpu[size_t(i)]));
    }
    INFO(identical << " of " << n << " bit-identical");
    REQUIRE(identical >= n * 999 / 1000);
  }
  REQUIRE_THROWS_WITH(loom::kernels::fill_uniform<float>(nullptr, 4, 1, 0, 1.0, 0.0), Catch::Contains("lo <= hi"));
}

TEST_CASE("cuda: fused AdamW matches the update in double, fp32 and mixed precision", "[cuda][adamw]") {
  REQUIRE_GPU();
  const int64_t n = 10007;
  auto p0 = loom::test::random_values(n, 81, 1.0, true);
  loom::kernels::AdamWStep s;
  s.lr = 3e-3;
  s.weight_decay = 0.05;
  std::vector<double> p = p0, m(size_t(n), 0.0), v(size_t(n), 0.0);
  auto dp = DeviceBuffer<float>::from_host(cast<float>(p0));
  auto master = DeviceBuffer<float>::from_host(cast<float>(p0));
  auto weights = DeviceBuffer<bf16>::from_host(cast<bf16>(p0));
  DeviceBuffer<float> dm{size_t(n)}, dv{size_t(n)}, mm{size_t(n)}, mv{size_t(n)};
  dm.zero();
  dv.zero();
  mm.zero();
  mv.zero();
  for (int64_t t = 1; t <= 3; ++t) {
    const auto g = loom::test::random_values(n, 90 + uint64_t(t), 0.1, true);  // bf16-exact: both forms see it
    s.step = t;
    const double bc1 = 1 - std::pow(s.beta1, double(t)), bc2 = 1 - std::pow(s.beta2, double(t));
    // The moments use the betas as the optimizer stores them, in fp32 (as loom::optim::AdamW):
    // 1 - float(0.999) differs from 0.001 by 1.3e-5 relative, far above fp32 rounding.
    const double b1 = double(float(s.beta1)), b2 = double(float(s.beta2));
    for (int64_t i = 0; i < n; ++i) {
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      p[i] = p[i] * (1 - s.lr * s.weight_decay) - s.lr * (m[i] / bc1) / (std::sqrt(v[i] / bc2) + s.eps);
    }
    auto dg = DeviceBuffer<float>::from_host(cast<float>(g));
    auto dg16 = DeviceBuffer<bf16>::from_host(cast<bf16>(g));
    loom::kernels::adamw_step(dp.data(), dg.data(), dm.data(), dv.data(), n, s);
    loom::kernels::adamw_step_mixed(master.data(), weights.data(), dg16.data(), mm.data(), mv.data(), n, s);
  }
  // fp32 arithmetic on O(1) values over 3 steps: a few float ulps.
  loom::test::require_close(widen(dp.to_host()), p, {1e-6, 1e-6});
  loom::test::require_close(widen(master.to_host()), p, {1e-6, 1e-6});
  // m mixes gradients of both signs (cancellation): its error is bounded by the rounding of the
  // terms, ~6 operations × 2⁻²⁴ × |0.1·g| ≤ 2e-8, not by |m|.
  loom::test::require_close(widen(dm.to_host()), m, {2e-8, 1e-6});
  loom::test::require_close(widen(dv.to_host()), v, {1e-12, 1e-6});
  const auto w = weights.to_host();
  const auto mw = master.to_host();
  for (int64_t i = 0; i < n; ++i) REQUIRE(w[size_t(i)].bits == bf16(mw[size_t(i)]).bits);  // bf16 copy of the master
  s.step = 0;
  REQUIRE_THROWS_WITH(loom::kernels::adamw_step(dp.data(), dp.data(), dm.data(), dv.data(), n, s),
                      Catch::Contains("step counts from 1"));
}
