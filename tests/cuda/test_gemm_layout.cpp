// The loom-strides -> cuBLAS mapping (loom/cuda/gemm_layout.hpp) on the CPU, exhaustively over small
// layouts: every planned call is executed by an emulation of cuBLAS's column-major strided-batched
// GEMM in double (its op/ld/stride rules, with cuBLAS's own ld requirements checked and every read
// and write bounds-checked), and the result is compared with a naive row-major product that reads
// the operands through their loom strides.
#include <catch2/catch.hpp>

#include <cstdint>
#include <optional>
#include <tuple>
#include <vector>

#include "loom/cuda/gemm_layout.hpp"

using loom::Shape;
using loom::Strides;
using loom::cuda::CublasGemmCall;
using loom::cuda::CublasOperand;

namespace {

// A strided operand over a flat buffer: shape [batch.., rows, cols], strides per dim.
struct Operand {
  Shape shape;
  Strides strides;
  std::vector<double> data;  // large enough for every element the strides reach
};

int64_t extent(const Shape& shape, const Strides& strides) {  // elements the buffer must hold
  int64_t last = 0;
  for (int d = 0; d < shape.size(); ++d) {
    if (shape[d] == 0) return 0;
    last += (shape[d] - 1) * strides[d];
  }
  return last + 1;
}

Operand make_operand(const Shape& shape, const Strides& strides, int seed) {
  Operand x{shape, strides, {}};
  x.data.resize(size_t(extent(shape, strides)));
  for (size_t i = 0; i < x.data.size(); ++i) x.data[i] = double(int((i * 7 + size_t(seed) * 13) % 17) - 8);
  return x;
}

// cuBLAS's documented semantics for one call, column-major: C_p(i, j) at c[i + j·ldc] etc.
void emulate_cublas(const CublasGemmCall& call, const std::vector<double>& right, const std::vector<double>& left,
                    std::vector<double>& out, std::vector<int>& writes) {
  // cuBLAS's argument requirements.
  REQUIRE(call.lda >= std::max<int64_t>(1, call.trans_a ? call.k : call.m));
  REQUIRE(call.ldb >= std::max<int64_t>(1, call.trans_b ? call.n : call.k));
  REQUIRE(call.ldc >= std::max<int64_t>(1, call.m));
  REQUIRE(call.batch >= 1);
  auto at = [](const std::vector<double>& v, int64_t i) {
    REQUIRE(i >= 0);
    REQUIRE(i < int64_t(v.size()));
    return v[size_t(i)];
  };
  for (int64_t p = 0; p < call.batch; ++p) {
    const int64_t a0 = call.right_offset + p * call.stride_a, b0 = call.left_offset + p * call.stride_b;
    const int64_t c0 = call.out_offset + p * call.stride_c;
    for (int64_t i = 0; i < call.m; ++i)
      for (int64_t j = 0; j < call.n; ++j) {
        double acc = 0;
        for (int64_t l = 0; l < call.k; ++l) {
          const double a = call.trans_a ? at(right, a0 + l + i * call.lda) : at(right, a0 + i + l * call.lda);
          const double b = call.trans_b ? at(left, b0 + j + l * call.ldb) : at(left, b0 + l + j * call.ldb);
          acc += a * b;
        }
        const int64_t ci = c0 + i + j * call.ldc;
        REQUIRE(ci >= 0);
        REQUIRE(ci < int64_t(out.size()));
        out[size_t(ci)] = acc;
        ++writes[size_t(ci)];
      }
  }
}

// Broadcast batch strides of x over `batch` (0 where missing or extent 1).
Strides batch_strides(const Operand& x, const Shape& batch) {
  Strides out = Strides::filled(batch.size(), 0);
  const int own = x.shape.size() - 2, lead = batch.size() - own;
  for (int d = 0; d < own; ++d) out[lead + d] = x.shape[d] == 1 ? 0 : x.strides[d];
  return out;
}

// Plans a[.., M, K] · b[.., K, N] and checks the emulated result against the naive product.
// Returns false when an operand has no cuBLAS description (the caller would copy it).
bool check_product(const Operand& a, const Operand& b, const Shape& batch) {
  const int ra = a.shape.size(), rb = b.shape.size();
  const int64_t M = a.shape[ra - 2], K = a.shape[ra - 1], N = b.shape[rb - 1];
  const std::optional<CublasOperand> oa = loom::cuda::cublas_operand(M, K, a.strides[ra - 2], a.strides[ra - 1]);
  const std::optional<CublasOperand> ob = loom::cuda::cublas_operand(K, N, b.strides[rb - 2], b.strides[rb - 1]);
  if (!oa || !ob) return false;
  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  const Strides out_strides = loom::contiguous_strides(out_shape);
  Strides out_batch;
  for (int d = 0; d < batch.size(); ++d) out_batch.push_back(out_strides[d]);
  const std::vector<CublasGemmCall> calls = loom::cuda::plan_cublas_gemm(
      M, N, K, *oa, *ob, batch, batch_strides(a, batch), batch_strides(b, batch), out_batch, N);
  std::vector<double> out(size_t(out_shape.numel()), -999.0);
  std::vector<int> writes(out.size(), 0);
  for (const CublasGemmCall& call : calls) emulate_cublas(call, b.data, a.data, out, writes);

  // Naive row-major product through the loom strides.
  const Strides sa = batch_strides(a, batch), sb = batch_strides(b, batch);
  const int64_t batches = batch.numel();
  for (int64_t p = 0; p < batches; ++p) {
    int64_t rem = p, offa = 0, offb = 0;
    for (int d = batch.size() - 1; d >= 0; --d) {
      const int64_t i = rem % batch[d];
      rem /= batch[d];
      offa += i * sa[d];
      offb += i * sb[d];
    }
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double want = 0;
        for (int64_t l = 0; l < K; ++l)
          want += a.data[size_t(offa + i * a.strides[ra - 2] + l * a.strides[ra - 1])] *
                  b.data[size_t(offb + l * b.strides[rb - 2] + j * b.strides[rb - 1])];
        const size_t ci = size_t(p * M * N + i * N + j);
        INFO("batch " << p << " row " << i << " col " << j);
        REQUIRE(writes[ci] == 1);
        REQUIRE(out[ci] == want);
      }
  }
  return true;
}

