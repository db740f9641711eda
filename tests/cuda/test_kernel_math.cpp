// The arithmetic of the CUDA kernels, checked on the CPU (no GPU needed): the thread/tile index
// maps, the online softmax, the tiled flash-attention algorithm against the textbook formulas in
// double, the patch index map against loom's CPU patchify, and the strided offset map.
#include <catch2/catch.hpp>

#include <set>

#include "attention_reference.hpp"
#include "attention_tiles.hpp"
#include "flash_attention_cpu.hpp"
#include "loom/cuda/offset_map.hpp"
#include "loom/mask/tokens.hpp"
#include "mma_fragments.hpp"
#include "patch_index.hpp"
#include "support/check.hpp"

namespace ka = loom::kernels::attention;
using loom::kernels::AttentionDims;
using loom::test::AttentionCase;

TEST_CASE("attention tiles: each lane owns distinct dims covering the padded head dim, conflict-free", "[kernels]") {
  for (int head_dim : {1, 32, 33, 40, 64, 65, 100, 128}) {
    const int dpad = ka::padded_head_dim(head_dim);
    REQUIRE(dpad >= head_dim);
    REQUIRE(dpad % 32 == 0);
    const int lanes = ka::lanes_per_row(dpad);
    std::set<int> seen;
    for (int lane = 0; lane < lanes; ++lane)
      for (int v = 0; v < ka::kDimsPerLane / 4; ++v)
        for (int e = 0; e < 4; ++e) REQUIRE(seen.insert(ka::owned_dim(lane, lanes, v, e)).second);
    REQUIRE(int(seen.size()) == dpad);
    REQUIRE(*seen.rbegin() == dpad - 1);
    // In one step v, the lanes of a row read consecutive 16-byte words (no shared-memory bank conflict).
    for (int v = 0; v < ka::kDimsPerLane / 4; ++v)
      for (int lane = 1; lane < lanes; ++lane)
        REQUIRE(ka::owned_dim(lane, lanes, v, 0) == ka::owned_dim(lane - 1, lanes, v, 0) + 4);
  }
  // Threads map to (row, lane) one to one.
  std::set<std::pair<int, int>> pairs;
  for (int t = 0; t < 256; ++t) REQUIRE(pairs.insert({ka::row_of_thread(t, 4), ka::lane_of_thread(t, 4)}).second);
  REQUIRE(ka::tile_count(97, 32) == 4);
  REQUIRE(ka::tile_count(96, 32) == 3);
  REQUIRE(ka::tile_count(1, 64) == 1);
}

TEST_CASE("online softmax over tiles equals the direct log-sum-exp and weighted sum", "[kernels]") {
  const auto scores = loom::test::random_values(113, 5, 4.0, false);
  const auto values = loom::test::random_values(113, 6, 1.0, false);
  double m = -INFINITY;
  for (double s : scores) m = std::max(m, s);
  double sum = 0, weighted = 0;
  for (size_t j = 0; j < scores.size(); ++j) {
    sum += std::exp(scores[j] - m);
    weighted += std::exp(scores[j] - m) * values[j];
  }
  for (int tile : {1, 7, 32, 113}) {
    ka::OnlineSoftmax row;
    float acc = 0;
    for (size_t j0 = 0; j0 < scores.size(); j0 += size_t(tile)) {
      const size_t end = std::min(scores.size(), j0 + size_t(tile));
      float tile_max = -INFINITY;
      for (size_t j = j0; j < end; ++j) tile_max = std::max(tile_max, float(scores[j] * ka::kLog2e));
      acc *= ka::rescale_for_tile(row, tile_max);
      for (size_t j = j0; j < end; ++j) acc += ka::accumulate_weight(row, float(scores[j] * ka::kLog2e)) * float(values[j]);
    }
    INFO("tile " << tile);
    loom::test::require_close(std::vector<double>{ka::log_sum_exp(row), acc / row.sum},
                              {m + std::log(sum), weighted / sum}, {1e-5, 1e-5});
    // The probability recomputed from the saved lse is the softmax weight.
    const double p0 = ka::probability(float(scores[0] * ka::kLog2e), ka::log_sum_exp(row) * ka::kLog2e);
    loom::test::require_close(std::vector<double>{p0}, {std::exp(scores[0] - m) / sum}, {1e-6, 1e-4});
  }
}

