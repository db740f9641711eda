#pragma once
// MAE pre-training of the multi-modal masked autoencoder (DESIGN §1): the loop behind
// examples/mae_pretrain (docs/trainers.md), usable from any program.
//
//   loom::train::MaePretrainConfig cfg;
//   cfg.data = "synthetic:size=64";  cfg.out = "runs/nano";  cfg.steps = 300;
//   loom::train::MaePretrainer trainer(cfg);
//   loom::train::RunResult r = trainer.run();
//
// or, with the trainer's command line: return loom::train::mae_pretrain_main(argc, argv);
//
// Each step: batch (epoch, position) of the loader (order from (seed, epoch)), mask plan from
// (seed, step), stochastic layers re-seeded from (seed, step), forward, per-group masked loss,
// backward, global-norm clipping, AdamW with lr = warm-up + cosine(step). A run stopped after any
// step and resumed from its checkpoint therefore computes bit-identical losses to a run that never
// stopped (same thread count): nothing depends on how many steps a process has done.
//
// Data-parallel (docs/distributed.md): given a Communicator of N > 1 ranks (mpirun), each rank
// reads its share of every global batch of N x --batch-size samples, parameters are broadcast from
// rank 0, gradients averaged in buckets during backward (dist::DataParallel), the loss weighted so
// that the averaged gradient is exactly that of the global batch's loss, metrics reduced; only
// rank 0 writes files. The lr scales with the global batch.
//
// --device cuda (a build linked with loom::kernels): the model, optimizer, mask plans and every
// step run on the GPU (BasicMaePretrainer<CUDA>); batches are uploaded from the loader, checkpoints
// and pictures go through host copies, so a run may resume on the other device.
//
// Output in --out: config.json, metrics.jsonl, checkpoint.safetensors + checkpoint.json,
// encoder.safetensors, recon_<step>.png, loss_curve.png. A non-finite loss, gradient norm or
// parameter stops the run (RunStatus::non_finite) without writing anything more: the last good
// checkpoint stays as it was.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "loom/core/allocator.hpp"
#include "loom/core/parallel.hpp"
#include "loom/core/random.hpp"
#include "loom/data/dataset.hpp"
#include "loom/data/loader.hpp"
#include "loom/dist/communicator.hpp"
#include "loom/dist/data_parallel.hpp"
#include "loom/io/cli.hpp"
#include "loom/io/image.hpp"
#include "loom/io/progress.hpp"
#include "loom/io/safetensors.hpp"
#include "loom/mask/mask.hpp"
#include "loom/models/mae.hpp"
#include "loom/nn/dropout.hpp"
#include "loom/optim/adamw.hpp"
#include "loom/optim/clip.hpp"
#include "loom/optim/param_groups.hpp"
#include "loom/optim/schedule.hpp"
#include "loom/train/checkpoint.hpp"
#include "loom/train/loss_curve.hpp"
#include "loom/train/mae_config.hpp"
#include "loom/train/metrics_log.hpp"
#include "loom/train/program.hpp"
#include "loom/train/recon_grid.hpp"

namespace loom::train {

enum class RunStatus { finished, stopped, non_finite };

struct RunResult {
  RunStatus status = RunStatus::finished;
  int64_t steps_done = 0;   // completed optimizer steps (global count)
  double last_loss = 0.0;   // loss of the last completed step
  std::string message;      // for non_finite: what happened
};

// Whether a dataset spec names synthetic data ("synthetic", "synthetic:...", "synthetic?...").
inline bool is_synthetic_spec(const std::string& spec) {
  return spec == "synthetic" || spec.rfind("synthetic:", 0) == 0 || spec.rfind("synthetic?", 0) == 0;
}

// The synthetic spec with --image-size filled in ("synthetic" -> "synthetic:size=64"), other
// specs unchanged.
inline std::string dataset_spec_with_size(const std::string& spec, int64_t size) {
  if (!is_synthetic_spec(spec) || spec.find("size=") != std::string::npos) return spec;
  const std::string item = "size=" + std::to_string(size);
  if (spec == "synthetic") return "synthetic:" + item;
  if (spec.rfind("synthetic?", 0) == 0) return spec + "&" + item;
  const size_t query = spec.find('?');
  const std::string path = spec.substr(10, query == std::string::npos ? std::string::npos : query - 10);
  const std::string rest = query == std::string::npos ? "" : spec.substr(query);
  return "synthetic:" + path + (path.empty() ? "" : ",") + item + rest;
}

// A 64-bit seed for stochastic layer `index` at `step`: a pure function of (seed, step, index).
inline uint64_t stochastic_layer_seed(uint64_t seed, uint64_t step, uint32_t index) {
  constexpr uint32_t kPurpose = 0xD209u;  // stochastic depth / dropout
  const philox::Counter c{{uint32_t(step), uint32_t(step >> 32), index, kPurpose}};
  const philox::Counter r = philox::philox4x32_10(c, philox::key_for_seed(seed));
  return (uint64_t(r.x[1]) << 32) | r.x[0];
}

template <class Dev>
class BasicMaePretrainer {
 public:
  using Model = models::MaskedAutoencoder<float, Dev>;
  using FloatTensor = Tensor<float, Dev>;
  static constexpr bool kOnDevice = FloatTensor::kOnDevice;

