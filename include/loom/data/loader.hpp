#pragma once
// DataLoader: batches of any Dataset, prepared by worker threads ahead of the training loop.
//
//   loom::data::DataLoader loader(*dataset, LoaderOptions().batch_size(64).workers(2).augment(true));
//   for (int64_t epoch = 0; epoch < epochs; ++epoch) {
//     loader.start_epoch(epoch);
//     while (auto batch = loader.next()) { ... batch->s1 [B, 2, H, W], batch->s2 [B, 12, H, W] ... }
//   }
//
// Determinism: the epoch's order is a permutation drawn from Philox by (seed, epoch) (randperm with
// the generator at counter offset epoch * 2^40); batch b holds positions [b*B, (b+1)*B) of it, and
// the augmentation of a sample is drawn from (seed, epoch, dataset index). Workers claim whole
// batches and next() hands them out in order, so batch b has the same samples and the same bytes
// whatever the number of workers or their timing.
//
// Augmentation: one of the 8 symmetries of the square (a horizontal flip or not, then 0-3 quarter
// turns counter-clockwise, numpy's rot90(fliplr(x), k)), the same for S1 and S2; for non-square
// images only the 4 that keep the shape (identity, half turn, horizontal and vertical flip).
//
// Bad data: every sample is checked (the requested modalities present, S1 [2, H, W], S2 [C, H, W],
// labels [K], all values finite). With on_bad=error a bad sample raises a loom::Error naming it
// (from next(), when its batch comes up); with on_bad=skip it is left out of its batch (which is
// then smaller), a warning is issued, and skipped() counts it. Errors the dataset raises while
// reading are treated the same way.
//
// Threads: workers are std::threads of their own. While they run, loom::parallel_for called from
// them (inside a dataset's get()) runs inline on the worker: the compute pool stays with the
// training loop, so loading never oversubscribes the cores the model uses.
//
// Values: normalized per band (normalize() of sample.hpp with LoaderOptions::statistics, by
// default BigEarthNet's published statistics) unless normalize(false). Packed datasets are decoded
// straight from the file mapping into the batch with the same arithmetic.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "loom/core/error.hpp"
#include "loom/core/parallel.hpp"
#include "loom/core/pinned.hpp"
#include "loom/core/random.hpp"
#include "loom/core/tensor.hpp"
#include "loom/data/dataset.hpp"
#include "loom/data/packed.hpp"
#include "loom/data/sample.hpp"
#include "loom/dist/shard.hpp"

namespace loom::data {

struct Batch {
  int64_t epoch = 0;
  int64_t index = 0;              // position of the batch in its epoch
  Tensor<float> s1;               // [B, 2, H, W]  (undefined when S1 is not loaded)
  Tensor<float> s2;               // [B, C, H, W]  (undefined when S2 is not loaded)
  Tensor<float> labels;           // [B, K]
  std::vector<std::string> names;  // patch names
  std::vector<int64_t> indices;    // dataset indices
  int64_t skipped = 0;             // samples of this batch left out as bad (on_bad=skip)
  int64_t size() const { return int64_t(indices.size()); }
};

struct LoaderOptions {
  int64_t batch_size_ = 32;
  int workers_ = 2;             // 0: batches are made by next() on the calling thread
  int prefetch_ = 4;            // batches made ahead at most (bounds memory)
  bool shuffle_ = true;
  uint64_t seed_ = 0;
  bool augment_ = false;
  bool drop_last_ = false;
  bool normalize_ = true;
  bool pinned_ = false;         // batches in page-locked memory (CUDA backend): fast uploads
  BandStatistics statistics_ = bigearthnet_statistics();
  Modalities modalities_ = Modalities::both;
  OnBadSample on_bad_ = OnBadSample::error;
  int shard_rank_ = 0, shard_world_ = 1;  // data-parallel share (dist/shard.hpp)
  std::function<void(const std::string&)> warn_;  // default: "loom: warning: ..." on stderr

