#pragma once
// A Strategy as a flat, trivially copyable value (no vectors, no strings), so that it can be
// passed to a CUDA kernel by value and read by the per-sample plan logic (sample_plan.hpp) on
// either side. A plain strategy is a one-member list with `mixture` false.
#include <cstdint>

#include "loom/core/error.hpp"
#include "loom/mask/strategy.hpp"

namespace loom::mask {

struct FlatMember {
  Kind kind = Kind::independent;  // never Kind::mixture
  int group = -1;                 // drop: the dropped group
  double ratio = 0.75;            // the mask ratio (K comes from visible_count on the host)
  double alpha = 1.0;             // dirichlet: concentration
  double weight = 1.0;            // mixture: unnormalised probability
};

struct FlatStrategy {
  static constexpr int kMaxMembers = 16;
  bool mixture = false;  // draw a member per sample (else member 0 always, no draw)
  int members = 1;
  FlatMember member[kMaxMembers];
};

inline FlatMember flatten_member(const Strategy& s, double weight) {
  LOOM_CHECK(s.kind != Kind::mixture, "mask: nested mixtures are not supported: ", s.str());
  FlatMember m;
  m.kind = s.kind;
  m.group = s.group;
  m.ratio = s.ratio;
  m.alpha = s.alpha;
  m.weight = weight;
  return m;
}

inline FlatStrategy flatten(const Strategy& s) {
  FlatStrategy flat;
  if (s.kind != Kind::mixture) {
    flat.member[0] = flatten_member(s, 1.0);
    return flat;
  }
  LOOM_CHECK(!s.members.empty() && s.members.size() <= size_t(FlatStrategy::kMaxMembers), "mask: ", s.str(),
             ": a mixture needs 1 to ", FlatStrategy::kMaxMembers, " members, got ", s.members.size());
  flat.mixture = true;
  flat.members = int(s.members.size());
  for (size_t i = 0; i < s.members.size(); ++i) flat.member[i] = flatten_member(s.members[i].first, s.members[i].second);
  return flat;
}

}  // namespace loom::mask
