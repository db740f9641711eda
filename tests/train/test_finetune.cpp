// Multi-label fine-tuning (include/loom/models/classifier.hpp, include/loom/train/finetune*.hpp,
// examples/finetune_multilabel): the classifier against a PyTorch golden with timm's names and
// global-pool forward, s1s2-half token selection, label-fraction subsets, a tiny end-to-end
// fine-tune that must beat its own initial model, and the report against the metrics functions
// applied to the saved predictions.
#include <catch2/catch.hpp>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "loom/models/classifier.hpp"
#include "loom/train/finetune.hpp"
#include "loom/nn/checkpoint.hpp"
#include "loom/ops/elementwise.hpp"
#include "support/check.hpp"
#include "support/temp_dir.hpp"
#include "train/trainer_cli.hpp"

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
  // What loom saves (timm_state) has exactly timm's names and shapes, conv-shaped patch embedding included.
  const auto timm = model.timm_state();
  CHECK(timm.size() == model.checkpoint_state().size());
  for (const auto& [name, t] : timm) {
    INFO(name);
    REQUIRE(file.contains("model." + name));
    CHECK(t.shape().vec() == file.info("model." + name).shape);
  }

  loom::NoGradGuard no_grad;
  const Tensor<float> logits = model.forward({file.load<float>("input.s1"), file.load<float>("input.s2")});  // [5, 19]
  REQUIRE(logits.shape() == loom::Shape{5, 19});
  loom::test::require_close(loom::sigmoid(logits), loom::test::to_double(file.load<float>("probs")), {2e-5, 2e-4});

  SECTION("loom -> timm: what loom saves loads strictly into the PyTorch model and predicts the same") {
    if (std::system("/usr/bin/python3 -c 'import torch' > /dev/null 2>&1") != 0) LOOM_SKIP("no /usr/bin/python3 with torch");
    const std::string saved = (std::filesystem::temp_directory_path() /
                               ("loom_classifier_roundtrip_" + std::to_string(::getpid()) + ".safetensors")).string();
    io::NamedTensorRefs refs;
    for (const auto& [name, t] : model.timm_state()) refs.emplace_back(name, t);
    io::save_safetensors(saved, refs);
    const std::string cmd = "/usr/bin/python3 " + std::string(LOOM_SOURCE_DIR) +
                            "/tests/golden/make_classifier_golden.py --check " + saved + " > /dev/null";
    const int code = std::system(cmd.c_str());
    std::filesystem::remove(saved);
    CHECK(code == 0);
  }
}

// ---- s1s2-half ---------------------------------------------------------------------------------

namespace {

// A tiny group- or joint-token classifier on 16x16 images, patch 4 (a 4x4 grid).
models::ClassifierConfig tiny_config(bool joint, models::ModalitySet m) {
  models::ClassifierConfig c;
  c.encoder.groups = {{"s1", 2}, {"s2", 3}};
  c.encoder.joint = joint;
  c.encoder.img_size = 16, c.encoder.patch = 4;
  c.encoder.dim = 16, c.encoder.depth = 1, c.encoder.heads = 2;
  c.num_classes = 3;
  c.modalities = m;
  return c;
}

Tensor<float> random_images(int64_t B, int64_t C, int64_t size, uint64_t seed) {
  loom::Generator gen(seed);
  return loom::randn<float>({B, C, size, size}, gen);
}

}  // namespace

