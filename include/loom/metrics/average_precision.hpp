#pragma once
// Average precision (AP) and mean AP for multilabel classification, with exactly scikit-learn's
// `average_precision_score` semantics (see docs/metrics.md).
//
// Inputs are row-major [n, c] arrays in any contiguous range (see multilabel_input.hpp):
//
//   std::vector<float> scores = ...;        // n * c sigmoid outputs (or logits)
//   std::vector<std::uint8_t> targets = ...; // n * c zeros and ones
//   double m = loom::metrics::map_macro(scores, targets, n, c);
//
// AP of one ranking: scores are grouped into distinct thresholds (equal scores form one group,
// exactly like sklearn's precision_recall_curve), visited from the highest down; at each
// threshold t, P = TP(t) / (TP(t) + FP(t)) and R = TP(t) / #positives count every sample with
// score >= t, and
//
//   AP = sum over thresholds of (R_k - R_{k-1}) * P_k,   R_0 = 0.
//
// No interpolation. A ranking without any positive has AP = 0 (sklearn >= 1.1 returns 0 with a
// "No positive class found" warning; older versions returned NaN).
#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

#include "loom/core/error.hpp"
#include "loom/metrics/multilabel_input.hpp"

namespace loom::metrics {

// How map_micro_batch_averaged combines the per-batch values.
enum class BatchWeighting {
  per_batch,   // plain mean over batches; a last partial batch counts as one whole batch
               // (SSL4EO-S12 linear_BE_*: running_acc_val / count_val)
  per_sample,  // mean weighted by batch size (DINO-MM linear_dino_*: MetricLogger
               // meters['acc1'].update(ap, n=batch_size), reported as global_avg)
};

namespace detail {

struct RankedItem {
  double score;
  bool positive;
};

// AP of the items (reordered in place). Equal scores form one threshold.
inline double average_precision_of(std::vector<RankedItem>& items) {
  std::size_t positives = 0;
  for (const RankedItem& item : items) positives += item.positive ? 1 : 0;
  if (positives == 0) return 0.0;
  std::sort(items.begin(), items.end(),
            [](const RankedItem& a, const RankedItem& b) { return a.score > b.score; });
  double ap = 0.0;
  double previous_recall = 0.0;
  std::size_t tp = 0;
  std::size_t seen = 0;
  for (std::size_t i = 0; i < items.size();) {
    const double threshold = items[i].score;
    for (; i < items.size() && items[i].score == threshold; ++i) {
      tp += items[i].positive ? 1 : 0;
      ++seen;
    }
    const double recall = static_cast<double>(tp) / static_cast<double>(positives);
    const double precision = static_cast<double>(tp) / static_cast<double>(seen);
    ap += (recall - previous_recall) * precision;
    previous_recall = recall;
  }
  return ap;
}

// AP of class `cls` (column) over rows [row_begin, row_end).
template <class S, class T>
double column_average_precision(std::span<const S> scores, std::span<const T> targets,
                                std::size_t c, std::size_t cls, std::size_t row_begin,
                                std::size_t row_end, std::vector<RankedItem>& buffer) {
  buffer.clear();
  for (std::size_t row = row_begin; row < row_end; ++row) {
    const std::size_t i = row * c + cls;
    buffer.push_back({static_cast<double>(scores[i]), is_positive(targets[i])});
  }
  return average_precision_of(buffer);
}

// Micro AP of all (sample, class) pairs in rows [row_begin, row_end).
template <class S, class T>
double block_micro_average_precision(std::span<const S> scores, std::span<const T> targets,
                                     std::size_t c, std::size_t row_begin, std::size_t row_end,
                                     std::vector<RankedItem>& buffer) {
  buffer.clear();
  for (std::size_t i = row_begin * c; i < row_end * c; ++i)
    buffer.push_back({static_cast<double>(scores[i]), is_positive(targets[i])});
  return average_precision_of(buffer);
}

}  // namespace detail

// AP of a single ranking: scores[i] and targets[i] (0/1) for i < n, n = scores.size() > 0.
template <ScoreRange Scores, TargetRange Targets>
double average_precision(const Scores& scores, const Targets& targets) {
  const auto s = detail::as_span(scores);
  const auto t = detail::as_span(targets);
  LOOM_CHECK(s.size() == t.size(), "average_precision: expected scores and targets of equal size, got ",
             s.size(), " and ", t.size());
  detail::check_multilabel("average_precision", s, t, s.size(), 1);
  std::vector<detail::RankedItem> buffer;
  buffer.reserve(s.size());
  return detail::block_micro_average_precision(s, t, 1, 0, s.size(), buffer);
}

// AP of every class (column) of row-major [n, c] scores/targets: sklearn average=None.
// A class without positives gets 0.
template <ScoreRange Scores, TargetRange Targets>
std::vector<double> average_precision_per_class(const Scores& scores, const Targets& targets,
                                                std::size_t n, std::size_t c) {
  const auto s = detail::as_span(scores);
  const auto t = detail::as_span(targets);
  detail::check_multilabel("average_precision_per_class", s, t, n, c);
  std::vector<double> result(c);
  std::vector<detail::RankedItem> buffer;
  buffer.reserve(n);
  for (std::size_t cls = 0; cls < c; ++cls)
    result[cls] = detail::column_average_precision(s, t, c, cls, 0, n, buffer);
  return result;
}

// Macro mAP: unweighted mean of the c per-class APs (sklearn average='macro'). Classes without
// positives are included with AP 0, exactly as sklearn does; they pull the mean down.
template <ScoreRange Scores, TargetRange Targets>
double map_macro(const Scores& scores, const Targets& targets, std::size_t n, std::size_t c) {
  const auto s = detail::as_span(scores);
  const auto t = detail::as_span(targets);
  detail::check_multilabel("map_macro", s, t, n, c);
  std::vector<detail::RankedItem> buffer;
  buffer.reserve(n);
  double sum = 0.0;
  for (std::size_t cls = 0; cls < c; ++cls)
    sum += detail::column_average_precision(s, t, c, cls, 0, n, buffer);
  return sum / static_cast<double>(c);
}

// Micro mAP: AP of all n * c (sample, class) pairs ranked together (sklearn average='micro').
// 0 when no target at all is positive.
template <ScoreRange Scores, TargetRange Targets>
double map_micro(const Scores& scores, const Targets& targets, std::size_t n, std::size_t c) {
  const auto s = detail::as_span(scores);
  const auto t = detail::as_span(targets);
  detail::check_multilabel("map_micro", s, t, n, c);
  std::vector<detail::RankedItem> buffer;
  buffer.reserve(n * c);
  return detail::block_micro_average_precision(s, t, c, 0, n, buffer);
}

// The "mAP" reported by the DINO-MM / SSL4EO-S12 BigEarthNet evaluation code: rows are cut into
// consecutive batches of batch_size (the last one may be smaller), sklearn micro AP is computed on
// each batch separately, and the per-batch values are averaged (uniformly, or weighted by batch
// size; see BatchWeighting). A batch without any positive contributes 0.
//
// This is NOT the micro mAP of the whole set: it depends on batch_size and on the sample order.
// To reproduce a loader with drop_last=True, pass only the first (n / batch_size) * batch_size rows.
template <ScoreRange Scores, TargetRange Targets>
double map_micro_batch_averaged(const Scores& scores, const Targets& targets, std::size_t n,
                                std::size_t c, std::size_t batch_size,
                                BatchWeighting weighting = BatchWeighting::per_batch) {
  const auto s = detail::as_span(scores);
  const auto t = detail::as_span(targets);
  detail::check_multilabel("map_micro_batch_averaged", s, t, n, c);
  LOOM_CHECK(batch_size > 0, "map_micro_batch_averaged: expected batch_size > 0, got 0");
  std::vector<detail::RankedItem> buffer;
  buffer.reserve(std::min(n, batch_size) * c);
  double sum = 0.0;
  std::size_t batches = 0;
  for (std::size_t begin = 0; begin < n;) {
    const std::size_t end = begin + std::min(batch_size, n - begin);
    const double ap = detail::block_micro_average_precision(s, t, c, begin, end, buffer);
    sum += weighting == BatchWeighting::per_sample ? ap * static_cast<double>(end - begin) : ap;
    ++batches;
    begin = end;
  }
  return sum / static_cast<double>(weighting == BatchWeighting::per_sample ? n : batches);
}

}  // namespace loom::metrics
