#pragma once
// Multi-label fine-tuning of the multi-modal encoder (issue 7): the loop behind
// examples/finetune_multilabel (docs/trainers.md), usable from any program.
//
//   loom::train::FinetuneConfig cfg;
//   cfg.data = "synthetic";  cfg.out = "runs/ft";  cfg.init = "runs/nano/encoder.safetensors";
//   loom::train::FinetuneResult r = loom::train::MultilabelFinetuner(cfg).run();
//
// or, with the trainer's command line: return loom::train::finetune_multilabel_main(argc, argv);
//
// The model is models::MultiLabelClassifier (timm names). Each step (train_step): forward on a
// batch of the label subset, BCE with logits (optionally class-balanced positive weights),
// backward, global-norm clipping, AdamW with layer-wise lr decay and warm-up + cosine. Validation
// after every epoch (or --eval-every steps) and at step 0; the best validation micro mAP is kept as
// best.safetensors, which scores the test split at the end. --linear-probe freezes the encoder,
// computes the pooled features of every split once, and trains fc_norm + head on them.
//
// Output in --out: config.json, label_subset.txt, metrics.jsonl, best.safetensors (+ best.json),
// last.safetensors, report.json / report.md / per_class_ap.png (the test split), val_report.*
// (the best validation pass), predictions.csv (--save-predictions).
//
// --device cuda (a build linked with loom::kernels): model, optimizer, features and every step on
// the GPU (BasicMultilabelFinetuner<CUDA>); batches are uploaded, checkpoints written from host
// copies. --evaluate runs on the CPU.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "loom/core/parallel.hpp"
#include "loom/core/random.hpp"
#include "loom/data/dataset.hpp"
#include "loom/data/loader.hpp"
#include "loom/dist/communicator.hpp"
#include "loom/dist/data_parallel.hpp"
#include "loom/dist/shard.hpp"
#include "loom/io/cli.hpp"
#include "loom/io/progress.hpp"
#include "loom/io/safetensors.hpp"
#include "loom/models/classifier.hpp"
#include "loom/nn/checkpoint.hpp"
#include "loom/nn/dropout.hpp"
#include "loom/ops/loss.hpp"
#include "loom/optim/adamw.hpp"
#include "loom/optim/clip.hpp"
#include "loom/optim/param_groups.hpp"
#include "loom/optim/schedule.hpp"
#include "loom/train/checkpoint.hpp"
#include "loom/train/eval_report.hpp"
#include "loom/train/finetune_config.hpp"
#include "loom/train/label_subset.hpp"
#include "loom/train/mae_pretrain.hpp"
#include "loom/train/metrics_log.hpp"
#include "loom/train/program.hpp"