TEST_CASE("s1s2-half: each location through exactly one modality, chosen by (row + col) % 2", "[finetune]") {
  // Independent statement of the rule on a 4x4 grid: location (r, c) takes S1 (group 0) on even
  // r + c, else S2; its token among group tokens t = g·L + l.
  const std::vector<int64_t> ids = models::checkerboard_token_ids(4);
  REQUIRE(ids.size() == 16);
  for (int64_t r = 0; r < 4; ++r)
    for (int64_t c = 0; c < 4; ++c) CHECK(ids[size_t(r * 4 + c)] == ((r + c) % 2 == 0 ? 0 : 16) + r * 4 + c);

  for (bool joint : {false, true}) {
    DYNAMIC_SECTION((joint ? "joint" : "group") << " tokens") {
      models::MultiLabelClassifier<float> model(tiny_config(joint, models::ModalitySet::s1s2_half));
      model.eval();
      Tensor<float> s1 = random_images(2, 2, 16, 1).requires_grad_(), s2 = random_images(2, 3, 16, 2).requires_grad_();
      const Tensor<float> tokens = model.input_tokens({s1, s2});
      CHECK(tokens.shape() == loom::Shape{2, 16, 16});  // half of the 32 group tokens / all 16 joint tokens
      loom::sum(model.forward({s1, s2})).backward();
      // The gradient reaches a pixel iff its patch's checkerboard cell belongs to that modality.
      for (int g = 0; g < 2; ++g) {
        const Tensor<float>& x = g == 0 ? s1 : s2;
        const std::vector<float> grad = x.grad().contiguous().to_vector();
        int64_t wrong = 0, reached = 0;
        const int64_t C = x.size(1);
        for (int64_t b = 0; b < 2; ++b)
          for (int64_t ch = 0; ch < C; ++ch)
            for (int64_t y = 0; y < 16; ++y)
              for (int64_t xx = 0; xx < 16; ++xx) {
                const bool mine = ((y / 4 + xx / 4) % 2) == g;
                const float v = grad[size_t(((b * C + ch) * 16 + y) * 16 + xx)];
                if (!mine && v != 0.0f) ++wrong;
                if (mine && v != 0.0f) ++reached;
              }
        CHECK(wrong == 0);
        CHECK(reached == 2 * C * 8 * 16);  // every pixel of the 8 cells of its colour
      }
    }
  }

  SECTION("s1 and s2 alone use one modality") {
    models::MultiLabelClassifier<float> s1_only(tiny_config(false, models::ModalitySet::s1));
    const Tensor<float> s1 = random_images(1, 2, 16, 3), s2 = random_images(1, 3, 16, 4);
    const Tensor<float> tokens = s1_only.input_tokens({s1, s2});
    CHECK(tokens.shape() == loom::Shape{1, 16, 16});
    const Tensor<float> tokens_other_s2 = s1_only.input_tokens({s1, random_images(1, 3, 16, 5)});
    loom::test::require_close(tokens_other_s2, loom::test::to_double(tokens), {0, 0});
  }
  SECTION("errors name the setting") {
    auto c = tiny_config(false, models::ModalitySet::s1s2_half);
    c.encoder.groups = {{"all", 5}};
    REQUIRE_THROWS_WITH(models::MultiLabelClassifier<float>(c), Catch::Contains("s1s2-half") && Catch::Contains("two modality groups"));
    REQUIRE_THROWS_WITH(models::parse_modality_set("s3"), Catch::Contains("s3"));
    REQUIRE_THROWS_WITH(models::parse_pool("max"), Catch::Contains("max"));
  }
}

// ---- label fractions ---------------------------------------------------------------------------

