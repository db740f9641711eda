// Memory accounting and the allocator cache; the thread pool (parallel_for / parallel_tasks) and
// the strided walk every CPU op is built on (detail::for_each_run).
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "loom/core/parallel.hpp"
#include "support/check.hpp"

using loom::Shape;
using loom::Tensor;

namespace {

bool cache_disabled_by_environment() {
  const char* env = std::getenv("LOOM_NO_ALLOC_CACHE");
  return env && env[0] != '0';
}

// What the allocator charges for a request: 64-byte granules, 2 MiB granules from 2 MiB on.
int64_t charged_bytes(int64_t bytes) {
  const int64_t granule = bytes >= (int64_t(2) << 20) ? (int64_t(2) << 20) : 64;
  return (std::max<int64_t>(bytes, 1) + granule - 1) / granule * granule;
}

// Restores the thread count when a test case ends, however it ends.
struct ThreadCountRestorer {
  int saved = loom::num_threads();
  ~ThreadCountRestorer() { loom::set_num_threads(saved); }
};

}  // namespace

// ---- memory ----------------------------------------------------------------------------------------

TEST_CASE("current and peak bytes follow tensors as they live and die", "[memory]") {
  const loom::MemoryStats before = loom::memory_stats();
  int64_t a_bytes = charged_bytes(1000 * 4), b_bytes = charged_bytes(7 * 97 * 8);
  {
    Tensor<float> a = Tensor<float>::empty({1000});
    CHECK(loom::memory_stats().current_bytes == before.current_bytes + a_bytes);
    {
      Tensor<double> b = Tensor<double>::zeros({7, 97});
      CHECK(loom::memory_stats().current_bytes == before.current_bytes + a_bytes + b_bytes);
      CHECK(loom::memory_stats().peak_bytes >= before.current_bytes + a_bytes + b_bytes);
      // Views and handle copies share storage: no new bytes.
      Tensor<double> v = b.transpose(0, 1).narrow(0, 3, 5);
      Tensor<double> copy = b;
      CHECK(loom::memory_stats().current_bytes == before.current_bytes + a_bytes + b_bytes);
      // clone() and a copying reshape allocate.
      Tensor<double> c = v.clone();
      CHECK(loom::memory_stats().current_bytes == before.current_bytes + a_bytes + b_bytes + charged_bytes(5 * 7 * 8));
    }
    CHECK(loom::memory_stats().current_bytes == before.current_bytes + a_bytes);
  }
  const loom::MemoryStats after = loom::memory_stats();
  CHECK(after.current_bytes == before.current_bytes);
  CHECK(after.peak_bytes >= before.current_bytes + a_bytes + b_bytes + charged_bytes(5 * 7 * 8));
  CHECK(after.allocations >= before.allocations + 3);

  // reset_peak_memory drops the peak to what is live now.
  loom::reset_peak_memory();
  CHECK(loom::memory_stats().peak_bytes == loom::memory_stats().current_bytes);
  {
    Tensor<uint8_t> t = Tensor<uint8_t>::empty({4096});
    CHECK(loom::memory_stats().peak_bytes == after.current_bytes + 4096);
  }
  CHECK(loom::memory_stats().peak_bytes == after.current_bytes + 4096);
}

TEST_CASE("a view keeps its storage alive after the base handle is gone", "[memory]") {
  const int64_t start = loom::memory_stats().current_bytes;
  Tensor<float> view;
  {
    Tensor<float> base = Tensor<float>::arange(100);
    view = base.narrow(0, 90, 10);
  }
  CHECK(loom::memory_stats().current_bytes == start + charged_bytes(400));
  CHECK(view.to_vector() == std::vector<float>{90, 91, 92, 93, 94, 95, 96, 97, 98, 99});
  view = Tensor<float>();
  CHECK(loom::memory_stats().current_bytes == start);
}

TEST_CASE("storage is 64-byte aligned, empty tensors still get a block", "[memory]") {
  for (int64_t n : {1, 7, 97, 225, 100000}) {
    Tensor<float> t = Tensor<float>::empty({n});
    CHECK(reinterpret_cast<uintptr_t>(t.data()) % 64 == 0);
  }
  const int64_t start = loom::memory_stats().current_bytes;
  Tensor<float> empty = Tensor<float>::empty({0, 3});
  CHECK(empty.numel() == 0);
  CHECK(empty.to_vector().empty());
  CHECK(loom::memory_stats().current_bytes == start + 64);
}