  LoaderOptions& batch_size(int64_t b) { batch_size_ = b; return *this; }
  LoaderOptions& workers(int w) { workers_ = w; return *this; }
  LoaderOptions& prefetch(int p) { prefetch_ = p; return *this; }
  LoaderOptions& shuffle(bool on) { shuffle_ = on; return *this; }
  LoaderOptions& seed(uint64_t s) { seed_ = s; return *this; }
  LoaderOptions& augment(bool on) { augment_ = on; return *this; }
  LoaderOptions& drop_last(bool on) { drop_last_ = on; return *this; }
  LoaderOptions& normalize(bool on) { normalize_ = on; return *this; }
  LoaderOptions& pinned(bool on) { pinned_ = on; return *this; }
  LoaderOptions& statistics(BandStatistics s) { statistics_ = std::move(s); return *this; }
  LoaderOptions& modalities(Modalities m) { modalities_ = m; return *this; }
  LoaderOptions& on_bad(OnBadSample p) { on_bad_ = p; return *this; }
  // Data-parallel sharding: batch b holds rank's contiguous share of global batch b (world x
  // batch_size positions of the epoch order), as dist/shard.hpp describes.
  LoaderOptions& shard(int rank, int world) { shard_rank_ = rank; shard_world_ = world; return *this; }
  LoaderOptions& warn(std::function<void(const std::string&)> w) { warn_ = std::move(w); return *this; }
};

// ---- augmentation -------------------------------------------------------------------------------

// The symmetry (0..7: bit 2 = horizontal flip first, bits 0-1 = quarter turns) of dataset sample
// `index` in `epoch`: a pure function of (seed, epoch, index). Non-square images get 0, 2, 4 or 6.
inline int augmentation_of(uint64_t seed, int64_t epoch, int64_t index, bool square) {
  constexpr uint32_t kAugmentPurpose = 0xA11Au;
  const philox::Counter c{{uint32_t(uint64_t(index)), uint32_t(uint64_t(index) >> 32), uint32_t(uint64_t(epoch)),
                           (kAugmentPurpose << 16) | (uint32_t(uint64_t(epoch) >> 32) & 0xffffu)}};
  const uint32_t bits = philox::philox4x32_10(c, philox::key_for_seed(seed)).x[0];
  return square ? int(bits & 7u) : int(2 * (bits & 3u));
}

// dst[c] = rot90(fliplr?(src[c]), k) for each of `channels` planes of H x W (dst must not alias src;
// for odd k, H == W).
inline void apply_symmetry(const float* src, float* dst, int64_t channels, int64_t H, int64_t W, int symmetry) {
  const bool flip = symmetry & 4;
  const int k = symmetry & 3;
  LOOM_CHECK(k % 2 == 0 || H == W, "apply_symmetry: a quarter turn needs a square image, got ", H, " x ", W);
  for (int64_t c = 0; c < channels; ++c) {
    const float* in = src + c * H * W;
    float* out = dst + c * H * W;
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) {
        int64_t r = y, q = x;  // position in the flipped image that lands on (y, x)
        switch (k) {
          case 1: r = x, q = W - 1 - y; break;
          case 2: r = H - 1 - y, q = W - 1 - x; break;
          case 3: r = H - 1 - x, q = y; break;
          default: break;
        }
        if (flip) q = W - 1 - q;
        out[y * W + x] = in[r * W + q];
      }
  }
}

// ---- the loader ---------------------------------------------------------------------------------

class DataLoader {
 public:
  DataLoader(const Dataset& dataset, LoaderOptions options) : ds_(dataset), opt_(std::move(options)) {
    LOOM_CHECK(opt_.batch_size_ >= 1, "DataLoader: batch_size ", opt_.batch_size_, " must be at least 1");
    LOOM_CHECK(opt_.workers_ >= 0 && opt_.workers_ <= 256, "DataLoader: workers ", opt_.workers_, " outside [0, 256]");
    LOOM_CHECK(opt_.prefetch_ >= 1, "DataLoader: prefetch ", opt_.prefetch_, " must be at least 1");
    LOOM_CHECK(!opt_.pinned_ || loom::detail::kCudaBackend,
               "DataLoader: pinned(true) needs the CUDA backend (page-locked memory for GPU uploads)");
    LOOM_CHECK(opt_.shard_world_ >= 1 && opt_.shard_rank_ >= 0 && opt_.shard_rank_ < opt_.shard_world_,
               "DataLoader: shard rank ", opt_.shard_rank_, " outside a world of ", opt_.shard_world_);
    packed_ = dynamic_cast<const PackedDataset*>(&ds_);
    num_classes_ = ds_.num_classes();
    probe_layout();
  }
  ~DataLoader() { stop(); }
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  int64_t num_batches() const {
    return dist::global_batches(ds_.size(), opt_.batch_size_, opt_.shard_world_, opt_.drop_last_);
  }
  int64_t height() const { return height_; }
  int64_t width() const { return width_; }
  const LoaderOptions& options() const { return opt_; }