namespace loom::train {

inline constexpr const char* kClassifierFormat = "loom.multilabel_classifier.v1";

// A synthetic spec with option key=value set (replacing the key if present); other specs unchanged.
inline std::string synthetic_spec_with(const std::string& spec, const std::string& key, const std::string& value) {
  if (!is_synthetic_spec(spec)) return spec;
  std::string head = spec.substr(std::string("synthetic").size());  // ":a=1,b=2?c=3" or "?c=3" or ""
  std::string colon_part, query_part;
  const size_t q = head.find('?');
  query_part = q == std::string::npos ? "" : head.substr(q + 1);
  colon_part = head.substr(head.empty() || head[0] != ':' ? 0 : 1, q == std::string::npos ? std::string::npos : q - (head[0] == ':' ? 1 : 0));
  if (!head.empty() && head[0] == '?') colon_part.clear();
  auto drop_key = [&](const std::string& list, char sep) {
    std::string out;
    std::stringstream in(list);
    std::string item;
    while (std::getline(in, item, sep))
      if (!item.empty() && item.rfind(key + "=", 0) != 0) out += (out.empty() ? "" : std::string(1, sep)) + item;
    return out;
  };
  colon_part = drop_key(colon_part, ',');
  query_part = drop_key(query_part, '&');
  colon_part += (colon_part.empty() ? "" : ",") + key + "=" + value;
  return "synthetic:" + colon_part + (query_part.empty() ? "" : "?" + query_part);
}

// ---- classifier checkpoints ------------------------------------------------------------------------

inline json::Value classifier_config_json(const models::ClassifierConfig& c, const std::vector<std::string>& class_names) {
  json::Value groups = json::Value::array(), classes = json::Value::array();
  for (const auto& g : c.encoder.groups) groups.push_back(json::Value::object({{"name", g.name}, {"channels", g.channels}}));
  for (const auto& n : class_names) classes.push_back(n);
  return json::Value::object({{"groups", std::move(groups)},
                              {"joint", c.encoder.joint},
                              {"img_size", c.encoder.img_size},
                              {"patch", c.encoder.patch},
                              {"dim", c.encoder.dim},
                              {"depth", c.encoder.depth},
                              {"heads", c.encoder.heads},
                              {"mlp_ratio", c.encoder.mlp_ratio},
                              {"num_classes", c.num_classes},
                              {"pool", models::pool_name(c.pool)},
                              {"modalities", models::modality_set_name(c.modalities)},
                              {"class_names", std::move(classes)}});
}

inline models::ClassifierConfig classifier_config_from_json(const json::Value& v, std::vector<std::string>* class_names) {
  models::ClassifierConfig c;
  c.encoder.groups.clear();
  for (const auto& g : v["groups"].as_array()) c.encoder.groups.push_back({g["name"].as_string(), g["channels"].as_int()});
  c.encoder.joint = v["joint"].as_bool();
  c.encoder.img_size = v["img_size"].as_int();
  c.encoder.patch = v["patch"].as_int();
  c.encoder.dim = v["dim"].as_int(), c.encoder.depth = v["depth"].as_int(), c.encoder.heads = v["heads"].as_int();
  c.encoder.mlp_ratio = v["mlp_ratio"].as_number();
  c.num_classes = v["num_classes"].as_int();
  c.pool = models::parse_pool(v["pool"].as_string());
  c.modalities = models::parse_modality_set(v["modalities"].as_string());
  if (class_names) {
    class_names->clear();
    for (const auto& n : v["class_names"].as_array()) class_names->push_back(n.as_string());
  }
  return c;
}

// Loads a classifier checkpoint strictly (every tensor of checkpoint_state(), nothing else); errors
// name the tensor.
template <class Dev>
void load_classifier(models::MultiLabelClassifier<float, Dev>& model, const std::string& file) {
  load_named(model.checkpoint_state(), io::SafetensorsFile::open(file), nn::with_patch_embed_reshape(model, io::LoadOptions()));
}

// The loader of an evaluation pass: every sample once, in dataset order.
inline data::LoaderOptions evaluation_loader_options(const FinetuneConfig& cfg) {
  return data::LoaderOptions().batch_size(cfg.batch_size).workers(int(cfg.workers)).shuffle(false).drop_last(false);
}

// Appends a batch to `p`: the probabilities sigmoid(logits) and the 0/1 targets, [b, K] each.
template <class Dev, class TargetDev>
void append_predictions(Predictions& p, const Tensor<float, Dev>& logits, const Tensor<float, TargetDev>& targets) {
  const std::vector<float> probs = sigmoid(logits).contiguous().to_vector(), y = targets.contiguous().to_vector();
  p.probs.insert(p.probs.end(), probs.begin(), probs.end());
  p.targets.insert(p.targets.end(), y.begin(), y.end());
}

// Appends the model's predictions for every sample of `ds` (with targets and names), in dataset
// order. The caller chooses eval mode and turns gradients off.
template <class Dev>
void append_predictions(Predictions& p, models::MultiLabelClassifier<float, Dev>& model, const data::Dataset& ds,
                        const data::LoaderOptions& options) {
  data::DataLoader loader(ds, options);
  loader.start_epoch(0);
  while (std::optional<data::Batch> b = loader.next()) {
    append_predictions(p, model.forward({b->s1.template to_device<Dev>(), b->s2.template to_device<Dev>()}), b->labels);
    p.names.insert(p.names.end(), b->names.begin(), b->names.end());
  }
}

struct FinetuneResult {
  int64_t steps_done = 0;
  double best_val_map_micro = -1;   // -1: no validation pass
  int64_t best_step = -1;
  double initial_val_map_micro = -1;
  json::Value test_report;          // report.json's content
};

template <class Dev>
class BasicMultilabelFinetuner {
 public:
  using Model = models::MultiLabelClassifier<float, Dev>;
  using FloatTensor = Tensor<float, Dev>;
  static constexpr bool kOnDevice = FloatTensor::kOnDevice;

