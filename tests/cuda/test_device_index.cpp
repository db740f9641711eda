// The index ops, concat, the MAE token and loss ops, random fills and AdamW on CUDA tensors, each
// against the same op on CPU tensors: forward values, gradients through autograd (an explicit
// upstream gradient, so no other device op is involved), error messages. float and bf16, odd sizes,
// duplicate indices, non-contiguous inputs. SKIPs with the reason when no usable GPU is present; the
// per-thread index arithmetic is checked on the CPU by test_kernel_math (test_index_math.cpp).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "loom/core/random.hpp"
#include "loom/cuda/device_info.hpp"
#include "loom/mask/masked_loss.hpp"
#include "loom/mask/tokens.hpp"
#include "loom/ops/concat.hpp"
#include "loom/ops/index.hpp"
#include "loom/optim/adamw.hpp"
#include "loom/optim/clip.hpp"
#include "support/check.hpp"
#include "support/gpu.hpp"

using loom::bf16;
using loom::CPU;
using loom::CUDA;
using loom::Shape;
using loom::Tensor;

namespace {

// Multiples of 1/64 in [-2, 2): exact in bf16, so CPU and GPU see the same inputs whatever the type.
template <class T>
Tensor<T> values(const Shape& shape, int salt) {
  std::vector<T> v(size_t(shape.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = T(float(int((i * 37 + size_t(salt) * 11) % 256) - 128) / 64.0f);
  return Tensor<T>::from_vector(shape, v);
}

Tensor<int64_t> ids(const Shape& shape, std::vector<int64_t> v) { return Tensor<int64_t>::from_vector(shape, v); }

template <class T, class Dev>
Tensor<T, CUDA> up(const Tensor<T, Dev>& t) {
  return t.template to_device<CUDA>();
}

// A fresh leaf on each device with the same values.
template <class T>
std::pair<Tensor<T>, Tensor<T, CUDA>> leaves(const Tensor<T>& values) {
  Tensor<T> cpu = values.clone();
  cpu.requires_grad_();
  Tensor<T, CUDA> dev = up(values).detach();
  dev.requires_grad_();
  return {cpu, dev};
}

template <class A, class B>
void require_same(const std::vector<A>& got, const std::vector<B>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i);
    REQUIRE(double(got[i]) == double(want[i]));
  }
}

template <class T>
void require_same(const Tensor<T, CUDA>& got, const Tensor<T>& want) {
  REQUIRE(got.shape() == want.shape());
  require_same(got.to_vector(), want.contiguous().to_vector());
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const loom::Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEMPLATE_TEST_CASE("CUDA index ops: forward equals the CPU ops exactly", "[cuda][index]", float, bf16) {
  REQUIRE_GPU();
  using T = TestType;
  const Tensor<T> x = values<T>({7, 5, 9}, 1).transpose(0, 2);  // [9, 5, 7], non-contiguous
  const Tensor<T, CUDA> xd = up(values<T>({7, 5, 9}, 1)).transpose(0, 2);
  const Tensor<int64_t> pick = ids({6}, {3, 0, 3, 8, 1, 3});  // duplicates
  require_same(loom::index_select(xd, 0, up(pick)), loom::index_select(x, 0, pick));
  const Tensor<int64_t> pick_last = ids({4}, {6, 6, 0, 2});
  require_same(loom::index_select(xd, -1, up(pick_last)), loom::index_select(x, -1, pick_last));

  std::vector<int64_t> g(3 * 5 * 7);  // gather along dim 1 of [9, 5, 7] with an index [3, 5, 7]
  for (size_t i = 0; i < g.size(); ++i) g[i] = int64_t((i * 3 + 1) % 5);
  const Tensor<int64_t> gi = ids({3, 5, 7}, g);
  require_same(loom::gather(xd, 1, up(gi)), loom::gather(x, 1, gi));
  const Tensor<int64_t> gi_t = ids({7, 5, 3}, g).transpose(0, 2);  // a non-contiguous index
  require_same(loom::gather(xd, 1, up(ids({7, 5, 3}, g)).transpose(0, 2)), loom::gather(x, 1, gi_t));

  // scatter_add: base [6, 5, 9], index [8, 4, 9] with repeats into 6 rows, src larger than index.
  const Tensor<T> base = values<T>({6, 5, 9}, 2);
  const Tensor<T> src_storage = values<T>({9, 9, 5}, 3);
  const Tensor<T> src = src_storage.transpose(1, 2);  // [9, 5, 9], non-contiguous
  const Tensor<T, CUDA> srcd = up(src_storage).transpose(1, 2);
  std::vector<int64_t> s(8 * 4 * 9);
  for (size_t i = 0; i < s.size(); ++i) s[i] = int64_t((i * 7 + 2) % 6);
  const Tensor<int64_t> si = ids({8, 4, 9}, s);
  // The device sums in the CPU's order, in fp32 for both types: bit-identical.
  require_same(loom::scatter_add(up(base), 0, up(si), srcd), loom::scatter_add(base, 0, si, src));
  require_same(loom::scatter_add(up(base).transpose(1, 2), 0, up(si).transpose(1, 2), srcd.transpose(1, 2)),
               loom::scatter_add(base.transpose(1, 2), 0, si.transpose(1, 2), src.transpose(1, 2)));
}

TEMPLATE_TEST_CASE("CUDA index ops and concat: gradients equal the CPU's", "[cuda][index][autograd]", float, bf16) {
  REQUIRE_GPU();
  using T = TestType;
  const Tensor<int64_t> pick = ids({6}, {3, 0, 3, 4, 1, 3});
  {
    auto [x, xd] = leaves(values<T>({5, 7}, 4));
    const Tensor<T> g = values<T>({6, 7}, 5);
    loom::index_select(x, 0, pick).backward(g);
    loom::index_select(xd, 0, up(pick)).backward(up(g));
    require_same(xd.grad(), x.grad());
  }
  {
    auto [x, xd] = leaves(values<T>({4, 9}, 6));
    std::vector<int64_t> v(4 * 11);
    for (size_t i = 0; i < v.size(); ++i) v[i] = int64_t((i * 5 + 3) % 9);
    const Tensor<int64_t> gi = ids({4, 11}, v);
    const Tensor<T> g = values<T>({4, 11}, 7);
    loom::gather(x, 1, gi).backward(g);
    loom::gather(xd, 1, up(gi)).backward(up(g));
    require_same(xd.grad(), x.grad());
  }
  {
    auto [base, based] = leaves(values<T>({5, 3}, 8));
    auto [src, srcd] = leaves(values<T>({7, 3}, 9));
    const Tensor<int64_t> si = ids({6, 2}, {0, 4, 4, 4, 1, 0, 4, 2, 3, 3, 0, 0});  // src beyond the index: zero grad
    const Tensor<T> g = values<T>({5, 3}, 10);
    loom::scatter_add(base, 0, si, src).backward(g);
    loom::scatter_add(based, 0, up(si), srcd).backward(up(g));
    require_same(based.grad(), base.grad());
    require_same(srcd.grad(), src.grad());
  }
  {
    auto [a, ad] = leaves(values<T>({3, 4}, 11));
    auto [b, bd] = leaves(values<T>({2, 3}, 12));  // used transposed: non-contiguous [3, 2]
    const Tensor<T> g = values<T>({3, 6}, 13);
    const Tensor<T> out = loom::concat(std::vector<Tensor<T>>{a, b.transpose(0, 1)}, 1);
    const Tensor<T, CUDA> outd = loom::concat(std::vector<Tensor<T, CUDA>>{ad, bd.transpose(0, 1)}, 1);
    require_same(outd, out);
    out.backward(g);
    outd.backward(up(g));
    require_same(ad.grad(), a.grad());
    require_same(bd.grad(), b.grad());
    require_same(loom::stack(std::vector<Tensor<T, CUDA>>{ad.detach(), ad.detach()}, 1),
                 loom::stack(std::vector<Tensor<T>>{a.detach(), a.detach()}, 1));
  }
}

TEST_CASE("CUDA index ops: out-of-range indices throw the CPU's message", "[cuda][index]") {
  REQUIRE_GPU();
  const Tensor<float> x = values<float>({4, 6}, 1);
  const Tensor<int64_t> bad = ids({5}, {1, 3, 7, -1, 9});  // first bad value: 7
  const std::string cpu = error_of([&] { loom::index_select(x, 1, bad); });
  REQUIRE(cpu.find("index_select: index 7 out of range") != std::string::npos);
  REQUIRE(error_of([&] { loom::index_select(up(x), 1, up(bad)); }) == cpu);
  const Tensor<int64_t> gbad = ids({2, 3}, {0, 1, 2, 3, -2, 4});  // along dim 0 (size 4): first bad -2
  REQUIRE(error_of([&] { loom::gather(up(x), 0, up(gbad)); }) == error_of([&] { loom::gather(x, 0, gbad); }));
  REQUIRE(error_of([&] { loom::scatter_add(up(x), 0, up(gbad), up(x)); }) ==
          error_of([&] { loom::scatter_add(x, 0, gbad, x); }));
  // A valid index after a failure still works (the check leaves no state behind).
  require_same(loom::index_select(up(x), 1, up(ids({2}, {5, 0}))), loom::index_select(x, 1, ids({2}, {5, 0})));
}

TEMPLATE_TEST_CASE("CUDA MAE token ops equal the CPU ops, forward and backward", "[cuda][mask][patch]", float, bf16) {
  REQUIRE_GPU();
  using T = TestType;
  for (int64_t p : {4, 3}) {  // 4: the fp32 vectorized kernel; 3: the scalar one
    auto [img, imgd] = leaves(values<T>({2, 3, 4 * p, 3 * p}, 14));
    const Tensor<T> tokens = loom::mask::patchify_group(img, p);  // [2, 12, p·p·3]
    const Tensor<T, CUDA> tokensd = loom::mask::patchify_group(imgd, p);
    require_same(tokensd, tokens);
    const Tensor<T> g = values<T>(tokens.shape(), 15);
    tokens.backward(g);
    tokensd.backward(up(g));
    require_same(imgd.grad(), img.grad());
  }
  const int64_t B = 3, Tn = 11, K = 4, D = 13;
  std::mt19937 rng(7);
  std::vector<int64_t> restore, keep;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int64_t> perm(static_cast<size_t>(Tn));
    for (int64_t t = 0; t < Tn; ++t) perm[size_t(t)] = t;
    std::shuffle(perm.begin(), perm.end(), rng);
    restore.insert(restore.end(), perm.begin(), perm.end());
    keep.insert(keep.end(), perm.begin(), perm.begin() + K);
  }
  const Tensor<int64_t> ids_restore = ids({B, Tn}, restore), ids_keep = ids({B, K}, keep);
  {
    auto [x, xd] = leaves(values<T>({B, Tn, D}, 16));
    const Tensor<T> out = loom::mask::gather_tokens(x, ids_keep);
    const Tensor<T, CUDA> outd = loom::mask::gather_tokens(xd, up(ids_keep));
    require_same(outd, out);
    const Tensor<T> g = values<T>({B, K, D}, 17);
    out.backward(g);
    outd.backward(up(g));
    require_same(xd.grad(), x.grad());
  }
  {
    auto [vis, visd] = leaves(values<T>({B, K, D}, 18));
    auto [tok, tokd] = leaves(values<T>({1, 1, D}, 19));
    const Tensor<T> out = loom::mask::unshuffle_tokens(vis, tok, ids_restore);
    const Tensor<T, CUDA> outd = loom::mask::unshuffle_tokens(visd, tokd, up(ids_restore));
    require_same(outd, out);
    const Tensor<T> g = values<T>({B, Tn, D}, 20);
    out.backward(g);
    outd.backward(up(g));
    require_same(visd.grad(), vis.grad());
    REQUIRE(tokd.grad().shape() == tok.grad().shape());
    loom::test::require_close(tokd.grad(), loom::test::to_double(tok.grad()), loom::test::tol_for<T>());  // fp32 sum vs double
  }
  const Tensor<int64_t> bad = ids({B, K}, {0, 1, 2, 3, 4, 5, 11, 7, 8, 9, 12, 1});
  const Tensor<T> x = values<T>({B, Tn, D}, 21);
  REQUIRE(error_of([&] { loom::mask::gather_tokens(up(x), up(bad)); }) ==
          error_of([&] { loom::mask::gather_tokens(x, bad); }));
}

TEMPLATE_TEST_CASE("CUDA masked group loss equals the CPU loss and gradient", "[cuda][mask][loss]", float, bf16) {
  REQUIRE_GPU();
  using T = TestType;
  const int64_t B = 3, L = 7;
  const std::vector<int64_t> P = {12, 5, 9};
  for (bool norm_pix : {false, true}) {
    for (bool drop_group : {false, true}) {  // a group without hidden tokens takes no part
      std::vector<float> m(size_t(B * 3 * L), 0.0f);
      for (size_t i = 0; i < m.size(); ++i) m[i] = (i * 5) % 3 != 0 ? 1.0f : 0.0f;
      if (drop_group)
        for (int64_t b = 0; b < B; ++b)
          for (int64_t l = 0; l < L; ++l) m[size_t(b * 3 * L + 2 * L + l)] = 0.0f;
      const Tensor<float> mask = Tensor<float>::from_vector({B, 3 * L}, m);
      std::vector<Tensor<T>> preds, targets;
      std::vector<Tensor<T, CUDA>> predsd, targetsd;
      for (int g = 0; g < 3; ++g) {
        auto [p, pd] = leaves(values<T>({B, L, P[size_t(g)]}, 22 + g));
        preds.push_back(p);
        predsd.push_back(pd);
        const Tensor<T> t = values<T>({B, L, P[size_t(g)]}, 30 + 2 * g);
        targets.push_back(t);
        targetsd.push_back(up(t));
      }
      const auto cpu = loom::mask::masked_group_loss(preds, targets, mask, norm_pix);
      const auto dev = loom::mask::masked_group_loss(predsd, targetsd, up(mask), norm_pix);
      REQUIRE(dev.hidden == cpu.hidden);
      const loom::test::Tol tol{1e-6, 1e-5};  // fp32 sums in a fixed order vs the CPU's double
      loom::test::require_close(dev.per_group, cpu.per_group, tol);
      loom::test::require_close(dev.total, loom::test::to_double(cpu.total), loom::test::tol_for<T>());
      const Tensor<T> half = Tensor<T>::scalar(T(0.5f));  // a loss gradient other than 1: scaled through mul
      cpu.total.backward(half);
      dev.total.backward(up(half));
      for (int g = 0; g < 3; ++g)
        loom::test::require_close(predsd[size_t(g)].grad(), loom::test::to_double(preds[size_t(g)].grad()),
                                  std::is_same_v<T, float> ? tol : loom::test::tol_for<T>());
      const auto base = loom::mask::mean_visible_baseline(targets, mask, norm_pix);
      const auto based = loom::mask::mean_visible_baseline(targetsd, up(mask), norm_pix);
      REQUIRE(based.per_group == base.per_group);
    }
  }
}

TEST_CASE("CUDA random fills give the CPU generator's numbers", "[cuda][random]") {
  REQUIRE_GPU();
  for (int64_t n : {1, 7, 4099}) {
    loom::Generator a(1234, 5), b(1234, 5);
    require_same(loom::uniform<float, CUDA>({n}, -0.5, 2.0, a), loom::uniform<float, CPU>({n}, -0.5, 2.0, b));
    require_same(loom::uniform<bf16, CUDA>({n}, -3.0, 3.0, a), loom::uniform<bf16, CPU>({n}, -3.0, 3.0, b));
    require_same(loom::bernoulli<CUDA>({n}, 0.3, a), loom::bernoulli<CPU>({n}, 0.3, b));
    REQUIRE(a.offset() == b.offset());
    // Normals go through log/cos/sin in double: within one float ulp of the CPU's (docs/cuda.md).
    const std::vector<float> nd = loom::normal<float, CUDA>({n}, 0.5, 2.0, a).to_vector();
    const std::vector<float> nc = loom::normal<float, CPU>({n}, 0.5, 2.0, b).to_vector();
    for (size_t i = 0; i < nc.size(); ++i) {
      INFO("element " << i);
      REQUIRE(std::abs(nd[i] - nc[i]) <= std::abs(std::nextafter(nc[i], INFINITY) - nc[i]));
    }
    require_same(loom::randint<int64_t, CUDA>({n}, -4, 1000, a), loom::randint<int64_t, CPU>({n}, -4, 1000, b));
    require_same(loom::randperm<CUDA>(n, a), loom::randperm<CPU>(n, b));
    REQUIRE(a.offset() == b.offset());
  }
  // In-place fills of a non-contiguous view: element i of the view is element i of the draw.
  loom::Generator a(99), b(99);
  Tensor<float, CUDA> wd = Tensor<float, CUDA>::zeros({6, 5});
  Tensor<float> wc = Tensor<float>::zeros({6, 5});
  loom::uniform_(wd.transpose(0, 1).narrow(0, 1, 3), -1.0, 1.0, a);
  loom::uniform_(wc.transpose(0, 1).narrow(0, 1, 3), -1.0, 1.0, b);
  require_same(wd, wc);
  REQUIRE(error_of([] { loom::uniform<double, CUDA>({3}, 0.0, 1.0); }).find("float64") != std::string::npos);
}

TEMPLATE_TEST_CASE("CUDA AdamW steps equal the CPU optimizer's", "[cuda][adamw]", float, bf16) {
  REQUIRE_GPU();
  using T = TestType;
  const std::vector<Shape> shapes = {{37}, {5, 3}};
  std::vector<loom::optim::ParamGroup<T>> cpu_groups(2);
  std::vector<loom::optim::ParamGroup<T, CUDA>> dev_groups(2);
  cpu_groups[1].weight_decay = dev_groups[1].weight_decay = 0.05;
  cpu_groups[1].lr_scale = dev_groups[1].lr_scale = 0.5;
  for (size_t i = 0; i < shapes.size(); ++i) {
    const Tensor<T> p = values<T>(shapes[i], 40 + int(i));
    cpu_groups[i].params.emplace_back("p" + std::to_string(i), p.clone());
    dev_groups[i].params.emplace_back("p" + std::to_string(i), up(p));
  }
  const auto options = loom::optim::AdamWOptions{}.with_lr(1e-2).betas(0.9, 0.99);
  loom::optim::AdamW<T> cpu(cpu_groups, options);
  loom::optim::AdamW<T, CUDA> dev(dev_groups, options);
  for (int step = 0; step < 3; ++step) {
    for (size_t i = 0; i < shapes.size(); ++i) {
      const Tensor<T> g = values<T>(shapes[i], 50 + step * 3 + int(i));
      cpu.groups()[i].params[0].second.set_grad(g.clone());
      dev.groups()[i].params[0].second.set_grad(up(g));
    }
    cpu.step(0.1);
    dev.step(0.1);
  }
  // The same float operations; nvcc may contract a multiply-add the host compiler does not.
  const loom::test::Tol tol = std::is_same_v<T, float> ? loom::test::Tol{1e-6, 1e-5} : loom::test::tol_for<T>();
  for (size_t i = 0; i < shapes.size(); ++i)
    loom::test::require_close(dev.groups()[i].params[0].second,
                              loom::test::to_double(cpu.groups()[i].params[0].second), tol);
  const auto sc = cpu.named_state(), sd = dev.named_state();
  for (size_t k = 0; k < sc.size(); ++k) {
    INFO(sc[k].first);
    loom::test::require_close(sd[k].second, loom::test::to_double(sc[k].second), {1e-7, 1e-5});
  }
}

TEST_CASE("CUDA clip_grad_norm gives the CPU's norm and scaled gradients", "[cuda][adamw]") {
  REQUIRE_GPU();
  std::vector<Tensor<float>> cpu;
  std::vector<Tensor<float, CUDA>> dev;
  for (const Shape& s : {Shape{37}, Shape{5, 3}}) {
    const Tensor<float> g = values<float>(s, int(s.numel()));
    cpu.push_back(Tensor<float>::zeros(s));
    cpu.back().set_grad(g.clone());
    dev.push_back(Tensor<float, CUDA>::zeros(s));
    dev.back().set_grad(up(g));
  }
  dev.push_back(Tensor<float, CUDA>::zeros({3}));  // a parameter without a gradient is skipped
  const double norm_cpu = loom::optim::clip_grad_norm(cpu, 1.5);
  const double norm_dev = loom::optim::clip_grad_norm(dev, 1.5);
  // Multiples of 1/64: every square and every per-gradient fp32 sum of squares here is exact, so the
  // device's fp32 partial sums give the CPU's double norm exactly.
  REQUIRE(norm_dev == norm_cpu);
  REQUIRE(norm_cpu > 1.5);        // so the gradients were scaled
  for (size_t i = 0; i < cpu.size(); ++i)
    loom::test::require_close(dev[i].grad(), loom::test::to_double(cpu[i].grad()), loom::test::tol_for<float>());
}
