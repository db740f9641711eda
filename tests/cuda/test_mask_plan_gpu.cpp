// Device mask plans (kernels/mask_plan.cu) against make_mask_plan: bit for bit, for every
// strategy kind and odd sizes. SKIPs with the reason when no usable GPU is present; the shared
// per-sample logic is tested on the CPU in tests/mask/test_mask_plan_device_logic.cpp.
// Dirichlet is included: its Gamma draws use loom::portable's log/exp/cos on both sides, so no
// libm difference can make the device's group quotas differ from the CPU's.
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "loom/cuda/device_memory.hpp"
#include "loom/cuda/mask_plan.hpp"
#include "loom/mask/mask_plan.hpp"
#include "loom/mask/spec.hpp"
#include "support/check.hpp"
#include "support/gpu.hpp"

using loom::cuda::DeviceBuffer;
using loom::mask::Strategy;

TEST_CASE("device mask plans equal make_mask_plan bit for bit", "[mask][gpu]") {
  REQUIRE_GPU();
  const char* specs[] = {"independent(0.75)", "consistent(0.6)",     "disjoint(0.75)",    "drop(s1,0.75)",
                         "drop(s2,0.5)",      "dirichlet(0.5,0.75)", "dirichlet(2,0.75)",
                         "mixture(disjoint(0.75):0.8, drop(s1,0.75):0.1, drop(s2,0.75):0.1)",
                         "mixture(independent(0.75):1, dirichlet(0.5,0.75):1, disjoint(0.75):2)"};
  const uint64_t seed = 0x123456789abcdefull, step = (uint64_t(5) << 32) + 3;
  int compared = 0;
  for (const char* spec : specs) {
    const Strategy s = loom::mask::parse_strategy(spec);
    for (int G = 1; G <= 3; ++G) {
      for (int64_t L : {1, 9, 225}) {
        try {
          loom::mask::visible_count(s, G, L);
        } catch (const loom::Error&) {
          continue;  // e.g. drop(s2) needs G >= 2, disjoint(0.75) needs G <= 4: not a plan to compare
        }
        for (int64_t B : {1, 7, 33}) {
          INFO(spec << "  B " << B << " G " << G << " L " << L);
          const uint32_t first = 1000;
          const loom::mask::MaskPlan cpu = loom::mask::make_mask_plan(s, B, G, L, seed, step, first);
          const int64_t T = G * L, K = cpu.visible;
          DeviceBuffer<int64_t> keep{size_t(B * K)}, restore{size_t(B * T)};
          DeviceBuffer<float> mask{size_t(B * T)};
          DeviceBuffer<int32_t> member{size_t(B)};
          const int64_t K_device = loom::kernels::make_mask_plan_device(s, B, G, L, seed, step, first, keep.data(),
                                                                        restore.data(), mask.data(), member.data());
          REQUIRE(K_device == K);
          REQUIRE(keep.to_host() == cpu.ids_keep.to_vector());
          REQUIRE(restore.to_host() == cpu.ids_restore.to_vector());
          REQUIRE(mask.to_host() == cpu.mask.to_vector());
          REQUIRE(member.to_host() == std::vector<int32_t>(cpu.member.begin(), cpu.member.end()));
          ++compared;
        }
      }
    }
  }
  REQUIRE(compared >= 60);
}

TEST_CASE("device mask plans: a batch of zero and a rejected strategy", "[mask][gpu]") {
  REQUIRE_GPU();
  // B = 0 launches nothing and still returns K; bad strategies throw as on the CPU.
  REQUIRE(loom::kernels::make_mask_plan_device(Strategy::independent(0.75), 0, 2, 7, 1, 0, 0, nullptr, nullptr,
                                               nullptr, nullptr) == 4);
  REQUIRE_THROWS_WITH(loom::kernels::make_mask_plan_device(Strategy::disjoint(0.4), 1, 2, 225, 1, 0, 0, nullptr,
                                                           nullptr, nullptr, nullptr),
                      Catch::Contains("1 - 1/G"));
}

TEST_CASE("make_mask_plan_on<CUDA> and a host plan moved with to_device hold make_mask_plan's plan", "[mask][gpu]") {
  REQUIRE_GPU();
  const Strategy s = loom::mask::parse_strategy("mixture(disjoint(0.75):0.8, drop(s1,0.75):0.1, drop(s2,0.75):0.1)");
  const loom::mask::MaskPlan cpu = loom::mask::make_mask_plan(s, 13, 2, 49, 7, 11, 3);
  const auto made = loom::mask::make_mask_plan_on<loom::CUDA>(s, 13, 2, 49, 7, 11, 3);
  const auto moved = cpu.to_device<loom::CUDA>();
  for (const auto* plan : {&made, &moved}) {
    REQUIRE(plan->ids_keep.to_vector() == cpu.ids_keep.to_vector());
    REQUIRE(plan->ids_restore.to_vector() == cpu.ids_restore.to_vector());
    REQUIRE(plan->mask.to_vector() == cpu.mask.to_vector());
    REQUIRE(plan->member == cpu.member);
    REQUIRE((plan->groups == 2 && plan->locations == 49 && plan->visible == cpu.visible));
  }
}