  // The order of dataset indices in `epoch`.
  std::vector<int64_t> epoch_order(int64_t epoch) const {
    const int64_t n = ds_.size();
    if (!opt_.shuffle_) {
      std::vector<int64_t> order(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
      return order;
    }
    Generator gen(opt_.seed_, uint64_t(epoch) << 40);
    return randperm(n, gen).to_vector();
  }

  // Starts (or restarts) `epoch`: stops the current one and sets the workers going.
  void start_epoch(int64_t epoch) {
    stop();
    epoch_ = epoch;
    order_ = epoch_order(epoch);
    batches_ = num_batches();
    next_claim_ = 0;
    consumed_ = 0;
    results_.clear();
    stopping_ = false;
    started_ = true;
    for (int w = 0; w < opt_.workers_; ++w) workers_.emplace_back([this] { worker_loop(); });
  }

  // The next batch of the epoch in order, or nullopt when the epoch is over. Rethrows an error
  // raised while making the batch.
  std::optional<Batch> next() {
    LOOM_CHECK(started_, "DataLoader::next: call start_epoch(epoch) first");
    if (consumed_ >= batches_) return std::nullopt;
    const int64_t b = consumed_;
    Slot slot;
    if (opt_.workers_ == 0) {
      make_into(b, slot);
    } else {
      std::unique_lock lock(mutex_);
      ready_.wait(lock, [&] { return results_.count(b) > 0; });
      slot = std::move(results_[b]);
      results_.erase(b);
    }
    {
      std::lock_guard lock(mutex_);
      ++consumed_;
    }
    space_.notify_all();
    if (slot.error) std::rethrow_exception(slot.error);
    return std::move(slot.batch);
  }

  // Samples left out as bad since the loader was made (on_bad=skip), and their warnings.
  int64_t skipped() const { return skipped_.load(); }
  std::vector<std::string> skip_messages() const {
    std::lock_guard lock(messages_mutex_);
    return messages_;
  }

  // Makes batch b of `epoch` on the calling thread (what the workers do); for tests and tools.
  Batch make_batch(int64_t epoch, int64_t b) const {
    const std::vector<int64_t> order = epoch_order(epoch);
    LOOM_CHECK(b >= 0 && b < num_batches(), "DataLoader::make_batch: batch ", b, " out of range for ", num_batches(),
               " batches");
    return build(epoch, b, order);
  }

 private:
  struct Slot {
    Batch batch;
    std::exception_ptr error;
  };

  bool want_s1() const { return opt_.modalities_ != Modalities::s2; }
  bool want_s2() const { return opt_.modalities_ != Modalities::s1; }

  // Image size and S2 bands from the pack's header or the first good sample.
  void probe_layout() {
    if (ds_.size() == 0) return;  // no batches to make
    if (packed_) {
      const PackedLayout& l = packed_->layout();
      height_ = l.height, width_ = l.width, s2_bands_ = l.s2_bands;
      LOOM_CHECK(!want_s1() || !l.s1_bands.empty(), "DataLoader: ", packed_->path(), " holds no S1");
      LOOM_CHECK(!want_s2() || !l.s2_bands.empty(), "DataLoader: ", packed_->path(), " holds no S2");
      return;
    }
    std::string last_problem = "the dataset is empty";
    for (int64_t i = 0; i < std::min<int64_t>(ds_.size(), 64); ++i) {
      try {
        const Sample s = ds_.get(i);
        const Tensor<float>& image = want_s2() ? s.s2 : s.s1;
        if (!image.defined() || image.dim() != 3) {
          last_problem = "sample " + std::to_string(i) + " lacks a requested modality";
          continue;
        }
        height_ = image.size(1), width_ = image.size(2);
        if (want_s2()) s2_bands_ = s.s2_bands;
        return;
      } catch (const Error& e) {
        last_problem = e.what();
      }
    }
    loom::detail::fail("DataLoader: cannot find the image layout: ", last_problem);
  }

  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    space_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  void worker_loop() {
    // parallel_for from this thread runs inline (see the top of this file).
    loom::detail::tls_inside_pool = true;
    for (;;) {
      int64_t b = 0;
      {
        std::unique_lock lock(mutex_);
        space_.wait(lock, [&] { return stopping_ || (next_claim_ < batches_ && next_claim_ < consumed_ + opt_.prefetch_); });
        if (stopping_) return;
        b = next_claim_++;
      }
      Slot slot;
      make_into(b, slot);
      {
        std::lock_guard lock(mutex_);
        results_[b] = std::move(slot);
      }
      ready_.notify_all();
    }
  }

  void make_into(int64_t b, Slot& slot) const {
    try {
      slot.batch = build(epoch_, b, order_);
    } catch (...) {
      slot.error = std::current_exception();
    }
  }

  void report_skip(const std::string& message) const {
    skipped_.fetch_add(1);
    {
      std::lock_guard lock(messages_mutex_);
      if (messages_.size() < 1000) messages_.push_back(message);
    }
    if (opt_.warn_) opt_.warn_(message);
    else std::cerr << "loom: warning: " << message << '\n';
  }

  static bool all_finite(const float* p, int64_t n) {
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; ++i) {
      uint32_t bits;
      std::memcpy(&bits, p + i, 4);
      bad |= uint32_t((bits & 0x7f800000u) == 0x7f800000u);
    }
    return bad == 0;
  }