  // Opens the data and builds model, optimizer and schedule; with cfg.resume, restores the
  // checkpoint in cfg.out. Throws io::UsageError (naming the flag) for settings that do not fit the
  // data, loom::Error for everything else.
  // With a communicator of several ranks, every rank constructs its trainer with the same settings.
  explicit BasicMaePretrainer(MaePretrainConfig cfg, std::ostream& log = std::cout, dist::Communicator* comm = nullptr)
      : cfg_(std::move(cfg)), log_(log), comm_(comm ? comm : &single_process_) {
    validate_settings(cfg_);
    check_trainer_device<Dev>("mae_pretrain", cfg_.device, "run_mae_pretrain", world());
    if (cfg_.threads > 0) set_num_threads(int(cfg_.threads));
    std::filesystem::create_directories(cfg_.out);
    open_data();
    build_model();
    if (cfg_.resume) restore();
    else LOOM_CHECK(!checkpoint_exists(cfg_.out), "mae_pretrain: ", cfg_.out,
                    " already holds a run (checkpoint.json); continue it with --resume or choose another --out");
    if constexpr (!kOnDevice) {
      if (world() > 1) {
        data_parallel_ = std::make_unique<dist::DataParallel<float>>(
            *comm_, model_->parameters(), dist::DataParallelOptions{int64_t(cfg_.bucket_mb * double(1 << 20)), true});
        // Every rank starts from rank 0's state (weights and, on resume, the optimizer's moments).
        data_parallel_->broadcast_parameters();
        for (const Tensor<float>& m : optimizer_moments_) dist::broadcast(*comm_, m.is_contiguous() ? m : m.contiguous());
      }
    }
  }

