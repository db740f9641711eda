// The index arithmetic of the device reductions and row kernels, checked on the CPU against naive
// loops over every element: ReduceMap (which input elements feed output o), the shape-only chunk
// split, and the softmax line map. kernels/reduce.cu and kernels/norm.cu run exactly this code.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "loom/cuda/arg_extreme.hpp"
#include "loom/cuda/reduce_map.hpp"
#include "loom/ops/softmax.hpp"

using loom::Shape;
using loom::Strides;

namespace {

// Calls f(index, offset) for every multi-index of `shape` in row-major order.
template <class F>
void for_each_index(const Shape& shape, const Strides& strides, F&& f) {
  const int64_t n = shape.numel();
  std::vector<int64_t> idx(size_t(shape.size()), 0);
  for (int64_t linear = 0; linear < n; ++linear) {
    int64_t rem = linear, off = 0;
    for (int d = shape.size() - 1; d >= 0; --d) {
      idx[size_t(d)] = rem % shape[d];
      rem /= shape[d];
      off += idx[size_t(d)] * strides[d];
    }
    f(idx, off);
  }
}

// A strided layout over a larger buffer: the dims permuted, some stepped, some broadcast (stride 0).
Strides random_strides(const Shape& shape, std::mt19937& rng, bool allow_broadcast) {
  const int rank = shape.size();
  std::vector<int> order(static_cast<size_t>(rank));
  for (int d = 0; d < rank; ++d) order[size_t(d)] = d;
  std::shuffle(order.begin(), order.end(), rng);
  Strides st = Strides::filled(rank, 0);
  int64_t step = 1;
  for (int k = rank - 1; k >= 0; --k) {
    const int d = order[size_t(k)];
    const int64_t gap = 1 + int64_t(rng() % 2);  // sometimes a stepped (sliced) dim
    st[d] = step * gap;
    step *= shape[d] * gap;
    if (allow_broadcast && rng() % 6 == 0) st[d] = 0;
  }
  return st;
}

}  // namespace

TEST_CASE("reduce map: every output folds exactly the input elements a naive loop assigns to it", "[kernels][reduce]") {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 400; ++trial) {
    const int rank = int(rng() % 5);  // 0..4
    Shape shape;
    for (int d = 0; d < rank; ++d) shape.push_back(int64_t(rng() % 5) + (rng() % 4 == 0 ? 0 : 1));
    const Strides strides = random_strides(shape, rng, trial % 2 == 1);
    std::array<bool, loom::kMaxRank> reduced{};
    for (int d = 0; d < rank; ++d) reduced[size_t(d)] = rng() % 2;

    // Naive: output index = row-major position over the kept dims.
    Shape kept;
    for (int d = 0; d < rank; ++d)
      if (!reduced[size_t(d)]) kept.push_back(shape[d]);
    std::vector<std::vector<int64_t>> want(size_t(kept.numel()));
    for_each_index(shape, strides, [&](const std::vector<int64_t>& idx, int64_t off) {
      int64_t o = 0;
      for (int d = 0; d < rank; ++d)
        if (!reduced[size_t(d)]) o = o * shape[d] + idx[size_t(d)];
      want[size_t(o)].push_back(off);
    });

    const loom::cuda::ReduceMap map = loom::cuda::make_reduce_map(shape, strides, reduced);
    INFO("trial " << trial << " shape " << shape << " strides " << strides);
    REQUIRE(map.n_out == kept.numel());
    if (map.n_out == 0) continue;
    for (int64_t o = 0; o < map.n_out; ++o) {
      std::vector<int64_t> got;
      for (int64_t r = 0; r < map.n_red; ++r) got.push_back(map.input_offset(o, r));
      std::vector<int64_t> expected = want[size_t(o)];
      std::sort(got.begin(), got.end());
      std::sort(expected.begin(), expected.end());
      REQUIRE(got == expected);
    }
  }
}

