// The tutorial at the top of include/loom/loom.hpp, compiled and run: if it stops compiling or its
// comments stop telling the truth (shapes, error text), this fails.
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>

#include "loom/loom.hpp"

using loom::Tensor;

TEST_CASE("the umbrella header's tutorial works as written", "[docs]") {
  auto x = Tensor<float>::from_vector({2, 3}, {1, 2, 3, 4, 5, 6});
  auto xt = x.transpose(0, 1);
  REQUIRE(xt.shape() == loom::Shape{3, 2});
  REQUIRE(xt.data() == x.data());
  auto y = loom::matmul(x, xt) + 1.0;
  REQUIRE(y.shape() == loom::Shape{2, 2});
  REQUIRE(y.at({0, 1}) == 1 * 4 + 2 * 5 + 3 * 6 + 1);

  auto w = loom::randn<float>({3, 4}).requires_grad_();
  auto loss = loom::mean(loom::gelu(loom::matmul(x, w)));
  loss.backward();
  REQUIRE(w.grad().shape() == loom::Shape{3, 4});

  loom::nn::VisionTransformer<float> vit(loom::nn::VitOptions().image(32, 8, 14).preset("192x6x3"));
  auto tokens = vit.forward(loom::randn<float>({4, 14, 32, 32}));
  REQUIRE(tokens.shape() == loom::Shape{4, 17, 192});
  const auto path = (std::filesystem::temp_directory_path() / "loom_tutorial_vit.safetensors").string();
  loom::nn::save_module(vit, path);
  std::remove(path.c_str());

  loom::optim::AdamW<float> opt(loom::optim::make_param_groups(vit.named_parameters(), 0.05),
                                loom::optim::AdamWOptions().betas(0.9, 0.95));
  opt.zero_grad();
  opt.step(1e-4);

  auto strategy = loom::mask::parse_strategy(loom::mask::kDefaultMaskSpec);
  auto plan = loom::mask::make_mask_plan(strategy, 4, 2, 16, 7, 0);
  REQUIRE(plan.ids_keep.shape() == loom::Shape{4, 8});

  REQUIRE_THROWS_WITH(loom::matmul(x, x), Catch::Contains("matmul") && Catch::Contains("[2, 3]"));
}