  // Data-parallel with a communicator of N > 1 ranks (docs/distributed.md): each rank trains on its
  // share of every global batch of N x --batch-size, gradients are averaged, only rank 0 writes.
  explicit BasicMultilabelFinetuner(FinetuneConfig cfg, std::ostream& log = std::cout, dist::Communicator* comm = nullptr)
      : cfg_(std::move(cfg)), log_(log), comm_(comm ? comm : &single_process_) {
    validate_settings(cfg_);
    check_trainer_device<Dev>("finetune_multilabel", cfg_.device, "finetune_multilabel_main", comm_->size());
    if (cfg_.evaluate) throw io::UsageError("--evaluate: use evaluate_checkpoint() (finetune_multilabel --evaluate)");
    if (cfg_.threads > 0) set_num_threads(int(cfg_.threads));
    std::filesystem::create_directories(cfg_.out);
    open_data();
    build_model();
    if (!cfg_.init.empty()) load_init();
    build_optimizer();
    if constexpr (!kOnDevice) {
      if (comm_->size() > 1) {  // every rank starts from rank 0's weights
        data_parallel_ = std::make_unique<dist::DataParallel<float>>(*comm_, trainable_);
        data_parallel_->broadcast_parameters();
      }
    }
  }

  FinetuneResult run() {
    const bool root = comm_->rank() == 0;
    const int world_size = comm_->size();
    std::optional<MetricsLog> metrics;  // rank 0 writes every file
    if (root) {
      write_json_file(path("config.json"), config_json());
      write_label_subset();
      metrics.emplace(path("metrics.jsonl"));
    }
    FinetuneResult result;
    if (cfg_.linear_probe) cache_features();
    say("finetune_multilabel: ", model_->parameter_count(true), " trainable of ", model_->parameter_count(),
        " parameters, ", train_->size(), " training samples (", train_base_->size(), " x label fraction ",
        cfg_.label_fraction, "), ", batches_per_epoch_, " batches of ", batch_size_, " per epoch, ", total_steps_,
        " steps, lr ", lr_, ", modalities ", cfg_.modalities, cfg_.init.empty() ? ", from scratch" : ", init " + cfg_.init,
        cfg_.linear_probe ? ", linear probe" : "", ", ", kOnDevice ? "on the GPU" : std::to_string(num_threads()) + " threads");

    // The untrained model's validation score: the reference a run must improve on.
    auto validate = [&](int64_t step) {
      const Predictions p = predict(Split::val);
      const json::Value r = evaluation_report(p, class_names_, "val", cfg_.batch_size);
      json::Value record = json::Value::object({{"step", step}, {"epoch", step / batches_per_epoch_}, {"split", "val"}});
      for (const char* k : {"map_micro", "map_macro", "map_micro_batchavg", "f1_micro", "f1_macro", "f1_weighted"})
        record.set(k, r[k]);
      if (metrics) metrics->append(std::move(record));
      const double m = r["map_micro"].as_number();
      if (step == 0) result.initial_val_map_micro = m;
      if (m > result.best_val_map_micro) {
        result.best_val_map_micro = m;
        result.best_step = step;
        if (root) {
          save_classifier(path("best.safetensors"), step);
          write_json_file(path("best.json"), json::Value::object({{"step", step}, {"val", r}}));
        }
        best_val_report_ = r;
      }
      return m;
    };
    validate(0);

    io::Progress progress("finetune", total_steps_, cfg_.log_every);
    const int64_t eval_every = cfg_.eval_every > 0 ? cfg_.eval_every : batches_per_epoch_;
    auto window_start = std::chrono::steady_clock::now();
    int64_t window_samples = 0;
    double last_val = result.initial_val_map_micro;
    while (step_ < total_steps_) {
      const int64_t epoch = step_ / batches_per_epoch_, position = step_ % batches_per_epoch_;
      reseed_stochastic_layers(uint64_t(step_));
      const double lr = schedule_(step_);
      StepStats s;
      if (cfg_.linear_probe) {
        if (position == 0) probe_order_ = epoch_order(train_features_.size(0), epoch);
        const auto [first, last] = dist::batch_shard(int64_t(probe_order_.size()), position, batch_size_, comm_->rank(), world_size);
        const Tensor<int64_t> ids = Tensor<int64_t>::from_vector(
            {last - first}, std::vector<int64_t>(probe_order_.begin() + first, probe_order_.begin() + last));
        const FloatTensor features = index_rows(train_features_, ids), labels = index_rows(train_labels_, ids);
        s = train_step([&] { return model_->head_logits(features); }, labels, lr);
      } else {
        const data::Batch batch = next_batch(epoch, position);
        s = train_step([&] { return model_->forward({batch.s1.template to_device<Dev>(), batch.s2.template to_device<Dev>()}); },
                       batch.labels.template to_device<Dev>(), lr);
      }
      LOOM_CHECK(std::isfinite(s.loss) && std::isfinite(s.grad_norm), "finetune_multilabel: non-finite training at step ",
                 step_ + 1, " (loss ", s.loss, ", gradient norm ", s.grad_norm, "); try a lower --blr or --clip");
      ++step_;
      window_samples += batch_size_ * world_size;
      result.steps_done = step_;
      if (step_ % cfg_.log_every == 0 || step_ == total_steps_ || step_ == 1) {
        const auto now = std::chrono::steady_clock::now();
        const double window_s = std::chrono::duration<double>(now - window_start).count();
        const double img_per_s = window_s > 0 ? double(window_samples) / window_s : 0.0;
        if (metrics) metrics->append(json::Value::object({{"step", step_},
                                            {"epoch", epoch},
                                            {"split", "train"},
                                            {"loss", s.loss},
                                            {"lr", lr},
                                            {"grad_norm", s.grad_norm},
                                            {"img_per_s", img_per_s}}));
        window_start = now;
        window_samples = 0;
        if (!cfg_.quiet && root) {
          char status[160];
          std::snprintf(status, sizeof status, "loss %.4f val mAP %.4f img/s %.1f", s.loss, last_val, img_per_s);
          progress.update(step_, status);
        }
      }
      if (step_ % eval_every == 0 || step_ == total_steps_) last_val = validate(step_);
    }
    if (root) {
      save_classifier(path("last.safetensors"), step_);
      write_report_files(cfg_.out, best_val_report_, "VALIDATION, BEST STEP " + std::to_string(result.best_step), "val_");
    }
    comm_->barrier();  // rank 0 has written best.safetensors

    // Test: the best validation checkpoint.
    load_classifier(*model_, path("best.safetensors"));
    const Predictions p = predict(Split::test);
    result.test_report = evaluation_report(p, class_names_, "test", cfg_.batch_size);
    result.test_report.set("checkpoint", "best.safetensors");
    result.test_report.set("best_step", result.best_step);
    result.test_report.set("best_val_map_micro", result.best_val_map_micro);
    result.test_report.set("settings", settings_to_json(cfg_));
    if (root) write_report_files(cfg_.out, result.test_report, "TEST");
    if (root && cfg_.save_predictions) write_predictions_csv(path("predictions.csv"), p, class_names_);
    say("finetune_multilabel: best val mAP micro ", result.best_val_map_micro, " at step ", result.best_step,
        " (initial ", result.initial_val_map_micro, "); test (", p.n, " samples): mAP micro ",
        result.test_report["map_micro"].as_number(), ", macro ", result.test_report["map_macro"].as_number(),
        ", F1 weighted ", result.test_report["f1_weighted"].as_number(), "; outputs in ", cfg_.out);
    return result;
  }

