// loom's transformer layers against PyTorch (tests/golden/make_vit_goldens.py): a small ViT with
// timm names, one Block, and attention alone — outputs and the gradients of sum(out * R) with
// respect to every parameter and the input. The golden model ran in float64 on float32-exact
// inputs and stored float32 roundings, so loom's double path must agree to float32 rounding.
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>

#include "loom/autograd/gradcheck.hpp"
#include "loom/nn/nn.hpp"
#include "loom/ops/elementwise.hpp"
#include "loom/ops/reduce.hpp"
#include "support/check.hpp"

using loom::Tensor;
namespace nn = loom::nn;
namespace io = loom::io;

namespace {

const std::string kGolden = std::string(LOOM_SOURCE_DIR) + "/tests/golden/vit_goldens.safetensors";

// Loads tensors named "<prefix><name>" into the module, dropping everything else in the file.
template <class T>
io::LoadReport load_prefixed(nn::Module<T>& m, const io::SafetensorsFile& f, const std::string& prefix) {
  auto opts = nn::with_patch_embed_reshape(m, io::LoadOptions().convert_dtypes(true).map_names([&](const std::string& n) {
    if (n.rfind(prefix, 0) != 0) return std::string();
    const std::string rest = n.substr(prefix.size());
    if (rest.rfind("grad.", 0) == 0 || rest.rfind("input.", 0) == 0 || rest == "output" || rest == "R") return std::string();
    return rest;
  }));
  return io::load_into(m.state_dict(), f, opts);
}

template <class T>
std::vector<double> golden(const io::SafetensorsFile& f, const std::string& name) {
  return loom::test::to_double(f.load<float>(name));
}

template <class T>
void check_grads(const nn::Module<T>& m, const io::SafetensorsFile& f, const std::string& prefix, loom::test::Tol tol) {
  for (const auto& [name, p] : m.named_parameters()) {
    INFO("gradient of " << prefix << name);
    REQUIRE(p.grad().defined());
    loom::test::require_close(p.grad(), golden<T>(f, prefix + "grad." + name), tol);
  }
}

// Tolerances: double vs float32-rounded goldens; float computes everything in float32.
template <class T>
loom::test::Tol golden_tol() {
  if constexpr (std::is_same_v<T, double>) return {2e-7, 2e-6};
  return {2e-4, 2e-3};
}

}  // namespace

TEMPLATE_TEST_CASE("ViT forward and backward match PyTorch", "[nn][golden]", double, float) {
  using T = TestType;
  const auto f = io::SafetensorsFile::open(kGolden);
  loom::Generator gen(1);
  nn::VisionTransformer<T> vit(nn::VitOptions().image(32, 8, 14).size(64, 2, 4), gen);
  // Names follow timm exactly: every model tensor is in the file and vice versa.
  const auto report = load_prefixed(vit, f, "vit.");
  REQUIRE(report.loaded.size() == vit.state_dict().size());

  // The sin-cos position embedding is computed by loom, not loaded: compare it separately.
  const auto x = f.load<float>("vit.input.x").to<T>().requires_grad_();  // [2, 14, 32, 32]
  const auto out = vit.forward(x);                                      // [2, 17, 64]
  REQUIRE(out.shape() == loom::Shape{2, 17, 64});
  loom::test::require_close(out, golden<T>(f, "vit.output"), golden_tol<T>());
  loom::sum(out * f.load<float>("vit.R").to<T>()).backward();
  check_grads(vit, f, "vit.", golden_tol<T>());
  loom::test::require_close(x.grad(), golden<T>(f, "vit.grad.input.x"), golden_tol<T>());
}

TEST_CASE("sin-cos position embedding follows the MAE convention", "[nn]") {
  const auto f = io::SafetensorsFile::open(kGolden);
  const auto pe = nn::sincos_pos_embed_2d<double>(64, 4, 4, true).unsqueeze(0);  // [1, 17, 64]
  loom::test::require_close(pe, golden<double>(f, "vit.pos_embed"), {1e-7, 1e-6});
  // cls row is zero; the first half of the channels depends on the column only.
  for (int64_t c = 0; c < 64; ++c) REQUIRE(pe.at({0, 0, c}) == 0.0);
  REQUIRE(pe.at({0, 1 + 0 * 4 + 2, 5}) == pe.at({0, 1 + 3 * 4 + 2, 5}));
  REQUIRE(pe.at({0, 1 + 1 * 4 + 0, 40}) == pe.at({0, 1 + 1 * 4 + 3, 40}));
}

TEST_CASE("a transformer Block matches PyTorch", "[nn][golden]") {
  const auto f = io::SafetensorsFile::open(kGolden);
  nn::Block<double> block(nn::BlockOptions(64, 4));
  REQUIRE(load_prefixed(block, f, "block.").loaded.size() == block.state_dict().size());
  const auto x = f.load<float>("block.input.x").to<double>().requires_grad_();  // [3, 17, 64]
  const auto out = block.forward(x);
  loom::test::require_close(out, golden<double>(f, "block.output"), golden_tol<double>());
  loom::sum(out * f.load<float>("block.R").to<double>()).backward();
  check_grads(block, f, "block.", golden_tol<double>());
  loom::test::require_close(x.grad(), golden<double>(f, "block.grad.input.x"), golden_tol<double>());
}

