#pragma once
// Label fractions for fine-tuning: a subset of the training set drawn without replacement from a
// seed, and a Dataset view over it.
//
//   std::vector<int64_t> keep = loom::train::label_subset(train.size(), 0.01, seed);  // sorted
//   loom::train::SubsetDataset subset(train, keep);
//
// The subset has max(1, round(fraction · n)) samples: the first of randperm(n) under a generator
// seeded by (seed, a purpose of its own), so it depends on nothing but (n, fraction, seed), and the
// subset of a smaller fraction is not in general part of a larger one. Indices come back sorted.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "loom/core/random.hpp"
#include "loom/data/dataset.hpp"

namespace loom::train {

inline int64_t label_subset_size(int64_t n, double fraction) {
  LOOM_CHECK(n >= 1, "label_subset: the training set is empty");
  LOOM_CHECK(fraction > 0 && fraction <= 1, "label_subset: fraction ", fraction, " is not in (0, 1]");
  return std::clamp<int64_t>(int64_t(std::llround(fraction * double(n))), 1, n);
}

inline std::vector<int64_t> label_subset(int64_t n, double fraction, uint64_t seed) {
  const int64_t k = label_subset_size(n, fraction);
  if (k == n) {
    std::vector<int64_t> all(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) all[size_t(i)] = i;
    return all;
  }
  // A seed of its own (mixed with a purpose constant), so the subset shares no random stream with
  // initialization or data order drawn from the same --seed.
  constexpr uint64_t kPurpose = 0x1ABE15ull;
  Generator gen((seed + kPurpose) * 0x9E3779B97F4A7C15ull);
  std::vector<int64_t> order = randperm(n, gen).to_vector();
  order.resize(size_t(k));
  std::sort(order.begin(), order.end());
  return order;
}

// The samples `indices` of `base` (which must outlive it), in that order.
class SubsetDataset : public data::Dataset {
 public:
  SubsetDataset(const data::Dataset& base, std::vector<int64_t> indices) : base_(base), indices_(std::move(indices)) {
    for (int64_t i : indices_)
      LOOM_CHECK(i >= 0 && i < base_.size(), "SubsetDataset: index ", i, " out of range for a dataset of ", base_.size(),
                 " samples");
  }
  int64_t size() const override { return int64_t(indices_.size()); }
  std::string name(int64_t i) const override { return base_.name(indices_.at(size_t(i))); }
  std::vector<std::string> class_names() const override { return base_.class_names(); }
  const std::vector<int64_t>& indices() const { return indices_; }

 protected:
  data::Sample load(int64_t i) const override { return base_.get(indices_.at(size_t(i))); }

 private:
  const data::Dataset& base_;
  std::vector<int64_t> indices_;
};

}  // namespace loom::train
