#pragma once
// Storage: one reference-counted buffer (host or device memory) shared by a tensor and all of its
// views. It also carries the version counter that autograd uses to detect in-place changes of saved
// tensors.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "loom/core/allocator.hpp"
#include "loom/core/device.hpp"
#include "loom/core/device_backend.hpp"

namespace loom {

class Storage {
 public:
  // Allocates `bytes` from the device's allocator (both cache freed blocks).
  Storage(size_t bytes, DeviceKind device) : bytes_(bytes), device_(device) {
    data_ = device == DeviceKind::cpu ? detail::CpuAllocator::instance().allocate(bytes) : detail::device_allocate(bytes);
    owned_ = true;
  }
  // Wraps memory owned elsewhere (an mmap'ed file, a device buffer); `owner` keeps it alive.
  Storage(void* data, size_t bytes, DeviceKind device, std::shared_ptr<void> owner)
      : data_(data), bytes_(bytes), device_(device), owner_(std::move(owner)) {}
  ~Storage() {
    if (!owned_) return;
    if (device_ == DeviceKind::cpu) detail::CpuAllocator::instance().deallocate(data_, bytes_);
    else detail::device_release(data_);
  }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  DeviceKind device() const { return device_; }

  uint64_t version() const { return version_.load(std::memory_order_relaxed); }
  void bump_version() { version_.fetch_add(1, std::memory_order_relaxed); }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  DeviceKind device_;
  bool owned_ = false;
  std::shared_ptr<void> owner_;
  std::atomic<uint64_t> version_{0};
};

}  // namespace loom