TEST_CASE("the allocator cache reuses blocks: a steady-state loop stops calling the system", "[memory]") {
  if (cache_disabled_by_environment()) LOOM_SKIP("LOOM_NO_ALLOC_CACHE disables the cache");
  // One "training step": activations of a few sizes, one of them in the huge-page range.
  auto step = [] {
    Tensor<float> x = Tensor<float>::empty({97, 225});
    Tensor<float> h = Tensor<float>::empty({3, 1 << 20});  // 12 MiB: mmap'ed, 2 MiB granules
    Tensor<double> y = Tensor<double>::zeros({7});
    return x.numel() + h.numel() + y.numel();
  };
  step();  // warm-up fills the cache
  const loom::MemoryStats warm = loom::memory_stats();
  CHECK(warm.cached_bytes >= charged_bytes(97 * 225 * 4) + charged_bytes(12 << 20) + charged_bytes(56));
  for (int i = 0; i < 50; ++i) step();
  const loom::MemoryStats later = loom::memory_stats();
  CHECK(later.system_allocations == warm.system_allocations);
  CHECK(later.allocations == warm.allocations + 150);
  CHECK(later.current_bytes == warm.current_bytes);

  // empty_cache hands everything back; the next step goes to the system again.
  loom::empty_cache();
  CHECK(loom::memory_stats().cached_bytes == 0);
  step();
  CHECK(loom::memory_stats().system_allocations == later.system_allocations + 3);
}

TEST_CASE("cached blocks are not counted as current bytes, caching can be switched off", "[memory]") {
  if (cache_disabled_by_environment()) LOOM_SKIP("LOOM_NO_ALLOC_CACHE disables the cache");
  auto& allocator = loom::detail::CpuAllocator::instance();
  loom::empty_cache();
  const loom::MemoryStats before = loom::memory_stats();
  { Tensor<float> t = Tensor<float>::empty({1000}); }
  CHECK(loom::memory_stats().current_bytes == before.current_bytes);
  CHECK(loom::memory_stats().cached_bytes == charged_bytes(4000));
  allocator.set_caching(false);
  CHECK(loom::memory_stats().cached_bytes == 0);
  const int64_t system_before = loom::memory_stats().system_allocations;
  for (int i = 0; i < 3; ++i) Tensor<float> t = Tensor<float>::empty({1000});
  CHECK(loom::memory_stats().system_allocations == system_before + 3);
  CHECK(loom::memory_stats().cached_bytes == 0);
  allocator.set_caching(true);
}

// ---- parallel_for ------------------------------------------------------------------------------------

TEST_CASE("parallel_for covers every index exactly once for odd ranges and thread counts", "[parallel]") {
  ThreadCountRestorer restore;
  for (int threads : {1, 2, 3}) {
    loom::set_num_threads(threads);
    REQUIRE(loom::num_threads() == threads);
    for (int64_t n : {0, 1, 7, 97, 225, 1001}) {
      for (int64_t grain : {1, 3, 50, 100000}) {
        const int64_t begin = 5;  // ranges need not start at 0
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::atomic<int> chunks{0};
        std::atomic<bool> small_chunk{false};
        loom::parallel_for(begin, begin + n, grain, [&](int64_t b, int64_t e) {
          ++chunks;
          if (e - b < std::min(grain, n)) small_chunk = true;
          for (int64_t i = b; i < e; ++i) ++hits[size_t(i - begin)];
        });
        INFO("threads " << threads << " n " << n << " grain " << grain);
        for (int64_t i = 0; i < n; ++i) REQUIRE(hits[size_t(i)] == 1);
        CHECK(chunks <= threads);
        CHECK_FALSE(small_chunk);  // every chunk gets at least `grain` iterations
      }
    }
  }
}

TEST_CASE("parallel_for really runs chunks on distinct threads at the same time", "[parallel]") {
  ThreadCountRestorer restore;
  loom::set_num_threads(3);
  std::atomic<int> arrived{0};
  std::mutex m;
  std::set<std::thread::id> ids;
  loom::parallel_for(0, 3, 1, [&](int64_t, int64_t) {
    ++arrived;
    // Wait (bounded) until all three chunks are running: only possible if they run concurrently.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (arrived.load() < 3 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    std::lock_guard lock(m);
    ids.insert(std::this_thread::get_id());
  });
  CHECK(arrived == 3);
  CHECK(ids.size() == 3);
  CHECK(ids.count(std::this_thread::get_id()) == 1);  // the caller works too
}

