#pragma once
// Mask plans generated on the device (mask_plan.cu): for the same (strategy, B, G, L, seed, step,
// first_sample) the buffers hold exactly loom::mask::make_mask_plan's ids_keep, ids_restore, mask
// and member — both run loom/mask/sample_plan.hpp per sample.
#include <cstdint>

#include "loom/mask/strategy.hpp"

namespace loom::kernels {

// Device pointers: ids_keep [B, K], ids_restore [B, T], mask [B, T] (1 = hidden), member [B],
// with T = G·L and K = mask::visible_count(strategy, G, L), which this returns (it validates the
// strategy and throws loom::Error naming it, as make_mask_plan does). Runs on the default stream.
int64_t make_mask_plan_device(const mask::Strategy& strategy, int64_t B, int G, int64_t L, uint64_t seed, uint64_t step,
                              uint32_t first_sample, int64_t* ids_keep, int64_t* ids_restore, float* mask,
                              int32_t* member);

}  // namespace loom::kernels
