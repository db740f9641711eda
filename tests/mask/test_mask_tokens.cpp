// Token ops of the mask module (patchify/unpatchify, gather/unshuffle) and the masked group loss,
// each against a naive loop in double written from the specification, with gradchecks.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "loom/autograd/gradcheck.hpp"
#include "loom/mask/mask_plan.hpp"
#include "loom/mask/masked_loss.hpp"
#include "loom/mask/spec.hpp"
#include "loom/mask/strategy.hpp"
#include "loom/mask/tokens.hpp"
#include "support/check.hpp"
#include "support/random.hpp"

using loom::Shape;
using loom::Tensor;
using loom::test::random_tensor;
using loom::test::require_close;
namespace mask = loom::mask;

namespace {

template <class T>
std::vector<double> doubles(const Tensor<T>& t) {
  return loom::test::to_double(t);
}

void require_gradcheck(const loom::autograd::GradcheckFn& f, const std::vector<Tensor<double>>& inputs) {
  const auto result = loom::autograd::gradcheck(f, inputs);
  INFO(result.message);
  REQUIRE(result.ok);
}

// [B, C, H, W] -> [B, L, p·p·C], out[b, i·w + j, (u·p + v)·C + c] = x[b, c, i·p + u, j·p + v]:
// the MAE reference's einsum 'nchpwq->nhwpqc', written as an index loop.
template <class T>
std::vector<double> naive_patchify(const Tensor<T>& x, int64_t p) {
  const int64_t B = x.size(0), C = x.size(1), h = x.size(2) / p, w = x.size(3) / p;
  std::vector<double> out(static_cast<size_t>(B * h * w * p * p * C));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j)
        for (int64_t u = 0; u < p; ++u)
          for (int64_t v = 0; v < p; ++v)
            for (int64_t c = 0; c < C; ++c)
              out[size_t((((b * h + i) * w + j) * p * p + u * p + v) * C + c)] =
                  double(loom::compute_t<T>(x.at({b, c, i * p + u, j * p + v})));
  return out;
}

template <class T>
std::vector<double> naive_gather(const Tensor<T>& x, const Tensor<int64_t>& ids) {
  const int64_t B = x.size(0), D = x.size(2), K = ids.size(1);
  std::vector<double> out;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t d = 0; d < D; ++d) out.push_back(double(loom::compute_t<T>(x.at({b, ids.at({b, k}), d}))));
  return out;
}

template <class T>
std::vector<double> naive_unshuffle(const Tensor<T>& vis, const Tensor<T>& token, const Tensor<int64_t>& restore) {
  const int64_t B = vis.size(0), K = vis.size(1), D = vis.size(2), Tn = restore.size(1);
  std::vector<double> out;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < Tn; ++t)
      for (int64_t d = 0; d < D; ++d) {
        const int64_t j = restore.at({b, t});
        out.push_back(double(loom::compute_t<T>(j < K ? vis.at({b, j, d}) : token.at({0, 0, d}))));
      }
  return out;
}

// The spec's loss: per group the mean over hidden tokens of the per-patch MSE against the (optionally
// per-patch normalized, unbiased variance, +1e-6) target; total = mean over groups with hidden tokens.
struct NaiveLoss {
  double total = 0;
  std::vector<double> per_group;
};

std::vector<double> target_patch(const std::vector<double>& t, bool norm_pix) {
  if (!norm_pix) return t;
  const double n = double(t.size());
  double mean = 0;
  for (double v : t) mean += v;
  mean /= n;
  double var = 0;
  for (double v : t) var += (v - mean) * (v - mean);
  var /= (n - 1);
  std::vector<double> out;
  for (double v : t) out.push_back((v - mean) / std::sqrt(var + 1e-6));
  return out;
}

template <class T>
std::vector<double> patch_of(const Tensor<T>& x, int64_t b, int64_t l) {
  std::vector<double> out;
  for (int64_t i = 0; i < x.size(2); ++i) out.push_back(double(loom::compute_t<T>(x.at({b, l, i}))));
  return out;
}

