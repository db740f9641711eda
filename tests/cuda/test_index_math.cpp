// The per-thread arithmetic of the device index kernels (loom/cuda/index_math.hpp, run by
// kernels/index.cu), executed here thread by thread on the CPU against naive coordinate loops:
// strided and broadcast operands, every dim, odd sizes, duplicate indices. No GPU needed.
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "loom/cuda/index_math.hpp"
#include "loom/cuda/offset_map.hpp"

namespace im = loom::cuda::index_math;
using loom::Shape;
using loom::Strides;

namespace {

// Row-major coordinates of element `linear` of a rank-3 shape.
std::array<int64_t, 3> coords(const Shape& s, int64_t linear) {
  return {linear / (s[1] * s[2]), (linear / s[2]) % s[1], linear % s[2]};
}
int64_t at(const Strides& st, const std::array<int64_t, 3>& c) { return c[0] * st[0] + c[1] * st[1] + c[2] * st[2]; }

// Deterministic index values in [0, limit), with repeats.
int64_t index_value(int64_t i, int64_t limit) { return (i * 7 + 3) % limit; }

}  // namespace

TEST_CASE("index math: gather_element over every thread equals a naive strided gather", "[kernels][index]") {
  // t [5, 6, 7] stored transposed (dims 0 and 2 swapped in memory); index [4, 3, 6] (smaller than t
  // outside dim) stored contiguously, or broadcast (stride 0) along one dim.
  const Shape t_shape{5, 6, 7};
  const Strides t_strides{1, 5 * 7, 5};  // memory order [2][1][0]... any permutation works
  std::vector<float> t(size_t(t_shape.numel()));
  for (size_t i = 0; i < t.size(); ++i) t[i] = float(i) * 0.5f - 3.0f;
  const Shape ix_shape{4, 3, 6};
  for (int dim = 0; dim < 3; ++dim) {
    for (bool broadcast : {false, true}) {
      Strides ix_strides{3 * 6, 6, 1};
      if (broadcast) ix_strides[(dim + 1) % 3] = 0;
      std::vector<int64_t> index(size_t(ix_shape.numel()));
      for (size_t i = 0; i < index.size(); ++i) index[i] = index_value(int64_t(i), t_shape[dim]);
      const Strides out_strides{3 * 6, 6, 1};
      Strides t_zeroed = t_strides;
      t_zeroed[dim] = 0;
      const auto map = loom::cuda::make_offset_map<3>(ix_shape, {out_strides, t_zeroed, ix_strides});
      std::vector<float> out(size_t(ix_shape.numel()), -99.0f);
      for (int64_t thread = 0; thread < ix_shape.numel(); ++thread)
        im::gather_element(out.data(), t.data(), index.data(), map, t_strides[dim], thread);
      for (int64_t e = 0; e < ix_shape.numel(); ++e) {
        const auto c = coords(ix_shape, e);
        auto src = c;
        src[size_t(dim)] = index[size_t(at(ix_strides, c))];
        INFO("dim " << dim << " broadcast " << broadcast << " element " << e);
        REQUIRE(out[size_t(at(out_strides, c))] == t[size_t(at(t_strides, src))]);
      }
    }
  }
}

TEST_CASE("index math: scatter_add_column over every column equals a naive ordered scatter-add", "[kernels][index]") {
  // acc [5, 4, 6] (base values nonzero), src [4, 3, 7] transposed in memory, index [4, 3, 6]-ish:
  // index.size(dim) may exceed acc's extent along dim (repeats), other dims <= acc's and src's.
  for (int dim = 0; dim < 3; ++dim) {
    Shape acc_shape{5, 4, 6};
    Shape ix_shape{3, 3, 5};
    ix_shape[dim] = 9;  // more entries than acc's extent along dim: duplicate indices are certain
    Shape src_shape{ix_shape[0] + 1, ix_shape[1], ix_shape[2] + 2};
    const Strides acc_strides{4 * 6, 6, 1};
    const Strides src_strides{1, src_shape[0] * src_shape[2], src_shape[0]};  // dims 0, 2 swapped in memory
    const Strides ix_strides{ix_shape[1] * ix_shape[2], ix_shape[2], 1};
    std::vector<float> base(size_t(acc_shape.numel()));
    for (size_t i = 0; i < base.size(); ++i) base[i] = float(int(i % 13) - 6) * 0.25f;
    std::vector<float> src(size_t(src_shape.numel()));
    for (size_t i = 0; i < src.size(); ++i) src[i] = float(int(i * 5 % 17) - 8) * 0.125f;
    std::vector<int64_t> index(size_t(ix_shape.numel()));
    for (size_t i = 0; i < index.size(); ++i) index[i] = index_value(int64_t(i), acc_shape[dim]);

    // Naive: every index position in row-major order (the order along dim within a column is
    // increasing either way), accumulated in double.
    std::vector<double> want(base.begin(), base.end());
    for (int64_t e = 0; e < ix_shape.numel(); ++e) {
      const auto c = coords(ix_shape, e);
      auto dst = c;
      dst[size_t(dim)] = index[size_t(at(ix_strides, c))];
      want[size_t(at(acc_strides, dst))] += double(src[size_t(at(src_strides, c))]);
    }

    Shape rest = ix_shape;
    Strides acc_rest = acc_strides, src_rest = src_strides, ix_rest = ix_strides;
    rest.erase(dim);
    acc_rest.erase(dim);
    src_rest.erase(dim);
    ix_rest.erase(dim);
    const auto map = loom::cuda::make_offset_map<3>(rest, {acc_rest, src_rest, ix_rest});
    const im::ScatterColumn column{ix_shape[dim], acc_strides[dim], src_strides[dim], ix_strides[dim]};
    std::vector<float> acc = base;
    // Threads in reverse order: columns are independent, so the launch order must not matter.
    for (int64_t thread = rest.numel() - 1; thread >= 0; --thread)
      im::scatter_add_column(acc.data(), src.data(), index.data(), map, column, thread, [](float v) { return v; });
    for (size_t i = 0; i < acc.size(); ++i) {
      INFO("dim " << dim << " element " << i);
      REQUIRE(double(acc[i]) == Approx(want[i]).margin(1e-6));  // values are multiples of 1/8: exact in float
    }
  }
}

TEST_CASE("index math: scatter_add of a 1-D index is one column holding every entry in order", "[kernels][index]") {
  const Shape rest{};  // index [n] without dim 0: a scalar, one thread
  const auto map = loom::cuda::make_offset_map<3>(rest, {Strides{}, Strides{}, Strides{}});
  REQUIRE(rest.numel() == 1);
  const std::vector<int64_t> index{2, 0, 2, 2, 1};
  const std::vector<float> src{1, 2, 4, 8, 16};
  std::vector<float> acc{100, 200, 300};
  im::scatter_add_column(acc.data(), src.data(), index.data(), map, {5, 1, 1, 1}, 0, [](float v) { return v; });
  REQUIRE(acc == std::vector<float>{102, 216, 313});
}

TEST_CASE("index math: the range test accepts exactly 0 <= i < limit", "[kernels][index]") {
  for (int64_t limit : {1, 7}) {
    for (int64_t v = -3; v < limit + 3; ++v) REQUIRE(im::index_out_of_range(v, limit) == (v < 0 || v >= limit));
  }
  REQUIRE(im::index_out_of_range(0, 0));
}
