#pragma once
// MaskPlan: which tokens of each sample the encoder sees, built as the MAE reference does — a
// per-sample permutation ids_shuffle of the T tokens with the K visible ones first (each part in
// increasing token-noise order); ids_keep = its first K entries, ids_restore = its inverse, so
// that the decoder's unshuffle is a gather. The per-sample logic is sample_plan.hpp, host+device
// code that kernels/mask_plan.cu runs too: the GPU's plans are these, bit for bit.
#include <algorithm>
#include <bit>
#include <cstdint>
#include <cmath>
#include <numeric>
#include <vector>

#include "loom/core/device_backend.hpp"
#include "loom/core/parallel.hpp"
#include "loom/core/tensor.hpp"
#include "loom/cuda/mask_plan.hpp"  // declarations only; defined in loom::kernels
#include "loom/mask/flat_strategy.hpp"
#include "loom/mask/mask_rng.hpp"
#include "loom/mask/sample_plan.hpp"
#include "loom/mask/strategy.hpp"

namespace loom::mask {

// The plan's tensors live on Dev (the model's device); `member` is host data.
template <class Dev = CPU>
struct BasicMaskPlan {
  Tensor<int64_t, Dev> ids_keep;     // [B, K] visible token indices, in shuffle order
  Tensor<int64_t, Dev> ids_restore;  // [B, T] position of each token in the shuffle
  Tensor<float, Dev> mask;           // [B, T] 1 = hidden, 0 = visible
  std::vector<int> member;           // per sample: the mixture member used (0 for a plain strategy)
  int groups = 0;                    // G
  int64_t locations = 0;             // L
  int64_t visible = 0;               // K
  int64_t tokens() const { return int64_t(groups) * locations; }

  // The same plan with its tensors copied to device D.
  template <class D>
  BasicMaskPlan<D> to_device() const {
    return {ids_keep.template to_device<D>(), ids_restore.template to_device<D>(), mask.template to_device<D>(),
            member, groups, locations, visible};
  }
};
using MaskPlan = BasicMaskPlan<CPU>;

// The plan for a batch of B samples at training step `step`. Sample b's plan depends only on
// (strategy, G, L, seed, step, first_sample + b): the same sample gets the same mask whatever the
// batch size or thread count. `first_sample` offsets the sample index (e.g. a rank's shard).
inline MaskPlan make_mask_plan(const Strategy& strategy, int64_t B, int G, int64_t L, uint64_t seed, uint64_t step,
                               uint32_t first_sample = 0) {
  LOOM_CHECK(B >= 0, "make_mask_plan: negative batch size ", B);
  const int64_t K = visible_count(strategy, G, L), T = int64_t(G) * L;
  MaskPlan plan;
  plan.groups = G;
  plan.locations = L;
  plan.visible = K;
  plan.ids_keep = Tensor<int64_t>::empty({B, K});
  plan.ids_restore = Tensor<int64_t>::empty({B, T});
  plan.mask = Tensor<float>::empty({B, T});
  plan.member.assign(size_t(B), 0);
  int64_t* keep = plan.ids_keep.data();
  int64_t* restore = plan.ids_restore.data();
  float* mask = plan.mask.data();
  const FlatStrategy flat = flatten(strategy);
  parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<uint64_t> words(static_cast<size_t>(sample_scratch_words(G, L)));
    const SampleScratch scratch = carve_sample_scratch(words.data(), G, L);
    for (int64_t b = b0; b < b1; ++b)
      plan.member[size_t(b)] = plan_sample(flat, G, L, K, seed, step, first_sample + uint32_t(b), scratch, keep + b * K,
                                           restore + b * T, mask + b * T);
  });
  return plan;
}

// make_mask_plan's plan generated on device Dev: on CUDA by kernels/mask_plan.cu, which runs the
// same per-sample code (bit-identical plans, no host work beyond reading back `member`).
template <class Dev>
BasicMaskPlan<Dev> make_mask_plan_on(const Strategy& strategy, int64_t B, int G, int64_t L, uint64_t seed, uint64_t step,
                                     uint32_t first_sample = 0) {
  if constexpr (!Tensor<float, Dev>::kOnDevice) {
    return make_mask_plan(strategy, B, G, L, seed, step, first_sample);
  } else {
    static_assert(loom::detail::cuda_backend_for<Dev>, "make_mask_plan_on<CUDA> needs LOOM_WITH_CUDA (link loom::kernels)");
    LOOM_CHECK(B >= 0, "make_mask_plan: negative batch size ", B);
    const int64_t K = visible_count(strategy, G, L), T = int64_t(G) * L;
    BasicMaskPlan<Dev> plan;
    plan.groups = G;
    plan.locations = L;
    plan.visible = K;
    plan.ids_keep = Tensor<int64_t, Dev>::empty({B, K});
    plan.ids_restore = Tensor<int64_t, Dev>::empty({B, T});
    plan.mask = Tensor<float, Dev>::empty({B, T});
    const auto member = Tensor<int32_t, Dev>::empty({B});
    kernels::make_mask_plan_device(strategy, B, G, L, seed, step, first_sample, plan.ids_keep.data(),
                                   plan.ids_restore.data(), plan.mask.data(), member.data());
    for (int32_t m : member.to_vector()) plan.member.push_back(int(m));
    return plan;
  }
}

}  // namespace loom::mask
