#pragma once
// Inputs shared by the loom::metrics functions: row-major [n, c] scores and 0/1 targets held in
// any contiguous range (std::span, std::vector, std::array, ...), plus their validation.
//
//   scores : float or double, one score per (sample, class); higher = more likely positive.
//            NaN is rejected; +-inf are accepted and ordered as usual.
//   targets: std::uint8_t, float or double; every value must be exactly 0 or 1.
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <ranges>
#include <span>
#include <type_traits>

#include "loom/core/error.hpp"

namespace loom::metrics {

template <class R>
concept ScoreRange =
    std::ranges::contiguous_range<R> && std::ranges::sized_range<R> &&
    (std::same_as<std::ranges::range_value_t<R>, float> ||
     std::same_as<std::ranges::range_value_t<R>, double>);

template <class R>
concept TargetRange =
    std::ranges::contiguous_range<R> && std::ranges::sized_range<R> &&
    (std::same_as<std::ranges::range_value_t<R>, std::uint8_t> ||
     std::same_as<std::ranges::range_value_t<R>, float> ||
     std::same_as<std::ranges::range_value_t<R>, double>);

namespace detail {

// A read-only span over any contiguous range.
template <class R>
auto as_span(const R& range) {
  using V = std::ranges::range_value_t<R>;
  return std::span<const V>(std::ranges::data(range), std::ranges::size(range));
}

template <class T>
bool is_positive(T target) {
  return target != T(0);
}

// Throws loom::Error naming `metric` unless scores/targets describe a valid [n, c] problem:
// n > 0, c > 0, both sizes equal n * c, no NaN score, every target 0 or 1.
template <class S, class T>
void check_multilabel(const char* metric, std::span<const S> scores, std::span<const T> targets,
                      std::size_t n, std::size_t c) {
  LOOM_CHECK(n > 0, metric, ": expected at least one sample (n > 0), got n = 0");
  LOOM_CHECK(c > 0, metric, ": expected at least one class (c > 0), got c = 0");
  LOOM_CHECK(n <= std::numeric_limits<std::size_t>::max() / c, metric, ": n * c overflows (n = ", n,
             ", c = ", c, ")");
  const std::size_t total = n * c;
  LOOM_CHECK(scores.size() == total, metric, ": expected scores of size n * c = ", n, " * ", c,
             " = ", total, ", got ", scores.size());
  LOOM_CHECK(targets.size() == total, metric, ": expected targets of size n * c = ", n, " * ", c,
             " = ", total, ", got ", targets.size());
  for (std::size_t i = 0; i < total; ++i) {
    LOOM_CHECK(!std::isnan(scores[i]), metric, ": expected scores that are not NaN, got NaN at [",
               i / c, ", ", i % c, "]");
    const T t = targets[i];
    LOOM_CHECK(t == T(0) || t == T(1), metric, ": expected targets 0 or 1, got ",
               +t, " at [", i / c, ", ", i % c, "]");
  }
}

}  // namespace detail
}  // namespace loom::metrics