  // Writes dataset sample `index` into slot `row` of the batch buffers; returns its name, or
  // throws loom::Error describing why the sample is bad.
  std::string load_into(int64_t index, float* s1, float* s2, float* labels) const {
    const int64_t plane = height_ * width_;
    const int64_t c2 = int64_t(s2_bands_.size());
    std::string name;
    if (packed_) {
      const PackedRecord r = packed_->decode_into(index, want_s1() ? s1 : nullptr, want_s2() ? s2 : nullptr, labels,
                                                  opt_.normalize_ ? &opt_.statistics_ : nullptr);
      name = std::string(r.s2_name.empty() ? r.s1_name : r.s2_name);
      LOOM_CHECK(!want_s1() || r.has_s1, "sample ", index, " (", name, "): no S1");
      LOOM_CHECK(!want_s2() || r.has_s2, "sample ", index, " (", name, "): no S2");
      // Only the float16 S1 can hold non-finite values (uint16 and 0/1 labels cannot): checked on
      // the half bits, before the decoded floats would have to be read again.
      LOOM_CHECK(!want_s1() || packed_format::halves_finite(r.s1, size_t(2 * plane)), "sample ", index, " (", name,
                 "): non-finite S1 value");
      return name;
    } else {
      Sample s = ds_.get(index);
      name = s.name();
      const std::string what = "sample " + std::to_string(index) + " (" + name + ")";
      LOOM_CHECK(!want_s1() || s.has_s1(), what, ": no S1");
      LOOM_CHECK(!want_s2() || s.has_s2(), what, ": no S2");
      if (want_s1()) {
        LOOM_CHECK(s.s1.dim() == 3 && s.s1.size(0) == 2 && s.s1.size(1) == height_ && s.s1.size(2) == width_, what,
                   ": S1 of shape ", s.s1.shape(), ", expected [2, ", height_, ", ", width_, "]");
      }
      if (want_s2()) {
        LOOM_CHECK(s.s2.dim() == 3 && s.s2.size(0) == c2 && s.s2.size(1) == height_ && s.s2.size(2) == width_, what,
                   ": S2 of shape ", s.s2.shape(), ", expected [", c2, ", ", height_, ", ", width_, "]");
        LOOM_CHECK(s.s2_bands == s2_bands_, what, ": S2 bands differ from the first sample's");
      }
      LOOM_CHECK(s.labels.defined() && s.labels.numel() == num_classes_, what, ": labels of shape ",
                 s.labels.defined() ? s.labels.shape() : Shape{}, ", expected [", num_classes_, "]");
      if (!want_s1()) s.s1 = Tensor<float>();
      if (!want_s2()) s.s2 = Tensor<float>();
      // Non-finite values are checked before normalizing (which would keep them non-finite anyway).
      if (opt_.normalize_) s = normalize(s, opt_.statistics_);
      if (want_s1()) {
        const Tensor<float> t = s.s1.contiguous();
        std::memcpy(s1, t.data(), size_t(2 * plane) * sizeof(float));
      }
      if (want_s2()) {
        const Tensor<float> t = s.s2.contiguous();
        std::memcpy(s2, t.data(), size_t(c2 * plane) * sizeof(float));
      }
      const Tensor<float> l = s.labels.contiguous();
      std::memcpy(labels, l.data(), size_t(num_classes_) * sizeof(float));
    }
    LOOM_CHECK(!want_s1() || all_finite(s1, 2 * plane), "sample ", index, " (", name, "): non-finite S1 value");
    LOOM_CHECK(!want_s2() || all_finite(s2, c2 * plane), "sample ", index, " (", name, "): non-finite S2 value");
    LOOM_CHECK(all_finite(labels, num_classes_), "sample ", index, " (", name, "): non-finite label");
    return name;
  }