TEST_CASE("flash attention CPU reference matches exact attention, forward and backward", "[kernels]") {
  for (const AttentionCase c : {AttentionCase{1, 1, 1, 1}, AttentionCase{2, 7, 33, 40}, AttentionCase{1, 97, 113, 64},
                                AttentionCase{1, 40, 65, 128}}) {
    INFO("bh " << c.bh << " sq " << c.sq << " sk " << c.sk << " d " << c.d);
    const double scale = 1.0 / std::sqrt(double(c.d));
    const auto q = loom::test::random_values(c.bh * c.sq * c.d, 1, 1.5, false);
    const auto k = loom::test::random_values(c.bh * c.sk * c.d, 2, 1.5, false);
    const auto v = loom::test::random_values(c.bh * c.sk * c.d, 3, 1.0, false);
    const auto d_o = loom::test::random_values(c.bh * c.sq * c.d, 4, 1.0, false);
    const auto ref = loom::test::attention_exact(c, scale, q, k, v, d_o);

    const std::vector<float> qf(q.begin(), q.end()), kf(k.begin(), k.end()), vf(v.begin(), v.end()),
        dof(d_o.begin(), d_o.end());
    std::vector<float> o(qf.size()), lse(size_t(c.bh * c.sq)), dq(qf.size()), dk(kf.size()), dv(vf.size());
    const AttentionDims dims{c.bh, c.sq, c.sk, c.d, float(scale)};
    loom::kernels::flash_attention_forward_cpu(dims, qf.data(), kf.data(), vf.data(), o.data(), lse.data());
    loom::kernels::flash_attention_backward_cpu(dims, qf.data(), kf.data(), vf.data(), o.data(), dof.data(),
                                                lse.data(), dq.data(), dk.data(), dv.data());
    const loom::test::Tol tol{2e-5, 2e-4};  // float accumulation over up to 128·113 terms
    loom::test::require_close(std::vector<double>(o.begin(), o.end()), ref.o, tol);
    loom::test::require_close(std::vector<double>(lse.begin(), lse.end()), ref.lse, tol);
    loom::test::require_close(std::vector<double>(dq.begin(), dq.end()), ref.dq, tol);
    loom::test::require_close(std::vector<double>(dk.begin(), dk.end()), ref.dk, tol);
    loom::test::require_close(std::vector<double>(dv.begin(), dv.end()), ref.dv, tol);
  }
}

TEST_CASE("flash attention rejects shapes it cannot run, naming them", "[kernels]") {
  std::vector<float> x(4096);
  const auto run = [&](AttentionDims d) {
    loom::kernels::flash_attention_forward_cpu(d, x.data(), x.data(), x.data(), x.data(), x.data());
  };
  REQUIRE_THROWS_WITH(run({1, 4, 4, 129, 1.0f}), Catch::Contains("head dim must be in [1, 128], got 129"));
  REQUIRE_THROWS_WITH(run({1, 0, 4, 8, 1.0f}), Catch::Contains("[1, 0, 4]"));
  REQUIRE_THROWS_AS(run({70000, 1, 1, 8, 1.0f}), loom::Error);
}

TEST_CASE("patch index map reproduces loom's patchify and gather", "[kernels]") {
  const loom::kernels::patch::ImageGeometry g{3, 12, 8, 4};  // 3 channels, 12 x 8 pixels, 4 x 4 patches
  loom::Generator gen(9);
  const auto image = loom::randn<float>({2, g.channels, g.height, g.width}, gen);  // [B, C, H, W]
  const auto tokens = loom::mask::patchify_group(image, g.patch);                  // [B, L, p·p·C]
  REQUIRE(tokens.shape()[1] == g.patches());
  REQUIRE(tokens.shape()[2] == g.token_size());
  const auto img = image.contiguous().to_vector();
  const auto tok = tokens.contiguous().to_vector();
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t l = 0; l < g.patches(); ++l)
      for (int64_t e = 0; e < g.token_size(); ++e)
        REQUIRE(tok[size_t((b * g.patches() + l) * g.token_size() + e)] ==
                img[size_t(b * g.channels * g.height * g.width + loom::kernels::patch::image_offset(g, l, e))]);
  REQUIRE(loom::kernels::patch::is_visible(2, 3));
  REQUIRE_FALSE(loom::kernels::patch::is_visible(3, 3));
}