// The inner [rows, cols] layouts under test, as (row stride, col stride) given the extents; `pad`
// leaves room between rows/columns. 0 and odd strides on extent-1 dims test the degenerate cases.
std::vector<std::pair<int64_t, int64_t>> inner_layouts(int64_t rows, int64_t cols) {
  std::vector<std::pair<int64_t, int64_t>> out = {
      {cols, 1},        // row-major
      {1, rows},        // column-major (a transposed view)
      {cols + 3, 1},    // row-major, padded rows (a column slice)
      {1, rows + 2},    // column-major, padded
      {2 * cols, 2},    // stepped columns: no cuBLAS description unless extents are 1
      {0, 1},           // stride-0 rows (expanded): only fine when rows == 1
      {1, 0},           // stride-0 columns: only fine when cols == 1
  };
  if (rows == 1) out.push_back({7, 1}), out.push_back({7, 5});  // [1, n] with arbitrary row stride
  if (cols == 1) out.push_back({1, 9}), out.push_back({4, 9});  // [n, 1] with arbitrary col stride
  return out;
}

// True when the layout is one the mapping must accept: unit stride along a non-trivial dim and a
// non-overlapping other dim (or extent-1 dims anywhere).
bool describable(int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  const bool row_major = (cols == 1 || cs == 1) && (rows == 1 || rs >= std::max<int64_t>(cols, 1));
  const bool col_major = (rows == 1 || rs == 1) && (cols == 1 || cs >= std::max<int64_t>(rows, 1));
  return row_major || col_major;
}

}  // namespace

