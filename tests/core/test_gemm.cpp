// loom::blas::gemm / gemm_batched against a naive triple loop accumulated in double.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "loom/core/gemm.hpp"
#include "loom/core/parallel.hpp"

namespace {

struct Case {
  bool ta = false, tb = false;
  int64_t M = 1, N = 1, K = 1;
  double alpha = 1, beta = 0;
  int64_t pad_a = 0, pad_b = 0, pad_c = 0;  // extra leading-dimension elements
};

std::string describe(const Case& c) {
  std::ostringstream s;
  s << "ta=" << c.ta << " tb=" << c.tb << " M=" << c.M << " N=" << c.N << " K=" << c.K
    << " alpha=" << c.alpha << " beta=" << c.beta << " pads=" << c.pad_a << "," << c.pad_b << ","
    << c.pad_c << " threads=" << loom::num_threads();
  return s.str();
}

template <class T>
std::vector<T> random_vec(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<double> d(-1.0, 1.0);
  std::vector<T> v(n);
  for (auto& x : v) x = T(d(rng));
  return v;
}

// Reference: C = alpha*op(A)*op(B) + beta*C in double (beta == 0 ignores C).
template <class T>
std::vector<double> reference(const Case& c, const T* A, int64_t lda, const T* B, int64_t ldb,
                              const T* C0, int64_t ldc) {
  std::vector<double> out(size_t(c.M * c.N));
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = 0; j < c.N; ++j) {
      double acc = 0;
      for (int64_t k = 0; k < c.K; ++k) {
        const double a = c.ta ? A[k * lda + i] : A[i * lda + k];
        const double b = c.tb ? B[j * ldb + k] : B[k * ldb + j];
        acc += a * b;
      }
      double r = c.alpha * acc;
      if (c.beta != 0) r += c.beta * double(C0[i * ldc + j]);
      out[size_t(i * c.N + j)] = r;
    }
  return out;
}

template <class T>
double max_abs(const std::vector<T>& v) {
  double m = 0;
  for (T x : v) m = std::max(m, std::abs(double(x)));
  return m;
}

// |ours - ref| <= atol + rtol*|ref|, atol scale-aware: eps*sqrt(K)*max|A|*max|B|*|alpha| plus
// eps*|beta|*max|C0|. Returns "" on success, else a description of the worst element.
template <class T>
std::string compare(const Case& c, const T* C, int64_t ldc, const std::vector<double>& ref,
                    double max_a, double max_b, double max_c0) {
  const double eps = sizeof(T) == 4 ? 1e-5 : 1e-12;
  const double atol = eps * std::sqrt(double(std::max<int64_t>(c.K, 1))) * max_a * max_b *
                          std::abs(c.alpha) +
                      eps * std::abs(c.beta) * max_c0 + 1e-30;
  const double rtol = eps;
  double worst = 0;  // worst ratio error / tolerance
  int64_t wi = -1, wj = -1;
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = 0; j < c.N; ++j) {
      const double r = ref[size_t(i * c.N + j)], o = double(C[i * ldc + j]);
      const double tol = atol + rtol * std::abs(r);
      const double ratio = std::isfinite(o) ? std::abs(o - r) / tol : std::numeric_limits<double>::infinity();
      if (ratio > worst || (wi < 0 && !(ratio <= 1))) {
        worst = ratio;
        wi = i;
        wj = j;
      }
    }
  if (worst <= 1) return "";
  std::ostringstream s;
  s << describe(c) << ": worst (" << wi << "," << wj << ") got " << double(C[wi * ldc + wj])
    << " want " << ref[size_t(wi * c.N + wj)] << " err/tol=" << worst << " atol=" << atol;
  return s.str();
}