TEST_CASE("scaled dot-product attention matches PyTorch", "[nn][golden]") {
  const auto f = io::SafetensorsFile::open(kGolden);
  auto q = f.load<float>("sdpa.input.q").to<double>().requires_grad_();  // [1, 2, 97, 40]
  auto k = f.load<float>("sdpa.input.k").to<double>().requires_grad_();
  auto v = f.load<float>("sdpa.input.v").to<double>().requires_grad_();
  const auto o = loom::scaled_dot_product_attention(q, k, v);
  loom::test::require_close(o, golden<double>(f, "sdpa.output"), golden_tol<double>());
  loom::sum(o * f.load<float>("sdpa.R").to<double>()).backward();
  loom::test::require_close(q.grad(), golden<double>(f, "sdpa.grad.input.q"), golden_tol<double>());
  loom::test::require_close(k.grad(), golden<double>(f, "sdpa.grad.input.k"), golden_tol<double>());
  loom::test::require_close(v.grad(), golden<double>(f, "sdpa.grad.input.v"), golden_tol<double>());
}

TEST_CASE("checkpoints round-trip bit-identically and validate names and shapes", "[nn][checkpoint]") {
  loom::Generator g1(11), g2(22);
  nn::VisionTransformer<float> a(nn::VitOptions().image(16, 4, 3).size(32, 2, 2), g1);
  nn::VisionTransformer<float> b(nn::VitOptions().image(16, 4, 3).size(32, 2, 2), g2);
  const auto path = (std::filesystem::temp_directory_path() / "loom_vit_roundtrip.safetensors").string();
  nn::save_module(a, path);
  nn::load_module(b, path);
  const auto sa = a.state_dict(), sb = b.state_dict();
  REQUIRE(sa.size() == sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    INFO(sa[i].first);
    REQUIRE(sa[i].first == sb[i].first);
    REQUIRE(sa[i].second.to_vector() == sb[i].second.to_vector());
  }
  // A model of another width cannot load it: the error names the tensor.
  nn::VisionTransformer<float> wide(nn::VitOptions().image(16, 4, 3).size(64, 2, 2));
  REQUIRE_THROWS_WITH(nn::load_module(wide, path), Catch::Contains("cls_token") && Catch::Contains("[1, 1, 64]"));
  std::remove(path.c_str());
}

TEST_CASE("Module registry: names, counts, modes, errors", "[nn][module]") {
  nn::VisionTransformer<float> vit(nn::VitOptions().image(16, 4, 3).size(32, 2, 4));
  std::vector<std::string> names;
  for (const auto& [n, p] : vit.named_parameters()) names.push_back(n);
  // Own parameters first, then children in registration order: PyTorch's named_parameters order.
  REQUIRE(names.front() == "cls_token");
  REQUIRE(names[1] == "patch_embed.proj.weight");
  REQUIRE(std::find(names.begin(), names.end(), "blocks.1.attn.qkv.weight") != names.end());
  REQUIRE(std::find(names.begin(), names.end(), "blocks.0.mlp.fc2.bias") != names.end());
  REQUIRE(names.back() == "norm.bias");
  // Parameter count by formula: patch embed + cls + depth · block + final norm.
  const int64_t D = 32, P = 3 * 4 * 4;
  const int64_t block = 2 * 2 * D + (D * 3 * D + 3 * D) + (D * D + D) + (D * 4 * D + 4 * D) + (4 * D * D + D);
  REQUIRE(vit.parameter_count() == (P * D + D) + D + 2 * block + 2 * D);
  vit.eval();
  REQUIRE_FALSE(vit.blocks->operator[](1).drop_path->is_training());
  vit.train();
  REQUIRE(vit.blocks->operator[](1).mlp->is_training());
  REQUIRE_THROWS_WITH(vit.register_parameter("norm", Tensor<float>::zeros({1})), Catch::Contains("registered twice"));
  REQUIRE_THROWS_WITH(nn::VitOptions().preset("192x12"), Catch::Contains("DIMxDEPTHxHEADS"));
  REQUIRE(nn::VitOptions().preset("small").dim == 384);
}

TEST_CASE("layers pass gradcheck in double", "[nn][gradcheck]") {
  loom::Generator gen(5);
  auto x = loom::randn<double>({2, 5, 8}, gen).requires_grad_();  // [B, N, D]
  nn::Linear<double> lin(nn::LinearOptions(8, 6), gen);
  nn::LayerNorm<double> ln(nn::LayerNormOptions(8));
  nn::Attention<double> attn(nn::AttentionOptions(8, 2), gen);
  nn::Block<double> block(nn::BlockOptions(8, 2).mlp_ratio(2), gen);
  auto check = [&](const char* what, auto&& fn, std::vector<Tensor<double>> inputs) {
    const auto r = loom::autograd::gradcheck(fn, inputs);
    INFO(what << ": " << r.message);
    REQUIRE(r.ok);
  };
  check("Linear", [&](const auto& in) { return lin.forward(in[0]); }, {x, lin.weight, lin.bias});
  check("LayerNorm", [&](const auto& in) { return ln.forward(in[0]); }, {x, ln.weight, ln.bias});
  check("Attention", [&](const auto& in) { return attn.forward(in[0]); }, {x, attn.qkv->weight, attn.proj->bias});
  check("Block", [&](const auto& in) { return block.forward(in[0]); }, {x, block.mlp->fc1->weight, block.norm1->weight});
  auto img = loom::randn<double>({2, 3, 8, 8}, gen).requires_grad_();
  nn::PatchEmbed<double> pe(4, 3, 5, gen);
  check("PatchEmbed", [&](const auto& in) { return pe.forward(in[0]); }, {img, pe.proj->weight});
}
