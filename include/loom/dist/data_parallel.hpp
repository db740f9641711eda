#pragma once
// DataParallel: gradient averaging across the ranks of a Communicator, overlapped with backward.
//
//   loom::dist::DataParallel<float> dp(comm, model.parameters(), {.bucket_bytes = 4 << 20});
//   dp.broadcast_parameters();              // once: every rank starts from rank 0's weights
//   for (...) {
//     optimizer.zero_grad();
//     loss.backward();                      // buckets are all-reduced as their gradients finish
//     dp.finish_gradient_sync();            // waits; every .grad now holds the mean over ranks
//     optimizer.step(lr);
//   }
//
// Buckets: the parameters in reverse order (backward meets the last layers first) are packed into
// buckets of at most bucket_bytes (a larger parameter gets a bucket of its own). A hook on each
// parameter's gradient accumulator (autograd::add_grad_ready_hook) counts the gradients a bucket
// still waits for; when a bucket is complete and every bucket before it has been started, its
// gradients are copied into one flat buffer and a non-blocking all-reduce (sum) starts. Buckets
// start in index order on every rank, so ranks issue identical sequences of collectives even when
// their backward passes visit leaves in different orders. finish_gradient_sync() starts the
// buckets still pending (a parameter that got no gradient in this backward contributes zeros and
// gets a zero .grad), waits for all, divides by the world size and copies the means back into the
// .grad tensors.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "loom/autograd/engine.hpp"
#include "loom/core/tensor.hpp"
#include "loom/dist/communicator.hpp"

namespace loom::dist {

struct DataParallelOptions {
  int64_t bucket_bytes = int64_t(25) << 20;  // PyTorch DDP's default bucket size
  bool overlap = true;  // start buckets during backward; false: all at finish_gradient_sync()
};

// What the last finish_gradient_sync() saw (for benchmarks and docs/distributed.md).
struct SyncStats {
  int64_t buckets = 0;                  // buckets all-reduced
  int64_t started_during_backward = 0;  // of them, started by a gradient hook
  double wait_s = 0;                    // time finish_gradient_sync() spent waiting for them
  int64_t bytes = 0;                    // gradient bytes all-reduced
};

template <class T = float>
class DataParallel {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "DataParallel: float or double parameters");

 public:
  struct Bucket {
    std::vector<size_t> params;  // indices into parameters(), in the order they are packed
    int64_t elements = 0;
  };

  DataParallel(Communicator& comm, std::vector<Tensor<T>> params, DataParallelOptions options = {})
      : comm_(comm), params_(std::move(params)), options_(options) {
    LOOM_CHECK(options_.bucket_bytes >= 1, "DataParallel: bucket_bytes ", options_.bucket_bytes, " must be positive");
    bucket_of_.assign(params_.size(), 0);
    ready_.assign(params_.size(), false);
    // Reverse parameter order: the order in which backward finishes gradients, roughly.
    int64_t bytes = 0;
    for (size_t k = params_.size(); k-- > 0;) {
      const Tensor<T>& p = params_[k];
      LOOM_CHECK(p.defined() && p.requires_grad() && !p.impl()->grad_fn, "DataParallel: parameter ", k,
                 " is not a leaf that requires grad");
      const int64_t p_bytes = p.numel() * int64_t(sizeof(T));
      if (buckets_.empty() || (bytes + p_bytes > options_.bucket_bytes && !buckets_.back().params.empty())) {
        buckets_.push_back({});
        bytes = 0;
      }
      buckets_.back().params.push_back(k);
      buckets_.back().elements += p.numel();
      bucket_of_[k] = buckets_.size() - 1;
      bytes += p_bytes;
    }
    flat_.resize(buckets_.size());
    requests_.resize(buckets_.size());
    pending_.resize(buckets_.size());
    reset_step();
    if (comm_.size() > 1)
      for (size_t k = 0; k < params_.size(); ++k)
        hooks_.push_back(autograd::add_grad_ready_hook(params_[k], [this, k] { on_gradient_ready(k); }));
  }
  ~DataParallel() {
    for (size_t k = 0; k < hooks_.size(); ++k) autograd::remove_grad_ready_hook(params_[k], hooks_[k]);
  }
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  const std::vector<Bucket>& buckets() const { return buckets_; }
  const std::vector<Tensor<T>>& parameters() const { return params_; }
  const SyncStats& last_sync() const { return stats_; }
  Communicator& communicator() { return comm_; }

  // Rank `root`'s parameter values on every rank. Checks first that all ranks hold parameters of
  // the same shapes (a different model on one rank would otherwise corrupt memory silently).
  void broadcast_parameters(int root = 0) {
    check_same_layout();
    NoGradGuard no_grad;
    for (const Tensor<T>& p : params_) {
      LOOM_CHECK(p.is_contiguous(), "DataParallel::broadcast_parameters: parameter of shape ", p.shape(),
                 " is not contiguous");
      broadcast(comm_, p, root);
    }
  }

  // Gradient accumulation: while off, hooks do nothing and finish_gradient_sync() must not be
  // called; gradients stay local until the next synchronized backward.
  void set_sync(bool on) { sync_ = on; }