template <class T>
void run_case(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K;
  const int64_t b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N;
  const int64_t lda = std::max<int64_t>(a_cols, 1) + c.pad_a;
  const int64_t ldb = std::max<int64_t>(b_cols, 1) + c.pad_b;
  const int64_t ldc = std::max<int64_t>(c.N, 1) + c.pad_c;
  auto A = random_vec<T>(size_t(a_rows * lda), rng);
  auto B = random_vec<T>(size_t(b_rows * ldb), rng);
  auto C = random_vec<T>(size_t(c.M * ldc), rng);
  if (c.beta == 0)  // beta == 0 must not read C: fill it with NaN
    for (auto& x : C) x = std::numeric_limits<T>::quiet_NaN();
  // Padding in C (columns >= N) must stay untouched: mark it.
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = c.N; j < ldc; ++j) C[size_t(i * ldc + j)] = T(12345);
  const auto ref = reference(c, A.data(), lda, B.data(), ldb, C.data(), ldc);
  const double max_c0 = c.beta == 0 ? 0.0 : max_abs(C);
  loom::blas::gemm(c.ta, c.tb, c.M, c.N, c.K, T(c.alpha), A.data(), lda, B.data(), ldb, T(c.beta),
                   C.data(), ldc);
  const std::string err = compare(c, C.data(), ldc, ref, max_abs(A), max_abs(B), max_c0);
  INFO(err);
  CHECK(err.empty());
  bool pad_ok = true;
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = c.N; j < ldc; ++j) pad_ok = pad_ok && C[size_t(i * ldc + j)] == T(12345);
  INFO(describe(c));
  CHECK(pad_ok);
}

struct ThreadGuard {
  int saved = loom::num_threads();
  ~ThreadGuard() { loom::set_num_threads(saved); }
};

}  // namespace

TEST_CASE("gemm fp32 small and odd sizes, all transposes, alpha/beta", "[gemm]") {
  ThreadGuard guard;
  const int threads = GENERATE(1, 2);
  loom::set_num_threads(threads);
  const std::vector<int64_t> sizes = {1, 2, 7, 16, 17, 97};
  uint32_t seed = 1;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (int64_t M : sizes)
        for (int64_t N : sizes)
          for (int64_t K : {int64_t(1), int64_t(7), int64_t(97)}) {
            Case c;
            c.ta = ta;
            c.tb = tb;
            c.M = M;
            c.N = N;
            c.K = K;
            const int variant = int(seed % 4);
            c.alpha = variant == 0 ? 1.0 : variant == 1 ? -0.5 : variant == 2 ? 2.0 : 1.0;
            c.beta = variant == 0 ? 0.0 : variant == 1 ? 1.0 : variant == 2 ? 0.0 : -0.75;
            c.pad_a = seed % 3;
            c.pad_b = (seed / 3) % 3;
            c.pad_c = (seed / 9) % 3;
            run_case<float>(c, seed++);
          }
}

TEST_CASE("gemm fp32 medium sizes with leading-dim padding", "[gemm]") {
  ThreadGuard guard;
  const int threads = GENERATE(1, 2);
  loom::set_num_threads(threads);
  uint32_t seed = 100;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (double beta : {0.0, 1.0, 0.3}) {
        Case c;
        c.ta = ta;
        c.tb = tb;
        c.M = 225;
        c.N = 97;
        c.K = 225;
        c.alpha = beta == 0.3 ? -1.25 : 1.0;
        c.beta = beta;
        c.pad_a = 3;
        c.pad_b = 5;
        c.pad_c = 11;
        run_case<float>(c, seed++);
        std::swap(c.M, c.N);
        c.K = 300;  // > one KC block when KC is small; odd multiple of 4
        run_case<float>(c, seed++);
        c.M = 225;
        c.N = 225;
        c.K = 600;  // spans several KC blocks
        run_case<float>(c, seed++);
      }
}

