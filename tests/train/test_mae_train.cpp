// The MAE pre-training trainer (include/loom/train, examples/mae_pretrain): the command line (exit
// codes, messages naming the flag), exact resume, learning beyond the mean-of-visible baseline, the
// checkpoint round trip, non-finite losses, and the pieces (metrics log, pictures, PNG output).
// Runs use a tiny model on tiny synthetic images so that the whole file stays within seconds.
#include <catch2/catch.hpp>
#include <stb/stb_image.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "loom/train/mae_pretrain.hpp"
#include "support/check.hpp"
#include "support/temp_dir.hpp"
#include "train/trainer_cli.hpp"

namespace {

namespace fs = std::filesystem;
using loom::json::Value;
using loom::test::CliRun;
using loom::test::pretrain;
using loom::test::read_jsonl;
using loom::test::TempDir;

// A tiny model on 16x16 synthetic images (patch 4: L = 16 locations, 32 group tokens).
std::vector<std::string> tiny_run(const std::string& out, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"--data", "synthetic:train=16,clouds=0", "--image-size", "16", "--patch", "4",
                                   "--model", "32x1x2", "--decoder", "32x1x2", "--batch-size", "4",
                                   "--threads", "1", "--workers", "1", "--quiet", "--out", out,
                                   "--log-every", "1", "--recon-samples", "2"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

// Every tensor of a safetensors file as doubles, by name.
std::map<std::string, std::vector<double>> read_tensors(const std::string& path) {
  const auto file = loom::io::SafetensorsFile::open(path);
  std::map<std::string, std::vector<double>> out;
  for (const auto& name : file.names()) {
    const auto t = file.load<float>(name);
    std::vector<double> v;
    for (float x : t.to_vector()) v.push_back(x);
    out[name] = v;
  }
  return out;
}

}  // namespace

// ---- command line -----------------------------------------------------------------------------------

TEST_CASE("mae_pretrain --help documents every flag with its default", "[train][cli]") {
  const CliRun r = pretrain({"--help"});
  REQUIRE(r.code == 0);
  loom::train::MaePretrainConfig cfg;
  for (const auto& f : loom::train::config_fields(cfg)) {
    INFO(f.flag);
    REQUIRE(r.out.find(std::string("--") + f.flag) != std::string::npos);
  }
  REQUIRE(r.out.find("--batch-size VALUE") != std::string::npos);
  REQUIRE(r.out.find("[64]") != std::string::npos);     // batch size
  REQUIRE(r.out.find("[nano]") != std::string::npos);   // model
  REQUIRE(r.out.find("[0.05]") != std::string::npos);   // weight decay
}

TEST_CASE("mae_pretrain: bad flags exit with code 2 and a one-line message naming the flag", "[train][cli]") {
  TempDir dir;
  struct Case {
    std::vector<std::string> args;
    std::string flag;
  };
  const std::vector<Case> cases = {
      {{"--bogus", "1", "--out", dir.file("a")}, "--bogus"},
      {{"--batch-size", "many", "--out", dir.file("a")}, "--batch-size"},
      {{"--blr", "1e-3x", "--out", dir.file("a")}, "--blr"},
      {{"--steps"}, "--steps"},
      {{"--tokens", "pixels", "--out", dir.file("a")}, "--tokens"},
      {{"--model", "100x2x3", "--out", dir.file("a")}, "--model"},
      {{"--model", "huge", "--out", dir.file("a")}, "--model"},
      {{"--decoder", "64x0x4", "--out", dir.file("a")}, "--decoder"},
      {{"--mask", "disjoint(0.75", "--out", dir.file("a")}, "--mask"},
      {{"--mask", "drop(s3,0.75)", "--out", dir.file("a")}, "--mask"},
      {{"--warmup", "-5", "--out", dir.file("a")}, "--warmup"},
      {{"--clip", "-1", "--out", dir.file("a")}, "--clip"},
      {{"--norm-pix=maybe", "--out", dir.file("a")}, "--norm-pix"},
      {{"--data", "synthetic"}, "--out"},
      {{"--data", "bigearthnet:/nowhere", "--image-size", "32", "--out", dir.file("a")}, "--image-size"},
      {{"--resume", "--out", dir.file("empty")}, "--resume"},
      {{"--device", "gpu", "--out", dir.file("a")}, "--device"},
  };
  std::vector<Case> all = cases;
  // A build without the CUDA backend (this test's) says how to get one.
  if (!loom::detail::kCudaBackend) all.push_back({{"--device", "cuda", "--out", dir.file("a")}, "LOOM_CUDA=ON"});
  for (const Case& c : all) {
    const CliRun r = pretrain(c.args);
    INFO(r.err);
    CHECK(r.code == 2);
    CHECK(r.err.find(c.flag) != std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  }
}

TEST_CASE("mae_pretrain: settings that do not fit the data exit with code 2 naming the flag", "[train][cli]") {
  TempDir dir;
  // Patch 5 does not divide 16; disjoint(0.3) shows a location twice for G = 2; batch > dataset.
  for (auto [flag, value] : std::vector<std::pair<std::string, std::string>>{
           {"--patch", "5"}, {"--mask", "disjoint(0.3)"}, {"--batch-size", "64"}}) {
    const CliRun r = pretrain(tiny_run(dir.file("x" + value), {flag, value, "--steps", "1"}));
    INFO(r.err);
    CHECK(r.code == 2);
    CHECK(r.err.find(flag) != std::string::npos);
  }
  // Data errors are not usage errors: exit 1.
  const CliRun r = pretrain({"--data", "bigearthnet:/nonexistent/dir", "--out", dir.file("ben"), "--quiet"});
  CHECK(r.code == 1);
  CHECK(r.err.find("error") != std::string::npos);
}

TEST_CASE("mae config: settings survive JSON, specs and model shapes resolve", "[train][cli]") {
  loom::train::MaePretrainConfig c;
  c.data = "packed:/x.pack";
  c.out = "o";
  c.steps = 17;
  c.blr = 0.1 + 0.2;  // not exactly representable in short decimal: must round-trip exactly
  c.norm_pix = false;
  c.model = "96x3x3";
  const Value j = loom::train::settings_to_json(c);
  const auto back = loom::train::settings_from_json(loom::json::parse(j.dump()));
  REQUIRE(loom::train::settings_to_json(back) == j);
  REQUIRE(back.blr == c.blr);
  REQUIRE_THROWS_WITH(loom::train::settings_from_json(Value::object({{"learning_rate", 1.0}})),
                      Catch::Contains("learning_rate"));

  using loom::train::dataset_spec_with_size;
  CHECK(dataset_spec_with_size("synthetic", 32) == "synthetic:size=32");
  CHECK(dataset_spec_with_size("synthetic:train=8", 32) == "synthetic:train=8,size=32");
  CHECK(dataset_spec_with_size("synthetic:train=8?on_bad=skip", 32) == "synthetic:train=8,size=32?on_bad=skip");
  CHECK(dataset_spec_with_size("synthetic?on_bad=skip", 32) == "synthetic?on_bad=skip&size=32");
  CHECK(dataset_spec_with_size("synthetic:size=48", 32) == "synthetic:size=48");
  CHECK(dataset_spec_with_size("bigearthnet:/d", 32) == "bigearthnet:/d");

  const auto e = loom::train::encoder_shape(c);
  CHECK((e.dim == 96 && e.depth == 3 && e.heads == 3));
  c.model = "small";
  CHECK(loom::train::encoder_shape(c).str() == "384x12x6");
  CHECK(loom::train::decoder_shape(c).str() == "256x4x8");
  c.tokens = "joint";
  CHECK(loom::train::mask_spec(c) == "independent(0.75)");
  c.tokens = "group";
  CHECK(loom::train::mask_spec(c) == loom::mask::kDefaultMaskSpec);
}

TEST_CASE("stochastic layers are re-seeded by a pure function of (seed, step, layer)", "[train]") {
  using loom::train::stochastic_layer_seed;
  CHECK(stochastic_layer_seed(3, 10, 0) == stochastic_layer_seed(3, 10, 0));
  std::set<uint64_t> seen;
  for (uint64_t seed : {uint64_t(0), uint64_t(1)})
    for (uint64_t step : {uint64_t(0), uint64_t(1), uint64_t(1) << 33})
      for (uint32_t layer : {0u, 1u}) seen.insert(stochastic_layer_seed(seed, step, layer));
  CHECK(seen.size() == 12);
}

TEST_CASE("parameter groups exempt group embeddings from weight decay", "[train]") {
  loom::models::MaeConfig cfg;
  cfg.encoder.img_size = 8, cfg.encoder.patch = 4, cfg.encoder.dim = 8, cfg.encoder.depth = 1, cfg.encoder.heads = 2;
  cfg.decoder_dim = 8, cfg.decoder_depth = 1, cfg.decoder_heads = 2;
  loom::Generator gen(1);
  loom::models::MaskedAutoencoder<float> model(cfg, gen);
  const auto groups = loom::optim::make_param_groups(model.named_parameters(), 0.05);
  std::map<std::string, double> decay;
  for (const auto& g : groups)
    for (const auto& [name, p] : g.params) decay[name] = g.weight_decay;
  CHECK(decay.at("group_embed") == 0.0);
  CHECK(decay.at("decoder_group_embed") == 0.0);
  CHECK(decay.at("cls_token") == 0.0);
  CHECK(decay.at("mask_token") == 0.0);
  CHECK(decay.at("blocks.0.norm1.weight") == 0.0);
  CHECK(decay.at("blocks.0.attn.qkv.bias") == 0.0);
  CHECK(decay.at("blocks.0.attn.qkv.weight") == 0.05);
  CHECK(decay.at("patch_embed.s2.proj.weight") == 0.05);
  CHECK(decay.at("decoder_pred.s1.weight") == 0.05);
}

// ---- training runs ----------------------------------------------------------------------------------

TEST_CASE("mae_pretrain writes its outputs, metrics follow the schedule", "[train][run]") {
  TempDir dir;
  const std::string out = dir.file("run");
  const CliRun r = pretrain(tiny_run(out, {"--steps", "5", "--warmup", "2", "--blr", "0.256", "--ckpt-every", "2"}));
  INFO(r.err);
  REQUIRE(r.code == 0);
  for (const char* f : {"config.json", "metrics.jsonl", "checkpoint.safetensors", "checkpoint.json",
                        "encoder.safetensors", "recon_5.png", "loss_curve.png"})
    CHECK(fs::exists(fs::path(out) / f));

  const std::vector<Value> m = read_jsonl(out + "/metrics.jsonl");
  REQUIRE(m.size() == 5);
  const double lr = 0.256 * 4 / 256;  // blr * batch / 256
  // Step s (1-based) ran with schedule(s - 1): 0, lr/2, then cosine over the 3 remaining steps.
  const double expected[5] = {0.0, lr / 2, lr, lr * 0.5 * (1 + std::cos(M_PI / 3)), lr * 0.5 * (1 + std::cos(2 * M_PI / 3))};
  for (size_t i = 0; i < m.size(); ++i) {
    INFO("record " << i);
    CHECK(m[i]["step"].as_int() == int64_t(i) + 1);
    CHECK(m[i]["epoch"].as_int() == int64_t(i) / 4);
    CHECK(m[i]["lr"].as_number() == Approx(expected[i]).margin(1e-15));
    for (const char* key : {"loss", "loss_s1", "loss_s2", "baseline", "grad_norm", "img_per_s", "mem_peak_mb"})
      CHECK(std::isfinite(m[i][key].as_number()));
    // Total loss = mean of the per-group losses (both groups have hidden tokens under the mixture).
    loom::test::require_close(std::vector<double>{m[i]["loss"].as_number()},
                              {(m[i]["loss_s1"].as_number() + m[i]["loss_s2"].as_number()) / 2}, {1e-6, 1e-6});
  }

  const Value cfg = loom::train::read_json_file(out + "/config.json");
  CHECK(cfg["settings"]["steps"].as_int() == 5);
  CHECK(cfg["settings"]["batch_size"].as_int() == 4);
  CHECK(cfg["model"]["encoder"].as_string() == "32x1x2");
  CHECK(cfg["model"]["locations"].as_int() == 16);
  CHECK(cfg["model"]["visible_tokens"].as_int() == 8);  // 25% of 32 group tokens
  CHECK(cfg["optimizer"]["warmup_steps"].as_int() == 2);
  CHECK(cfg["optimizer"]["lr"].as_number() == Approx(lr));
  CHECK(cfg["data"]["image_size"].as_int() == 16);
  CHECK(cfg["mask"]["spec"].as_string() == loom::mask::parse_strategy(loom::mask::kDefaultMaskSpec).str());

  // The encoder file holds exactly the encoder's names (what fine-tuning loads).
  const auto enc = loom::io::SafetensorsFile::open(out + "/encoder.safetensors");
  std::set<std::string> names(enc.names().begin(), enc.names().end());
  CHECK(names.count("blocks.0.attn.qkv.weight") == 1);
  CHECK(names.count("patch_embed.s1.proj.weight") == 1);
  CHECK(names.count("group_embed") == 1);
  for (const auto& n : names) {
    CHECK(n.rfind("decoder", 0) != 0);
    CHECK(n != "mask_token");
  }
  // Reconstruction picture: 2 rows of 16 px tiles upscaled to >= 100 px, header, 6 columns.
  int w = 0, h = 0, comp = 0;
  unsigned char* px = stbi_load((out + "/recon_5.png").c_str(), &w, &h, &comp, 3);
  REQUIRE(px != nullptr);
  stbi_image_free(px);
  CHECK(w == 6 * 112 + 4 * 4 + 16);
  CHECK(h == 16 + 2 * 112 + 4);
  // Without --resume, an existing run is not overwritten.
  const CliRun again = pretrain(tiny_run(out, {"--steps", "5"}));
  CHECK(again.code == 1);
  CHECK(again.err.find("--resume") != std::string::npos);
}

TEST_CASE("mae_pretrain --tokens joint: one token group over all channels, plain random masking", "[train][run]") {
  TempDir dir;
  const std::string out = dir.file("joint");
  const CliRun r = pretrain(tiny_run(out, {"--steps", "2", "--tokens", "joint"}));
  INFO(r.err);
  REQUIRE(r.code == 0);
  const auto m = read_jsonl(out + "/metrics.jsonl");
  REQUIRE(m.size() == 2);
  CHECK(m[0]["loss"].as_number() == Approx(m[0]["loss_joint"].as_number()).epsilon(1e-6));
  CHECK(!m[0].contains("loss_s1"));
  const Value cfg = loom::train::read_json_file(out + "/config.json");
  CHECK(cfg["mask"]["spec"].as_string() == "independent(0.75)");
  CHECK(cfg["model"]["tokens_per_sample"].as_int() == 16);
  CHECK(cfg["model"]["visible_tokens"].as_int() == 4);
  CHECK(fs::exists(out + "/recon_2.png"));
  // A group-token mask spec names groups the joint tokenization does not have.
  const CliRun bad = pretrain(tiny_run(dir.file("joint_bad"), {"--steps", "2", "--tokens", "joint", "--mask", "drop(s1,0.75)"}));
  CHECK(bad.code == 2);
  CHECK(bad.err.find("--mask") != std::string::npos);
}

TEST_CASE("mae_pretrain --resume continues bit-identically to an uninterrupted run", "[train][run][resume]") {
  TempDir dir;
  // Drop path > 0 so that stochastic depth (re-seeded from (seed, step)) is part of the test; the
  // stop at step 6 falls inside epoch 1 (4 batches per epoch), so the resumed run enters an epoch in
  // the middle; checkpoints every 4 steps are written along the way.
  const std::vector<std::string> common = {"--steps", "10", "--drop-path", "0.2", "--ckpt-every", "4",
                                           "--blr", "0.5", "--seed", "11"};
  auto with = [&](std::vector<std::string> a, std::vector<std::string> b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  const std::string whole = dir.file("whole"), split = dir.file("split");
  REQUIRE(pretrain(tiny_run(whole, common)).code == 0);
  const CliRun first = pretrain(tiny_run(split, with(common, {"--stop-after", "6"})));
  REQUIRE(first.code == 0);
  CHECK(loom::train::read_json_file(split + "/checkpoint.json")["step"].as_int() == 6);
  // Resuming with a training setting changed is refused, naming the flag; run control may change.
  const CliRun bad = pretrain(tiny_run(split, with(common, {"--resume", "--batch-size", "2"})));
  CHECK(bad.code == 2);
  CHECK(bad.err.find("--batch-size") != std::string::npos);
  const CliRun resumed = pretrain({"--out", split, "--resume", "--quiet", "--threads", "1", "--log-every", "1"});
  INFO(resumed.err);
  REQUIRE(resumed.code == 0);

  const auto a = read_jsonl(whole + "/metrics.jsonl"), b = read_jsonl(split + "/metrics.jsonl");
  REQUIRE(a.size() == 10);
  REQUIRE(b.size() == 10);
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("step " << i + 1);
    CHECK(b[i]["step"].as_int() == int64_t(i) + 1);
    // Exact equality: the JSON numbers are shortest round-trip representations of the doubles.
    CHECK(b[i]["loss"].as_number() == a[i]["loss"].as_number());
    CHECK(b[i]["loss_s1"].as_number() == a[i]["loss_s1"].as_number());
    CHECK(b[i]["grad_norm"].as_number() == a[i]["grad_norm"].as_number());
    CHECK(b[i]["lr"].as_number() == a[i]["lr"].as_number());
  }
  // Final weights and optimizer moments are bit-identical too.
  const auto wa = read_tensors(whole + "/checkpoint.safetensors"), wb = read_tensors(split + "/checkpoint.safetensors");
  REQUIRE(wa.size() == wb.size());
  for (const auto& [name, values] : wa) {
    INFO(name);
    REQUIRE(wb.count(name) == 1);
    CHECK(wb.at(name) == values);
  }
  CHECK(wa.count("optim.blocks.0.attn.qkv.weight.exp_avg") == 1);
  // Losses really changed over the run (the comparison above is not between constants).
  CHECK(a.front()["loss"].as_number() != a.back()["loss"].as_number());
}

TEST_CASE("30 steps of pre-training beat the mean-of-visible baseline", "[train][run]") {
  TempDir dir;
  const std::string out = dir.file("learn");
  // Four images seen every step under fresh masks: the model can learn them, the trivial predictor
  // (each hidden patch = mean of the sample's visible ones, same batch and mask) cannot.
  const CliRun r = pretrain(tiny_run(out, {"--data", "synthetic:train=4,clouds=0", "--steps", "30", "--blr", "1",
                                          "--warmup", "3", "--model", "64x1x4", "--decoder", "64x1x4",
                                          "--norm-pix=false", "--recon-samples", "0"}));
  INFO(r.err);
  REQUIRE(r.code == 0);
  const auto m = read_jsonl(out + "/metrics.jsonl");
  REQUIRE(m.size() == 30);
  // Averages over the last 5 steps.
  double loss = 0, baseline = 0, loss_s2 = 0, baseline_s2 = 0;
  for (size_t i = 25; i < 30; ++i) {
    loss += m[i]["loss"].as_number() / 5, baseline += m[i]["baseline"].as_number() / 5;
    loss_s2 += m[i]["loss_s2"].as_number() / 5, baseline_s2 += m[i]["baseline_s2"].as_number() / 5;
  }
  INFO("loss " << loss << " baseline " << baseline << " S2 " << loss_s2 << " vs " << baseline_s2 << "; first loss "
               << m[0]["loss"].as_number());
  CHECK(loss < 0.9 * baseline);
  CHECK(loss_s2 < baseline_s2);
  CHECK(loss < 0.5 * m[0]["loss"].as_number());
}

TEST_CASE("mae_pretrain runs on the real BigEarthNet-MM sample pairs", "[train][run][data]") {
  const std::string root = std::string(LOOM_SHARED_DATA_DIR) + "/bigearthnet-mm";
  if (!fs::exists(root + "/BigEarthNet-v1.0")) LOOM_SKIP("no BigEarthNet-MM sample at " + root);
  TempDir dir;
  const std::string out = dir.file("ben");
  // The six 120x120 pairs as one batch; patch 8 gives 225 locations.
  const CliRun r = pretrain({"--data", "bigearthnet:" + root, "--out", out, "--model", "32x1x2", "--decoder", "32x1x2",
                            "--batch-size", "6", "--steps", "2", "--threads", "1", "--quiet", "--log-every", "1",
                            "--recon-samples", "1"});
  INFO(r.err);
  REQUIRE(r.code == 0);
  const auto m = read_jsonl(out + "/metrics.jsonl");
  REQUIRE(m.size() == 2);
  CHECK(std::isfinite(m[1]["loss"].as_number()));
  const Value cfg = loom::train::read_json_file(out + "/config.json");
  CHECK(cfg["data"]["samples"].as_int() == 6);
  CHECK(cfg["model"]["locations"].as_int() == 225);
  CHECK(fs::exists(out + "/recon_2.png"));
}

TEST_CASE("a non-finite loss stops the run and keeps the last good checkpoint", "[train][run]") {
  TempDir dir;
  const std::string out = dir.file("diverge");
  // An absurd learning rate without clipping blows the weights up within a few steps.
  const CliRun r = pretrain(tiny_run(out, {"--steps", "40", "--blr", "1e7", "--clip", "0", "--warmup", "0",
                                          "--ckpt-every", "1", "--recon-samples", "0"}));
  INFO(r.err);
  REQUIRE(r.code == 3);
  CHECK(r.err.find("non-finite") != std::string::npos);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  const auto m = read_jsonl(out + "/metrics.jsonl");
  REQUIRE(!m.empty());
  REQUIRE(m.size() < 40);
  // The checkpoint is the one of the last finite step, and it loads.
  const Value state = loom::train::read_json_file(out + "/checkpoint.json");
  CHECK(state["step"].as_int() == m.back()["step"].as_int());
  CHECK(r.err.find("step " + std::to_string(state["step"].as_int()) + ")") != std::string::npos);
  for (const auto& [name, values] : read_tensors(out + "/checkpoint.safetensors")) {
    INFO(name);
    for (double v : values) REQUIRE(std::isfinite(v));
  }
}

// ---- checkpoints ------------------------------------------------------------------------------------

TEST_CASE("training checkpoint round trip: model, optimizer moments and step", "[train][checkpoint]") {
  TempDir dir;
  loom::train::MaePretrainConfig cfg;
  cfg.data = "synthetic:train=8,clouds=0";
  cfg.image_size = 16, cfg.patch = 4, cfg.model = "32x1x2", cfg.decoder = "32x1x2", cfg.batch_size = 4;
  cfg.threads = 1, cfg.quiet = true, cfg.steps = 3, cfg.recon_samples = 0, cfg.out = dir.file("ckpt");
  {
    loom::train::MaePretrainer trainer(cfg);
    REQUIRE(trainer.run().status == loom::train::RunStatus::finished);
  }
  loom::train::MaePretrainer a([&] {
    auto c = cfg;
    c.out = dir.file("fresh");
    return c;
  }()), b([&] {
    auto c = cfg;
    c.resume = true;
    return c;
  }());
  CHECK(a.step() == 0);
  CHECK(b.step() == 3);
  CHECK(b.optimizer().steps() == 3);
  // b's tensors are the saved ones; a's the fresh initialization (same seed): they differ.
  const auto saved = read_tensors(cfg.out + "/checkpoint.safetensors");
  int differing = 0;
  for (const auto& [name, t] : b.model().state_dict()) {
    INFO(name);
    std::vector<double> v;
    for (float x : t.to_vector()) v.push_back(x);
    CHECK(saved.at(name) == v);
    std::vector<double> fresh;
    for (float x : a.model().find(name).to_vector()) fresh.push_back(x);
    differing += fresh != v;
  }
  CHECK(differing > 10);
  for (const auto& [name, t] : b.optimizer().named_state()) {
    INFO(name);
    std::vector<double> v;
    for (float x : t.to_vector()) v.push_back(x);
    CHECK(saved.at("optim." + name) == v);
  }

  // Save from b into another directory and load into a: identical.
  const std::string other = dir.file("other");
  fs::create_directories(other);
  loom::train::save_checkpoint(other, b.model(), b.optimizer(), Value::object({{"step", 3}, {"note", "x"}}));
  const Value state = loom::train::load_checkpoint(other, a.model(), a.optimizer());
  CHECK(state["note"].as_string() == "x");
  CHECK(a.optimizer().steps() == 3);
  for (const auto& [name, t] : a.model().state_dict()) CHECK(t.to_vector() == b.model().find(name).to_vector());

  // A JSON whose step disagrees with the weights (an interrupted save) is refused, untouched model.
  Value bad = loom::train::read_json_file(other + "/checkpoint.json");
  bad.set("step", 4);
  loom::train::write_json_file(other + "/checkpoint.json", bad);
  const auto before = a.model().find("blocks.0.attn.qkv.weight").to_vector();
  REQUIRE_THROWS_WITH(loom::train::load_checkpoint(other, a.model(), a.optimizer()), Catch::Contains("step 3") &&
                                                                                       Catch::Contains("step 4"));
  CHECK(a.model().find("blocks.0.attn.qkv.weight").to_vector() == before);
  REQUIRE_THROWS_AS(loom::train::load_checkpoint(dir.file("missing"), a.model(), a.optimizer()), loom::Error);
}

// ---- pieces -----------------------------------------------------------------------------------------

TEST_CASE("MetricsLog appends lines and drops records after the resumed step", "[train]") {
  TempDir dir;
  const std::string path = dir.file("m.jsonl");
  {
    loom::train::MetricsLog log(path);
    for (int s = 1; s <= 5; ++s) log.append(Value::object({{"step", s}, {"loss", 1.0 / s}}));
    REQUIRE_THROWS_AS(log.append(Value::object({{"loss", 1.0}})), loom::Error);
    REQUIRE_THROWS_WITH(log.append(Value::object({{"step", 6}, {"loss", std::nan("")}})), Catch::Contains("loss"));
  }
  std::ofstream(path, std::ios::app) << "{\"step\":6,\"lo";  // an interrupted write
  {
    loom::train::MetricsLog log(path, 3);
    REQUIRE(log.records().size() == 3);
    log.append(Value::object({{"step", 4}, {"other", 2}}));
    const auto loss = log.series("loss");
    REQUIRE(loss.size() == 4);
    CHECK(loss[2] == 1.0 / 3);
    CHECK(std::isnan(loss[3]));
  }
  const auto lines = read_jsonl(path);
  REQUIRE(lines.size() == 4);
  CHECK(lines[3]["other"].as_int() == 2);
}

TEST_CASE("RgbImage draws, writes text and encodes PNG that decodes back", "[train][image]") {
  loom::io::RgbImage img(40, 20, {10, 20, 30});
  img.fill_rect(2, 3, 4, 5, {200, 0, 0});
  img.line(0, 19, 39, 19, {0, 255, 0});
  img.set(-1, 5, {1, 1, 1});  // clipped, no effect
  const int w = img.text(10, 2, "A1", {255, 255, 255});
  CHECK(w == 12);
  CHECK(loom::io::RgbImage::text_width("A1") == 11);
  CHECK(img.get(2, 3) == loom::io::Rgb{200, 0, 0});
  CHECK(img.get(5, 7) == loom::io::Rgb{200, 0, 0});
  CHECK(img.get(6, 7) == loom::io::Rgb{10, 20, 30});
  CHECK(img.get(39, 19) == loom::io::Rgb{0, 255, 0});
  // 'A': top row 01110 -> pixels 11..13 of row 2 set, 10 not; '1' starts at x = 16.
  CHECK(img.get(10, 2) == loom::io::Rgb{10, 20, 30});
  CHECK(img.get(11, 2) == loom::io::Rgb{255, 255, 255});
  CHECK(img.get(18, 2) == loom::io::Rgb{255, 255, 255});
  REQUIRE_THROWS_AS(img.get(40, 0), loom::Error);
  REQUIRE_THROWS_AS(loom::io::RgbImage(0, 5), loom::Error);

  const std::vector<uint8_t> png = loom::io::encode_png(img);
  int pw = 0, ph = 0, comp = 0;
  unsigned char* px = stbi_load_from_memory(png.data(), int(png.size()), &pw, &ph, &comp, 3);
  REQUIRE(px != nullptr);
  REQUIRE((pw == 40 && ph == 20));
  CHECK(std::equal(px, px + 40 * 20 * 3, img.pixels().begin()));
  stbi_image_free(px);

  TempDir dir;
  loom::io::write_png(dir.file("x.png"), img);
  CHECK(fs::file_size(dir.file("x.png")) == png.size());
  REQUIRE_THROWS_AS(loom::io::write_png(dir.file("no/such/dir/x.png"), img), loom::Error);
}

TEST_CASE("loss curve: axes, one colour per series, gaps at NaN", "[train][image]") {
  const std::vector<double> x = {10, 20, 30, 40};
  const double nan = std::nan("");
  const loom::io::Rgb red{220, 0, 0}, blue{0, 0, 220};
  const auto img = loom::train::draw_loss_curve(
      x, {{"loss", {1.0, 0.6, 0.4, 0.3}, red, false, 2}, {"other", {nan, 0.9, nan, nan}, blue, false, 2}}, "T", 400, 300);
  CHECK((img.width() == 400 && img.height() == 300));
  int reds = 0, blues = 0;
  for (int y = 0; y < img.height(); ++y)
    for (int xx = 0; xx < img.width(); ++xx) {
      reds += img.get(xx, y) == red;
      blues += img.get(xx, y) == blue;
    }
  CHECK(reds > 300);       // a long polyline
  CHECK(blues > 0);        // the legend sample only: a single point has no segment
  CHECK(blues < 60);
  // The y axis is a black column at x = 70 from top to bottom of the plot.
  CHECK(img.get(70, 100) == loom::io::colors::kBlack);
  REQUIRE_THROWS_WITH(loom::train::draw_loss_curve(x, {{"bad", {1.0}, red}}, "T"), Catch::Contains("bad"));
}

TEST_CASE("reconstruction grid greys hidden patches and pastes visible ones back", "[train][image]") {
  const int64_t n = 1, H = 8, p = 4, L = 4;
  loom::train::ReconInputs in;
  in.s1 = loom::Tensor<float>::zeros({n, 2, H, H});
  in.s2 = loom::Tensor<float>::zeros({n, 12, H, H});
  in.patch = p;
  in.norm_pix = false;
  // Predictions far from the truth (+3 std) so that reconstructed pixels are recognisable.
  in.pred = {loom::Tensor<float>::full({n, L, p * p * 2}, 3.0f), loom::Tensor<float>::full({n, L, p * p * 12}, 3.0f)};
  // S1: location 0 hidden; S2: locations 1..3 hidden.
  in.mask = loom::Tensor<float>::from_vector({n, 2 * L}, std::vector<float>{1, 0, 0, 0, 0, 1, 1, 1});
  const auto img = loom::train::draw_reconstruction_grid(in);
  const int scale = 13, tile = int(H) * scale, header = 16;
  auto at = [&](int column, int px, int py) {
    const int x0 = column * (tile + 4) + (column >= 3 ? 12 : 0);
    return img.get(x0 + px * scale + 1, header + py * scale + 1);
  };
  // S2 (columns 0-2): pixel (0,0) is in location 0 (visible), pixel (7,7) in location 3 (hidden).
  CHECK(at(1, 0, 0) == at(0, 0, 0));
  CHECK(at(1, 7, 7) == loom::io::colors::kGrey);
  CHECK(at(2, 0, 0) == at(0, 0, 0));       // visible: pasted back
  CHECK(!(at(2, 7, 7) == at(0, 7, 7)));     // hidden: the (different) prediction
  // S1 (columns 3-5): location 0 hidden.
  CHECK(at(4, 0, 0) == loom::io::colors::kGrey);
  CHECK(at(4, 7, 7) == at(3, 7, 7));
  CHECK(!(at(5, 0, 0) == at(3, 0, 0)));
  CHECK(at(5, 7, 7) == at(3, 7, 7));
  in.mask = loom::Tensor<float>::zeros({n, 3});
  REQUIRE_THROWS_WITH(loom::train::draw_reconstruction_grid(in), Catch::Contains("mask"));
}