  // ---- for tests and tools ----------------------------------------------------------------------
  Model& model() { return *model_; }
  const data::Dataset& train_data() const { return *train_; }
  const std::vector<int64_t>& subset() const { return subset_; }
  int64_t total_steps() const { return total_steps_; }
  double lr() const { return lr_; }
  const FloatTensor& pos_weight() const { return pos_weight_; }
  json::Value config_json() const {
    return json::Value::object({{"settings", settings_to_json(cfg_)},
                                {"model", classifier_config_json(model_->classifier, class_names_)},
                                {"data", json::Value::object({{"train", train_spec_},
                                                              {"val", val_spec_},
                                                              {"test", test_spec_},
                                                              {"train_samples", train_base_->size()},
                                                              {"subset_samples", train_->size()}})},
                                {"optimizer", json::Value::object({{"lr", lr_},
                                                                   {"batch_size", batch_size_},
                                                                   {"total_steps", total_steps_},
                                                                   {"warmup_steps", warmup_steps_}})}});
  }

 private:
  enum class Split { val, test };
  struct StepStats {
    double loss = 0, grad_norm = 0;
  };

  // One optimizer step: forward, loss, backward, clipping, update. (A data-parallel all-reduce of
  // the gradients goes between backward and clipping.)
  StepStats train_step(const std::function<FloatTensor()>& forward, const FloatTensor& targets, double lr) {
    optimizer_->zero_grad();
    const FloatTensor logits = forward();  // [B, K]
    const FloatTensor loss = binary_cross_entropy_with_logits(logits, targets, pos_weight_);
    loss.backward();
    StepStats s;
    s.loss = double(loss.item());
    if (data_parallel_) {
      // Equal per-rank batches (drop_last): the mean of the ranks' mean losses and gradients is
      // the global batch's.
      data_parallel_->finish_gradient_sync();
      s.loss = dist::all_reduce_sum(*comm_, s.loss) / comm_->size();
    }
    s.grad_norm = optim::clip_grad_norm(trainable_, cfg_.clip);
    optimizer_->step(lr);
    return s;
  }