TEST_CASE("gemm layout: cublas_operand accepts exactly the row- and column-contiguous layouts",
          "[cuda][gemm_layout]") {
  for (int64_t rows : {1, 2, 3, 5})
    for (int64_t cols : {1, 2, 4})
      for (const auto& [rs, cs] : inner_layouts(rows, cols)) {
        INFO("[" << rows << ", " << cols << "] strides (" << rs << ", " << cs << ")");
        const auto op = loom::cuda::cublas_operand(rows, cols, rs, cs);
        REQUIRE(op.has_value() == describable(rows, cols, rs, cs));
        if (!op) continue;
        // The described column-major matrix addresses exactly the loom elements.
        for (int64_t i = 0; i < rows; ++i)
          for (int64_t j = 0; j < cols; ++j) {
            const int64_t cublas = op->trans ? i + j * op->ld : j + i * op->ld;
            REQUIRE(cublas == i * rs + j * cs);
          }
      }
  // Stepped columns and overlapping rows have no description.
  REQUIRE_FALSE(loom::cuda::cublas_operand(3, 4, 8, 2).has_value());
  REQUIRE_FALSE(loom::cuda::cublas_operand(3, 4, 2, 1).has_value());
  REQUIRE_FALSE(loom::cuda::cublas_operand(3, 4, 0, 1).has_value());
}

TEST_CASE("gemm layout: every small inner layout of both operands, unbatched, matches the naive product",
          "[cuda][gemm_layout]") {
  int checked = 0, copied = 0;
  for (int64_t M : {1, 2, 3})
    for (int64_t K : {1, 2, 3})
      for (int64_t N : {1, 2, 4})
        for (const auto& [ars, acs] : inner_layouts(M, K))
          for (const auto& [brs, bcs] : inner_layouts(K, N)) {
            INFO("M " << M << " K " << K << " N " << N << " a (" << ars << ", " << acs << ") b (" << brs << ", "
                      << bcs << ")");
            const Operand a = make_operand({M, K}, {ars, acs}, 1), b = make_operand({K, N}, {brs, bcs}, 2);
            const bool planned = check_product(a, b, Shape{});
            REQUIRE(planned == (describable(M, K, ars, acs) && describable(K, N, brs, bcs)));
            (planned ? checked : copied)++;
          }
  REQUIRE(checked > 300);
  REQUIRE(copied > 0);
}

