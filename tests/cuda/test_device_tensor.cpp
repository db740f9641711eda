// Tensor<T, CUDA>'s own members — factories, fill_, copy_ (strided, broadcast, converting),
// element reads, to_device in both directions and its gradient, pinned host tensors and a pinned
// loader — against the same calls on CPU tensors. SKIPs with the reason when no usable GPU is
// present; the strided index map the kernels use is checked on the CPU by test_kernel_math.
#include <catch2/catch.hpp>

#include <limits>

#include "loom/core/pinned.hpp"
#include "loom/cuda/device_info.hpp"
#include "loom/cuda/device_memory.hpp"
#include "loom/data/loader.hpp"
#include "loom/loom.hpp"
#include "support/check.hpp"
#include "support/gpu.hpp"

using loom::bf16;
using loom::CPU;
using loom::CUDA;
using loom::Tensor;

namespace {

template <class T>
Tensor<T> counting(const loom::Shape& shape) {
  std::vector<T> v(size_t(shape.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = T(int((i * 37) % 101) - 50);
  return Tensor<T>::from_vector(shape, v);
}

template <class T>
void require_same(const std::vector<T>& got, const std::vector<T>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) REQUIRE(double(got[i]) == double(want[i]));
}

}  // namespace

TEST_CASE("CUDA tensor: upload, download and element reads round-trip every element type", "[cuda][tensor]") {
  REQUIRE_GPU();
  auto check = [](auto tag) {
    using T = decltype(tag);
    const Tensor<T> host = counting<T>({7, 13});
    const Tensor<T, CUDA> dev = host.template to_device<CUDA>();
    REQUIRE(dev.shape() == host.shape());
    require_same(dev.to_vector(), host.to_vector());
    REQUIRE(double(dev.at({3, 5})) == double(host.at({3, 5})));
    require_same(dev.template to_device<CPU>().to_vector(), host.to_vector());
    require_same(Tensor<T, CUDA>::from_vector({2, 2}, std::vector<T>{T(1), T(2), T(3), T(4)}).to_vector(),
                 std::vector<T>{T(1), T(2), T(3), T(4)});
  };
  check(float{});
  check(double{});
  check(bf16{});
  check(int64_t{});
  check(int32_t{});
  check(uint8_t{});
  REQUIRE(Tensor<int64_t, CUDA>::arange(5).to_vector() == std::vector<int64_t>{0, 1, 2, 3, 4});
  REQUIRE(Tensor<float, CUDA>::scalar(2.5f).item() == 2.5f);
}

TEST_CASE("CUDA tensor: fill_ and copy_ on strided, transposed and broadcast views match the CPU", "[cuda][tensor]") {
  REQUIRE_GPU();
  const Tensor<float> base = counting<float>({6, 10});  // [6, 10]
  Tensor<float> cpu = base.clone();
  Tensor<float, CUDA> dev = base.to_device<CUDA>();
  // fill_ through a stepped slice: only every other column changes.
  cpu.slice(1, 1, 10, 2).fill_(7.f);
  dev.slice(1, 1, 10, 2).fill_(7.f);
  require_same(dev.to_vector(), cpu.to_vector());
  // copy_ of a transposed source into a column block.
  const Tensor<float> src = counting<float>({4, 6});  // [4, 6], read as [6, 4]
  cpu.narrow(1, 3, 4).copy_(src.transpose(0, 1));
  dev.narrow(1, 3, 4).copy_(src.to_device<CUDA>().transpose(0, 1));
  require_same(dev.to_vector(), cpu.to_vector());
  // copy_ broadcasting a row, converting bf16 -> float.
  const Tensor<bf16> row = counting<bf16>({1, 10});  // [1, 10]
  cpu.copy_(row);
  dev.copy_(row.to_device<CUDA>());
  require_same(dev.to_vector(), cpu.to_vector());
  // Conversions in all directions through the member to<U>() (copy_ underneath).
  const Tensor<double> wide = counting<double>({5, 3}) * 0.37;
  require_same(wide.to_device<CUDA>().to<bf16>().to_vector(), wide.to<bf16>().to_vector());
  require_same(wide.to_device<CUDA>().to<int64_t>().to_vector(), wide.to<int64_t>().to_vector());
  require_same(wide.to<bf16>().to_device<CUDA>().to<float>().to_vector(), wide.to<bf16>().to<float>().to_vector());
  // contiguous() of a permuted device tensor lays the elements out as the CPU does.
  const Tensor<float> cube = counting<float>({2, 3, 5});
  require_same(cube.to_device<CUDA>().permute({2, 0, 1}).contiguous().to_vector(),
               cube.permute({2, 0, 1}).contiguous().to_vector());
  // bf16 fill with a value that is not exactly representable rounds as on the CPU.
  require_same(Tensor<bf16, CUDA>::full({3}, bf16(0.1f)).to_vector(), Tensor<bf16>::full({3}, bf16(0.1f)).to_vector());
}

TEST_CASE("CUDA tensor: to_device is differentiable and gradients accumulate on the device", "[cuda][tensor][autograd]") {
  REQUIRE_GPU();
  Tensor<float> x = counting<float>({3, 4});  // [3, 4]
  x.requires_grad_();
  Tensor<float, CUDA> y = x.to_device<CUDA>();  // one device tensor, two consumers
  Tensor<float> z = y.to_device<CPU>() * 2.0 + y.transpose(0, 1).to_device<CPU>().transpose(0, 1);
  loom::sum(z).backward();
  // d/dx of sum(2x + x) = 3 everywhere; the two gradients of y were added on the device.
  loom::test::require_close(x.grad(), std::vector<double>(12, 3.0), {0, 0});
  REQUIRE(x.grad().shape() == x.shape());
}

TEST_CASE("CUDA tensor: the caching allocator serves repeated shapes without new cudaMalloc calls", "[cuda][tensor]") {
  REQUIRE_GPU();
  { auto warm = Tensor<float, CUDA>::zeros({1 << 16}); }
  const auto before = loom::cuda::device_memory_stats();
  for (int i = 0; i < 10; ++i) {
    auto t = Tensor<float, CUDA>::zeros({1 << 16});
    REQUIRE(loom::cuda::device_memory_stats().allocated_bytes >= before.allocated_bytes + (size_t(1) << 18));
  }
  REQUIRE(loom::cuda::device_memory_stats().device_mallocs == before.device_mallocs);
  REQUIRE(loom::cuda::device_memory_stats().allocated_bytes == before.allocated_bytes);
}

TEST_CASE("CUDA tensor: pinned host tensors and a pinned loader's batches upload the same values", "[cuda][tensor][data]") {
  REQUIRE_GPU();
  Tensor<float> pinned = loom::pinned_empty<float>({3, 5});  // [3, 5] page-locked
  pinned.copy_(counting<float>({3, 5}));
  require_same(pinned.to_device<CUDA>().to_vector(), counting<float>({3, 5}).to_vector());
  const auto ds = loom::data::open_dataset("synthetic:train=9,size=16");
  auto batches = [&](bool pin) {
    loom::data::DataLoader loader(*ds, loom::data::LoaderOptions().batch_size(4).workers(2).seed(3).pinned(pin));
    loader.start_epoch(1);
    std::vector<std::vector<float>> out;
    while (auto b = loader.next()) {
      out.push_back(b->s1.to_device<CUDA>().to_vector());
      out.push_back(b->s2.to_device<CUDA>().to_vector());
      out.push_back(b->labels.to_vector());
    }
    return out;
  };
  REQUIRE(batches(true) == batches(false));
}

TEST_CASE("CUDA tensor: all_finite, argsort and memory_stats on the device", "[cuda][tensor]") {
  REQUIRE_GPU();
  Tensor<float> x = counting<float>({4, 9});  // [4, 9] with ties
  REQUIRE(loom::all_finite(x.to_device<CUDA>()));
  x.at_mut({2, 3}) = std::numeric_limits<float>::infinity();
  REQUIRE_FALSE(loom::all_finite(x.to_device<CUDA>()));
  x.at_mut({2, 3}) = std::numeric_limits<float>::quiet_NaN();
  REQUIRE_FALSE(loom::all_finite(x.to_device<CUDA>().to<bf16>()));
  REQUIRE(loom::all_finite(Tensor<float, CUDA>::empty({0})));
  // argsort (stable, NaN last) gives the CPU's indices along either dim.
  REQUIRE(loom::argsort(x.to_device<CUDA>(), 1).to_vector() == loom::argsort(x, 1).to_vector());
  REQUIRE(loom::argsort(x.to_device<CUDA>(), 0, true).to_vector() == loom::argsort(x, 0, true).to_vector());
  // memory_stats<CUDA> reports the caching device allocator.
  loom::reset_peak_memory<CUDA>();
  const loom::MemoryStats before = loom::memory_stats<CUDA>();
  {
    const auto big = Tensor<float, CUDA>::zeros({1 << 18});  // 1 MiB
    REQUIRE(loom::memory_stats<CUDA>().current_bytes >= before.current_bytes + (int64_t(1) << 20));
  }
  REQUIRE(loom::memory_stats<CUDA>().peak_bytes >= before.current_bytes + (int64_t(1) << 20));
  REQUIRE(loom::memory_stats<CUDA>().current_bytes == before.current_bytes);
}