template <class T>
NaiveLoss naive_loss(const std::vector<Tensor<T>>& preds, const std::vector<Tensor<T>>& targets, const Tensor<float>& m,
                     bool norm_pix) {
  const int G = int(preds.size());
  const int64_t B = preds[0].size(0), L = preds[0].size(1);
  NaiveLoss out;
  int active = 0;
  for (int g = 0; g < G; ++g) {
    double num = 0, den = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t l = 0; l < L; ++l) {
        const double w = m.at({b, g * L + l});
        if (w == 0) continue;
        const auto p = patch_of(preds[size_t(g)], b, l);
        const auto t = target_patch(patch_of(targets[size_t(g)], b, l), norm_pix);
        double se = 0;
        for (size_t i = 0; i < p.size(); ++i) se += (p[i] - t[i]) * (p[i] - t[i]);
        num += w * se / double(p.size());
        den += w;
      }
    out.per_group.push_back(den > 0 ? num / den : 0.0);
    if (den > 0) {
      out.total += out.per_group.back();
      ++active;
    }
  }
  if (active) out.total /= active;
  return out;
}

// Plan mask [B, G·L] for tests; `strategy` decides which groups have hidden tokens.
Tensor<float> plan_mask(const mask::Strategy& s, int64_t B, int G, int64_t L, uint64_t seed) {
  return mask::make_mask_plan(s, B, G, L, seed, 0).mask;
}

}  // namespace

TEST_CASE("patchify_group: MAE element order, inverse of unpatchify_group", "[mask][tokens]") {
  for (const int64_t p : {int64_t(1), int64_t(3)}) {
    const int64_t B = 2, C = 3, h = 2, w = 3, H = h * p, W = w * p;
    INFO("p = " << p);
    // Non-contiguous input: [B, C, W, H] transposed to [B, C, H, W].
    const Tensor<double> x = random_tensor<double>({B, C, W, H}, 11).transpose(2, 3);
    REQUIRE(!x.is_contiguous());
    const Tensor<double> patches = mask::patchify_group(x, p);  // [B, L, p·p·C]
    REQUIRE(patches.shape() == Shape{B, h * w, p * p * C});
    require_close(patches, naive_patchify(x, p));
    const Tensor<double> back = mask::unpatchify_group(patches, p, h, w);  // [B, C, H, W]
    REQUIRE(back.shape() == Shape{B, C, H, W});
    require_close(back, doubles(x.contiguous()));
    // And the other way round: unpatchify then patchify is the identity on patches.
    const Tensor<float> pf = random_tensor<float>({B, h * w, p * p * C}, 12);
    require_close(mask::patchify_group(mask::unpatchify_group(pf, p, h, w), p), doubles(pf));
  }
  // bf16 and a one-patch grid.
  const Tensor<loom::bf16> xb = random_tensor<loom::bf16>({1, 2, 4, 4}, 13);
  require_close(mask::patchify_group(xb, 4), naive_patchify(xb, 4));
  // Gradients flow through both (they are views/copies of autograd ops).
  require_gradcheck([](const std::vector<Tensor<double>>& in) { return mask::patchify_group(in[0], 2); },
                    {random_tensor<double>({2, 6, 4, 3}, 14).transpose(1, 3).detach().requires_grad_()});
  require_gradcheck([](const std::vector<Tensor<double>>& in) { return mask::unpatchify_group(in[0], 2, 2, 1); },
                    {random_tensor<double>({2, 2, 12}, 15).requires_grad_()});
}

TEST_CASE("patchify_group / unpatchify_group: error paths", "[mask][tokens]") {
  const Tensor<float> x = Tensor<float>::zeros({1, 2, 6, 8});
  REQUIRE_THROWS_WITH(mask::patchify_group(x, 4), Catch::Contains("patchify_group") && Catch::Contains("6x8") &&
                                                       Catch::Contains("patch 4"));
  REQUIRE_THROWS_WITH(mask::patchify_group(Tensor<float>::zeros({2, 6, 8}), 2), Catch::Contains("[2, 6, 8]"));
  REQUIRE_THROWS_AS(mask::patchify_group(x, 0), loom::Error);
  REQUIRE_THROWS_WITH(mask::unpatchify_group(Tensor<float>::zeros({1, 6, 8}), 2, 2, 2),
                      Catch::Contains("unpatchify_group") && Catch::Contains("[1, 6, 8]") && Catch::Contains("2x2"));
  REQUIRE_THROWS_WITH(mask::unpatchify_group(Tensor<float>::zeros({1, 4, 6}), 2, 2, 2), Catch::Contains("[1, 4, 6]"));
}