TEST_CASE("gemm layout: batched products with broadcast, permuted and padded batch dims",
          "[cuda][gemm_layout]") {
  int calls_checked = 0;
  // Batch shapes with each operand's own batch dims (1 = broadcast, missing = broadcast).
  struct BatchCase {
    Shape batch, a_batch, b_batch;
  };
  const BatchCase cases[] = {
      {{5}, {5}, {5}},          {{5}, {5}, {}},         {{5}, {}, {5}},        {{5}, {5}, {1}},
      {{5}, {1}, {5}},          {{2, 3}, {2, 3}, {2, 3}}, {{2, 3}, {2, 1}, {1, 3}}, {{2, 3}, {2, 3}, {}},
      {{2, 3}, {3}, {2, 1}},    {{1, 4}, {1, 4}, {4}},  {{3, 1, 2}, {3, 1, 2}, {1, 1, 2}},
  };
  // M = 1 makes the left operand's rows a single row: its batch stride becomes the row stride of a
  // folded GEMM ([.., 1, K] degenerate strides); K = 1 and N = 1 likewise for the other dims.
  for (const auto& [M, K, N] : {std::tuple<int64_t, int64_t, int64_t>{3, 2, 4}, {1, 3, 2}, {2, 1, 1}, {1, 1, 3}}) {
    for (const BatchCase& bc : cases)
      for (const auto& [ars, acs] : inner_layouts(M, K))
        for (const auto& [brs, bcs] : inner_layouts(K, N))
          for (int batch_layout = 0; batch_layout < 3; ++batch_layout) {
            // Batch strides: 0 = packed after the matrix, 1 = padded, 2 = batch dims in reverse order
            // (a permuted view: not one uniform stride over the whole batch).
            auto strides_for = [&](const Shape& own, int64_t rs, int64_t cs, int64_t rows, int64_t cols) {
              const int64_t matrix =
                  std::max(rows * std::abs(rs), cols * std::abs(cs)) + (batch_layout == 1 ? 5 : 0);
              Strides s = Strides::filled(own.size() + 2, 0);
              s[own.size()] = rs;
              s[own.size() + 1] = cs;
              int64_t step = std::max<int64_t>(matrix, 1);
              if (batch_layout == 2) {
                for (int d = 0; d < own.size(); ++d) s[d] = step, step *= own[d];
              } else {
                for (int d = own.size() - 1; d >= 0; --d) s[d] = step, step *= own[d];
              }
              return s;
            };
            Shape a_shape = bc.a_batch, b_shape = bc.b_batch;
            a_shape.push_back(M), a_shape.push_back(K);
            b_shape.push_back(K), b_shape.push_back(N);
            const Operand a = make_operand(a_shape, strides_for(bc.a_batch, ars, acs, M, K), 3);
            const Operand b = make_operand(b_shape, strides_for(bc.b_batch, brs, bcs, K, N), 4);
            INFO("M " << M << " K " << K << " N " << N << " batch " << bc.batch << " a " << a.shape << " strides "
                    << a.strides << " b " << b.shape << " strides " << b.strides);
            if (check_product(a, b, bc.batch)) ++calls_checked;
          }
  }
  REQUIRE(calls_checked > 500);
}

TEST_CASE("gemm layout: a shared right operand folds the batch into one GEMM, permuted batches take one call per run",
          "[cuda][gemm_layout]") {
  const int64_t M = 3, K = 2, N = 4;
  const CublasOperand row_major_a{false, K}, row_major_b{false, N};
  // a [2, 3, M, K] contiguous, b [K, N] shared: one call with n = 2·3·M.
  auto calls = loom::cuda::plan_cublas_gemm(M, N, K, row_major_a, row_major_b, Shape{2, 3}, Strides{3 * M * K, M * K},
                                            Strides{0, 0}, Strides{3 * M * N, M * N}, N);
  REQUIRE(calls.size() == 1);
  REQUIRE(calls[0].n == 2 * 3 * M);
  REQUIRE(calls[0].batch == 1);
  REQUIRE(calls[0].ldb == K);
  // A transposed left operand cannot fold: one strided-batched call over the coalesced batch.
  calls = loom::cuda::plan_cublas_gemm(M, N, K, CublasOperand{true, M}, row_major_b, Shape{2, 3},
                                       Strides{3 * M * K, M * K}, Strides{0, 0}, Strides{3 * M * N, M * N}, N);
  REQUIRE(calls.size() == 1);
  REQUIRE(calls[0].batch == 6);
  REQUIRE(calls[0].stride_a == 0);
  REQUIRE(calls[0].stride_b == M * K);
  // a's batch dims permuted ([3, 2] walked with strides (M·K, 3·M·K)): two runs of three.
  calls = loom::cuda::plan_cublas_gemm(M, N, K, row_major_a, row_major_b, Shape{2, 3}, Strides{M * K, 2 * M * K},
                                       Strides{3 * K * N, K * N}, Strides{3 * M * N, M * N}, N);
  REQUIRE(calls.size() == 2);
  REQUIRE(calls[1].batch == 3);
  REQUIRE(calls[1].stride_b == 2 * M * K);
  REQUIRE(calls[1].left_offset == M * K);
  REQUIRE(calls[1].out_offset == 3 * M * N);
}