  template <class... Parts>
  void say(const Parts&... parts) {
    if (cfg_.quiet || comm_->rank() != 0) return;
    (log_ << ... << parts) << std::endl;
  }
  std::string path(const std::string& name) const { return (std::filesystem::path(cfg_.out) / name).string(); }
  uint64_t seed() const { return uint64_t(cfg_.seed); }

  std::vector<int64_t> epoch_order(int64_t n, int64_t epoch) const {
    Generator gen(seed(), uint64_t(epoch) << 40);
    return randperm(n, gen).to_vector();
  }
  static FloatTensor index_rows(const FloatTensor& x, const Tensor<int64_t>& ids) {
    std::vector<FloatTensor> rows;
    for (int64_t i : ids.to_vector()) rows.push_back(x.narrow(0, i, 1));
    return concat<float, Dev>(rows, 0);
  }

  void open_data() {
    train_spec_ = dataset_spec_with_size(synthetic_spec_with(cfg_.data, "split", "train"), cfg_.image_size);
    if (!is_synthetic_spec(cfg_.data)) train_spec_ = cfg_.data;
    val_spec_ = !cfg_.val_data.empty() ? cfg_.val_data
                : is_synthetic_spec(cfg_.data) ? synthetic_spec_with(train_spec_, "split", "val")
                                               : cfg_.data;
    test_spec_ = !cfg_.test_data.empty() ? cfg_.test_data
                 : is_synthetic_spec(cfg_.data) ? synthetic_spec_with(train_spec_, "split", "test")
                                                : val_spec_;
    val_spec_ = dataset_spec_with_size(val_spec_, cfg_.image_size);
    test_spec_ = dataset_spec_with_size(test_spec_, cfg_.image_size);
    if (!is_synthetic_spec(cfg_.data) && cfg_.val_data.empty())
      say("finetune_multilabel: no --val-data given: validating on the training data itself");
    train_base_ = data::open_dataset(train_spec_);
    val_ = data::open_dataset(val_spec_);
    test_ = data::open_dataset(test_spec_);
    class_names_ = train_base_->class_names();
    LOOM_CHECK(val_->class_names() == class_names_ && test_->class_names() == class_names_,
               "finetune_multilabel: the validation / test data have other classes than the training data");
    subset_ = label_subset(train_base_->size(), cfg_.label_fraction, seed());
    train_ = std::make_unique<SubsetDataset>(*train_base_, subset_);
    batch_size_ = std::min<int64_t>(cfg_.batch_size, std::max<int64_t>(1, train_->size() / comm_->size()));
    loader_ = std::make_unique<data::DataLoader>(*train_, data::LoaderOptions()
                                                              .batch_size(batch_size_)
                                                              .workers(int(cfg_.workers))
                                                              .seed(seed())
                                                              .shuffle(true)
                                                              .augment(cfg_.augment)
                                                              .drop_last(true)
                                                              .pinned(kOnDevice)
                                                              .shard(comm_->rank(), comm_->size()));
    batches_per_epoch_ = loader_->num_batches();
    LOOM_CHECK(batches_per_epoch_ > 0, "finetune_multilabel: ", train_->size(), " training samples are fewer than ",
               comm_->size(), " processes");
    const data::Sample first = train_->get(0);
    s2_bands_ = int64_t(first.s2_bands.size());
    LOOM_CHECK(loader_->height() == loader_->width(), "finetune_multilabel: images are ", loader_->height(), " x ",
               loader_->width(), "; the model needs square images");
    image_size_ = loader_->height();
    if (image_size_ % cfg_.patch != 0)
      throw io::UsageError("--patch: " + std::to_string(cfg_.patch) + " does not divide the image size " +
                           std::to_string(image_size_));
    total_steps_ = cfg_.steps > 0 ? cfg_.steps : cfg_.epochs * batches_per_epoch_;
    warmup_steps_ = cfg_.warmup >= 0 ? cfg_.warmup : int64_t(std::llround(0.05 * double(total_steps_)));
  }

