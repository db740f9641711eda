#pragma once
// Dims: a small fixed-capacity vector of int64 used for shapes and strides (rank <= kMaxRank).
#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "loom/core/error.hpp"

namespace loom {

inline constexpr int kMaxRank = 6;

class Dims {
 public:
  Dims() = default;
  Dims(std::initializer_list<int64_t> values) { assign(values.begin(), values.end()); }
  explicit Dims(std::span<const int64_t> values) { assign(values.begin(), values.end()); }
  explicit Dims(const std::vector<int64_t>& values) { assign(values.begin(), values.end()); }
  static Dims filled(int rank, int64_t value) {
    Dims d;
    d.resize(rank, value);
    return d;
  }

  int size() const { return rank_; }
  bool empty() const { return rank_ == 0; }
  int64_t& operator[](int i) { return v_[i]; }
  int64_t operator[](int i) const { return v_[i]; }
  int64_t* begin() { return v_.data(); }
  int64_t* end() { return v_.data() + rank_; }
  const int64_t* begin() const { return v_.data(); }
  const int64_t* end() const { return v_.data() + rank_; }
  int64_t back() const { return v_[rank_ - 1]; }

  void push_back(int64_t x) {
    LOOM_CHECK(rank_ < kMaxRank, "tensor rank exceeds the maximum of ", kMaxRank);
    v_[rank_++] = x;
  }
  void insert(int pos, int64_t x) {
    LOOM_CHECK(pos >= 0 && pos <= rank_, "Dims::insert: position ", pos, " outside [0, ", rank_, "]");
    push_back(0);
    for (int i = rank_ - 1; i > pos; --i) v_[i] = v_[i - 1];
    v_[pos] = x;
  }
  void erase(int pos) {
    LOOM_CHECK(pos >= 0 && pos < rank_, "Dims::erase: position ", pos, " outside [0, ", rank_, ")");
    for (int i = pos; i + 1 < rank_; ++i) v_[i] = v_[i + 1];
    --rank_;
  }
  void resize(int rank, int64_t fill = 0) {
    LOOM_CHECK(rank >= 0 && rank <= kMaxRank, "tensor rank ", rank, " outside [0, ", kMaxRank, "]");
    for (int i = rank_; i < rank; ++i) v_[i] = fill;
    rank_ = rank;
  }

  // Product of all entries (1 for rank 0).
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= v_[i];
    return n;
  }
  std::vector<int64_t> vec() const { return {begin(), end()}; }

  friend bool operator==(const Dims& a, const Dims& b) {
    return a.rank_ == b.rank_ && std::equal(a.begin(), a.end(), b.begin());
  }
  std::string str() const {
    std::ostringstream s;
    s << *this;
    return s.str();
  }
  friend std::ostream& operator<<(std::ostream& os, const Dims& d) {
    os << '[';
    for (int i = 0; i < d.rank_; ++i) os << (i ? ", " : "") << d.v_[i];
    return os << ']';
  }

 private:
  template <class It>
  void assign(It first, It last) {
    rank_ = 0;
    for (; first != last; ++first) push_back(static_cast<int64_t>(*first));
  }
  std::array<int64_t, kMaxRank> v_{};
  int rank_ = 0;
};

using Shape = Dims;    // extent of each dimension
using Strides = Dims;  // step in elements between neighbours along each dimension

// Row-major (C order) strides for a shape.
inline Strides contiguous_strides(const Shape& shape) {
  Strides s = Strides::filled(shape.size(), 1);
  for (int i = shape.size() - 2; i >= 0; --i) s[i] = s[i + 1] * std::max<int64_t>(shape[i + 1], 1);
  return s;
}

// Maps a possibly negative dimension index into [0, rank). `what` names the op for the message.
inline int wrap_dim(int64_t dim, int rank, const char* what) {
  const int64_t r = std::max(rank, 1);
  LOOM_CHECK(dim >= -r && dim < r, what, ": dimension ", dim, " out of range for rank ", rank);
  return static_cast<int>(dim < 0 ? dim + r : dim);
}

// NumPy broadcasting of two shapes; throws naming both shapes.
inline Shape broadcast_shapes(const Shape& a, const Shape& b, const char* what) {
  const int rank = std::max(a.size(), b.size());
  Shape out = Shape::filled(rank, 1);
  for (int i = 0; i < rank; ++i) {
    const int ia = i - (rank - a.size()), ib = i - (rank - b.size());
    const int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    LOOM_CHECK(da == db || da == 1 || db == 1, what, ": shapes ", a, " and ", b,
               " cannot be broadcast (dimension ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

}  // namespace loom