TEST_CASE("gather_tokens / unshuffle_tokens: against naive loops, non-contiguous inputs", "[mask][tokens]") {
  const int G = 2;
  for (const int64_t L : {int64_t(1), int64_t(7), int64_t(225)}) {
    const int64_t B = 3, D = 5, Tn = G * L;
    INFO("L = " << L);
    const mask::MaskPlan plan = mask::make_mask_plan(mask::Strategy::independent(0.75), B, G, L, 8, 1);
    const int64_t K = plan.visible;
    // x [B, T, D] as a transposed view of [B, D, T].
    const Tensor<float> x = random_tensor<float>({B, D, Tn}, 21).transpose(1, 2);
    const Tensor<float> kept = mask::gather_tokens(x, plan.ids_keep);  // [B, K, D]
    REQUIRE(kept.shape() == Shape{B, K, D});
    require_close(kept, naive_gather(x, plan.ids_keep));
    // ids given as a transposed view as well.
    const Tensor<int64_t> ids_t = plan.ids_keep.transpose(0, 1).contiguous().transpose(0, 1);
    if (K > 1) REQUIRE(!ids_t.is_contiguous());
    require_close(mask::gather_tokens(x, ids_t), naive_gather(x, plan.ids_keep));
    // Unshuffle with a non-contiguous visible tensor and a strided mask token.
    const Tensor<float> vis = random_tensor<float>({B, D, K}, 22).transpose(1, 2);  // [B, K, D]
    const Tensor<float> token = random_tensor<float>({1, 1, 2 * D}, 23).slice(2, 0, 2 * D, 2);  // [1, 1, D]
    const Tensor<float> full = mask::unshuffle_tokens(vis, token, plan.ids_restore);  // [B, T, D]
    REQUIRE(full.shape() == Shape{B, Tn, D});
    require_close(full, naive_unshuffle(vis, token, plan.ids_restore));
    // Unshuffling the gathered tokens puts every visible token back at its place.
    const Tensor<float> round_trip = mask::unshuffle_tokens(kept, token, plan.ids_restore);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < Tn; ++t)
        for (int64_t d = 0; d < D; ++d)
          REQUIRE(round_trip.at({b, t, d}) == (plan.mask.at({b, t}) == 0.0f ? x.at({b, t, d}) : token.at({0, 0, d})));
  }
  // Expanded (stride-0) tokens and bf16.
  const mask::MaskPlan plan = mask::make_mask_plan(mask::Strategy::disjoint(0.75), 2, 2, 7, 3, 0);
  const Tensor<loom::bf16> row = random_tensor<loom::bf16>({1, 1, 4}, 24);
  const Tensor<loom::bf16> xe = row.expand({2, 14, 4});
  require_close(mask::gather_tokens(xe, plan.ids_keep), naive_gather(xe, plan.ids_keep));
  const Tensor<loom::bf16> vb = random_tensor<loom::bf16>({2, plan.visible, 4}, 25);
  require_close(mask::unshuffle_tokens(vb, row, plan.ids_restore), naive_unshuffle(vb, row, plan.ids_restore));
}

TEST_CASE("gather_tokens / unshuffle_tokens: error paths name both shapes", "[mask][tokens]") {
  const Tensor<float> x = Tensor<float>::zeros({2, 6, 3});
  REQUIRE_THROWS_WITH(mask::gather_tokens(Tensor<float>::zeros({6, 3}), Tensor<int64_t>::zeros({2, 2})),
                      Catch::Contains("gather_tokens") && Catch::Contains("[6, 3]"));
  REQUIRE_THROWS_WITH(mask::gather_tokens(x, Tensor<int64_t>::zeros({3, 2})),
                      Catch::Contains("gather_tokens") && Catch::Contains("[3, 2]") && Catch::Contains("[2, 6, 3]"));
  REQUIRE_THROWS_WITH(mask::gather_tokens(x, Tensor<int64_t>::full({2, 2}, 6)),
                      Catch::Contains("holds 6") && Catch::Contains("[0, 6)"));
  REQUIRE_THROWS_WITH(mask::gather_tokens(x, Tensor<int64_t>::full({2, 2}, -1)), Catch::Contains("holds -1"));
  const Tensor<float> vis = Tensor<float>::zeros({2, 2, 3});
  REQUIRE_THROWS_WITH(mask::unshuffle_tokens(vis, Tensor<float>::zeros({1, 1, 4}), Tensor<int64_t>::zeros({2, 6})),
                      Catch::Contains("unshuffle_tokens") && Catch::Contains("[1, 1, 4]") &&
                          Catch::Contains("[2, 2, 3]"));
  REQUIRE_THROWS_WITH(mask::unshuffle_tokens(vis, Tensor<float>::zeros({1, 1, 3}), Tensor<int64_t>::full({2, 6}, 6)),
                      Catch::Contains("holds 6"));
  REQUIRE_THROWS_WITH(mask::unshuffle_tokens(vis, Tensor<float>::zeros({1, 1, 3}), Tensor<int64_t>::zeros({1, 6})),
                      Catch::Contains("[1, 6]") && Catch::Contains("[2, 2, 3]"));
  REQUIRE_THROWS_WITH(mask::unshuffle_tokens(vis, Tensor<float>::zeros({1, 1, 3}), Tensor<int64_t>::zeros({2, 1})),
                      Catch::Contains("cannot hold"));
}