  // Trains from the current step to the end (or --stop-after). Never throws for a non-finite loss:
  // that is reported in the result.
  RunResult run() {
    const int64_t stop = cfg_.stop_after > 0 ? std::min(cfg_.stop_after, total_steps_) : total_steps_;
    // Only rank 0 writes files; the others keep no log.
    std::optional<MetricsLog> metrics;
    if (is_root()) {
      write_json_file(path("config.json"), config_json());
      if (cfg_.resume) metrics.emplace(path("metrics.jsonl"), step_);
      else metrics.emplace(path("metrics.jsonl"));
    }
    RunResult result;
    result.steps_done = step_;
    if (step_ >= stop) {
      say("mae_pretrain: nothing to do: ", step_, " of ", total_steps_, " steps are done");
      return result;
    }
    say("mae_pretrain: ", model_->parameter_count(), " parameters, ", dataset_->size(), " samples (", batches_per_epoch_,
        " batches of ", global_batch(), " per epoch), steps ", step_ + 1, "..", stop, " of ", total_steps_,
        ", lr ", lr_, ", ", kOnDevice ? "on the GPU" : std::to_string(num_threads()) + " threads");
    if (world() > 1)
      say("mae_pretrain: data-parallel over ", comm_->name(), ": ", cfg_.batch_size, " samples per process, ",
          data_parallel_->buckets().size(), " gradient buckets of at most ", cfg_.bucket_mb, " MiB");
    const int64_t first_step = step_;
    io::Progress progress("mae_pretrain", stop - first_step, cfg_.log_every);
    int64_t last_saved = step_, window_samples = 0;
    auto window_start = std::chrono::steady_clock::now();
    const auto run_start = window_start;
    const std::vector<FloatTensor> params = model_->parameters();

    while (step_ < stop) {
      const int64_t epoch = step_ / batches_per_epoch_, position = step_ % batches_per_epoch_;
      const data::Batch batch = next_batch(epoch, position);
      const mask::BasicMaskPlan<Dev> plan =
          mask::make_mask_plan_on<Dev>(strategy_, batch.size(), G_, L_, seed(), uint64_t(step_), first_sample(position));
      reseed_stochastic_layers(uint64_t(step_));
      const double lr = schedule_(step_);

      optimizer_->zero_grad();
      const models::MaeOutput<float, Dev> out =
          model_->forward({batch.s1.template to_device<Dev>(), batch.s2.template to_device<Dev>()}, plan);
      // The global batch's loss (the same value on every rank).
      const GlobalLoss global = reduce_loss(out.loss, batch.size());
      const double loss = global.total;
      if (!std::isfinite(loss)) return fail(result, "loss is " + std::to_string(loss));
      backward(out, plan, global);
      const double grad_norm = optim::clip_grad_norm(params, cfg_.clip);
      if (!std::isfinite(grad_norm)) return fail(result, "gradient norm is " + std::to_string(grad_norm));
      optimizer_->step(lr);
      int64_t bad[2] = {!all_finite(params), !all_finite(optimizer_moments_)};
      dist::all_reduce_max(*comm_, bad, 2);  // every rank stops together
      if (bad[0]) return fail(result, "the parameters became non-finite in the update");
      if (bad[1]) return fail(result, "the optimizer's moments became non-finite");
      ++step_;
      window_samples += global.samples;
      result.steps_done = step_;
      result.last_loss = loss;

      // Step 1 is always logged: the untrained loss is the reference for how far training got.
      if (step_ % cfg_.log_every == 0 || step_ == stop || step_ == 1) {
        const auto now = std::chrono::steady_clock::now();
        const double window_s = std::chrono::duration<double>(now - window_start).count();
        const double img_per_s = window_s > 0 ? double(window_samples) / window_s : 0.0;
        json::Value record = json::Value::object({{"step", step_}, {"epoch", epoch}, {"loss", loss}});
        for (int g = 0; g < G_; ++g) record.set("loss_" + group_names_[size_t(g)], global.per_group[size_t(g)]);
        // The trivial predictor on the same batch and mask: each hidden patch = mean of the visible ones.
        const GlobalLoss baseline =
            reduce_loss(mask::mean_visible_baseline(out.target, plan.mask, cfg_.norm_pix), batch.size());
        record.set("baseline", baseline.total);
        for (int g = 0; g < G_; ++g) record.set("baseline_" + group_names_[size_t(g)], baseline.per_group[size_t(g)]);
        record.set("lr", lr);
        record.set("grad_norm", grad_norm);
        record.set("img_per_s", img_per_s);
        record.set("mem_peak_mb", double(memory_stats<Dev>().peak_bytes) / (1 << 20));
        if (data_parallel_) {  // this step's gradient all-reduce: time left to wait after backward
          record.set("sync_wait_ms", data_parallel_->last_sync().wait_s * 1e3);
          record.set("sync_buckets_in_backward", data_parallel_->last_sync().started_during_backward);
        }
        record.set("time_s", std::chrono::duration<double>(now - run_start).count());
        if (metrics) metrics->append(std::move(record));
        window_samples = 0;
        window_start = now;
        if (!cfg_.quiet && is_root()) {
          char status[160];
          std::snprintf(status, sizeof status, "step %lld/%lld loss %.4f img/s %.1f", (long long)step_,
                        (long long)total_steps_, loss, img_per_s);
          progress.update(step_ - first_step, status);
        }
      }
      if (cfg_.ckpt_every > 0 && step_ % cfg_.ckpt_every == 0 && step_ < stop) {
        save();
        if (metrics) draw_loss_curve_file(*metrics);
        last_saved = step_;
      }
      if (cfg_.image_every > 0 && step_ % cfg_.image_every == 0 && step_ < stop) write_reconstruction();
    }
    if (last_saved != step_) save();
    if (metrics) draw_loss_curve_file(*metrics);
    write_reconstruction();
    result.status = step_ >= total_steps_ ? RunStatus::finished : RunStatus::stopped;
    say("mae_pretrain: ", result.status == RunStatus::finished ? "finished" : "stopped", " at step ", step_, " of ",
        total_steps_, ", loss ", result.last_loss, "; outputs in ", cfg_.out);
    return result;
  }