TEST_CASE("mma fragment maps cover each tile once and chain accumulators into A operands", "[kernels]") {
  namespace mma = loom::kernels::mma;
  std::set<std::pair<int, int>> a, b, c;
  for (int lane = 0; lane < 32; ++lane) {
    for (int r = 0; r < 4; ++r)
      for (int e = 0; e < 2; ++e) REQUIRE(a.insert({mma::a_row(lane, r), mma::a_col(lane, r) + e}).second);
    for (int r = 0; r < 2; ++r)
      for (int e = 0; e < 2; ++e) REQUIRE(b.insert({mma::b_k(lane, r) + e, mma::b_n(lane)}).second);
    for (int i = 0; i < 4; ++i) REQUIRE(c.insert({mma::c_row(lane, i), mma::c_col(lane, i)}).second);
    // The element a lane holds in A register r of k-block j is the one it holds, as an
    // accumulator, in tile 2j + a_from_c_tile(r) of the previous product.
    for (int r = 0; r < 4; ++r)
      for (int e = 0; e < 2; ++e) {
        const int i = mma::a_from_c_first(r) + e;
        REQUIRE(mma::a_row(lane, r) == mma::c_row(lane, i));
        REQUIRE(mma::a_col(lane, r) + e == 8 * mma::a_from_c_tile(r) + mma::c_col(lane, i));
      }
  }
  REQUIRE(a.size() == 256);
  REQUIRE(b.size() == 128);
  REQUIRE(c.size() == 128);
  REQUIRE(*a.rbegin() == std::pair<int, int>{15, 15});
}

TEST_CASE("a warp's tensor-core product, emulated through the fragment maps, equals the matrix product",
          "[kernels]") {
  // The kernels load A from a row-major tile and B from a tile holding Bᵀ row-major (both with a
  // padded row stride); emulate those loads lane by lane, let "the hardware" assemble the operands
  // from the fragments, and compare D = A·B with a naive product of the original matrices.
  namespace mma = loom::kernels::mma;
  const int stride = 24;  // padded like the kernels' DPAD + 8
  const auto av = loom::test::random_values(16 * stride, 71, 1.0, true);
  const auto bv = loom::test::random_values(8 * stride, 72, 1.0, true);
  double A[16][16], B[16][8], D[16][8] = {};
  for (int lane = 0; lane < 32; ++lane) {
    for (int r = 0; r < 4; ++r)
      for (int e = 0; e < 2; ++e)
        A[mma::a_row(lane, r)][mma::a_col(lane, r) + e] = av[mma::a_row(lane, r) * stride + mma::a_col(lane, r) + e];
    for (int r = 0; r < 2; ++r)
      for (int e = 0; e < 2; ++e)
        B[mma::b_k(lane, r) + e][mma::b_n(lane)] = bv[mma::b_n(lane) * stride + mma::b_k(lane, r) + e];
  }
  for (int lane = 0; lane < 32; ++lane)
    for (int i = 0; i < 4; ++i)
      for (int k = 0; k < 16; ++k)
        D[mma::c_row(lane, i)][mma::c_col(lane, i)] += A[mma::c_row(lane, i)][k] * B[k][mma::c_col(lane, i)];
  std::vector<double> got, want;
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 8; ++j) {
      double ref = 0;  // row i of the row-major left tile times row j of the Bᵀ tile
      for (int k = 0; k < 16; ++k) ref += av[i * stride + k] * bv[j * stride + k];
      got.push_back(D[i][j]);
      want.push_back(ref);
    }
  loom::test::require_close(got, want, {1e-12, 1e-12});
}