TEST_CASE("reduce kernels' work split: every (output, chunk, lane) together fold each input element once",
          "[kernels][reduce]") {
  std::mt19937 rng(3);
  // Long reductions (several chunks) in row and column mode, then random small layouts.
  const std::vector<std::pair<Shape, std::vector<int>>> long_cases = {
      {{3, 10000}, {1}}, {{10000, 40}, {0}}, {{5000, 3, 7}, {0, 2}}, {{2, 9000}, {0, 1}}};
  for (int trial = 0; trial < 300 + int(long_cases.size()); ++trial) {
    Shape shape;
    std::array<bool, loom::kMaxRank> reduced{};
    if (trial < int(long_cases.size())) {
      shape = long_cases[size_t(trial)].first;
      for (int d : long_cases[size_t(trial)].second) reduced[size_t(d)] = true;
    } else {
      const int rank = 1 + int(rng() % 4);
      for (int d = 0; d < rank; ++d) shape.push_back(1 + int64_t(rng() % 9));
      for (int d = 0; d < rank; ++d) reduced[size_t(d)] = rng() % 2;
    }
    const Strides strides = random_strides(shape, rng, false);
    const loom::cuda::ReduceMap map = loom::cuda::make_reduce_map(shape, strides, reduced);
    // The launch's choices, as in kernels/reduce.cu's launch_reduce.
    const bool columns = map.column_mode();
    const int64_t width = loom::cuda::kReduceColumnWidth;
    const int64_t out_blocks = columns ? (map.n_out + width - 1) / width : map.n_out;
    const loom::cuda::ReduceSplit split = loom::cuda::reduce_split(map.n_red, out_blocks);
    const int64_t lanes = columns ? loom::cuda::kReduceColumnLanes : loom::cuda::row_threads(split.chunk);
    if (trial < int(long_cases.size())) REQUIRE(split.chunks > 1);
    INFO("trial " << trial << " shape " << shape << " strides " << strides << " chunks " << split.chunks);
    for (int64_t o = 0; o < map.n_out; ++o) {
      std::vector<int64_t> got, want;
      for (int64_t c = 0; c < split.chunks; ++c)
        for (int64_t lane = 0; lane < lanes; ++lane)
          loom::cuda::for_each_lane_element(map, split, o, c, lane, lanes, [&](int64_t off) { got.push_back(off); });
      for (int64_t r = 0; r < map.n_red; ++r) want.push_back(map.input_offset(o, r));
      std::sort(got.begin(), got.end());
      std::sort(want.begin(), want.end());
      REQUIRE(got == want);
    }
  }
}

TEST_CASE("reduce map: consecutive reduced indices walk the smallest stride, column mode for kept-innermost",
          "[kernels][reduce]") {
  std::array<bool, loom::kMaxRank> rows{}, cols{};
  rows[1] = true;  // [M, N] summed over N: a row reduction
  cols[0] = true;  // [M, N] summed over M: a column reduction (bias gradient)
  const Shape shape{6, 10};
  const Strides dense{10, 1};
  const auto row_map = loom::cuda::make_reduce_map(shape, dense, rows);
  REQUIRE(!row_map.column_mode());
  REQUIRE(row_map.input_offset(2, 3) - row_map.input_offset(2, 2) == 1);
  const auto col_map = loom::cuda::make_reduce_map(shape, dense, cols);
  REQUIRE(col_map.column_mode());
  REQUIRE(col_map.input_offset(4, 0) - col_map.input_offset(3, 0) == 1);
  // Transposed ([10, 6] over memory [6, 10]): summing over dim 0 walks memory rows, summing over
  // dim 1 walks memory columns.
  REQUIRE(!loom::cuda::make_reduce_map(Shape{10, 6}, Strides{1, 10}, cols).column_mode());
  REQUIRE(loom::cuda::make_reduce_map(Shape{10, 6}, Strides{1, 10}, rows).column_mode());
  // Several reduced dims, permuted: the map orders them so that r walks memory forward.
  std::array<bool, loom::kMaxRank> both{};
  both[0] = both[2] = true;
  const auto multi = loom::cuda::make_reduce_map(Shape{3, 4, 5}, Strides{1, 15, 3}, both);
  for (int64_t r = 1; r < multi.n_red; ++r) REQUIRE(multi.reduced_offset(r) > multi.reduced_offset(r - 1));
}

TEST_CASE("reduce split: chunks cover the reduced range exactly once, depend on the shape only", "[kernels][reduce]") {
  for (int64_t n_red : {0, 1, 7, 97, 225, 1025, 4096, 4097, 100000, 10000019}) {
    for (int64_t out_blocks : {1, 3, 32, 1000, 5000}) {
      const loom::cuda::ReduceSplit s = loom::cuda::reduce_split(n_red, out_blocks);
      INFO("n_red " << n_red << " out_blocks " << out_blocks);
      REQUIRE(s.chunks >= 1);
      REQUIRE(s.chunk >= 1);
      REQUIRE(s.chunks <= std::max<int64_t>(1, loom::cuda::kReduceTargetBlocks));
      REQUIRE(s.chunks * s.chunk >= n_red);
      REQUIRE((s.chunks - 1) * s.chunk < std::max<int64_t>(n_red, 1));  // no empty chunk
      if (out_blocks >= loom::cuda::kReduceTargetBlocks) REQUIRE(s.chunks == 1);
    }
  }
  // Layer norm's dweight / dbias: a column-mode block's lanes over a split of the rows.
  for (int64_t rows : {0, 1, 7, 97, 9000, 50000}) {
    for (int64_t col_blocks : {1, 2, 30}) {
      const loom::cuda::ReduceSplit s = loom::cuda::reduce_split(rows, col_blocks);
      std::vector<int> seen(size_t(rows), 0);
      for (int64_t c = 0; c < s.chunks; ++c)
        for (int64_t lane = 0; lane < loom::cuda::kReduceColumnLanes; ++lane)
          loom::cuda::for_each_lane_position(s, rows, c, lane, loom::cuda::kReduceColumnLanes,
                                             [&](int64_t r) { ++seen[size_t(r)]; });
      REQUIRE(std::all_of(seen.begin(), seen.end(), [](int k) { return k == 1; }));
    }
  }
  for (int64_t n : {0, 1, 31, 32, 33, 100, 255, 256, 1000}) {
    const int t = loom::cuda::row_threads(n);
    REQUIRE(t >= 32);
    REQUIRE(t <= 256);
    REQUIRE((t & (t - 1)) == 0);
    REQUIRE((t >= n || t == 256));
  }
}