  // ---- for tests and tools ----------------------------------------------------------------------
  const MaePretrainConfig& config() const { return cfg_; }
  Model& model() { return *model_; }
  optim::AdamW<float, Dev>& optimizer() { return *optimizer_; }
  int64_t step() const { return step_; }
  int64_t total_steps() const { return total_steps_; }
  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  double lr() const { return lr_; }
  const mask::Strategy& strategy() const { return strategy_; }
  int world() const { return comm_->size(); }
  bool is_root() const { return comm_->rank() == 0; }
  int64_t global_batch() const { return cfg_.batch_size * world(); }
  // Saves a checkpoint of the current state (what run() does every --ckpt-every steps); only rank 0
  // writes (all ranks hold the same state).
  void save() {
    if (!is_root()) return;
    save_checkpoint(cfg_.out, *model_, *optimizer_, checkpoint_state());
    io::save_safetensors(path("encoder.safetensors"), host_refs(model_->encoder_state()),
                         {{"step", std::to_string(step_)}, {"format", "loom.multimodal_encoder.v1"}});
  }
  // Everything that run() writes to config.json.
  json::Value config_json() const {
    const models::EncoderConfig& e = model_cfg_.encoder;
    json::Value groups = json::Value::array();
    for (int g = 0; g < G_; ++g)
      groups.push_back(json::Value::object({{"name", group_names_[size_t(g)]}, {"channels", e.group_channels(g)}}));
    return json::Value::object({
        {"settings", settings_to_json(cfg_)},
        {"data", json::Value::object({{"spec", spec_},
                                      {"samples", dataset_->size()},
                                      {"image_size", e.img_size},
                                      {"s2_bands", string_array(s2_bands_)},
                                      {"batches_per_epoch", batches_per_epoch_},
                                      {"normalization", "BigEarthNet per-band mean/std"}})},
        {"model", json::Value::object({{"encoder", encoder_.str()},
                                       {"decoder", decoder_.str()},
                                       {"patch", e.patch},
                                       {"tokens", cfg_.tokens},
                                       {"groups", std::move(groups)},
                                       {"locations", L_},
                                       {"tokens_per_sample", int64_t(G_) * L_},
                                       {"visible_tokens", mask::visible_count(strategy_, G_, L_)},
                                       {"parameters", model_->parameter_count()},
                                       {"norm_pix", cfg_.norm_pix},
                                       {"drop_path", e.drop_path}})},
        {"mask", json::Value::object({{"spec", strategy_.str(group_names_)}})},
        {"optimizer", json::Value::object({{"name", "AdamW"},
                                           {"betas", json::Value::array({0.9, 0.95})},
                                           {"eps", 1e-8},
                                           {"lr", lr_},
                                           {"min_lr", cfg_.min_lr},
                                           {"weight_decay", cfg_.weight_decay},
                                           {"no_decay", "biases, norms, 1-d, tokens, position and group embeddings"},
                                           {"schedule", "linear warm-up, then cosine, per step"},
                                           {"warmup_steps", warmup_steps_},
                                           {"total_steps", total_steps_},
                                           {"clip_grad_norm", cfg_.clip}})},
        {"run", json::Value::object({{"device", cfg_.device},
                                     {"threads", int64_t(num_threads())},
                                     {"workers", cfg_.workers},
                                     {"processes", int64_t(world())},
                                     {"global_batch_size", global_batch()},
                                     {"bucket_mb", cfg_.bucket_mb}})},
    });
  }

 private:
  template <class... Parts>
  void say(const Parts&... parts) {
    if (cfg_.quiet || !is_root()) return;
    (log_ << ... << parts) << std::endl;
  }
  std::string path(const std::string& name) const { return (std::filesystem::path(cfg_.out) / name).string(); }
  uint64_t seed() const { return uint64_t(cfg_.seed); }
  static json::Value string_array(const std::vector<std::string>& v) {
    json::Value a = json::Value::array();
    for (const auto& s : v) a.push_back(s);
    return a;
  }
  void open_data() {
    spec_ = dataset_spec_with_size(cfg_.data, cfg_.image_size);
    dataset_ = data::open_dataset(spec_);
    loader_ = std::make_unique<data::DataLoader>(*dataset_, data::LoaderOptions()
                                                                .batch_size(cfg_.batch_size)
                                                                .workers(int(cfg_.workers))
                                                                .seed(seed())
                                                                .shuffle(true)
                                                                .augment(cfg_.augment)
                                                                .drop_last(true)
                                                                .pinned(kOnDevice)
                                                                .shard(comm_->rank(), world()));
    batches_per_epoch_ = loader_->num_batches();
    if (batches_per_epoch_ == 0)
      throw io::UsageError("--batch-size: " + std::to_string(cfg_.batch_size) +
                           (world() > 1 ? " x " + std::to_string(world()) + " processes" : std::string()) +
                           " is larger than the dataset (" + std::to_string(dataset_->size()) + " samples)");
    s2_bands_ = dataset_->get(0).s2_bands;
    LOOM_CHECK(loader_->height() == loader_->width(), "mae_pretrain: images are ", loader_->height(), " x ",
               loader_->width(), "; the model needs square images");
    if (loader_->height() % cfg_.patch != 0)
      throw io::UsageError("--patch: " + std::to_string(cfg_.patch) + " does not divide the image size " +
                           std::to_string(loader_->height()));
    total_steps_ = cfg_.steps > 0 ? cfg_.steps : cfg_.epochs * batches_per_epoch_;
    warmup_steps_ = cfg_.warmup >= 0 ? cfg_.warmup : int64_t(std::llround(0.05 * double(total_steps_)));
  }

