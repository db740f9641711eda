#pragma once
// Host-callable queries about the CUDA devices visible to this process.
namespace loom::cuda {
int device_count();
// nullptr when a device is usable; otherwise why not (for test SKIP messages).
const char* no_device_reason();
}  // namespace loom::cuda
