#pragma once
// The one place loom creates threads. A global pool of (num_threads - 1) workers plus the calling
// thread runs parallel_for chunks. The thread count comes from LOOM_NUM_THREADS, else the hardware
// concurrency, and can be changed with set_num_threads(). Nested calls, and calls from other
// threads while the pool is busy (data-loader workers), run inline instead of oversubscribing.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "loom/core/error.hpp"

namespace loom {

namespace detail {

inline thread_local bool tls_inside_pool = false;

class ThreadPool {
 public:
  explicit ThreadPool(int threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
      generation_.fetch_add(1);
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }

  // Runs task(i) for every i in [0, n) across the pool and the caller; rethrows the first exception.
  // The caller claims tasks too and waits only for tasks a worker has claimed: a worker that was not
  // scheduled in time (a loaded machine) finds nothing left instead of holding the caller up.
  void run(int64_t n, const std::function<void(int64_t)>& task) {
    if (n <= 0) return;
    std::unique_lock busy(busy_, std::try_to_lock);
    if (n == 1 || workers_.empty() || tls_inside_pool || !busy.owns_lock()) {
      for (int64_t i = 0; i < n; ++i) task(i);
      return;
    }
    auto job = std::make_shared<Job>(&task, n);
    {
      std::lock_guard lock(mutex_);
      job_ = job;
      generation_.fetch_add(1);
    }
    wake_.notify_all();
    tls_inside_pool = true;
    work(*job);
    tls_inside_pool = false;
    for (int spin = 0; job->done.load(std::memory_order_acquire) < n && spin < 20000; ++spin) std::this_thread::yield();
    {
      std::unique_lock lock(mutex_);
      done_.wait(lock, [&] { return job->done.load(std::memory_order_acquire) >= n; });
      job_.reset();
    }
    if (job->error) std::rethrow_exception(job->error);
  }

 private:
  struct Job {
    Job(const std::function<void(int64_t)>* t, int64_t n) : task(t), count(n) {}
    const std::function<void(int64_t)>* task;  // valid while the caller waits in run()
    int64_t count;
    std::atomic<int64_t> next{0};  // next unclaimed task
    std::atomic<int64_t> done{0};  // finished tasks
    std::mutex error_mutex;
    std::exception_ptr error;
  };

  void work(Job& job) {
    for (int64_t i = job.next.fetch_add(1); i < job.count; i = job.next.fetch_add(1)) {
      try {
        (*job.task)(i);
      } catch (...) {
        std::lock_guard lock(job.error_mutex);
        if (!job.error) job.error = std::current_exception();
      }
      if (job.done.fetch_add(1, std::memory_order_acq_rel) + 1 == job.count) {
        std::lock_guard lock(mutex_);
        done_.notify_all();
      }
    }
  }
  void worker_loop() {
    tls_inside_pool = true;
    uint64_t seen = 0;
    for (;;) {
      // Spin a little for the next job before sleeping: training issues them back to back.
      for (int spin = 0; generation_.load(std::memory_order_acquire) == seen && spin < 2000; ++spin)
        std::this_thread::yield();
      std::shared_ptr<Job> job;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return generation_.load() != seen; });
        seen = generation_.load();
        if (stop_) return;
        job = job_;  // null when the caller already finished without us
      }
      if (job) work(*job);
    }
  }

  std::vector<std::thread> workers_;
  std::mutex busy_;   // held by the thread that owns the current job
  std::mutex mutex_;  // guards job hand-over and sleeping
  std::condition_variable wake_, done_;
  std::shared_ptr<Job> job_;  // the job being handed out (guarded by mutex_)
  std::atomic<uint64_t> generation_{0};
  bool stop_ = false;
};

inline int default_num_threads() {
  if (const char* env = std::getenv("LOOM_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

inline std::unique_ptr<ThreadPool>& global_pool() {
  static std::unique_ptr<ThreadPool> pool = std::make_unique<ThreadPool>(default_num_threads());
  return pool;
}

}  // namespace detail

// Number of threads loom's parallel loops use.
inline int num_threads() { return detail::global_pool()->size(); }

// Sets the thread count (>= 1). Call it between, not during, parallel work.
inline void set_num_threads(int n) {
  LOOM_CHECK(n >= 1, "set_num_threads: need at least 1 thread, got ", n);
  LOOM_CHECK(!detail::tls_inside_pool, "set_num_threads: called inside a parallel region (the pool is in use)");
  if (n != num_threads()) {
    detail::global_pool().reset();
    detail::global_pool() = std::make_unique<detail::ThreadPool>(n);
  }
}

// Calls body(chunk_begin, chunk_end) over [begin, end) split into at most num_threads() chunks of at
// least `grain` iterations each. Small ranges run inline on the caller.
template <class Body>
void parallel_for(int64_t begin, int64_t end, int64_t grain, Body&& body) {
  const int64_t n = end - begin;
  if (n <= 0) return;
  const int threads = num_threads();
  // Rounded down, so that every chunk really gets at least `grain` iterations.
  const int64_t chunks = std::min<int64_t>(threads, n / std::max<int64_t>(grain, 1));
  if (chunks <= 1 || detail::tls_inside_pool) {
    body(begin, end);
    return;
  }
  detail::global_pool()->run(chunks, [&](int64_t c) {
    body(begin + n * c / chunks, begin + n * (c + 1) / chunks);
  });
}

// Runs task(i) for i in [0, n): for work already cut into pieces (tiles, samples).
template <class Task>
void parallel_tasks(int64_t n, Task&& task) {
  if (n <= 0) return;
  if (n == 1 || num_threads() == 1 || detail::tls_inside_pool) {
    for (int64_t i = 0; i < n; ++i) task(i);
    return;
  }
  detail::global_pool()->run(n, [&](int64_t i) { task(i); });
}

}  // namespace loom