TEST_CASE("ldmatrix addressing delivers exactly the mma fragments the kernels expect", "[kernels]") {
  // Emulates ldmatrix.x4 (and .trans) on a tile of distinct values: lane l points at row l % 8 of
  // matrix l / 8; lane x receives from matrix m the pair (row x / 4, columns 2(x % 4), +1), or with
  // .trans (rows 2(x % 4), +1; column x / 4). Each register must hold the fragment element that
  // mma_fragments.hpp says it holds.
  namespace mma = loom::kernels::mma;
  const int stride = 40;
  const auto value = [&](int row, int col) { return row * stride + col; };  // the tile holds its own offsets
  const auto receive = [&](int (*row_of)(int), int (*col_of)(int), int x, int m, int e, bool trans) {
    int row_start[8];  // offsets of the 8 row addresses supplied for matrix m
    for (int l = 8 * m; l < 8 * m + 8; ++l) row_start[l % 8] = value(row_of(l), col_of(l));
    return trans ? row_start[2 * (x % 4) + e] + x / 4 : row_start[x / 4] + 2 * (x % 4) + e;
  };
  for (int x = 0; x < 32; ++x)
    for (int m = 0; m < 4; ++m)
      for (int e = 0; e < 2; ++e) {
        // A block from a row-major tile.
        REQUIRE(receive(mma::ldm_row, mma::ldm_col, x, m, e, false) == value(mma::a_row(x, m), mma::a_col(x, m) + e));
        // B of n-tile 8(m >> 1) from a row-major [k][n] tile, transposing.
        REQUIRE(receive(mma::ldm_row, mma::ldm_col, x, m, e, true) ==
                value(mma::b_k(x, m & 1) + e, 8 * (m >> 1) + mma::b_n(x)));
        // B of n-tile 8(m >> 1) from a tile holding Bᵀ ([n][k]), not transposing.
        REQUIRE(receive(mma::ldm_bt_row, mma::ldm_bt_col, x, m, e, false) ==
                value(8 * (m >> 1) + mma::b_n(x), mma::b_k(x, m & 1) + e));
      }
}

TEST_CASE("offset map gives every operand's strided offset of each linear index", "[kernels]") {
  using loom::Shape;
  using loom::Strides;
  // Operand 0 contiguous, 1 transposed-like (reversed strides), 2 broadcast along dims 0 and 2, 3
  // sliced with a step and a gap; extent-1 dims mixed in so that coalescing has work to do.
  const std::vector<Shape> shapes = {{1}, {7}, {3, 5}, {2, 1, 4, 3}, {97}, {1, 1}, {2, 3, 1, 5, 2}};
  for (const Shape& shape : shapes) {
    const int rank = shape.size();
    const Strides dense = loom::contiguous_strides(shape);
    Strides reversed = Strides::filled(rank, 0), broadcast = Strides::filled(rank, 0), gapped = Strides::filled(rank, 0);
    int64_t acc = 1;
    for (int d = 0; d < rank; ++d) {
      reversed[d] = acc;
      acc *= shape[d];
      broadcast[d] = (d == 0 || d == 2) ? 0 : dense[d];
      gapped[d] = dense[d] * 3 + (d == rank - 1 ? 1 : 0);
    }
    const auto map = loom::cuda::make_offset_map<4>(shape, {dense, reversed, broadcast, gapped});
    REQUIRE(map.rank >= 1);
    for (int64_t linear = 0; linear < shape.numel(); ++linear) {
      int64_t off[4];
      map.offsets(linear, off);
      // Reference: the row-major multi-index, dotted with each operand's original strides.
      int64_t rem = linear, want[4] = {0, 0, 0, 0};
      for (int d = rank - 1; d >= 0; --d) {
        const int64_t i = rem % shape[d];
        rem /= shape[d];
        want[0] += i * dense[d];
        want[1] += i * reversed[d];
        want[2] += i * broadcast[d];
        want[3] += i * gapped[d];
      }
      for (int k = 0; k < 4; ++k) REQUIRE(off[k] == want[k]);
    }
  }
  // A contiguous tensor coalesces to one dimension (one division per element on the device).
  const auto flat = loom::cuda::make_offset_map<2>({4, 5, 6}, {loom::contiguous_strides({4, 5, 6}),
                                                               loom::contiguous_strides({4, 5, 6})});
  REQUIRE(flat.rank == 1);
  REQUIRE(flat.extent[0] == 120);
}