TEST_CASE("gemm fp32 transformer shapes (row subset checked)", "[gemm]") {
  ThreadGuard guard;
  const int threads = GENERATE(1, 2);
  loom::set_num_threads(threads);
  // The full product is computed; the double reference is checked on every 7th row and the last
  // rows (the full reference would cost ~0.5 G multiply-adds per shape).
  struct Shape {
    int64_t M, N, K;
    bool ta, tb;
  };
  for (const Shape sh : {Shape{3200, 576, 192, false, false}, Shape{3200, 192, 768, false, true},
                         Shape{192, 768, 3200, true, false}}) {
    std::mt19937 rng(7);
    const int64_t lda = sh.ta ? sh.M : sh.K, ldb = sh.tb ? sh.K : sh.N, ldc = sh.N;
    auto A = random_vec<float>(size_t(sh.M * sh.K), rng);
    auto B = random_vec<float>(size_t(sh.K * sh.N), rng);
    std::vector<float> C(size_t(sh.M * sh.N), std::numeric_limits<float>::quiet_NaN());
    loom::blas::gemm(sh.ta, sh.tb, sh.M, sh.N, sh.K, 1.f, A.data(), lda, B.data(), ldb, 0.f,
                     C.data(), ldc);
    const double atol = 1e-5 * std::sqrt(double(sh.K)) * max_abs(A) * max_abs(B);
    double worst = 0;
    int64_t wi = 0, wj = 0;
    double wref = 0;
    for (int64_t i = 0; i < sh.M; ++i) {
      if (i % 7 != 0 && i < sh.M - 8) continue;
      for (int64_t j = 0; j < sh.N; ++j) {
        double acc = 0;
        for (int64_t k = 0; k < sh.K; ++k)
          acc += double(sh.ta ? A[size_t(k * lda + i)] : A[size_t(i * lda + k)]) *
                 double(sh.tb ? B[size_t(j * ldb + k)] : B[size_t(k * ldb + j)]);
        const double o = C[size_t(i * ldc + j)];
        const double ratio = std::isfinite(o) ? std::abs(o - acc) / (atol + 1e-5 * std::abs(acc))
                                              : std::numeric_limits<double>::infinity();
        if (ratio > worst) {
          worst = ratio;
          wi = i;
          wj = j;
          wref = acc;
        }
      }
    }
    INFO("M=" << sh.M << " N=" << sh.N << " K=" << sh.K << " ta=" << sh.ta << " tb=" << sh.tb
              << " threads=" << threads << " worst (" << wi << "," << wj << ") got "
              << C[size_t(wi * ldc + wj)] << " want " << wref << " err/tol=" << worst);
    CHECK(worst <= 1);
  }
}

TEST_CASE("gemm degenerate sizes", "[gemm]") {
  ThreadGuard guard;
  const int threads = GENERATE(1, 2);
  loom::set_num_threads(threads);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // K == 0: C = beta * C; beta == 0 writes zeros over NaN.
  std::vector<float> C(12, nan);
  loom::blas::gemm(false, false, 3, 4, 0, 1.f, nullptr, 1, nullptr, 4, 0.f, C.data(), 4);
  for (float x : C) CHECK(x == 0.f);
  for (float& x : C) x = 2.f;
  loom::blas::gemm(true, true, 3, 4, 0, 1.f, nullptr, 3, nullptr, 1, 0.5f, C.data(), 4);
  for (float x : C) CHECK(x == 1.f);
  // M == 0 / N == 0: nothing happens.
  loom::blas::gemm(false, false, 0, 4, 5, 1.f, nullptr, 5, nullptr, 4, 0.f, nullptr, 4);
  loom::blas::gemm(false, false, 3, 0, 5, 1.f, nullptr, 5, nullptr, 1, 0.f, nullptr, 1);
  // alpha == 0 does not read A or B.
  std::vector<float> A(6, nan), B(8, nan);
  for (float& x : C) x = 3.f;
  loom::blas::gemm(false, false, 3, 4, 2, 0.f, A.data(), 2, B.data(), 4, 1.f, C.data(), 4);
  for (float x : C) CHECK(x == 3.f);
  // Bad leading dimensions throw.
  CHECK_THROWS_AS(loom::blas::gemm(false, false, 3, 4, 5, 1.f, A.data(), 4, B.data(), 4, 0.f,
                                   C.data(), 4),
                  loom::Error);
}

