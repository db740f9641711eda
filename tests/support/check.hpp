#pragma once
// The suite's one tolerance rule:  |ours - ref| <= atol + rtol * |ref|,  with the reference computed
// independently (naive loops in double, finite differences, PyTorch/scikit-learn goldens). On
// failure the message names the worst index and lists the first mismatches.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "loom/core/tensor.hpp"

namespace loom::test {

struct Tol {
  double atol;
  double rtol;
};

// Defaults per element type for single ops; composite computations pass their own.
template <class T>
constexpr Tol tol_for() {
  if constexpr (std::is_same_v<T, double>) return {1e-12, 1e-10};
  if constexpr (std::is_same_v<T, float>) return {1e-6, 1e-5};
  if constexpr (std::is_same_v<T, bf16>) return {1e-3, 1.0 / 128};
  return {0, 0};
}

// Returns an empty string when all elements pass, else a report.
inline std::string compare(const std::vector<double>& ours, const std::vector<double>& ref, Tol tol) {
  std::ostringstream out;
  if (ours.size() != ref.size()) {
    out << "size mismatch: ours " << ours.size() << " vs reference " << ref.size();
    return out.str();
  }
  int64_t worst = -1, failures = 0;
  double worst_excess = 0;
  std::ostringstream first;
  for (size_t i = 0; i < ours.size(); ++i) {
    const double diff = std::abs(ours[i] - ref[i]);
    const double allowed = tol.atol + tol.rtol * std::abs(ref[i]);
    const bool bad = !(diff <= allowed) && !(std::isnan(ours[i]) && std::isnan(ref[i])) &&
                     !(std::isinf(ref[i]) && ours[i] == ref[i]);
    if (!bad) continue;
    const double excess = std::isnan(diff) ? INFINITY : diff - allowed;
    if (worst < 0 || excess > worst_excess) {
      worst = int64_t(i);
      worst_excess = excess;
    }
    if (failures++ < 5) first << "\n  [" << i << "] ours " << ours[i] << " ref " << ref[i];
  }
  if (failures == 0) return {};
  out << failures << " of " << ours.size() << " elements outside atol " << tol.atol << " + rtol " << tol.rtol
      << "*|ref|; worst [" << worst << "] ours " << ours[size_t(worst)] << " ref " << ref[size_t(worst)]
      << "; first mismatches:" << first.str();
  return out.str();
}

template <class T, class Dev>
std::vector<double> to_double(const Tensor<T, Dev>& t) {
  std::vector<double> out;
  for (const T& v : t.to_vector()) out.push_back(double(compute_t<T>(v)));
  return out;
}

template <class T>
std::vector<double> to_double(const std::vector<T>& v) {
  return {v.begin(), v.end()};
}

template <class T, class Dev>
void require_close(const Tensor<T, Dev>& ours, const std::vector<double>& ref, Tol tol = tol_for<T>()) {
  const std::string report = compare(to_double(ours), ref, tol);
  INFO(report);
  REQUIRE(report.empty());
}

inline void require_close(const std::vector<double>& ours, const std::vector<double>& ref, Tol tol) {
  const std::string report = compare(ours, ref, tol);
  INFO(report);
  REQUIRE(report.empty());
}

// Path of the shared data samples, or "" when they are absent (tests then SKIP).
inline std::string shared_data_dir() {
#ifdef LOOM_SHARED_DATA_DIR
  if (std::filesystem::exists(LOOM_SHARED_DATA_DIR)) return LOOM_SHARED_DATA_DIR;
#endif
  return {};
}

}  // namespace loom::test

// Catch2 v2 has no SKIP: report the reason and leave the test case.
#define LOOM_SKIP(reason)                 \
  do {                                    \
    WARN("SKIPPED: " << reason);          \
    return;                               \
  } while (0)