  void build_model() {
    const ModelShape shape = finetune_encoder_shape(cfg_);
    models::ClassifierConfig c;
    c.encoder.groups = {{"s1", 2}, {"s2", s2_bands_}};
    c.encoder.joint = cfg_.tokens == "joint";
    c.encoder.img_size = image_size_;
    c.encoder.patch = cfg_.patch;
    c.encoder.dim = shape.dim, c.encoder.depth = shape.depth, c.encoder.heads = shape.heads;
    c.encoder.drop_path = cfg_.linear_probe ? 0.0 : cfg_.drop_path;
    c.num_classes = int64_t(class_names_.size());
    c.pool = models::parse_pool(cfg_.pool);
    c.modalities = models::parse_modality_set(cfg_.modalities);
    Generator init(seed());
    model_ = std::make_unique<Model>(c, init);
    model_->train();
    model_->apply([&](const std::string&, nn::Module<float, Dev>& m) {
      if (auto* d = dynamic_cast<nn::DropPath<float, Dev>*>(&m)) stochastic_.push_back(&d->generator());
      if (auto* d = dynamic_cast<nn::Dropout<float, Dev>*>(&m)) stochastic_.push_back(&d->generator());
    });
  }

  // Encoder weights from --init: decoder tensors and optimizer moments of a pre-training checkpoint
  // are dropped, and so is the fixed sin-cos pos_embed (a function of the grid, recomputed here).
  // The head (and fc_norm, and for avg pooling the unused final norm) may be absent; any other
  // missing or unexpected tensor, or a shape that differs, is an error naming the tensor.
  void load_init() {
    LOOM_CHECK(std::filesystem::exists(cfg_.init), "--init: no file ", cfg_.init);
    const io::SafetensorsFile file = io::SafetensorsFile::open(cfg_.init);
    const io::LoadOptions opts = nn::with_patch_embed_reshape(
        *model_, io::LoadOptions().strict(false).map_names([](const std::string& n) {
          if (n.rfind(kOptimizerPrefix, 0) == 0 || !Model::Encoder::is_encoder_name(n) || n == "pos_embed") return std::string();
          return n;
        }));
    // Shapes and dtypes are checked (naming the tensor) before anything is written.
    const auto targets = model_->state_dict();
    std::vector<std::string> unexpected;
    {
      // Dry check of names first, so that a wrong-architecture file changes nothing.
      std::set<std::string> ours;
      for (const auto& [n, t] : targets) ours.insert(n);
      for (const auto& n : file.names()) {
        const std::string target = opts.target_name(n);
        if (!target.empty() && !ours.count(target)) unexpected.push_back(n);
      }
    }
    LOOM_CHECK(unexpected.empty(), "--init: ", cfg_.init, " holds tensors this model has no place for: ",
               io::detail::join_names(unexpected), " (another --tokens, --model or modality groups?)");
    const io::LoadReport report = load_named(targets, file, opts);
    std::vector<std::string> missing;
    for (const auto& n : report.missing)
      if (n.rfind("head.", 0) != 0 && n.rfind("fc_norm.", 0) != 0 && n != "pos_embed" && !model_->is_unused_name(n))
        missing.push_back(n);
    LOOM_CHECK(missing.empty(), "--init: ", cfg_.init, " lacks encoder tensors ", io::detail::join_names(missing),
               " (another --tokens, --model or modality groups?)");
    init_loaded_ = int64_t(report.loaded.size());
  }

  void build_optimizer() {
    if (cfg_.linear_probe) {
      model_->requires_grad_(false);
      if (model_->fc_norm) model_->fc_norm->requires_grad_(true);
      model_->head->requires_grad_(true);
    }
    for (const auto& p : model_->parameters())
      if (p.requires_grad()) trainable_.push_back(p);
    optimizer_ = std::make_unique<optim::AdamW<float, Dev>>(
        optim::make_param_groups(model_->named_parameters(), cfg_.weight_decay, cfg_.layer_decay,
                                 int(model_->config.depth)),
        optim::AdamWOptions().betas(0.9, 0.999).with_eps(1e-8));
    lr_ = cfg_.blr * double(batch_size_ * comm_->size()) / 256.0;  // on the global batch
    schedule_ = optim::WarmupCosine{lr_, warmup_steps_, total_steps_, std::min(cfg_.min_lr, lr_)};
    if (cfg_.pos_weight) pos_weight_ = class_balanced_pos_weight().template to_device<Dev>();
  }

  // Per class: negatives / positives over the label subset (1 for a class without positives).
  Tensor<float> class_balanced_pos_weight() const {
    const int64_t K = int64_t(class_names_.size());
    std::vector<double> pos(size_t(K), 0.0);
    for (int64_t i = 0; i < train_->size(); ++i) {
      const std::vector<float> y = train_->get(i).labels.to_vector();
      for (int64_t k = 0; k < K; ++k) pos[size_t(k)] += y[size_t(k)] > 0.5f ? 1.0 : 0.0;
    }
    std::vector<float> w(static_cast<size_t>(K));
    const double n = double(train_->size());
    for (int64_t k = 0; k < K; ++k) w[size_t(k)] = pos[size_t(k)] > 0 ? float((n - pos[size_t(k)]) / pos[size_t(k)]) : 1.0f;
    return Tensor<float>::from_vector({K}, w);
  }

