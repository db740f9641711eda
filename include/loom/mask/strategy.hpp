#pragma once
// Mask strategies of the multi-modal mask module (docs/masking.md). A strategy decides, per
// sample, which K of the T = G·L group tokens the encoder sees (token t = g·L + l: group-major).
//   consistent(r)      the same round((1-r)·L) locations visible in every group (K = G·that)
//   independent(r)     K = round((1-r)·T) tokens uniformly among all T
//   disjoint(r)        K distinct locations, each visible in exactly one group, the groups
//                      balanced; needs r >= 1 - 1/G (hence K <= L)
//   drop(g, r)         group g wholly hidden, K tokens uniformly among the other groups
//   dirichlet(a, r)    K split across groups by a Dirichlet(a) draw, positions uniform per group
//   mixture(s:w, ...)  one member drawn per sample with probability proportional to w
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "loom/core/error.hpp"

namespace loom::mask {

enum class Kind { consistent, independent, disjoint, drop, dirichlet, mixture };

struct Strategy {
  Kind kind = Kind::independent;
  double ratio = 0.75;  // mask ratio r: the share of tokens hidden
  int group = -1;       // drop: the dropped group
  double alpha = 1.0;   // dirichlet: concentration
  std::vector<std::pair<Strategy, double>> members;  // mixture: (strategy, weight)

  static Strategy make(Kind k, double r, int g = -1, double a = 1.0) {
    Strategy s;
    s.kind = k;
    s.ratio = r;
    s.group = g;
    s.alpha = a;
    return s;
  }
  static Strategy consistent(double r) { return make(Kind::consistent, r); }
  static Strategy independent(double r) { return make(Kind::independent, r); }
  static Strategy disjoint(double r) { return make(Kind::disjoint, r); }
  static Strategy drop(int g, double r) { return make(Kind::drop, r, g); }
  static Strategy dirichlet(double a, double r) { return make(Kind::dirichlet, r, -1, a); }
  static Strategy mixture(std::vector<std::pair<Strategy, double>> m) {
    Strategy s = make(Kind::mixture, 0.0);
    s.members = std::move(m);
    return s;
  }

  // Canonical text (parse(str()) gives the same strategy); group names for drop(), else indices.
  std::string str(const std::vector<std::string>& group_names = {"s1", "s2"}) const {
    // Shortest text that parses back to exactly v (std::to_string kept only 6 decimals).
    auto num = [](double v) {
      char buf[64];
      const auto res = std::to_chars(buf, buf + sizeof buf, v);
      return std::string(buf, res.ptr);
    };
    switch (kind) {
      case Kind::consistent: return "consistent(" + num(ratio) + ")";
      case Kind::independent: return "independent(" + num(ratio) + ")";
      case Kind::disjoint: return "disjoint(" + num(ratio) + ")";
      case Kind::drop:
        return "drop(" + (group >= 0 && group < int(group_names.size()) ? group_names[size_t(group)] : std::to_string(group)) +
               "," + num(ratio) + ")";
      case Kind::dirichlet: return "dirichlet(" + num(alpha) + "," + num(ratio) + ")";
      case Kind::mixture: {
        std::string s = "mixture(";
        for (size_t i = 0; i < members.size(); ++i)
          s += (i ? ", " : "") + members[i].first.str(group_names) + ":" + num(members[i].second);
        return s + ")";
      }
    }
    return "?";
  }
};

// The paper's module as loom reads it (DESIGN §1).
inline constexpr const char* kDefaultMaskSpec = "mixture(disjoint(0.75):0.8, drop(s1,0.75):0.1, drop(s2,0.75):0.1)";

// Number of visible tokens K of a strategy for G groups and L locations; validates the strategy
// against the grid and throws naming it when it cannot be applied.
inline int64_t visible_count(const Strategy& s, int G, int64_t L) {
  LOOM_CHECK(G >= 1 && L >= 1, "mask: need at least one group and one location, got G = ", G, ", L = ", L);
  const int64_t T = int64_t(G) * L;
  if (s.kind != Kind::mixture)
    LOOM_CHECK(s.ratio >= 0 && s.ratio < 1, "mask: ", s.str(), ": mask ratio must be in [0, 1), got ", s.ratio);
  switch (s.kind) {
    case Kind::consistent: return int64_t(G) * int64_t(std::llround((1 - s.ratio) * double(L)));
    case Kind::independent: return std::llround((1 - s.ratio) * double(T));
    case Kind::disjoint: {
      const int64_t K = std::llround((1 - s.ratio) * double(T));
      // The ratio itself must satisfy r >= 1 - 1/G (up to rounding of the text), not only K <= L.
      LOOM_CHECK(K <= L && s.ratio >= 1.0 - 1.0 / G - 1e-9, "mask: ", s.str(), " needs mask ratio >= 1 - 1/G = ", 1.0 - 1.0 / G,
                 " so that each location is visible in at most one group (K = ", K, ", L = ", L, ")");
      return K;
    }
    case Kind::drop: {
      LOOM_CHECK(s.group >= 0 && s.group < G, "mask: ", s.str(), ": group ", s.group, " does not exist (G = ", G, ")");
      const int64_t K = std::llround((1 - s.ratio) * double(T));
      LOOM_CHECK(K <= int64_t(G - 1) * L, "mask: ", s.str(), " keeps K = ", K, " tokens but the other groups have only ",
                 int64_t(G - 1) * L, " (needs mask ratio >= 1 - (G-1)/G)");
      return K;
    }
    case Kind::dirichlet:
      LOOM_CHECK(s.alpha > 0 && std::isfinite(s.alpha), "mask: ", s.str(), ": alpha must be positive and finite");
      return std::llround((1 - s.ratio) * double(T));
    case Kind::mixture: {
      LOOM_CHECK(!s.members.empty(), "mask: mixture() needs at least one member");
      const int64_t K = visible_count(s.members[0].first, G, L);
      double total = 0;
      for (const auto& [m, w] : s.members) {
        LOOM_CHECK(m.kind != Kind::mixture, "mask: nested mixtures are not supported: ", s.str());
        LOOM_CHECK(w > 0 && std::isfinite(w), "mask: ", s.str(), ": weights must be positive and finite, got ", w,
                   " for ", m.str());
        const int64_t Km = visible_count(m, G, L);
        LOOM_CHECK(Km == K, "mask: ", s.str(), ": members keep different token counts for G = ", G, ", L = ", L, " (",
                   s.members[0].first.str(), " keeps ", K, ", ", m.str(), " keeps ", Km,
                   "); a batch must have one K");
        total += w;
      }
      (void)total;
      return K;
    }
  }
  return 0;
}

}  // namespace loom::mask