  // Completes the averaging of every parameter's gradient (see the top of this file).
  void finish_gradient_sync() {
    LOOM_CHECK(sync_, "DataParallel::finish_gradient_sync: gradient sync is off (set_sync(false))");
    if (comm_.size() == 1) return;  // the mean over one rank is the gradient itself
    const int64_t started_by_hooks = int64_t(next_to_start_);
    start_ready_buckets(/*force=*/true);
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t b = 0; b < buckets_.size(); ++b) {
      requests_[b]->wait();
      requests_[b].reset();
      unpack(b);
    }
    stats_.wait_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    stats_.buckets = int64_t(buckets_.size());
    stats_.started_during_backward = started_by_hooks;
    stats_.bytes = 0;
    for (const Bucket& b : buckets_) stats_.bytes += b.elements * int64_t(sizeof(T));
    reset_step();
  }

 private:
  void reset_step() {
    std::fill(ready_.begin(), ready_.end(), false);
    for (size_t b = 0; b < buckets_.size(); ++b) pending_[b] = int64_t(buckets_[b].params.size());
    next_to_start_ = 0;
  }

  void on_gradient_ready(size_t k) {
    if (!sync_) return;
    LOOM_CHECK(!ready_[k], "DataParallel: the gradient of parameter ", k, " (shape ", params_[k].shape(),
               ") became ready twice before finish_gradient_sync(); for gradient accumulation turn sync off "
               "(set_sync(false)) for all but the last backward");
    ready_[k] = true;
    --pending_[bucket_of_[k]];
    if (options_.overlap) start_ready_buckets(/*force=*/false);
    // Let the transport progress the collectives in flight (MPI progresses inside MPI calls).
    for (size_t b = 0; b < next_to_start_; ++b)
      if (requests_[b]) requests_[b]->test();
  }

  // Starts buckets in index order while they are complete (or, with force, all the rest).
  void start_ready_buckets(bool force) {
    while (next_to_start_ < buckets_.size() && (force || pending_[next_to_start_] == 0)) {
      const size_t b = next_to_start_++;
      pack(b);
      requests_[b] = comm_.all_reduce_async(flat_[b].data(), buckets_[b].elements, dtype_traits<T>::tag, ReduceOp::sum);
    }
  }

  void pack(size_t b) {
    std::vector<T>& flat = flat_[b];
    flat.resize(size_t(buckets_[b].elements));
    int64_t at = 0;
    for (size_t k : buckets_[b].params) {
      const Tensor<T>& p = params_[k];
      Tensor<T> g = p.grad();
      if (g.defined()) {
        const Tensor<T> c = g.contiguous();
        std::memcpy(flat.data() + at, c.data(), size_t(p.numel()) * sizeof(T));
      } else {
        std::fill(flat.begin() + at, flat.begin() + at + p.numel(), T(0));  // no gradient this step: zeros
      }
      at += p.numel();
    }
  }

  void unpack(size_t b) {
    const std::vector<T>& flat = flat_[b];
    const T world = T(comm_.size());
    int64_t at = 0;
    for (size_t k : buckets_[b].params) {
      const Tensor<T>& p = params_[k];
      Tensor<T> g = p.grad();
      if (!g.defined() || !g.is_contiguous()) {
        g = Tensor<T>::empty(p.shape());
        p.set_grad(g);
      }
      T* dst = g.data();
      for (int64_t i = 0; i < p.numel(); ++i) dst[i] = flat[size_t(at + i)] / world;
      g.bump_version();
      at += p.numel();
    }
  }

  // All ranks must hold the same number of parameters with the same shapes.
  void check_same_layout() {
    uint64_t h = 1469598103934665603ull;  // FNV-1a over (count, dims...)
    auto mix = [&h](uint64_t v) {
      for (int i = 0; i < 8; ++i) h = (h ^ ((v >> (8 * i)) & 0xff)) * 1099511628211ull;
    };
    mix(params_.size());
    for (const Tensor<T>& p : params_) {
      mix(uint64_t(p.dim()));
      for (int64_t d : p.shape()) mix(uint64_t(d));
    }
    // Equal on every rank iff its largest and smallest value over the ranks agree.
    int64_t largest = int64_t(h >> 1), smallest = int64_t(h >> 1);
    comm_.all_reduce(&largest, 1, DType::i64, ReduceOp::max);
    comm_.all_reduce(&smallest, 1, DType::i64, ReduceOp::min);
    LOOM_CHECK(largest == smallest, "DataParallel: the ranks hold different parameter shapes (this rank: ", params_.size(),
               " parameters); every rank must build the same model");
  }

  Communicator& comm_;
  std::vector<Tensor<T>> params_;
  DataParallelOptions options_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;
  std::vector<bool> ready_;
  std::vector<int64_t> pending_;
  std::vector<std::vector<T>> flat_;
  std::vector<std::unique_ptr<Request>> requests_;
  std::vector<uint64_t> hooks_;
  size_t next_to_start_ = 0;
  bool sync_ = true;
  SyncStats stats_;
};

}  // namespace loom::dist