TEST_CASE("label subsets: deterministic from the seed, without replacement, the requested size", "[finetune]") {
  for (int64_t n : {1, 7, 97, 1000}) {
    for (double f : {0.01, 0.1, 0.5, 1.0}) {
      INFO("n " << n << " fraction " << f);
      const std::vector<int64_t> a = loom::train::label_subset(n, f, 42), b = loom::train::label_subset(n, f, 42);
      CHECK(a == b);
      const int64_t expected = std::max<int64_t>(1, int64_t(std::llround(f * double(n))));
      REQUIRE(int64_t(a.size()) == expected);
      const std::set<int64_t> distinct(a.begin(), a.end());
      CHECK(distinct.size() == a.size());  // no replacement
      CHECK(std::is_sorted(a.begin(), a.end()));
      CHECK(a.front() >= 0);
      CHECK(a.back() < n);
    }
  }
  // Another seed draws another subset (for 100 of 1000 a collision is practically impossible);
  // over many seeds every index is drawn about equally often (no bias to the front or back).
  CHECK(loom::train::label_subset(1000, 0.1, 1) != loom::train::label_subset(1000, 0.1, 2));
  std::vector<int> hits(20, 0);
  for (uint64_t s = 0; s < 2000; ++s)
    for (int64_t i : loom::train::label_subset(20, 0.25, s)) ++hits[size_t(i)];
  for (int h : hits) CHECK(std::abs(h - 500) < 100);  // 2000 draws of 5 of 20: mean 500, sd ~19
  CHECK(loom::train::label_subset(5, 1.0, 9) == std::vector<int64_t>{0, 1, 2, 3, 4});
  REQUIRE_THROWS_WITH(loom::train::label_subset(10, 0.0, 1), Catch::Contains("fraction 0"));
  REQUIRE_THROWS_WITH(loom::train::label_subset(10, 1.5, 1), Catch::Contains("fraction 1.5"));
}

// ---- the trainer end to end --------------------------------------------------------------------