  Batch build(int64_t epoch, int64_t b, const std::vector<int64_t>& order) const {
    const int64_t H = height_, W = width_;
    const auto [begin, end] = dist::batch_shard(int64_t(order.size()), b, opt_.batch_size_, opt_.shard_rank_, opt_.shard_world_);
    const int64_t capacity = end - begin;
    const int64_t c2 = int64_t(s2_bands_.size()), plane = H * W;
    Batch batch;
    batch.epoch = epoch;
    batch.index = b;
    auto make = [&](const Shape& shape) { return opt_.pinned_ ? pinned_empty<float>(shape) : Tensor<float>::empty(shape); };
    Tensor<float> s1 = want_s1() ? make({capacity, 2, H, W}) : Tensor<float>();   // [B, 2, H, W]
    Tensor<float> s2 = want_s2() ? make({capacity, c2, H, W}) : Tensor<float>();  // [B, C, H, W]
    Tensor<float> labels = make({capacity, num_classes_});                        // [B, K]
    std::vector<float> scratch;
    int64_t row = 0;
    for (int64_t p = begin; p < end; ++p) {
      const int64_t index = order[size_t(p)];
      float* s1_row = s1.defined() ? s1.data() + row * 2 * plane : nullptr;
      float* s2_row = s2.defined() ? s2.data() + row * c2 * plane : nullptr;
      try {
        batch.names.push_back(load_into(index, s1_row, s2_row, labels.data() + row * num_classes_));
      } catch (const Error& e) {
        const std::string message = std::string("DataLoader: batch ") + std::to_string(b) + ": " + e.what();
        if (opt_.on_bad_ == OnBadSample::error) throw Error(message);
        report_skip(message);
        ++batch.skipped;
        continue;
      }
      if (opt_.augment_) {
        const int symmetry = augmentation_of(opt_.seed_, epoch, index, H == W);
        if (symmetry != 0) {
          for (auto [data, channels] : {std::pair{s1_row, int64_t(2)}, std::pair{s2_row, c2}}) {
            if (!data) continue;
            scratch.assign(data, data + channels * plane);
            apply_symmetry(scratch.data(), data, channels, H, W, symmetry);
          }
        }
      }
      batch.indices.push_back(index);
      ++row;
    }
    // Skipped samples shorten the batch: a view of the filled rows (still contiguous).
    if (s1.defined()) batch.s1 = row == capacity ? s1 : s1.narrow(0, 0, row);
    if (s2.defined()) batch.s2 = row == capacity ? s2 : s2.narrow(0, 0, row);
    batch.labels = row == capacity ? labels : labels.narrow(0, 0, row);
    return batch;
  }

  const Dataset& ds_;
  LoaderOptions opt_;
  const PackedDataset* packed_ = nullptr;
  int64_t num_classes_ = 0, height_ = 0, width_ = 0;
  std::vector<std::string> s2_bands_;

  // The running epoch.
  int64_t epoch_ = 0, batches_ = 0;
  std::vector<int64_t> order_;
  bool started_ = false;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable ready_, space_;
  int64_t next_claim_ = 0, consumed_ = 0;
  bool stopping_ = false;
  std::map<int64_t, Slot> results_;

  mutable std::atomic<int64_t> skipped_{0};
  mutable std::mutex messages_mutex_;
  mutable std::vector<std::string> messages_;
};

}  // namespace loom::data
