#pragma once
// Parses mask strategy specs such as
//   mixture(disjoint(0.75):0.8, drop(s1,0.75):0.1, drop(s2,0.75):0.1)
//   consistent(0.75)   independent(0.6)   disjoint(0.75)   drop(s2, 0.75)   dirichlet(1.0, 0.75)
// Groups in drop() are named (resolved through `group_names`) or given by index. A malformed spec
// throws loom::Error showing the spec with a caret under the offending character.
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "loom/mask/strategy.hpp"

namespace loom::mask {

namespace detail {

class SpecParser {
 public:
  SpecParser(std::string_view text, const std::vector<std::string>& groups) : text_(text), groups_(groups) {}

  Strategy parse() {
    Strategy s = strategy(true);
    skip_space();
    if (pos_ != text_.size()) error("unexpected text after the strategy");
    return s;
  }

 private:
  Strategy strategy(bool allow_mixture) {
    skip_space();
    const size_t start = pos_;
    const std::string name = identifier();
    if (name.empty()) error("expected a strategy name (consistent, independent, disjoint, drop, dirichlet, mixture)");
    expect('(');
    Strategy s;
    if (name == "mixture") {
      if (!allow_mixture) error_at(start, "mixtures cannot be nested");
      std::vector<std::pair<Strategy, double>> members;
      do {
        Strategy m = strategy(false);
        expect(':');
        const size_t at = pos_;
        const double w = number();
        if (!(w > 0) || !std::isfinite(w)) error_at(at, "mixture weights must be positive and finite");
        members.emplace_back(std::move(m), w);
      } while (accept(','));
      s = Strategy::mixture(std::move(members));
    } else if (name == "consistent" || name == "independent" || name == "disjoint") {
      const double r = ratio();
      s = name == "consistent" ? Strategy::consistent(r) : name == "independent" ? Strategy::independent(r) : Strategy::disjoint(r);
    } else if (name == "drop" || name == "modality_drop") {
      const int g = group();
      expect(',');
      s = Strategy::drop(g, ratio());
    } else if (name == "dirichlet") {
      const size_t at = pos_;
      const double a = number();
      if (!(a > 0) || !std::isfinite(a)) error_at(at, "dirichlet alpha must be positive and finite");
      expect(',');
      s = Strategy::dirichlet(a, ratio());
    } else {
      error_at(start, "unknown strategy '" + name + "' (known: consistent, independent, disjoint, drop, dirichlet, mixture)");
    }
    expect(')');
    return s;
  }

  double ratio() {
    skip_space();
    const size_t at = pos_;
    const double r = number();
    if (!(r >= 0 && r < 1)) error_at(at, "mask ratio must be in [0, 1)");
    return r;
  }

  int group() {
    skip_space();
    const size_t at = pos_;
    if (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) return int(number());
    const std::string name = identifier();
    for (size_t i = 0; i < groups_.size(); ++i)
      if (groups_[i] == name) return int(i);
    std::string known;
    for (const auto& g : groups_) known += (known.empty() ? "" : ", ") + g;
    error_at(at, "unknown group '" + name + "' (groups: " + known + ")");
  }

  double number() {
    skip_space();
    const std::string rest(text_.substr(pos_));
    char* end = nullptr;
    const double v = std::strtod(rest.c_str(), &end);
    if (end == rest.c_str()) error("expected a number");
    pos_ += size_t(end - rest.c_str());
    return v;
  }

  std::string identifier() {
    skip_space();
    const size_t start = pos_;
    while (pos_ < text_.size() && (std::isalnum(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '_')) ++pos_;
    return std::string(text_.substr(start, pos_ - start));
  }

  void skip_space() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  bool accept(char c) {
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!accept(c)) error(std::string("expected '") + c + "'");
  }
  [[noreturn]] void error(const std::string& what) { error_at(pos_, what); }
  [[noreturn]] void error_at(size_t at, const std::string& what) {
    loom::detail::fail("mask spec: ", what, " at column ", at + 1, "\n  ", text_, "\n  ", std::string(at, ' '), "^");
  }

  std::string_view text_;
  const std::vector<std::string>& groups_;
  size_t pos_ = 0;
};

}  // namespace detail

inline Strategy parse_strategy(std::string_view spec, const std::vector<std::string>& group_names = {"s1", "s2"}) {
  return detail::SpecParser(spec, group_names).parse();
}

}  // namespace loom::mask
