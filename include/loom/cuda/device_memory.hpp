#pragma once
// Device memory for the CUDA kernels, usable from plain C++ (no CUDA types in this header):
//   - a caching allocator: freed blocks are kept per rounded size and reused, so a training step
//     does not call cudaMalloc once warm. All kernels run on the legacy default stream, so a block
//     freed after its last use is safe to hand out again in stream order.
//   - explicit host <-> device copies, pinned host buffers for the loader, event timing.
// Errors (out of memory, a failed copy) throw loom::Error naming the call.
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace loom::cuda {

struct DeviceMemoryStats {
  size_t allocated_bytes = 0;  // held by live buffers (rounded sizes)
  size_t peak_bytes = 0;       // maximum of allocated_bytes since the last reset
  size_t cached_bytes = 0;     // freed blocks kept for reuse
  size_t device_mallocs = 0;   // cudaMalloc calls made (a warm loop makes none)
};

void* device_allocate(size_t bytes);
void device_release(void* ptr);
DeviceMemoryStats device_memory_stats();
void reset_device_peak();
void empty_device_cache();  // returns cached blocks to the driver

void copy_to_device(void* dst, const void* src, size_t bytes);
void copy_to_host(void* dst, const void* src, size_t bytes);
void copy_on_device(void* dst, const void* src, size_t bytes);
void fill_device_zero(void* dst, size_t bytes);
void synchronize();

// Page-locked host memory (uploads at full PCIe speed, asynchronous copies possible); freed blocks
// are cached by size, so a loader's batches stop calling cudaMallocHost after the first few.
void* pinned_allocate(size_t bytes);
void pinned_release(void* ptr);

// Milliseconds of device time between start() and stop(), measured with CUDA events.
class EventTimer {
 public:
  EventTimer();
  ~EventTimer();
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  void start();
  float stop_ms();

 private:
  void* start_ = nullptr;
  void* stop_ = nullptr;
};

// An owning device array of n elements of T.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) : n_(n), ptr_(n ? static_cast<T*>(device_allocate(n * sizeof(T))) : nullptr) {}
  static DeviceBuffer from_host(const std::vector<T>& host) {
    DeviceBuffer b(host.size());
    if (!host.empty()) copy_to_device(b.ptr_, host.data(), host.size() * sizeof(T));
    return b;
  }
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept : n_(std::exchange(o.n_, 0)), ptr_(std::exchange(o.ptr_, nullptr)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      n_ = std::exchange(o.n_, 0);
      ptr_ = std::exchange(o.ptr_, nullptr);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }
  std::vector<T> to_host() const {
    std::vector<T> host(n_);
    if (n_) copy_to_host(host.data(), ptr_, bytes());
    return host;
  }
  void zero() {
    if (n_) fill_device_zero(ptr_, bytes());
  }

 private:
  void reset() {
    if (ptr_) device_release(ptr_);
    ptr_ = nullptr;
    n_ = 0;
  }
  size_t n_ = 0;
  T* ptr_ = nullptr;
};

}  // namespace loom::cuda