  void build_model() {
    encoder_ = encoder_shape(cfg_);
    decoder_ = decoder_shape(cfg_);
    models::EncoderConfig e;
    e.groups = {{"s1", 2}, {"s2", int64_t(s2_bands_.size())}};
    e.joint = cfg_.tokens == "joint";
    e.img_size = loader_->height();
    e.patch = cfg_.patch;
    e.dim = encoder_.dim, e.depth = encoder_.depth, e.heads = encoder_.heads;
    e.drop_path = cfg_.drop_path;
    model_cfg_.encoder = e;
    model_cfg_.decoder_dim = decoder_.dim, model_cfg_.decoder_depth = decoder_.depth, model_cfg_.decoder_heads = decoder_.heads;
    model_cfg_.norm_pix = cfg_.norm_pix;
    G_ = e.G();
    L_ = e.locations();
    for (int g = 0; g < G_; ++g) group_names_.push_back(e.group_name(g));
    try {
      strategy_ = mask::parse_strategy(mask_spec(cfg_), group_names_);
      mask::visible_count(strategy_, G_, L_);
    } catch (const Error& e2) {
      const std::string what = e2.what();
      throw io::UsageError("--mask: " + what.substr(0, what.find('\n')));
    }
    Generator init(seed());
    model_ = std::make_unique<Model>(model_cfg_, init);
    model_->train();
    optimizer_ = std::make_unique<optim::AdamW<float, Dev>>(
        optim::make_param_groups(model_->named_parameters(), cfg_.weight_decay),
        optim::AdamWOptions().betas(0.9, 0.95).with_eps(1e-8));
    for (auto& [name, t] : optimizer_->named_state()) optimizer_moments_.push_back(t);
    lr_ = cfg_.blr * double(global_batch()) / 256.0;  // the linear scaling rule, on the global batch
    schedule_ = optim::WarmupCosine{lr_, warmup_steps_, total_steps_, cfg_.min_lr};
    model_->apply([&](const std::string&, nn::Module<float, Dev>& m) {
      if (auto* d = dynamic_cast<nn::DropPath<float, Dev>*>(&m)) stochastic_.push_back(&d->generator());
      if (auto* d = dynamic_cast<nn::Dropout<float, Dev>*>(&m)) stochastic_.push_back(&d->generator());
    });
  }

  void restore() {
    const json::Value state = load_checkpoint(cfg_.out, *model_, *optimizer_);
    step_ = state["step"].as_int();
    const int64_t stored_batches = state["loader"]["batches_per_epoch"].as_int();
    LOOM_CHECK(stored_batches == batches_per_epoch_, "mae_pretrain: --resume: the checkpoint was made with ",
               stored_batches, " batches per epoch, the data now gives ", batches_per_epoch_);
  }

  json::Value checkpoint_state() const {
    return json::Value::object({
        {"step", step_},
        {"epoch", step_ / batches_per_epoch_},
        {"loader", json::Value::object({{"seed", cfg_.seed},
                                        {"epoch", step_ / batches_per_epoch_},
                                        {"position", step_ % batches_per_epoch_},
                                        {"batches_per_epoch", batches_per_epoch_},
                                        {"order", "randperm(seed, epoch)"}})},
        {"rng", json::Value::object({{"seed", cfg_.seed},
                                     {"mask", "philox(seed; step, sample, purpose)"},
                                     {"stochastic_layers", "re-seeded from (seed, step, layer)"}})},
        {"total_steps", total_steps_},
        {"world_size", int64_t(world())},
        {"global_batch_size", global_batch()},
        {"config", config_json()},
    });
  }

  // Batch `position` of `epoch`: from the prefetching loader, except for the rest of an epoch that
  // a resumed run enters in the middle (made on this thread, the same bytes).
  data::Batch next_batch(int64_t epoch, int64_t position) {
    if (position == 0) {
      loader_->start_epoch(epoch);
      loader_epoch_ = epoch;
    }
    if (loader_epoch_ == epoch) {
      std::optional<data::Batch> b = loader_->next();
      LOOM_CHECK(b.has_value(), "mae_pretrain: the loader ran out of batches at position ", position, " of epoch ", epoch);
      return std::move(*b);
    }
    return loader_->make_batch(epoch, position);
  }