TEST_CASE("nested parallel_for runs inline on the calling chunk's thread", "[parallel]") {
  ThreadCountRestorer restore;
  loom::set_num_threads(3);
  std::atomic<int> outer_chunks{0}, inner_calls{0}, mismatches{0};
  std::vector<std::atomic<int>> hits(300);
  loom::parallel_for(0, 3, 1, [&](int64_t b, int64_t e) {
    ++outer_chunks;
    const auto me = std::this_thread::get_id();
    for (int64_t row = b; row < e; ++row) {
      loom::parallel_for(0, 100, 1, [&](int64_t ib, int64_t ie) {
        ++inner_calls;
        if (std::this_thread::get_id() != me || ib != 0 || ie != 100) ++mismatches;
        for (int64_t i = ib; i < ie; ++i) ++hits[size_t(row * 100 + i)];
      });
      loom::parallel_tasks(4, [&](int64_t) {
        if (std::this_thread::get_id() != me) ++mismatches;
      });
    }
  });
  CHECK(outer_chunks == 3);
  CHECK(inner_calls == 3);  // one inline call per row
  CHECK(mismatches == 0);
  for (auto& h : hits) REQUIRE(h == 1);
  // The pool is in use inside a region: changing its size there is refused.
  REQUIRE_THROWS_AS(loom::parallel_for(0, 3, 1, [&](int64_t, int64_t) { loom::set_num_threads(2); }), loom::Error);
  CHECK(loom::num_threads() == 3);
}

TEST_CASE("an exception thrown inside parallel_for reaches the caller as loom::Error", "[parallel]") {
  ThreadCountRestorer restore;
  for (int threads : {1, 2, 3}) {
    loom::set_num_threads(threads);
    // Every chunk throws, so workers' exceptions are exercised as well as the caller's.
    auto failing = [] {
      loom::parallel_for(0, 999, 1, [](int64_t b, int64_t e) {
        LOOM_CHECK(false, "chunk [", b, ", ", e, ") failed on purpose");
      });
    };
    REQUIRE_THROWS_AS(failing(), loom::Error);
    REQUIRE_THROWS_WITH(failing(), Catch::Contains("failed on purpose"));
    // Only the chunk holding index 500 throws; the rest finish.
    std::atomic<int64_t> done{0};
    REQUIRE_THROWS_WITH(loom::parallel_for(0, 999, 1,
                                           [&](int64_t b, int64_t e) {
                                             LOOM_CHECK(!(b <= 500 && 500 < e), "index 500 is bad");
                                             done += e - b;
                                           }),
                        Catch::Contains("index 500"));
    CHECK(done < 999);
    // The pool is still usable afterwards.
    std::atomic<int64_t> sum{0};
    loom::parallel_for(0, 1000, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) sum += i;
    });
    CHECK(sum == 999 * 1000 / 2);
  }
  REQUIRE_THROWS_AS(loom::parallel_tasks(5, [](int64_t i) { LOOM_CHECK(i != 3, "task 3"); }), loom::Error);
}

TEST_CASE("parallel_tasks runs each task once, other threads run inline while the pool is busy", "[parallel]") {
  ThreadCountRestorer restore;
  loom::set_num_threads(2);
  for (int64_t n : {0, 1, 7, 97}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    loom::parallel_tasks(n, [&](int64_t i) { ++hits[size_t(i)]; });
    for (auto& h : hits) REQUIRE(h == 1);
  }
  // Two threads (e.g. a data-loader worker and the trainer) use loom at once: neither deadlocks and
  // both cover their ranges.
  std::vector<std::atomic<int>> a(2000), b(2000);
  auto work = [](std::vector<std::atomic<int>>& hits) {
    for (int rep = 0; rep < 20; ++rep)
      loom::parallel_for(0, int64_t(hits.size()), 1, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) ++hits[size_t(i)];
      });
  };
  std::thread other([&] { work(b); });
  work(a);
  other.join();
  for (size_t i = 0; i < a.size(); ++i) {
    REQUIRE(a[i] == 20);
    REQUIRE(b[i] == 20);
  }
}

