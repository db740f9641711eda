// The worked example of docs/nn.md, compiled and run: define a small ViT classifier from loom's
// modules, train it for a few steps, save it, reload it into a fresh model, and check the reload.
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>

#include "loom/loom.hpp"

namespace {

using loom::Tensor;
namespace nn = loom::nn;

// [guide: model]
// A ViT encoder with a linear head on the cls token, composed at run time from loom's modules.
struct Classifier : nn::Module<float> {
  Classifier(const nn::VitOptions& vit, int64_t classes, loom::Generator& gen) {
    encoder = register_module("encoder", std::make_shared<nn::VisionTransformer<float>>(vit, gen));
    head = register_module("head", std::make_shared<nn::Linear<float>>(nn::LinearOptions(vit.dim, classes), gen));
  }
  std::string type_name() const override { return "Classifier"; }

  // x [B, C, H, W] -> logits [B, classes]   (Tensor: the module's alias of loom::Tensor<float>)
  Tensor forward(const Tensor& x) const {
    const Tensor tokens = encoder->forward(x);         // [B, 1 + L, D]
    return head->forward(tokens.select(1, 0));         // the cls token [B, D] -> [B, classes]
  }

  std::shared_ptr<nn::VisionTransformer<float>> encoder;
  std::shared_ptr<nn::Linear<float>> head;
};
// [guide: end]

}  // namespace

TEST_CASE("docs/nn.md: define, train, save and reload a small ViT", "[docs][nn]") {
  // [guide: train]
  loom::Generator gen(0);
  const auto vit = nn::VitOptions().image(32, 8, 14).preset("64x2x4");  // dim 64, depth 2, 4 heads
  Classifier model(vit, 19, gen);
  const Tensor<float> x = loom::randn<float>({8, 14, 32, 32}, gen);      // [B, C, H, W]
  const Tensor<float> y = loom::bernoulli({8, 19}, 0.3, gen).to<float>();  // [B, 19] multi-hot labels

  loom::optim::AdamW<float> opt(loom::optim::make_param_groups(model.named_parameters(), 0.05),
                                loom::optim::AdamWOptions());
  double first = 0, last = 0;
  for (int step = 0; step < 20; ++step) {
    opt.zero_grad();
    const Tensor<float> loss = loom::binary_cross_entropy_with_logits(model.forward(x), y);
    loss.backward();
    opt.step(1e-3);
    last = loss.item();
    if (step == 0) first = last;
  }
  // [guide: save]
  const auto path = (std::filesystem::temp_directory_path() / "loom_nn_guide.safetensors").string();
  nn::save_module(model, path);
  loom::Generator other(1);
  Classifier restored(vit, 19, other);  // different initial weights...
  const loom::io::LoadReport report = nn::load_module(restored, path);  // ...replaced by the saved ones
  // [guide: end]
  std::remove(path.c_str());

  INFO("loss " << first << " -> " << last);
  REQUIRE(last < 0.5 * first);  // 20 steps on one batch: the model memorizes it
  REQUIRE(report.missing.empty());
  REQUIRE(report.unexpected.empty());
  REQUIRE(report.loaded.size() == model.state_dict().size());
  REQUIRE(model.named_parameters().front().first == "encoder.cls_token");
  model.eval();
  restored.eval();
  loom::autograd::NoGradGuard no_grad;
  REQUIRE(restored.forward(x).to_vector() == model.forward(x).to_vector());  // bit-identical reload
}