  // The index in the global batch of this rank's first sample (the mask RNG's sample number, so a
  // sample gets the same mask as in a 1-process run with the global batch).
  uint32_t first_sample(int64_t position) const {
    const int64_t n = dataset_->size();
    const auto [first, last] = dist::batch_shard(n, position, cfg_.batch_size, comm_->rank(), world());
    return uint32_t(first - std::min(n, position * global_batch()));
  }

  // A masked loss over the global batch: per group Σ errors / Σ hidden tokens over all ranks, the
  // total their mean over the groups with hidden tokens (masked_loss.hpp's formula on the union).
  struct GlobalLoss {
    double total = 0;
    std::vector<double> per_group;
    std::vector<double> hidden;  // hidden tokens per group, all ranks
    int active = 0;              // groups with hidden tokens
    int64_t samples = 0;         // samples in the global batch
  };
  GlobalLoss reduce_loss(const mask::MaskedLoss<float, Dev>& local, int64_t batch_size) {
    GlobalLoss r;
    if (world() == 1) {  // exactly the single-process numbers
      r.total = double(local.total.item());
      r.per_group = local.per_group;
      for (int64_t h : local.hidden) r.hidden.push_back(double(h)), r.active += h > 0;
      r.samples = batch_size;
      return r;
    }
    // [hidden_0..G-1, error sums_0..G-1, samples], summed over ranks in one collective.
    std::vector<double> sums(size_t(2 * G_ + 1));
    for (int g = 0; g < G_; ++g) {
      sums[size_t(g)] = double(local.hidden[size_t(g)]);
      sums[size_t(G_ + g)] = local.per_group[size_t(g)] * double(local.hidden[size_t(g)]);
    }
    sums[size_t(2 * G_)] = double(batch_size);
    dist::all_reduce_sum(*comm_, sums);
    for (int g = 0; g < G_; ++g) {
      const double h = sums[size_t(g)];
      r.hidden.push_back(h);
      r.per_group.push_back(h > 0 ? sums[size_t(G_ + g)] / h : 0.0);
      r.active += h > 0;
    }
    for (int g = 0; g < G_; ++g) r.total += r.active > 0 ? r.per_group[size_t(g)] / r.active : 0.0;
    r.samples = int64_t(sums[size_t(2 * G_)]);
    return r;
  }

  // Gradients of the global batch's loss, averaged over ranks. With N ranks each rank back-propagates
  // N x its part of the global loss, Σ_g (N / active) · (its error sum of group g) / (hidden_g over
  // all ranks), so that the mean over ranks that DataParallel forms is the global gradient exactly
  // (a plain mean of per-rank losses would weight ranks with fewer hidden tokens of a group wrongly).
  void backward(const models::MaeOutput<float, Dev>& out, const mask::BasicMaskPlan<Dev>& plan, const GlobalLoss& global) {
    if (world() == 1) {
      out.loss.total.backward();
      return;
    }
    if constexpr (!kOnDevice) backward_share(out, plan, global);
  }
  void backward_share(const models::MaeOutput<float>& out, const mask::MaskPlan& plan, const GlobalLoss& global) {
    Tensor<float> share;  // scalar
    for (int g = 0; g < G_; ++g) {
      const int64_t hidden_here = out.loss.hidden[size_t(g)];
      if (hidden_here == 0) continue;
      // This rank's mean error of group g over its own hidden tokens, differentiable.
      const Tensor<float> mask_g = plan.mask.narrow(1, g * L_, L_);  // [B, L]
      const Tensor<float> mean_g =
          mask::masked_group_loss<float, CPU>({out.pred[size_t(g)]}, {out.target[size_t(g)]}, mask_g, cfg_.norm_pix).total;
      const double weight = double(world()) * double(hidden_here) / (double(global.active) * global.hidden[size_t(g)]);
      const Tensor<float> term = mul(mean_g, weight);
      share = share.defined() ? add(share, term) : term;
    }
    if (share.defined()) share.backward();
    data_parallel_->finish_gradient_sync();
  }

  static bool all_finite(const std::vector<FloatTensor>& params) {
    if constexpr (kOnDevice) {  // a device reduction per tensor, one scalar read back
      for (const auto& p : params)
        if (!loom::all_finite(p)) return false;
      return true;
    }
    for (const auto& p : params) {
      const float* d = p.data();  // parameters are contiguous (AdamW checks it)
      for (int64_t i = 0; i < p.numel(); ++i)
        if (!std::isfinite(d[i])) return false;
    }
    return true;
  }

  void reseed_stochastic_layers(uint64_t step) {
    for (size_t k = 0; k < stochastic_.size(); ++k) stochastic_[k]->manual_seed(stochastic_layer_seed(seed(), step, uint32_t(k)));
  }

