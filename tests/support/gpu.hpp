#pragma once
// REQUIRE_GPU(): the first line of every GPU test — SKIPs with the driver's reason (no device, no
// driver, a too-old driver) when this process cannot use a GPU.
#include "loom/cuda/device_info.hpp"
#include "support/check.hpp"

#define REQUIRE_GPU()                                                     \
  do {                                                                    \
    if (const char* why = loom::cuda::no_device_reason()) LOOM_SKIP(why); \
  } while (0)