  void write_label_subset() const {
    std::string text = "# label fraction " + std::to_string(cfg_.label_fraction) + " of " +
                       std::to_string(train_base_->size()) + " training samples, seed " + std::to_string(cfg_.seed) +
                       ": " + std::to_string(subset_.size()) + " samples (index name)\n";
    for (int64_t i : subset_) text += std::to_string(i) + " " + train_base_->name(i) + "\n";
    io::AtomicFileWriter out(path("label_subset.txt"));
    out.write(text);
    out.commit();
  }

  data::Batch next_batch(int64_t epoch, int64_t position) {
    if (position == 0 || loader_epoch_ != epoch) {
      loader_->start_epoch(epoch);
      loader_epoch_ = epoch;
    }
    std::optional<data::Batch> b = loader_->next();
    LOOM_CHECK(b.has_value(), "finetune_multilabel: the loader ran out of batches at position ", position);
    return std::move(*b);
  }

  void reseed_stochastic_layers(uint64_t step) {
    for (size_t k = 0; k < stochastic_.size(); ++k) stochastic_[k]->manual_seed(stochastic_layer_seed(seed(), step, uint32_t(k)));
  }

  // Pooled features ([N, D]), labels ([N, K]) and names of a whole dataset, in dataset order.
  struct FeatureSet {
    FloatTensor features, labels;  // [N, D], [N, K]
    std::vector<std::string> names;
  };
  FeatureSet pooled_features(const data::Dataset& ds) {
    NoGradGuard no_grad;
    model_->eval();
    data::DataLoader loader(ds, evaluation_loader_options(cfg_).pinned(kOnDevice));
    loader.start_epoch(0);
    std::vector<FloatTensor> f, y;
    FeatureSet out;
    while (std::optional<data::Batch> b = loader.next()) {
      f.push_back(model_->pooled({b->s1.template to_device<Dev>(), b->s2.template to_device<Dev>()}));
      y.push_back(b->labels.template to_device<Dev>());
      out.names.insert(out.names.end(), b->names.begin(), b->names.end());
    }
    model_->train();
    out.features = concat<float, Dev>(f, 0);
    out.labels = concat<float, Dev>(y, 0);
    return out;
  }
  void cache_features() {
    FeatureSet t = pooled_features(*train_);
    train_features_ = t.features, train_labels_ = t.labels;
    val_features_ = pooled_features(*val_);
    test_features_ = pooled_features(*test_);
  }

  Predictions predict(Split split) {
    NoGradGuard no_grad;
    model_->eval();
    Predictions p;
    p.c = int64_t(class_names_.size());
    if (cfg_.linear_probe) {
      const FeatureSet& fs = split == Split::val ? val_features_ : test_features_;
      append_predictions(p, model_->head_logits(fs.features), fs.labels);
      p.names = fs.names;
    } else {
      const data::Dataset& ds = split == Split::val ? *val_ : *test_;
      append_predictions(p, *model_, ds, evaluation_loader_options(cfg_).pinned(kOnDevice));
    }
    model_->train();
    p.n = int64_t(p.names.size());
    return p;
  }

  void save_classifier(const std::string& file, int64_t step) const {
    io::save_safetensors(file, host_refs(model_->timm_state()),  // conv-shaped patch embeddings
                         {{"format", kClassifierFormat},
                          {"step", std::to_string(step)},
                          {"classifier", classifier_config_json(model_->classifier, class_names_).dump()}});
  }