namespace {

namespace fs = std::filesystem;
using loom::json::Value;
using loom::test::CliRun;
using loom::test::finetune;
using loom::test::pretrain;
using loom::test::read_jsonl;
using loom::test::TempDir;

// Tiny synthetic data (16x16, patch 4) and model, so that a run takes a second or two.
const std::string kTinyData = "synthetic:train=96,val=48,test=40,clouds=0";
std::vector<std::string> tiny_finetune(const std::string& out, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"--data", kTinyData, "--image-size", "16", "--patch", "4", "--model", "32x1x2",
                                   "--batch-size", "16", "--threads", "1", "--workers", "1", "--quiet", "--out", out,
                                   "--log-every", "1"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

Value read_json(const std::string& path) { return loom::train::read_json_file(path); }

// predictions.csv: names and the probability rows (header checked against the class names).
struct CsvPredictions {
  std::vector<std::string> names;
  std::vector<float> probs;
};
CsvPredictions read_predictions(const std::string& path, const std::vector<std::string>& classes) {
  std::ifstream in(path);
  std::string line;
  REQUIRE(std::getline(in, line));
  std::vector<std::string> header = loom::data::detail::csv_cells(line);
  REQUIRE(header.size() == classes.size() + 1);
  CHECK(header[0] == "name");
  for (size_t k = 0; k < classes.size(); ++k) CHECK(header[k + 1] == classes[k]);
  CsvPredictions p;
  while (std::getline(in, line)) {
    const std::vector<std::string> cells = loom::data::detail::csv_cells(line);
    REQUIRE(cells.size() == classes.size() + 1);
    p.names.push_back(cells[0]);
    for (size_t k = 1; k < cells.size(); ++k) p.probs.push_back(std::stof(cells[k]));
  }
  return p;
}

}  // namespace

TEST_CASE("finetune_multilabel: fine-tuning beats the initial model, the report equals the metrics of the saved predictions",
          "[finetune][trainer]") {
  TempDir dir;
  const CliRun r = finetune(tiny_finetune(dir.path.string(), {"--epochs", "12", "--blr", "0.05", "--drop-path", "0",
                                                              "--save-predictions", "--pos-weight"}));
  INFO(r.err);
  REQUIRE(r.code == 0);
  for (const char* f : {"config.json", "label_subset.txt", "metrics.jsonl", "best.safetensors", "best.json", "last.safetensors",
                        "report.json", "report.md", "per_class_ap.png", "val_report.json", "predictions.csv"})
    CHECK(fs::exists(dir.file(f)));

  // Validation mAP: the step-0 record is the untrained model; the best must be higher. With a
  // head initialized near zero, an untrained model ranks at chance (micro AP near the positive
  // rate), and the synthetic classes are learnable within 72 steps.
  std::vector<double> val;
  for (const Value& rec : read_jsonl(dir.file("metrics.jsonl")))
    if (rec["split"].as_string() == "val") val.push_back(rec["map_micro"].as_number());
  REQUIRE(val.size() == 13);  // step 0 and each of 12 epochs
  const double best = *std::max_element(val.begin(), val.end());
  CHECK(best > val[0] + 0.05);
  CHECK(read_json(dir.file("best.json"))["val"]["map_micro"].as_number() == best);

  // report.json: the required keys, and their values equal the metrics functions applied to
  // predictions.csv with the test split's labels.
  const Value report = read_json(dir.file("report.json"));
  for (const char* k : {"map_micro", "map_macro", "map_micro_batchavg", "precision_weighted", "recall_weighted",
                        "f1_weighted", "f1_micro", "f1_macro", "per_class_ap", "split", "samples"})
    CHECK(report.contains(k));
  CHECK(report["split"].as_string() == "test");
  const auto test = loom::data::open_dataset("synthetic:train=96,val=48,test=40,clouds=0,size=16,split=test");
  const std::vector<std::string> classes = test->class_names();
  const CsvPredictions p = read_predictions(dir.file("predictions.csv"), classes);
  const size_t n = p.names.size(), c = classes.size();
  REQUIRE(int64_t(n) == test->size());
  CHECK(report["samples"].as_int() == int64_t(n));
  std::vector<float> targets;
  for (size_t i = 0; i < n; ++i) {
    CHECK(p.names[i] == test->name(int64_t(i)));
    const std::vector<float> y = test->get(int64_t(i)).labels.to_vector();
    targets.insert(targets.end(), y.begin(), y.end());
  }
  namespace m = loom::metrics;
  const m::ClassificationMetrics cm = m::classification_metrics(p.probs, targets, n, c);
  const std::vector<double> ap = m::average_precision_per_class(p.probs, targets, n, c);
  const loom::test::Tol exact{1e-12, 0};
  loom::test::require_close(std::vector<double>{report["map_micro"].as_number(), report["map_macro"].as_number(),
                                                report["map_micro_batchavg"].as_number(), report["precision_weighted"].as_number(),
                                                report["recall_weighted"].as_number(), report["f1_weighted"].as_number(),
                                                report["f1_micro"].as_number(), report["f1_macro"].as_number()},
                            {m::map_micro(p.probs, targets, n, c), m::map_macro(p.probs, targets, n, c),
                             m::map_micro_batch_averaged(p.probs, targets, n, c, 16), cm.weighted.precision,
                             cm.weighted.recall, cm.weighted.f1, cm.micro.f1, cm.macro.f1},
                            exact);
  std::vector<double> report_ap;
  for (const std::string& name : classes) report_ap.push_back(report["per_class_ap"][name].as_number());
  loom::test::require_close(report_ap, ap, exact);

  SECTION("--evaluate scores the best checkpoint on any spec with the same report") {
    TempDir eval_dir;
    const CliRun e = finetune({"--evaluate", "--checkpoint", dir.file("best.safetensors"), "--data",
                               "synthetic:train=96,val=48,test=40,clouds=0,split=test", "--out", eval_dir.path.string(),
                               "--batch-size", "16", "--threads", "1", "--quiet", "--save-predictions"});
    INFO(e.err);
    REQUIRE(e.code == 0);
    const Value again = read_json(eval_dir.file("report.json"));
    for (const char* k : {"map_micro", "map_macro", "map_micro_batchavg", "f1_weighted", "f1_micro", "f1_macro"})
      CHECK(again[k].as_number() == report[k].as_number());
    CHECK(fs::exists(eval_dir.file("per_class_ap.png")));
    CHECK(fs::exists(eval_dir.file("report.md")));
  }
  SECTION("checkpoints store the patch embeddings in timm's conv shape") {
    const auto best = io::SafetensorsFile::open(dir.file("best.safetensors"));
    CHECK(best.info("patch_embed.s1.proj.weight").shape == std::vector<int64_t>{32, 2, 4, 4});
    CHECK(best.info("patch_embed.s2.proj.weight").shape == std::vector<int64_t>{32, 12, 4, 4});
    CHECK_FALSE(best.contains("norm.weight"));  // avg pool: timm's norm is an Identity
    CHECK(best.contains("fc_norm.weight"));
  }
}

TEST_CASE("finetune_multilabel: label subset file, linear probe keeps the encoder, --init from mae_pretrain", "[finetune][trainer]") {
  TempDir pre, ft, probe;
  REQUIRE(pretrain({"--data", "synthetic:train=32,clouds=0", "--image-size", "16", "--patch", "4", "--model", "32x1x2",
                    "--decoder", "32x1x2", "--batch-size", "16", "--steps", "4", "--threads", "1", "--quiet", "--out",
                    pre.path.string(), "--recon-samples", "0"})
              .code == 0);
  const std::string encoder = pre.file("encoder.safetensors");

  SECTION("fine-tuning from the encoder, a label fraction") {
    const CliRun r = finetune(tiny_finetune(ft.path.string(), {"--init", encoder, "--steps", "3", "--label-fraction", "0.25"}));
    INFO(r.err);
    REQUIRE(r.code == 0);
    std::ifstream in(ft.file("label_subset.txt"));
    std::string line;
    std::vector<int64_t> listed;
    while (std::getline(in, line))
      if (!line.empty() && line[0] != '#') listed.push_back(std::stoll(line.substr(0, line.find(' '))));
    CHECK(listed == loom::train::label_subset(96, 0.25, 0));
  }
  SECTION("linear probe: encoder weights stay those of --init") {
    const CliRun r = finetune(tiny_finetune(probe.path.string(), {"--init", encoder, "--epochs", "2", "--linear-probe", "--blr", "0.5"}));
    INFO(r.err);
    REQUIRE(r.code == 0);
    const auto a = io::SafetensorsFile::open(encoder), b = io::SafetensorsFile::open(probe.file("last.safetensors"));
    int compared = 0;
    for (const char* name : {"blocks.0.attn.qkv.weight", "blocks.0.mlp.fc2.bias", "cls_token", "group_embed"}) {
      loom::test::require_close(b.load<float>(name), loom::test::to_double(a.load<float>(name)), {0, 0});
      ++compared;
    }
    CHECK(compared == 4);
    // ... while the head moved away from its near-zero start.
    const std::vector<float> head = b.load<float>("head.weight").to_vector();
    CHECK(*std::max_element(head.begin(), head.end()) > 1e-3f);
  }
  SECTION("a checkpoint of another architecture is refused naming the tensor") {
    const CliRun joint = finetune(tiny_finetune(ft.path.string(), {"--init", encoder, "--steps", "1", "--tokens", "joint"}));
    CHECK(joint.code == 1);
    CHECK_THAT(joint.err, Catch::Contains("patch_embed.s1.proj.weight"));
    const CliRun wide = finetune(tiny_finetune(ft.path.string(), {"--init", encoder, "--steps", "1", "--model", "64x1x2"}));
    CHECK(wide.code == 1);
    CHECK_THAT(wide.err, Catch::Contains("cls_token") || Catch::Contains("patch_embed"));
    const CliRun deeper = finetune(tiny_finetune(ft.path.string(), {"--init", encoder, "--steps", "1", "--model", "32x2x2"}));
    CHECK(deeper.code == 1);
    CHECK_THAT(deeper.err, Catch::Contains("blocks.1."));
  }
}

TEST_CASE("finetune_multilabel: bad flags exit 2 with one line naming the flag", "[finetune][trainer]") {
  TempDir dir;
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--modalities", "s3"}, "--modalities"},
      {{"--pool", "max"}, "--pool"},
      {{"--label-fraction", "0"}, "--label-fraction"},
      {{"--label-fraction", "1.5"}, "--label-fraction"},
      {{"--layer-decay", "0"}, "--layer-decay"},
      {{"--tokens", "pixel"}, "--tokens"},
      {{"--model", "12x"}, "--model"},
      {{"--batch-size", "x"}, "--batch-size"},
      {{"--patch", "5"}, "--patch"},
      {{"--checkpoint", "a.safetensors"}, "--checkpoint"},
      {{"--no-such-flag"}, "--no-such-flag"},
      {{"--device", "gpu"}, "--device"},
  };
  auto all = cases;
  // A build without the CUDA backend (this test's) says how to get one.
  if (!loom::detail::kCudaBackend) all.push_back({{"--device", "cuda"}, "LOOM_CUDA=ON"});
  for (const auto& [extra, flag] : all) {
    INFO(flag);
    const CliRun r = finetune(tiny_finetune(dir.path.string(), extra));
    CHECK(r.code == 2);
    CHECK_THAT(r.err, Catch::Contains(flag));
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  }
  const CliRun no_out = finetune({"--data", kTinyData});
  CHECK(no_out.code == 2);
  CHECK_THAT(no_out.err, Catch::Contains("--out"));
  const CliRun eval_without = finetune({"--evaluate", "--out", dir.path.string()});
  CHECK(eval_without.code == 2);
  CHECK_THAT(eval_without.err, Catch::Contains("--checkpoint"));
  const CliRun missing_init = finetune(tiny_finetune(dir.path.string(), {"--init", dir.file("nope.safetensors")}));
  CHECK(missing_init.code == 1);
  CHECK_THAT(missing_init.err, Catch::Contains("nope.safetensors"));
}

