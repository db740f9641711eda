#pragma once
// Thresholded multilabel precision, recall and F1 with scikit-learn's
// precision_recall_fscore_support(..., zero_division=0) semantics (see docs/metrics.md).
//
//   auto m = loom::metrics::classification_metrics(scores, targets, n, c);  // threshold 0.5
//   m.micro.f1, m.macro.precision, m.per_class[k].recall, m.support[k], ...
//
// Prediction: a (sample, class) pair is predicted positive iff score >= threshold, the comparison
// done in the scores' own precision (a float score is compared with float(threshold), as
// `probs >= 0.5` does in NumPy 1.x / PyTorch). Pass sigmoid probabilities with the default
// threshold 0.5, or logits with threshold 0.
//
// Per class k, from TP, FP, FN counts:
//   precision = TP / (TP + FP), 0 when nothing is predicted positive;
//   recall    = TP / (TP + FN), 0 when the class has no positive;
//   F1        = 2 P R / (P + R), 0 when P + R = 0.
// Averages (sklearn average=...):
//   micro    : the formulas above on the counts summed over all classes;
//   macro    : unweighted mean over all c classes of the per-class values (classes without
//              positives included, with their zeros);
//   weighted : mean weighted by support (number of positives); all 0 if no positive at all;
//   samples  : the formulas on each sample's row (its predicted vs true label set), averaged over
//              the n samples; a sample with no positive and no prediction scores 0.
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <vector>

#include "loom/core/error.hpp"
#include "loom/metrics/multilabel_input.hpp"

namespace loom::metrics {

struct PrecisionRecallF1 {
  double precision = 0.0;
  double recall = 0.0;
  double f1 = 0.0;
};

struct ClassificationMetrics {
  double threshold = 0.5;
  PrecisionRecallF1 micro;
  PrecisionRecallF1 macro;
  PrecisionRecallF1 weighted;
  PrecisionRecallF1 samples;
  std::vector<PrecisionRecallF1> per_class;  // [c]
  std::vector<std::size_t> support;          // [c] positives per class (sklearn's support)
  std::vector<std::size_t> predicted;        // [c] predicted positives per class (TP + FP)
  std::vector<std::size_t> true_positives;   // [c]
};

namespace detail {

inline double safe_ratio(std::size_t num, std::size_t den) {
  return den == 0 ? 0.0 : static_cast<double>(num) / static_cast<double>(den);
}

inline PrecisionRecallF1 prf_from_counts(std::size_t tp, std::size_t predicted,
                                         std::size_t actual) {
  PrecisionRecallF1 r;
  r.precision = safe_ratio(tp, predicted);
  r.recall = safe_ratio(tp, actual);
  const double denom = r.precision + r.recall;
  r.f1 = denom == 0.0 ? 0.0 : 2.0 * r.precision * r.recall / denom;
  return r;
}

// The threshold in the scores' precision; values beyond float's range become +-inf (instead of
// an out-of-range conversion).
template <class S>
S threshold_as(double threshold) {
  if (threshold > static_cast<double>(std::numeric_limits<S>::max()))
    return std::numeric_limits<S>::infinity();
  if (threshold < -static_cast<double>(std::numeric_limits<S>::max()))
    return -std::numeric_limits<S>::infinity();
  return static_cast<S>(threshold);
}

}  // namespace detail

// Precision / recall / F1 of row-major [n, c] scores thresholded at `threshold` against 0/1
// targets, per class and with the micro, macro, weighted and samples averages.
template <ScoreRange Scores, TargetRange Targets>
ClassificationMetrics classification_metrics(const Scores& scores, const Targets& targets,
                                             std::size_t n, std::size_t c,
                                             double threshold = 0.5) {
  const auto s = detail::as_span(scores);
  const auto t = detail::as_span(targets);
  using S = typename decltype(s)::value_type;
  LOOM_CHECK(!std::isnan(threshold), "classification_metrics: expected a threshold that is not NaN");
  detail::check_multilabel("classification_metrics", s, t, n, c);
  const S cut = detail::threshold_as<S>(threshold);

  ClassificationMetrics m;
  m.threshold = threshold;
  m.support.assign(c, 0);
  m.predicted.assign(c, 0);
  m.true_positives.assign(c, 0);

  double samples_precision = 0.0, samples_recall = 0.0, samples_f1 = 0.0;
  for (std::size_t row = 0; row < n; ++row) {
    std::size_t row_tp = 0, row_predicted = 0, row_actual = 0;
    for (std::size_t k = 0; k < c; ++k) {
      const std::size_t i = row * c + k;
      const bool pred = s[i] >= cut;
      const bool actual = detail::is_positive(t[i]);
      row_predicted += pred ? 1 : 0;
      row_actual += actual ? 1 : 0;
      row_tp += (pred && actual) ? 1 : 0;
      m.predicted[k] += pred ? 1 : 0;
      m.support[k] += actual ? 1 : 0;
      m.true_positives[k] += (pred && actual) ? 1 : 0;
    }
    const PrecisionRecallF1 r = detail::prf_from_counts(row_tp, row_predicted, row_actual);
    samples_precision += r.precision;
    samples_recall += r.recall;
    samples_f1 += r.f1;
  }
  const double dn = static_cast<double>(n);
  m.samples = {samples_precision / dn, samples_recall / dn, samples_f1 / dn};

  m.per_class.resize(c);
  std::size_t total_tp = 0, total_predicted = 0, total_support = 0;
  PrecisionRecallF1 sum, weighted_sum;
  for (std::size_t k = 0; k < c; ++k) {
    const PrecisionRecallF1 r =
        detail::prf_from_counts(m.true_positives[k], m.predicted[k], m.support[k]);
    m.per_class[k] = r;
    total_tp += m.true_positives[k];
    total_predicted += m.predicted[k];
    total_support += m.support[k];
    sum.precision += r.precision;
    sum.recall += r.recall;
    sum.f1 += r.f1;
    const double w = static_cast<double>(m.support[k]);
    weighted_sum.precision += w * r.precision;
    weighted_sum.recall += w * r.recall;
    weighted_sum.f1 += w * r.f1;
  }
  m.micro = detail::prf_from_counts(total_tp, total_predicted, total_support);
  const double dc = static_cast<double>(c);
  m.macro = {sum.precision / dc, sum.recall / dc, sum.f1 / dc};
  if (total_support > 0) {
    const double w = static_cast<double>(total_support);
    m.weighted = {weighted_sum.precision / w, weighted_sum.recall / w, weighted_sum.f1 / w};
  }
  return m;
}

}  // namespace loom::metrics
