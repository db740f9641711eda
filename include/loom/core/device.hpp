#pragma once
// Device tags. The device is a template parameter of Tensor, so CPU and CUDA tensors cannot be mixed
// by accident: moving between them is explicit (to_device).
namespace loom {

enum class DeviceKind : unsigned char { cpu, cuda };

struct CPU {
  static constexpr DeviceKind kind = DeviceKind::cpu;
  static constexpr const char* name = "cpu";
};
struct CUDA {
  static constexpr DeviceKind kind = DeviceKind::cuda;
  static constexpr const char* name = "cuda";
};

inline const char* device_name(DeviceKind d) { return d == DeviceKind::cpu ? "cpu" : "cuda"; }

}  // namespace loom