TEST_CASE("synthetic specs get their split", "[finetune]") {
  using loom::train::synthetic_spec_with;
  CHECK(synthetic_spec_with("synthetic", "split", "val") == "synthetic:split=val");
  CHECK(synthetic_spec_with("synthetic:train=5,split=train", "split", "test") == "synthetic:train=5,split=test");
  CHECK(synthetic_spec_with("synthetic?on_bad=skip", "split", "val") == "synthetic:split=val?on_bad=skip");
  CHECK(synthetic_spec_with("synthetic:train=5?split=train&on_bad=skip", "split", "val") ==
        "synthetic:train=5,split=val?on_bad=skip");
  CHECK(synthetic_spec_with("packed:/x.pack", "split", "val") == "packed:/x.pack");
}

TEST_CASE("pre-train, fine-tune and evaluate run end to end on the real BigEarthNet-MM sample pairs", "[finetune][trainer][data]") {
  const std::string root = std::string(LOOM_SHARED_DATA_DIR) + "/bigearthnet-mm";
  if (!fs::exists(root + "/BigEarthNet-v1.0")) LOOM_SKIP("no BigEarthNet-MM sample at " + root);
  TempDir pre, ft, ev;
  const std::string data = "bigearthnet:" + root;
  const CliRun p = pretrain({"--data", data, "--out", pre.path.string(), "--model", "32x1x2", "--decoder", "32x1x2",
                             "--batch-size", "6", "--steps", "1", "--threads", "1", "--quiet", "--recon-samples", "0"});
  INFO(p.err);
  REQUIRE(p.code == 0);
  const CliRun f = finetune({"--data", data, "--out", ft.path.string(), "--init", pre.file("encoder.safetensors"), "--model",
                             "32x1x2", "--batch-size", "6", "--steps", "2", "--threads", "1", "--quiet"});
  INFO(f.err);
  REQUIRE(f.code == 0);
  const Value report = read_json(ft.file("report.json"));
  CHECK(report["samples"].as_int() == 6);
  CHECK(report["per_class_ap"].as_object().size() == 19);
  const CliRun e = finetune({"--evaluate", "--checkpoint", ft.file("best.safetensors"), "--data", data, "--out",
                             ev.path.string(), "--threads", "1", "--quiet", "--save-predictions"});
  INFO(e.err);
  REQUIRE(e.code == 0);
  CHECK(read_json(ev.file("report.json"))["map_micro"].as_number() == report["map_micro"].as_number());
  CHECK(fs::exists(ev.file("predictions.csv")));
}