  FinetuneConfig cfg_;
  std::ostream& log_;
  dist::SingleProcess single_process_;
  dist::Communicator* comm_;
  std::unique_ptr<dist::DataParallel<float>> data_parallel_;  // world > 1 only
  std::string train_spec_, val_spec_, test_spec_;
  std::unique_ptr<data::Dataset> train_base_, val_, test_;
  std::unique_ptr<SubsetDataset> train_;
  std::vector<int64_t> subset_;
  std::vector<std::string> class_names_;
  std::unique_ptr<data::DataLoader> loader_;
  int64_t s2_bands_ = 12, image_size_ = 0, batch_size_ = 0, batches_per_epoch_ = 0, total_steps_ = 0, warmup_steps_ = 0;
  int64_t step_ = 0, loader_epoch_ = -1, init_loaded_ = 0;
  std::unique_ptr<Model> model_;
  std::unique_ptr<optim::AdamW<float, Dev>> optimizer_;
  std::vector<FloatTensor> trainable_;
  optim::WarmupCosine schedule_{0, 0, 1};
  double lr_ = 0;
  FloatTensor pos_weight_;  // [K] or undefined
  std::vector<Generator*> stochastic_;
  json::Value best_val_report_;
  // linear probe
  FloatTensor train_features_, train_labels_;
  FeatureSet val_features_, test_features_;
  std::vector<int64_t> probe_order_;
};

using MultilabelFinetuner = BasicMultilabelFinetuner<CPU>;

// --evaluate: scores a fine-tuned checkpoint on cfg.data; writes report.json / report.md /
// per_class_ap.png (and predictions.csv) into cfg.out.
inline json::Value evaluate_checkpoint(const FinetuneConfig& cfg, std::ostream& log = std::cout) {
  validate_settings(cfg);
  if (cfg.threads > 0) set_num_threads(int(cfg.threads));
  LOOM_CHECK(std::filesystem::exists(cfg.checkpoint), "--checkpoint: no file ", cfg.checkpoint);
  const io::SafetensorsFile file = io::SafetensorsFile::open(cfg.checkpoint);
  const auto& meta = file.metadata();
  const auto it = meta.find("classifier");
  LOOM_CHECK(it != meta.end(), "--checkpoint: ", cfg.checkpoint,
             " is not a finetune_multilabel checkpoint (no \"classifier\" metadata)");
  std::vector<std::string> class_names;
  const models::ClassifierConfig c = classifier_config_from_json(json::parse(it->second), &class_names);
  models::MultiLabelClassifier<float, CPU> model(c);
  load_classifier(model, cfg.checkpoint);
  model.eval();
  const std::string spec = dataset_spec_with_size(cfg.data, c.encoder.img_size);
  const std::unique_ptr<data::Dataset> ds = data::open_dataset(spec);
  LOOM_CHECK(ds->class_names() == class_names, "--data: ", spec, " has other classes than the checkpoint's");
  std::filesystem::create_directories(cfg.out);
  Predictions p;
  p.c = c.num_classes;
  {
    NoGradGuard no_grad;
    append_predictions(p, model, *ds, evaluation_loader_options(cfg));
  }
  p.n = int64_t(p.names.size());
  json::Value report = evaluation_report(p, class_names, spec, cfg.batch_size);
  report.set("checkpoint", cfg.checkpoint);
  write_report_files(cfg.out, report, "EVALUATION");
  if (cfg.save_predictions) write_predictions_csv((std::filesystem::path(cfg.out) / "predictions.csv").string(), p, class_names);
  if (!cfg.quiet)
    log << "finetune_multilabel: " << p.n << " samples of " << spec << ": mAP micro " << report["map_micro"].as_number()
        << ", macro " << report["map_macro"].as_number() << ", F1 weighted " << report["f1_weighted"].as_number()
        << "; report in " << cfg.out << std::endl;
  return report;
}

// The finetune_multilabel program. Exit codes: 0 done (or --help), 1 error (data, I/O, a
// checkpoint that does not fit), 2 bad usage (a one-line message naming the flag).
// Under mpirun (comm with several ranks) an error on any rank ends the job via Communicator::abort.
inline int finetune_multilabel_main(int argc, const char* const* argv, std::ostream& out = std::cout,
                                    std::ostream& err = std::cerr, dist::Communicator* comm = nullptr) {
  const int world = comm ? comm->size() : 1;
  FinetuneConfig cfg;
  io::Cli cli("finetune_multilabel --data <spec> --out <dir> [--init <encoder.safetensors>]",
              "Multi-label fine-tuning (or linear probing) of the multi-modal ViT encoder, with validation every\n"
              "epoch, the best checkpoint by validation micro mAP, and a test report. --evaluate scores a\n"
              "fine-tuned checkpoint on any data. See docs/trainers.md.");
  bind_flags(cli, cfg);
  return run_program("finetune_multilabel", cli, argc, argv, out, err, comm, [&] {
    check_image_size_flag(cli, cfg.data);
    if (cfg.evaluate) {
      if (world > 1) throw io::UsageError("--evaluate: runs in one process (not under mpirun)");
      evaluate_checkpoint(cfg, out);
      return 0;
    }
    run_trainer<BasicMultilabelFinetuner>(cfg, out, comm);
    return 0;
  });
}

}  // namespace loom::train
