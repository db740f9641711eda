#pragma once
// Independent references for the attention kernels' tests: the textbook formulas in double, and a
// "naive bf16" attention that rounds to bf16 wherever an unfused implementation materializes a
// tensor (scores, probabilities, outputs), the yardstick for the fused bf16 kernel's error.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "loom/core/bf16.hpp"
#include "loom/core/random.hpp"

namespace loom::test {

struct AttentionCase {
  int64_t bh, sq, sk;
  int d;
};

struct AttentionGrads {
  std::vector<double> o, lse, dq, dk, dv;
};

// q [BH, Sq, D], k, v [BH, Sk, D], d_o [BH, Sq, D]; round(x) is applied to every materialized
// intermediate (identity for the exact reference).
template <class Round>
AttentionGrads attention_reference(const AttentionCase& c, double scale, const std::vector<double>& q,
                                   const std::vector<double>& k, const std::vector<double>& v,
                                   const std::vector<double>& d_o, Round round) {
  const int64_t sq = c.sq, sk = c.sk, d = c.d;
  AttentionGrads g;
  g.o.assign(c.bh * sq * d, 0);
  g.lse.assign(c.bh * sq, 0);
  g.dq.assign(c.bh * sq * d, 0);
  g.dk.assign(c.bh * sk * d, 0);
  g.dv.assign(c.bh * sk * d, 0);
  std::vector<double> p(sq * sk), dp(sq * sk), ds(sq * sk);
  for (int64_t h = 0; h < c.bh; ++h) {
    const double* Q = q.data() + h * sq * d;
    const double* K = k.data() + h * sk * d;
    const double* V = v.data() + h * sk * d;
    const double* dO = d_o.data() + h * sq * d;
    for (int64_t i = 0; i < sq; ++i) {
      double m = -INFINITY;
      for (int64_t j = 0; j < sk; ++j) {
        double s = 0;
        for (int64_t x = 0; x < d; ++x) s += Q[i * d + x] * K[j * d + x];
        p[i * sk + j] = round(s * scale);
        m = std::max(m, p[i * sk + j]);
      }
      double sum = 0;
      for (int64_t j = 0; j < sk; ++j) sum += std::exp(p[i * sk + j] - m);
      g.lse[h * sq + i] = m + std::log(sum);
      for (int64_t j = 0; j < sk; ++j) p[i * sk + j] = round(std::exp(p[i * sk + j] - m) / sum);
      for (int64_t x = 0; x < d; ++x) {
        double o = 0;
        for (int64_t j = 0; j < sk; ++j) o += p[i * sk + j] * V[j * d + x];
        g.o[(h * sq + i) * d + x] = round(o);
      }
    }
    for (int64_t i = 0; i < sq; ++i) {
      double rowdot = 0;
      for (int64_t j = 0; j < sk; ++j) {
        double s = 0;
        for (int64_t x = 0; x < d; ++x) s += dO[i * d + x] * V[j * d + x];
        dp[i * sk + j] = round(s);
        rowdot += p[i * sk + j] * dp[i * sk + j];
      }
      for (int64_t j = 0; j < sk; ++j) ds[i * sk + j] = round(p[i * sk + j] * (dp[i * sk + j] - rowdot));
    }
    for (int64_t x = 0; x < d; ++x) {
      for (int64_t i = 0; i < sq; ++i) {
        double acc = 0;
        for (int64_t j = 0; j < sk; ++j) acc += ds[i * sk + j] * K[j * d + x];
        g.dq[(h * sq + i) * d + x] = round(scale * acc);
      }
      for (int64_t j = 0; j < sk; ++j) {
        double acc_k = 0, acc_v = 0;
        for (int64_t i = 0; i < sq; ++i) {
          acc_k += ds[i * sk + j] * Q[i * d + x];
          acc_v += p[i * sk + j] * dO[i * d + x];
        }
        g.dk[(h * sk + j) * d + x] = round(scale * acc_k);
        g.dv[(h * sk + j) * d + x] = round(acc_v);
      }
    }
  }
  return g;
}

inline AttentionGrads attention_exact(const AttentionCase& c, double scale, const std::vector<double>& q,
                                      const std::vector<double>& k, const std::vector<double>& v,
                                      const std::vector<double>& d_o) {
  return attention_reference(c, scale, q, k, v, d_o, [](double x) { return x; });
}

inline AttentionGrads attention_naive_bf16(const AttentionCase& c, double scale, const std::vector<double>& q,
                                           const std::vector<double>& k, const std::vector<double>& v,
                                           const std::vector<double>& d_o) {
  return attention_reference(c, scale, q, k, v, d_o, [](double x) { return double(float(bf16(float(x)))); });
}

// Normal random values, rounded to bf16 when asked (so both precisions see the same inputs).
inline std::vector<double> random_values(int64_t n, uint64_t seed, double sigma, bool bf16_exact) {
  Generator gen(seed);
  std::vector<double> out;
  for (const float z : randn<float>({n}, gen).to_vector()) {
    const float f = float(sigma * z);
    out.push_back(bf16_exact ? double(float(bf16(f))) : double(f));
  }
  return out;
}

// max |ours - ref| / max |ref|: one number per tensor for error comparisons between methods.
inline double relative_max_error(const std::vector<double>& ours, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num = std::max(num, std::abs(ours[i] - ref[i]));
    den = std::max(den, std::abs(ref[i]));
  }
  return den > 0 ? num / den : num;
}

}  // namespace loom::test