namespace {

// The kernel's fold order, played on the CPU: `threads` threads each fold r = t, t + threads, ...;
// a shuffle-down tree within each warp of 32; then warp 0 folds the warps' results the same way.
template <bool kMax>
loom::cuda::ArgExtreme block_order_fold(const std::vector<float>& v, int threads) {
  using loom::cuda::ArgExtreme;
  std::vector<ArgExtreme> lane(static_cast<size_t>(threads));
  for (int t = 0; t < threads; ++t)
    for (size_t r = size_t(t); r < v.size(); r += size_t(threads))
      lane[size_t(t)] = loom::cuda::arg_combine<kMax>(lane[size_t(t)], ArgExtreme{v[r], int64_t(r)});
  auto warp_tree = [](std::vector<ArgExtreme>& w) {  // w has 32 entries; result in w[0]
    for (int step = 16; step > 0; step /= 2)
      for (int l = 0; l + step < 32; ++l)  // ascending: lane l + step is read before it is written
        w[size_t(l)] = loom::cuda::arg_combine<kMax>(w[size_t(l)], w[size_t(l + step)]);
  };
  std::vector<ArgExtreme> warp_results(32);
  for (int w = 0; w < threads / 32; ++w) {
    std::vector<ArgExtreme> lanes(lane.begin() + w * 32, lane.begin() + w * 32 + 32);
    warp_tree(lanes);
    warp_results[size_t(w)] = lanes[0];
  }
  warp_tree(warp_results);
  return warp_results[0];
}

// The CPU op's rule, sequentially: the first occurrence of the extreme; a NaN beats any number.
template <bool kMax>
int64_t first_extreme(const std::vector<float>& v) {
  int64_t best = 0;
  for (size_t i = 1; i < v.size(); ++i) {
    const float a = v[i], b = v[size_t(best)];
    if ((kMax ? a > b : a < b) || (std::isnan(a) && !std::isnan(b))) best = int64_t(i);
  }
  return best;
}

}  // namespace

TEST_CASE("arg extreme fold: the kernel's tree order finds the first extreme, ties and NaN included",
          "[kernels][reduce]") {
  std::mt19937 rng(5);
  const float pool[] = {-1.f, 0.f, -0.f, 1.f, 2.f, 2.f, -3.f, NAN};
  for (int trial = 0; trial < 300; ++trial) {
    const size_t n = 1 + rng() % 700;
    const bool with_nan = trial % 3 == 0;
    std::vector<float> v(n);
    for (auto& e : v) e = pool[rng() % (with_nan ? 8 : 7)];
    for (int threads : {32, 64, 256}) {
      INFO("trial " << trial << " n " << n << " threads " << threads);
      const auto mx = block_order_fold<true>(v, threads);
      const auto mn = block_order_fold<false>(v, threads);
      REQUIRE(mx.index == first_extreme<true>(v));
      REQUIRE(mn.index == first_extreme<false>(v));
      REQUIRE((std::isnan(mx.value) ? std::isnan(v[size_t(mx.index)]) : mx.value == v[size_t(mx.index)]));
    }
  }
}

TEST_CASE("softmax line map: each line holds the elements a naive loop puts on it", "[kernels][softmax]") {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 200; ++trial) {
    const int rank = 1 + int(rng() % 4);
    Shape shape;
    for (int d = 0; d < rank; ++d) shape.push_back(1 + int64_t(rng() % 4));
    const int dim = int(rng() % unsigned(rank));
    const Strides sa = random_strides(shape, rng, false), sb = random_strides(shape, rng, false);
    const auto lines = loom::detail::device_lines<2>(shape, dim, {sa, sb});
    // Naive: line = row-major position over the other dims; element i = index along dim.
    Shape rest;
    for (int d = 0; d < rank; ++d)
      if (d != dim) rest.push_back(shape[d]);
    REQUIRE(lines.count == rest.numel());
    REQUIRE(lines.length == shape[dim]);
    for_each_index(shape, sa, [&](const std::vector<int64_t>& idx, int64_t off_a) {
      int64_t line = 0, off_b = 0;
      for (int d = 0; d < rank; ++d) {
        off_b += idx[size_t(d)] * sb[d];
        if (d != dim) line = line * shape[d] + idx[size_t(d)];
      }
      int64_t start[2];
      lines.starts.offsets(line, start);
      const int64_t i = idx[size_t(dim)];
      REQUIRE(start[0] + i * lines.along[0] == off_a);
      REQUIRE(start[1] + i * lines.along[1] == off_b);
    });
  }
}