  RunResult fail(RunResult& result, const std::string& what) {
    result.status = RunStatus::non_finite;
    std::ostringstream m;
    m << "non-finite training: " << what << " at step " << step_ + 1 << " (epoch " << step_ / batches_per_epoch_
      << "); stopping. ";
    if (checkpoint_exists(cfg_.out))
      m << "The last good checkpoint (step " << read_json_file(CheckpointPaths::in(cfg_.out).state)["step"].as_int()
        << ") is kept in " << cfg_.out << ". ";
    else
      m << "No checkpoint was written yet. ";
    m << "Try a lower --blr, a longer --warmup or --clip.";
    result.message = m.str();
    return result;
  }

  void draw_loss_curve_file(const MetricsLog& metrics) const {
    if (metrics.records().empty()) return;
    const std::vector<double> x = metrics.series("step");
    std::vector<CurveSeries> series = {{"loss", metrics.series("loss"), io::colors::kBlack, false, 2}};
    for (int g = 0; g < G_; ++g)
      series.push_back({"loss " + group_names_[size_t(g)], metrics.series("loss_" + group_names_[size_t(g)]),
                        io::colors::kSeries[size_t(g) % io::colors::kSeries.size()], false, 1});
    series.push_back({"mean-of-visible baseline", metrics.series("baseline"), io::colors::kGrey, true, 1});
    io::write_png(path("loss_curve.png"), draw_loss_curve(x, series, "MAE PRE-TRAINING LOSS"));
  }

  // recon_<step>.png on a fixed set of samples (the first of epoch 0's first batch) and a fixed
  // mask, so pictures of different steps are comparable.
  void write_reconstruction() {
    if (cfg_.recon_samples == 0) return;
    NoGradGuard no_grad;
    const data::Batch batch = loader_->make_batch(0, 0);
    const int64_t n = std::min<int64_t>(cfg_.recon_samples, batch.size());
    const Tensor<float> s1 = batch.s1.narrow(0, 0, n).contiguous(), s2 = batch.s2.narrow(0, 0, n).contiguous();
    constexpr uint64_t kPictureStep = 0xFFFFFFFFFFFFull;  // a step number training never reaches
    const mask::MaskPlan plan = mask::make_mask_plan(strategy_, n, G_, L_, seed(), kPictureStep);
    model_->eval();
    const models::MaeOutput<float, Dev> out =
        model_->forward({s1.template to_device<Dev>(), s2.template to_device<Dev>()}, plan.template to_device<Dev>());
    model_->train();
    ReconInputs in;
    in.s1 = s1, in.s2 = s2, in.s2_bands = s2_bands_, in.mask = plan.mask;
    for (const auto& p : out.pred) in.pred.push_back(p.template to_device<CPU>());
    in.patch = cfg_.patch, in.joint = cfg_.tokens == "joint", in.norm_pix = cfg_.norm_pix;
    io::write_png(path("recon_" + std::to_string(step_) + ".png"), draw_reconstruction_grid(in));
  }

