// nn::copy_state between two modules of one architecture: every parameter and buffer equal to the
// source's afterwards, written in place (the destination's tensors keep their identity), the
// source untouched; a mismatched architecture is an error that names the entry and writes nothing.
// (The CPU -> CUDA -> CPU direction is in tests/cuda/test_device_tensor.cpp.)
#include <catch2/catch.hpp>

#include "loom/nn/nn.hpp"
#include "support/check.hpp"

using loom::Generator;
using loom::nn::Block;
using loom::nn::BlockOptions;

namespace {

std::vector<std::vector<float>> values(const loom::nn::Module<float>& m) {
  std::vector<std::vector<float>> out;
  for (const auto& [name, t] : m.state_dict()) out.push_back(t.to_vector());
  return out;
}

}  // namespace

TEST_CASE("copy_state copies every parameter in place and leaves the source alone", "[nn][copy_state]") {
  Generator g1(1), g2(2);
  Block<float> src(BlockOptions(16, 2), g1), dst(BlockOptions(16, 2), g2);
  const auto src_before = values(src);
  REQUIRE(values(dst) != src_before);  // different seeds: the copy has something to do
  std::vector<const void*> identity;
  for (const auto& [name, t] : dst.state_dict()) identity.push_back(t.impl().get());

  loom::nn::copy_state(src, dst);
  REQUIRE(values(dst) == src_before);
  REQUIRE(values(src) == src_before);
  size_t i = 0;
  for (const auto& [name, t] : dst.state_dict()) {
    REQUIRE(t.impl().get() == identity[i++]);
    REQUIRE(t.requires_grad());  // parameters stay parameters
  }
}

TEST_CASE("copy_state refuses another architecture and writes nothing", "[nn][copy_state][errors]") {
  Generator g1(1), g2(2);
  Block<float> src(BlockOptions(16, 2), g1), wider(BlockOptions(32, 2), g2);
  const auto before = values(wider);
  REQUIRE_THROWS_WITH(loom::nn::copy_state(src, wider),
                      Catch::Contains("copy_state") && Catch::Contains("norm1.weight") && Catch::Contains("[16]") &&
                          Catch::Contains("[32]"));
  REQUIRE(values(wider) == before);
  loom::nn::Linear<float> linear(loom::nn::LinearOptions(16, 16), g2);
  REQUIRE_THROWS_WITH(loom::nn::copy_state(src, linear), Catch::Contains("parameters and buffers"));
}