TEST_CASE("gemm fp64 matches the reference", "[gemm]") {
  uint32_t seed = 500;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (int64_t M : {1, 7, 97})
        for (int64_t N : {1, 7, 225})
          for (int64_t K : {0, 1, 97}) {
            Case c;
            c.ta = ta;
            c.tb = tb;
            c.M = M;
            c.N = N;
            c.K = K;
            c.alpha = seed % 2 ? 1.0 : -2.0;
            c.beta = seed % 3 == 0 ? 0.0 : 0.5;
            c.pad_a = seed % 2;
            c.pad_b = 2;
            c.pad_c = seed % 3;
            run_case<double>(c, seed++);
          }
}

TEST_CASE("gemm_batched fp32 and fp64", "[gemm]") {
  ThreadGuard guard;
  const int threads = GENERATE(1, 2);
  loom::set_num_threads(threads);
  struct BCase {
    int64_t batch, M, N, K;
    bool ta, tb, broadcast_b;
    float beta;
  };
  for (const BCase bc : {BCase{1, 97, 225, 65, false, false, false, 0.f},
                         BCase{3, 97, 101, 64, false, true, false, 1.f},
                         BCase{5, 7, 7, 7, true, false, true, 0.f},
                         BCase{8, 50, 40, 33, true, true, false, -0.5f},
                         BCase{2, 197, 197, 64, false, true, false, 0.f},
                         BCase{0, 3, 3, 3, false, false, false, 0.f}}) {
    std::mt19937 rng(uint32_t(bc.batch * 1000 + bc.M));
    const int64_t lda = (bc.ta ? bc.M : bc.K) + 1, ldb = (bc.tb ? bc.K : bc.N) + 2, ldc = bc.N + 3;
    const int64_t a_rows = bc.ta ? bc.K : bc.M, b_rows = bc.tb ? bc.N : bc.K;
    const int64_t sa = a_rows * lda + 5, sb = bc.broadcast_b ? 0 : b_rows * ldb + 1,
                  sc = bc.M * ldc + 7;
    auto A = random_vec<float>(size_t(std::max<int64_t>(bc.batch, 1) * sa), rng);
    auto B = random_vec<float>(size_t(std::max<int64_t>(bc.batch, 1) * std::max(sb, b_rows * ldb)), rng);
    auto C = random_vec<float>(size_t(std::max<int64_t>(bc.batch, 1) * sc), rng);
    if (bc.beta == 0.f)
      for (auto& x : C) x = std::numeric_limits<float>::quiet_NaN();
    std::vector<double> Ad(A.begin(), A.end()), Bd(B.begin(), B.end()), Cd(C.begin(), C.end());
    const auto C0 = C;
    loom::blas::gemm_batched(bc.ta, bc.tb, bc.M, bc.N, bc.K, 1.5f, A.data(), lda, B.data(), ldb,
                             bc.beta, C.data(), ldc, bc.batch, sa, sb, sc);
    loom::blas::gemm_batched(bc.ta, bc.tb, bc.M, bc.N, bc.K, 1.5, Ad.data(), lda, Bd.data(), ldb,
                             double(bc.beta), Cd.data(), ldc, bc.batch, sa, sb, sc);
    for (int64_t b = 0; b < bc.batch; ++b) {
      Case c;
      c.ta = bc.ta;
      c.tb = bc.tb;
      c.M = bc.M;
      c.N = bc.N;
      c.K = bc.K;
      c.alpha = 1.5;
      c.beta = bc.beta;
      const auto ref = reference(c, A.data() + b * sa, lda, B.data() + b * sb, ldb,
                                 C0.data() + b * sc, ldc);
      const double mc0 = bc.beta == 0.f ? 0.0 : max_abs(C0);
      const std::string err =
          compare(c, C.data() + b * sc, ldc, ref, max_abs(A), max_abs(B), mc0);
      INFO("batch entry " << b << " of " << bc.batch << ": " << err);
      CHECK(err.empty());
      const std::string errd =
          compare(c, Cd.data() + b * sc, ldc, ref, max_abs(A), max_abs(B), mc0);
      INFO("fp64 batch entry " << b << ": " << errd);
      CHECK(errd.empty());
    }
  }
}