  MaePretrainConfig cfg_;
  std::ostream& log_;
  dist::SingleProcess single_process_;
  dist::Communicator* comm_;
  std::string spec_;
  std::unique_ptr<data::Dataset> dataset_;
  std::unique_ptr<data::DataLoader> loader_;
  std::vector<std::string> s2_bands_, group_names_;
  int64_t batches_per_epoch_ = 0, total_steps_ = 0, warmup_steps_ = 0, step_ = 0, loader_epoch_ = -1;
  ModelShape encoder_, decoder_;
  models::MaeConfig model_cfg_;
  int G_ = 0;
  int64_t L_ = 0;
  mask::Strategy strategy_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<optim::AdamW<float, Dev>> optimizer_;
  optim::WarmupCosine schedule_{0, 0, 1};
  double lr_ = 0;
  std::vector<Generator*> stochastic_;
  std::vector<FloatTensor> optimizer_moments_;  // AdamW's m and v (checked for finiteness)
  std::unique_ptr<dist::DataParallel<float>> data_parallel_;  // world > 1 only
};

using MaePretrainer = BasicMaePretrainer<CPU>;

// Builds the trainer for cfg.device and runs it.
inline RunResult run_mae_pretrain(const MaePretrainConfig& cfg, std::ostream& log = std::cout,
                                  dist::Communicator* comm = nullptr) {
  return run_trainer<BasicMaePretrainer>(cfg, log, comm);
}

// ---- the command line ------------------------------------------------------------------------------

// --image-size sizes synthetic data only: a UsageError when the command line gives it with other data.
inline void check_image_size_flag(const io::Cli& cli, const std::string& data) {
  if (cli.given("image-size") && !is_synthetic_spec(data))
    throw io::UsageError("--image-size: applies to synthetic data only (--data " + data + " has its own size)");
}

// The settings of a resumed run: those stored in <out>/checkpoint.json, combined with the current
// command line field by field as ConfigField::on_resume says (mae_config.hpp): training settings
// must repeat the stored value if given (else a UsageError naming the flag), run length and
// reporting flags override the stored ones when given, per-invocation flags (threads, --stop-after,
// --quiet, ...) come from the current command line. A run resumed on a different number of
// processes (`world`) keeps its global batch: --batch-size becomes global batch / world (an error
// naming --batch-size if that does not divide).
inline MaePretrainConfig resume_settings(const MaePretrainConfig& now, const io::Cli& cli, int world = 1) {
  if (now.out.empty()) throw io::UsageError("--out: an output directory is required");
  const CheckpointPaths paths = CheckpointPaths::in(now.out);
  if (!checkpoint_exists(now.out)) throw io::UsageError("--resume: no checkpoint (checkpoint.json + .safetensors) in " + now.out);
  const json::Value state = read_json_file(paths.state);
  LOOM_CHECK(state.contains("config") && state["config"].contains("settings"), paths.state, " holds no settings");
  MaePretrainConfig stored = settings_from_json(state["config"]["settings"]);
  const int64_t stored_world = state.contains("world_size") ? state["world_size"].as_int() : 1;
  if (stored_world != world) {
    const int64_t global = stored.batch_size * stored_world;
    if (global % world != 0)
      throw io::UsageError("--batch-size: the resumed run's global batch " + std::to_string(global) + " (" +
                           std::to_string(stored_world) + " processes x " + std::to_string(stored.batch_size) +
                           ") does not split over " + std::to_string(world) + " processes");
    stored.batch_size = global / world;
  }
  MaePretrainConfig given = now;
  const std::vector<ConfigField> from = config_fields(given), to = config_fields(stored);
  for (size_t i = 0; i < from.size(); ++i) {
    const bool is_given = cli.given(from[i].flag);
    std::visit(
        [&](auto* source) {
          using V = std::remove_pointer_t<decltype(source)>;
          V* target = std::get<V*>(to[i].target);
          switch (from[i].on_resume) {
            case OnResume::per_run: *target = *source; break;
            case OnResume::keep:
              if (is_given) *target = *source;
              break;
            case OnResume::fixed:
              if (is_given && !(*target == *source))
                throw io::UsageError(std::string("--") + from[i].flag + ": " + json::Value(*source).dump() +
                                     " differs from the resumed run's " + json::Value(*target).dump() +
                                     " (only run length, reporting and threads may change on --resume)");
              break;
          }
        },
        from[i].target);
  }
  return stored;
}

// The mae_pretrain program (examples/mae_pretrain.cpp calls it). Exit codes: 0 done (or --help),
// 1 error (data, I/O, ...), 2 bad usage (a one-line message naming the flag), 3 non-finite loss.
// With a communicator of several ranks (every rank calls this with the same arguments), an error
// on any rank ends the whole job through Communicator::abort with the message (MPI_Abort: the
// launcher's contract), never a hang; only rank 0 prints progress and writes files.
inline int mae_pretrain_main(int argc, const char* const* argv, std::ostream& out = std::cout,
                             std::ostream& err = std::cerr, dist::Communicator* comm = nullptr) {
  const int world = comm ? comm->size() : 1;
  const bool root = !comm || comm->rank() == 0;
  MaePretrainConfig cfg;
  io::Cli cli("mae_pretrain --data <spec> --out <dir>",
              "Masked-autoencoder pre-training of the multi-modal (Sentinel-1 + Sentinel-2) ViT encoder.\n"
              "Writes config.json, metrics.jsonl, checkpoint.{safetensors,json}, encoder.safetensors,\n"
              "recon_<step>.png and loss_curve.png into --out. See docs/trainers.md.");
  bind_flags(cli, cfg);
  return run_program("mae_pretrain", cli, argc, argv, out, err, comm, [&] {
    if (cfg.resume) cfg = resume_settings(cfg, cli, world);
    check_image_size_flag(cli, cfg.data);
    const RunResult r = run_mae_pretrain(cfg, out, comm);
    if (r.status == RunStatus::non_finite) {  // decided on reduced values: every rank stops here
      if (root) err << "mae_pretrain: " << r.message << std::endl;
      return 3;
    }
    if (world > 1) comm->barrier();  // rank 0's last files are written before anyone reports success
    return 0;
  });
}

}  // namespace loom::train