TEST_CASE("gather_tokens / unshuffle_tokens: gradchecks incl. the mask token", "[mask][tokens]") {
  const int64_t B = 2, G = 2, L = 7, D = 3, Tn = G * L;
  const mask::MaskPlan plan = mask::make_mask_plan(mask::Strategy::independent(0.6), B, G, L, 17, 2);
  const int64_t K = plan.visible;
  const Tensor<int64_t> keep = plan.ids_keep, restore = plan.ids_restore;
  // Non-contiguous leaves.
  const Tensor<double> x = random_tensor<double>({B, D, Tn}, 31).transpose(1, 2).detach().requires_grad_();
  require_gradcheck([&](const std::vector<Tensor<double>>& in) { return mask::gather_tokens(in[0], keep); }, {x});
  const Tensor<double> vis = random_tensor<double>({B, D, K}, 32).transpose(1, 2).detach().requires_grad_();
  const Tensor<double> token = random_tensor<double>({1, 1, D}, 33).requires_grad_();
  require_gradcheck(
      [&](const std::vector<Tensor<double>>& in) { return mask::unshuffle_tokens(in[0], in[1], restore); },
      {vis, token});
  // Mask token's gradient from an all-ones upstream: one per hidden token in the whole batch.
  const Tensor<double> token2 = random_tensor<double>({1, 1, D}, 34).requires_grad_();
  mask::unshuffle_tokens(random_tensor<double>({B, K, D}, 35), token2, restore)
      .backward(Tensor<double>::ones({B, Tn, D}));
  require_close(token2.grad(), std::vector<double>(size_t(D), double(B * (Tn - K))));
  // A token that is expanded from a single row also gets its gradient (sum over the expand).
  const Tensor<double> x1 = random_tensor<double>({1, Tn, D}, 36).requires_grad_();
  require_gradcheck(
      [&](const std::vector<Tensor<double>>& in) { return mask::gather_tokens(in[0].expand({B, Tn, D}), keep); }, {x1});
}

TEST_CASE("gather_tokens / unshuffle_tokens: ids changed in place before backward are detected", "[mask][tokens]") {
  const mask::MaskPlan plan = mask::make_mask_plan(mask::Strategy::independent(0.5), 2, 2, 4, 1, 0);
  Tensor<int64_t> keep = plan.ids_keep.clone(), restore = plan.ids_restore.clone();
  const Tensor<double> x = random_tensor<double>({2, 8, 3}, 71).requires_grad_();
  const Tensor<double> kept = mask::gather_tokens(x, keep);
  keep.fill_(0);
  REQUIRE_THROWS_WITH(kept.backward(Tensor<double>::ones({2, 4, 3})),
                      Catch::Contains("gather_tokens") && Catch::Contains("modified in place"));
  const Tensor<double> token = random_tensor<double>({1, 1, 3}, 72).requires_grad_();
  const Tensor<double> full = mask::unshuffle_tokens(random_tensor<double>({2, 4, 3}, 73), token, restore);
  restore.fill_(0);
  REQUIRE_THROWS_WITH(full.backward(Tensor<double>::ones({2, 8, 3})),
                      Catch::Contains("unshuffle_tokens") && Catch::Contains("modified in place"));
}

