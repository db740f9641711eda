// Multi-label fine-tuning (include/loom/models/classifier.hpp, include/loom/train/finetune*.hpp,
// examples/finetune_multilabel): the classifier against a PyTorch golden with timm's names and
// global-pool forward, s1s2-half token selection, label-fraction subsets, a tiny end-to-end
// fine-tune that must beat its own initial model, and the report against the metrics functions
// applied to the saved predictions.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "loom/models/classifier.hpp"
#include "loom/nn/checkpoint.hpp"
#include "loom/ops/elementwise.hpp"
#include "support/check.hpp"

namespace {

using loom::Tensor;
namespace io = loom::io;
namespace models = loom::models;

const std::string kClassifierGolden = std::string(LOOM_SOURCE_DIR) + "/tests/golden/classifier_golden.safetensors";

// The golden's model: joint tokens over S1 (2) + S2 (12) channels, 32x32, patch 8, 32x2x2, 19 classes.
models::ClassifierConfig golden_config() {
  models::ClassifierConfig c;
  c.encoder.groups = {{"s1", 2}, {"s2", 12}};
  c.encoder.joint = true;
  c.encoder.img_size = 32, c.encoder.patch = 8;
  c.encoder.dim = 32, c.encoder.depth = 2, c.encoder.heads = 2;
  c.num_classes = 19;
  c.pool = models::Pool::avg;
  return c;
}

}  // namespace

TEST_CASE("classifier with joint tokens and global average pool matches a timm-named PyTorch ViT", "[finetune][golden]") {
  const auto file = io::SafetensorsFile::open(kClassifierGolden);
  models::MultiLabelClassifier<float> model(golden_config());
  model.eval();
  // Strict over what a timm checkpoint holds: every "model." tensor must find its target, and the
  // only loom tensors without one are the unused final norm (timm's Identity in avg mode).
  auto opts = loom::nn::with_patch_embed_reshape(model, io::LoadOptions().strict(false).map_names([](const std::string& n) {
    return n.rfind("model.", 0) == 0 ? n.substr(6) : std::string();
  }));
  const io::LoadReport report = io::load_into(model.state_dict(), file, opts);
  CHECK(report.unexpected.empty());
  REQUIRE(report.missing == std::vector<std::string>{"norm.weight", "norm.bias"});
  for (const auto& [name, t] : model.checkpoint_state()) CHECK(file.contains("model." + name));

  loom::NoGradGuard no_grad;
  const Tensor<float> logits = model.forward({file.load<float>("input.s1"), file.load<float>("input.s2")});  // [5, 19]
  REQUIRE(logits.shape() == loom::Shape{5, 19});
  loom::test::require_close(loom::sigmoid(logits), loom::test::to_double(file.load<float>("probs")), {2e-5, 2e-4});
}
