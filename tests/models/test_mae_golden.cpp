// loom's multi-modal MAE against the same model in plain PyTorch (tests/golden/make_mae_golden.py):
// two channel groups, a fixed mask plan, norm-pix loss — the total loss, the per-group losses and
// the gradient of every parameter. The golden ran in float64 on float32-exact weights and inputs
// and stored float32 roundings, so loom's double path must agree to float32 rounding.
#include <catch2/catch.hpp>

#include "loom/models/mae.hpp"
#include "loom/nn/checkpoint.hpp"
#include "support/check.hpp"

namespace io = loom::io;
using loom::Tensor;

TEST_CASE("multi-modal MAE loss and gradients match PyTorch", "[models][golden]") {
  const auto file = io::SafetensorsFile::open(std::string(LOOM_SOURCE_DIR) + "/tests/golden/mae_golden.safetensors");
  loom::models::MaeConfig cfg;
  cfg.encoder.groups = {{"s1", 2}, {"s2", 3}};
  cfg.encoder.img_size = 16;
  cfg.encoder.patch = 4;
  cfg.encoder.dim = 32;
  cfg.encoder.depth = 2;
  cfg.encoder.heads = 2;
  cfg.decoder_dim = 24;
  cfg.decoder_depth = 1;
  cfg.decoder_heads = 2;
  cfg.norm_pix = true;
  loom::models::MaskedAutoencoder<double> mae(cfg);

  // Weights under the same names (prefix w.), the patch embeddings in PyTorch's conv shape.
  const auto options = loom::nn::with_patch_embed_reshape(
      mae, io::LoadOptions().convert_dtypes(true).map_names([](const std::string& n) {
        return n.rfind("w.", 0) == 0 ? n.substr(2) : std::string();
      }));
  const io::LoadReport report = io::load_into(mae.state_dict(), file, options);
  REQUIRE(report.missing.empty());
  REQUIRE(report.unexpected.empty());

  loom::mask::MaskPlan plan;
  plan.ids_keep = file.load<int64_t>("ids_keep");        // [B, K]
  plan.ids_restore = file.load<int64_t>("ids_restore");  // [B, T]
  plan.mask = file.load<float>("mask");                  // [B, T]
  plan.groups = 2;
  plan.locations = 16;
  plan.visible = plan.ids_keep.size(1);
  plan.member.assign(size_t(plan.ids_keep.size(0)), 0);

  const std::vector<Tensor<double>> inputs = {file.load<double>("input.s1"), file.load<double>("input.s2")};
  const auto out = mae.forward(inputs, plan);
  out.loss.total.backward();

  const loom::test::Tol tol{2e-7, 2e-6};  // double vs float32-rounded goldens
  loom::test::require_close(std::vector<double>{out.loss.total.item()}, loom::test::to_double(file.load<float>("loss")),
                            tol);
  loom::test::require_close(out.loss.per_group, loom::test::to_double(file.load<float>("per_group")), tol);
  int checked = 0;
  for (const auto& [name, p] : mae.named_parameters()) {
    INFO("gradient of " << name);
    REQUIRE(p.grad().defined());
    loom::test::require_close(p.grad(), loom::test::to_double(file.load<float>("grad." + name)), tol);
    ++checked;
  }
  REQUIRE(checked == int(mae.named_parameters().size()));
  REQUIRE(checked > 30);  // every block's parameters, both patch embeddings and both prediction heads
}