TEST_CASE("masked_group_loss: against a naive loop, norm_pix, groups without hidden tokens", "[mask][loss]") {
  const int G = 2;
  const int64_t B = 3, L = 7, P0 = 4, P1 = 12;
  for (const bool norm_pix : {false, true}) {
    INFO("norm_pix " << norm_pix);
    // Non-contiguous predictions ([B, P, L] transposed) and contiguous targets of different widths.
    const std::vector<Tensor<double>> preds = {random_tensor<double>({B, P0, L}, 41).transpose(1, 2),
                                               random_tensor<double>({B, P1, L}, 42).transpose(1, 2)};
    const std::vector<Tensor<double>> targets = {random_tensor<double>({B, L, P0}, 43),
                                                 random_tensor<double>({B, L, P1}, 44)};
    const std::vector<Tensor<float>> masks = {
        plan_mask(mask::Strategy::independent(0.75), B, G, L, 1),
        plan_mask(mask::Strategy::disjoint(0.75), B, G, L, 2),
        // Group 0 dropped in every sample: group 1 has hidden tokens too (K < L).
        plan_mask(mask::Strategy::drop(0, 0.75), B, G, L, 3),
    };
    for (const Tensor<float>& m : masks) {
      const NaiveLoss ref = naive_loss(preds, targets, m, norm_pix);
      const auto ours = mask::masked_group_loss(preds, targets, m, norm_pix);
      require_close(ours.total, {ref.total});
      require_close(ours.per_group, ref.per_group, {1e-12, 1e-10});
      for (int g = 0; g < G; ++g) {
        int64_t hidden = 0;
        for (int64_t b = 0; b < B; ++b)
          for (int64_t l = 0; l < L; ++l) hidden += m.at({b, g * L + l}) != 0.0f;
        REQUIRE(ours.hidden[size_t(g)] == hidden);
      }
    }
    // Group 1 wholly visible in the batch: excluded from the mean (total = loss of group 0).
    std::vector<float> mv(static_cast<size_t>(B * G * L), 0.0f);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t l = 0; l < L; l += 2) mv[size_t(b * G * L + l)] = 1.0f;
    const Tensor<float> m1 = Tensor<float>::from_vector({B, G * L}, mv);
    const auto ours = mask::masked_group_loss(preds, targets, m1, norm_pix);
    const NaiveLoss ref = naive_loss(preds, targets, m1, norm_pix);
    REQUIRE(ref.per_group[1] == 0.0);
    require_close(ours.total, {ref.per_group[0]});
    REQUIRE(ours.hidden[1] == 0);
    REQUIRE(ours.per_group[1] == 0.0);
    // Nothing hidden at all: the loss is 0.
    const auto none = mask::masked_group_loss(preds, targets, Tensor<float>::zeros({B, G * L}), norm_pix);
    REQUIRE(none.total.item() == 0.0);
    // A non-contiguous mask (transposed view of [G·L, B]).
    const Tensor<float> mt = m1.transpose(0, 1).contiguous().transpose(0, 1);
    require_close(mask::masked_group_loss(preds, targets, mt, norm_pix).total, {ref.per_group[0]});
  }
  // float variant against the double reference.
  const std::vector<Tensor<float>> pf = {random_tensor<float>({B, L, P0}, 45), random_tensor<float>({B, L, P1}, 46)};
  const std::vector<Tensor<float>> tf = {random_tensor<float>({B, L, P0}, 47), random_tensor<float>({B, L, P1}, 48)};
  const Tensor<float> m = plan_mask(mask::Strategy::independent(0.5), B, G, L, 4);
  require_close(mask::masked_group_loss(pf, tf, m, true).total, {naive_loss(pf, tf, m, true).total});
}

TEST_CASE("masked_group_loss: gradcheck of the total (norm_pix on and off, a group without hidden tokens)",
          "[mask][loss]") {
  const int G = 2;
  const int64_t B = 2, L = 5, P0 = 4, P1 = 9;
  const std::vector<Tensor<double>> targets = {random_tensor<double>({B, L, P0}, 51), random_tensor<double>({B, L, P1}, 52)};
  std::vector<float> only_group0(static_cast<size_t>(B * G * L), 0.0f);
  only_group0[1] = only_group0[size_t(G * L + 3)] = 1.0f;
  const std::vector<Tensor<float>> masks = {plan_mask(mask::Strategy::independent(0.6), B, G, L, 5),
                                            Tensor<float>::from_vector({B, G * L}, only_group0)};
  for (const bool norm_pix : {false, true})
    for (const Tensor<float>& m : masks) {
      INFO("norm_pix " << norm_pix);
      const Tensor<double> p0 = random_tensor<double>({B, P0, L}, 53).transpose(1, 2).detach().requires_grad_();
      const Tensor<double> p1 = random_tensor<double>({B, L, P1}, 54).requires_grad_();
      require_gradcheck(
          [&](const std::vector<Tensor<double>>& in) {
            return mask::masked_group_loss(std::vector<Tensor<double>>{in[0], in[1]}, targets, m, norm_pix).total;
          },
          {p0, p1});
    }
}