TEST_CASE("set_num_threads and LOOM_NUM_THREADS", "[parallel]") {
  ThreadCountRestorer restore;
  loom::set_num_threads(1);
  CHECK(loom::num_threads() == 1);
  loom::set_num_threads(3);
  CHECK(loom::num_threads() == 3);
  REQUIRE_THROWS_WITH(loom::set_num_threads(0), Catch::Contains("set_num_threads") && Catch::Contains("0"));
  CHECK(loom::num_threads() == 3);

  // The pool is sized from LOOM_NUM_THREADS when it is first used; default_num_threads() reads it.
  const char* saved = std::getenv("LOOM_NUM_THREADS");
  const std::string saved_value = saved ? saved : "";
  const int hardware = int(std::max(1u, std::thread::hardware_concurrency()));
  setenv("LOOM_NUM_THREADS", "3", 1);
  CHECK(loom::detail::default_num_threads() == 3);
  setenv("LOOM_NUM_THREADS", "1", 1);
  CHECK(loom::detail::default_num_threads() == 1);
  setenv("LOOM_NUM_THREADS", "0", 1);  // not a usable count: fall back to the hardware
  CHECK(loom::detail::default_num_threads() == hardware);
  setenv("LOOM_NUM_THREADS", "many", 1);
  CHECK(loom::detail::default_num_threads() == hardware);
  unsetenv("LOOM_NUM_THREADS");
  CHECK(loom::detail::default_num_threads() == hardware);
  if (saved) setenv("LOOM_NUM_THREADS", saved_value.c_str(), 1);
}

// ---- the strided walk ----------------------------------------------------------------------------------

TEST_CASE("for_each_run visits every element once over permuted, sliced and broadcast layouts", "[parallel][iterate]") {
  ThreadCountRestorer restore;
  for (int threads : {1, 3}) {
    loom::set_num_threads(threads);
    // A [5, 97, 225] buffer, walked as a permuted, step-sliced view: every visited offset once.
    const Shape full{5, 97, 225};
    const Tensor<int32_t> base = Tensor<int32_t>::zeros(full);
    const Tensor<int32_t> view = base.permute({2, 0, 1}).slice(0, 1, 225, 2);  // [112, 5, 97]
    std::vector<std::atomic<int>> hits(static_cast<size_t>(full.numel()));
    loom::detail::for_each_run<1>(view.shape(), {view.strides()}, [&](auto off, int64_t n, auto st) {
      for (int64_t i = 0; i < n; ++i) ++hits[size_t(view.offset() + off[0] + i * st[0])];
    });
    int64_t visited = 0;
    for (int64_t c = 0; c < 225; ++c)
      for (int64_t a = 0; a < 5; ++a)
        for (int64_t b = 0; b < 97; ++b) {
          const int expected = c % 2 == 1 ? 1 : 0;
          REQUIRE(hits[size_t((a * 97 + b) * 225 + c)] == expected);
          visited += expected;
        }
    CHECK(visited == view.numel());

    // Two operands, one broadcast (stride 0): out[i, j] = x[j] + 1000 i, walked in parallel.
    const Tensor<int64_t> x = Tensor<int64_t>::arange(301);
    Tensor<int64_t> out = Tensor<int64_t>::empty({257, 301});
    int64_t* po = out.data();
    const int64_t* px = x.data();
    loom::detail::for_each_run<2>(out.shape(), {out.strides(), x.expand_strides_to(out.shape())},
                                  [&](auto off, int64_t n, auto st) {
                                    const int64_t row = off[0] / 301;
                                    for (int64_t i = 0; i < n; ++i)
                                      po[off[0] + i * st[0]] = px[off[1] + i * st[1]] + 1000 * row;
                                  });
    for (int64_t i = 0; i < 257; i += 17)
      for (int64_t j = 0; j < 301; ++j) REQUIRE(out.at({i, j}) == j + 1000 * i);
  }
}

TEST_CASE("coalesce merges dims contiguous for all operands and drops extent-1 dims", "[iterate]") {
  using loom::Strides;
  // A contiguous [2, 3, 4] becomes one run of 24.
  auto one = loom::detail::coalesce<1>(Shape{2, 3, 4}, {loom::contiguous_strides(Shape{2, 3, 4})});
  CHECK(one.shape == Shape{24});
  CHECK(one.strides[0] == Strides{1});
  // Transposed inner dims cannot merge; a unit dim disappears.
  auto two = loom::detail::coalesce<1>(Shape{2, 1, 3, 4}, {Strides{12, 99, 1, 3}});
  CHECK(two.shape == Shape{2, 3, 4});
  CHECK(two.strides[0] == Strides{12, 1, 3});
  // Merging needs every operand to agree: operand 1 is broadcast along dim 0.
  auto three = loom::detail::coalesce<2>(Shape{5, 6}, {Strides{6, 1}, Strides{0, 1}});
  CHECK(three.shape == Shape{5, 6});
  // A scalar is one run of one element.
  auto scalar = loom::detail::coalesce<1>(Shape{}, {Strides{}});
  CHECK(scalar.shape == Shape{1});
}