TEST_CASE("masked_group_loss: error paths", "[mask][loss]") {
  const std::vector<Tensor<float>> preds = {Tensor<float>::zeros({2, 3, 4}), Tensor<float>::zeros({2, 3, 8})};
  const std::vector<Tensor<float>> targets = {Tensor<float>::zeros({2, 3, 4}), Tensor<float>::zeros({2, 3, 8})};
  const Tensor<float> m = Tensor<float>::ones({2, 6});
  REQUIRE_THROWS_WITH(mask::masked_group_loss(preds, {targets[0]}, m, false),
                      Catch::Contains("2 predictions for 1 targets"));
  REQUIRE_THROWS_WITH(mask::masked_group_loss(preds, targets, Tensor<float>::ones({2, 5}), false),
                      Catch::Contains("[2, 5]") && Catch::Contains("[2, 3, 4]"));
  REQUIRE_THROWS_WITH(mask::masked_group_loss(preds, {targets[0], Tensor<float>::zeros({2, 3, 7})}, m, false),
                      Catch::Contains("[2, 3, 7]") && Catch::Contains("[2, 3, 8]"));
  REQUIRE_THROWS_WITH(mask::masked_group_loss({preds[0], Tensor<float>::zeros({2, 4, 8})}, targets, m, false),
                      Catch::Contains("[2, 4, 8]"));
  REQUIRE_THROWS_WITH(mask::mean_visible_baseline(targets, Tensor<float>::ones({2, 5}), false),
                      Catch::Contains("[2, 5]"));
}

TEST_CASE("mean_visible_baseline: against a naive computation", "[mask][loss]") {
  const int G = 2;
  const int64_t B = 3, L = 7, P0 = 4, P1 = 6;
  const std::vector<Tensor<double>> targets = {random_tensor<double>({B, P0, L}, 61).transpose(1, 2),
                                               random_tensor<double>({B, L, P1}, 62)};
  for (const bool norm_pix : {false, true})
    for (const char* spec : {"independent(0.6)", "drop(s1,0.75)", "disjoint(0.75)"}) {
      INFO(spec << " norm_pix " << norm_pix);
      const Tensor<float> m = plan_mask(mask::parse_strategy(spec), B, G, L, 6);
      // Each patch predicted as the mean of the sample's visible (normalized) target patches of its
      // group, or 0 where the group shows none.
      std::vector<Tensor<double>> preds;
      for (int g = 0; g < G; ++g) {
        const int64_t P = targets[size_t(g)].size(2);
        std::vector<double> pv(static_cast<size_t>(B * L * P), 0.0);
        for (int64_t b = 0; b < B; ++b) {
          std::vector<double> mean(static_cast<size_t>(P), 0.0);
          int n = 0;
          for (int64_t l = 0; l < L; ++l) {
            if (m.at({b, g * L + l}) != 0.0f) continue;
            const auto t = target_patch(patch_of(targets[size_t(g)], b, l), norm_pix);
            for (int64_t i = 0; i < P; ++i) mean[size_t(i)] += t[size_t(i)];
            ++n;
          }
          for (int64_t l = 0; l < L; ++l)
            for (int64_t i = 0; i < P; ++i) pv[size_t((b * L + l) * P + i)] = n ? mean[size_t(i)] / n : 0.0;
        }
        preds.push_back(Tensor<double>::from_vector({B, L, P}, pv));
      }
      const NaiveLoss ref = naive_loss(preds, targets, m, norm_pix);
      const auto ours = mask::mean_visible_baseline(targets, m, norm_pix);
      require_close(ours.total, {ref.total});
      require_close(ours.per_group, ref.per_group, {1e-12, 1e-10});
      // The same through a non-contiguous mask.
      const Tensor<float> mt = m.transpose(0, 1).contiguous().transpose(0, 1);
      require_close(mask::mean_visible_baseline(targets, mt, norm_pix).total, {ref.total});
    }
}
