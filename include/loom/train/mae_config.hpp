#pragma once
// The settings of MAE pre-training (the mae_pretrain trainer): one struct, bound field by field to
// command-line flags (io::Cli), to config.json / checkpoint.json, and back. Model presets and the
// DIMxDEPTHxHEADS syntax are resolved here.
//
//   loom::train::MaePretrainConfig cfg;
//   loom::io::Cli cli("mae_pretrain", "...");
//   loom::train::bind_flags(cli, cfg);
//   cli.parse(argc, argv, std::cout);
//   loom::train::ModelShape enc = loom::train::encoder_shape(cfg);   // UsageError naming --model
//
// Model presets (encoder DIMxDEPTHxHEADS, default decoder):
//   nano   128x4x4    decoder 128x2x4   a CPU demo: minutes on 2 cores at 64x64, patch 8
//   tiny   192x12x3   decoder 128x4x4   ViT-Ti
//   small  384x12x6   decoder 256x4x8   ViT-S
//   base   768x12x12  decoder 512x8x16  ViT-B (the MAE paper's decoder)
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "loom/io/cli.hpp"
#include "loom/io/json.hpp"
#include "loom/mask/spec.hpp"

namespace loom::train {

struct MaePretrainConfig {
  // data
  std::string data = "synthetic";
  std::string out;
  int64_t image_size = 64;
  int64_t workers = 1;
  bool augment = false;
  // model
  std::string model = "nano";
  std::string decoder = "auto";
  int64_t patch = 8;
  std::string tokens = "group";
  std::string mask = "auto";
  bool norm_pix = true;
  double drop_path = 0.0;
  // optimization
  int64_t steps = 0;
  int64_t epochs = 10;
  int64_t batch_size = 64;
  double blr = 5e-3;
  double min_lr = 0.0;
  int64_t warmup = -1;
  double weight_decay = 0.05;
  double clip = 1.0;
  int64_t seed = 0;
  // run control
  std::string device = "cpu";
  int64_t threads = 0;
  int64_t log_every = 10;
  int64_t ckpt_every = 200;
  int64_t image_every = 0;
  int64_t recon_samples = 4;
  int64_t stop_after = 0;
  bool resume = false;
  bool quiet = false;
  // data-parallel runs (mpirun): gradient bucket size
  double bucket_mb = 25.0;
};

// What --resume does with a setting:
//   fixed    part of the training (model, data, optimizer, seed): the stored value; a different
//            value given now is an error
//   keep     run length and reporting cadence: the stored value unless given now
//   per_run  this invocation only (output dir, threads, workers, --stop-after, --quiet): the value
//            of the current command line, default or given
enum class OnResume { fixed, keep, per_run };

// One setting: its flag name, help, where it lives, and what --resume does with it.
struct ConfigField {
  const char* flag;
  const char* help;
  std::variant<std::string*, int64_t*, double*, bool*> target;
  OnResume on_resume;
};

inline std::vector<ConfigField> config_fields(MaePretrainConfig& c) {
  return {
      {"data", "dataset spec: synthetic[:key=value,...], bigearthnet:<dir>, sen12ms:<dir> or packed:<file>", &c.data, OnResume::fixed},
      {"out", "output directory (required): metrics, config, checkpoints, pictures", &c.out, OnResume::per_run},
      {"image-size", "image size in pixels of synthetic data (other datasets bring their own)", &c.image_size, OnResume::fixed},
      {"workers", "data-loading threads (0: load on the training thread)", &c.workers, OnResume::per_run},
      {"augment", "random flips / quarter turns of the training images", &c.augment, OnResume::fixed},
      {"model", "encoder: nano, tiny, small, base or DIMxDEPTHxHEADS", &c.model, OnResume::fixed},
      {"decoder", "decoder DIMxDEPTHxHEADS (auto: the preset's)", &c.decoder, OnResume::fixed},
      {"patch", "patch size in pixels", &c.patch, OnResume::fixed},
      {"tokens", "group (one token per modality group and location) or joint (one per location: SatViT-style)",
       &c.tokens, OnResume::fixed},
      {"mask", "mask strategy spec (auto: the paper's mixture for group tokens, independent(0.75) for joint)", &c.mask,
       OnResume::fixed},
      {"norm-pix", "normalize each target patch (mean 0, variance 1) before the loss", &c.norm_pix, OnResume::fixed},
      {"drop-path", "stochastic depth rate of the encoder's last block", &c.drop_path, OnResume::fixed},
      {"steps", "optimizer steps (0: --epochs passes over the data)", &c.steps, OnResume::keep},
      {"epochs", "passes over the data when --steps is 0", &c.epochs, OnResume::keep},
      {"batch-size", "samples per step and process (under mpirun the global batch is processes x batch-size)",
       &c.batch_size, OnResume::fixed},
      {"blr", "base learning rate: lr = blr * global batch / 256", &c.blr, OnResume::fixed},
      {"min-lr", "learning rate at the end of the cosine decay", &c.min_lr, OnResume::fixed},
      {"warmup", "linear warm-up steps (-1: 5% of the steps)", &c.warmup, OnResume::fixed},
      {"weight-decay", "AdamW weight decay (none on biases, norms, tokens, position and group embeddings)",
       &c.weight_decay, OnResume::fixed},
      {"clip", "global gradient-norm clipping threshold (0: off)", &c.clip, OnResume::fixed},
      {"seed", "seed of initialization, data order, masks and stochastic depth", &c.seed, OnResume::fixed},
      {"device", "cpu or cuda (the whole step on the GPU; needs a build with the CUDA backend)", &c.device,
       OnResume::per_run},
      {"threads", "compute threads (0: LOOM_NUM_THREADS or all cores)", &c.threads, OnResume::per_run},
      {"log-every", "steps between metrics.jsonl records (and progress lines when not on a terminal)", &c.log_every, OnResume::keep},
      {"ckpt-every", "steps between checkpoints (0: only at the end)", &c.ckpt_every, OnResume::keep},
      {"image-every", "steps between reconstruction pictures (0: only at the end)", &c.image_every, OnResume::keep},
      {"recon-samples", "samples (rows) in a reconstruction picture", &c.recon_samples, OnResume::keep},
      {"stop-after", "stop once this many steps are done, keeping the schedule of the full run (0: run to the end)",
       &c.stop_after, OnResume::per_run},
      {"resume", "continue the run in --out from its checkpoint (settings come from the checkpoint)", &c.resume, OnResume::per_run},
      {"quiet", "no progress output", &c.quiet, OnResume::per_run},
      {"bucket-mb", "under mpirun: MiB of gradients per all-reduce bucket (docs/distributed.md)", &c.bucket_mb,
       OnResume::per_run},
  };
}

// Binds each field to its flag: a bool to a toggle, any other type to a flag taking a value.
inline void bind_fields(io::Cli& cli, const std::vector<ConfigField>& fields) {
  for (const ConfigField& f : fields) {
    std::visit(
        [&](auto* target) {
          using V = std::remove_pointer_t<decltype(target)>;
          if constexpr (std::is_same_v<V, bool>) cli.toggle(f.flag, *target, f.help);
          else cli.flag(f.flag, *target, f.help);
        },
        f.target);
  }
}

inline void bind_flags(io::Cli& cli, MaePretrainConfig& c) { bind_fields(cli, config_fields(c)); }

// The JSON key of a flag ("batch-size" -> "batch_size").
inline std::string config_key(const std::string& flag) {
  std::string key = flag;
  for (char& ch : key)
    if (ch == '-') ch = '_';
  return key;
}

// The fields' values as a JSON object (keys: flag names with '_').
inline json::Value fields_to_json(const std::vector<ConfigField>& fields) {
  json::Value out = json::Value::object();
  for (const ConfigField& f : fields)
    std::visit([&](auto* target) { out.set(config_key(f.flag), json::Value(*target)); }, f.target);
  return out;
}

// Every setting as a JSON object (keys: flag names with '_').
inline json::Value settings_to_json(const MaePretrainConfig& config) {
  MaePretrainConfig c = config;  // config_fields points into a mutable config
  return fields_to_json(config_fields(c));
}

// The settings stored in a JSON object (as settings_to_json writes); keys it lacks keep their
// defaults, unknown keys are an error.
inline MaePretrainConfig settings_from_json(const json::Value& v) {
  MaePretrainConfig c;
  LOOM_CHECK(v.is_object(), "mae config: settings must be a JSON object");
  const std::vector<ConfigField> fields = config_fields(c);
  for (const auto& [key, value] : v.as_object()) {
    bool found = false;
    for (const ConfigField& f : fields) {
      if (config_key(f.flag) != key) continue;
      found = true;
      std::visit(
          [&](auto* target) {
            using V = std::remove_pointer_t<decltype(target)>;
            if constexpr (std::is_same_v<V, std::string>) *target = value.as_string();
            else if constexpr (std::is_same_v<V, bool>) *target = value.as_bool();
            else if constexpr (std::is_same_v<V, int64_t>) *target = value.as_int();
            else *target = value.as_number();
          },
          f.target);
    }
    LOOM_CHECK(found, "mae config: unknown setting \"", key, "\"");
  }
  return c;
}

// ---- model shapes --------------------------------------------------------------------------------

struct ModelShape {
  int64_t dim = 0, depth = 0, heads = 0;
  std::string str() const { return std::to_string(dim) + "x" + std::to_string(depth) + "x" + std::to_string(heads); }
};

// "DIMxDEPTHxHEADS"; throws UsageError naming `flag` when malformed.
inline ModelShape parse_model_shape(const std::string& text, const std::string& flag) {
  ModelShape s;
  int64_t* parts[3] = {&s.dim, &s.depth, &s.heads};
  size_t pos = 0;
  for (int i = 0; i < 3; ++i) {
    const size_t end = i < 2 ? text.find('x', pos) : text.size();
    const std::string piece = end == std::string::npos ? "" : text.substr(pos, end - pos);
    char* stop = nullptr;
    const long long v = piece.empty() ? -1 : std::strtoll(piece.c_str(), &stop, 10);
    if (piece.empty() || *stop != '\0' || v < 1)
      throw io::UsageError("--" + flag + ": expected DIMxDEPTHxHEADS (e.g. 128x4x4) or a preset, got '" + text + "'");
    *parts[i] = v;
    pos = end + 1;
  }
  if (s.dim % s.heads != 0)
    throw io::UsageError("--" + flag + ": dim " + std::to_string(s.dim) + " is not divisible by " +
                         std::to_string(s.heads) + " heads");
  return s;
}

struct ModelPreset {
  const char* name;
  ModelShape encoder, decoder;
};
inline const std::vector<ModelPreset>& model_presets() {
  static const std::vector<ModelPreset> presets = {
      {"nano", {128, 4, 4}, {128, 2, 4}},
      {"tiny", {192, 12, 3}, {128, 4, 4}},
      {"small", {384, 12, 6}, {256, 4, 8}},
      {"base", {768, 12, 12}, {512, 8, 16}},
  };
  return presets;
}

// The encoder of --model: a preset's, or DIMxDEPTHxHEADS (UsageError naming --model).
inline ModelShape model_encoder_shape(const std::string& model) {
  for (const auto& p : model_presets())
    if (model == p.name) return p.encoder;
  return parse_model_shape(model, "model");
}

inline ModelShape encoder_shape(const MaePretrainConfig& c) { return model_encoder_shape(c.model); }

// The preset's decoder, or a default sized for the encoder (MAE keeps it light).
inline ModelShape decoder_shape(const MaePretrainConfig& c) {
  if (c.decoder != "auto") return parse_model_shape(c.decoder, "decoder");
  for (const auto& p : model_presets())
    if (c.model == p.name) return p.decoder;
  const ModelShape e = parse_model_shape(c.model, "model");
  const int64_t dim = std::min<int64_t>(512, std::max<int64_t>(64, e.dim / 2 / 16 * 16));
  return {dim, 2, dim % 4 == 0 ? 4 : 1};
}

// The mask spec actually used: "auto" resolves by tokenization.
inline std::string mask_spec(const MaePretrainConfig& c) {
  if (c.mask != "auto") return c.mask;
  return c.tokens == "joint" ? "independent(0.75)" : mask::kDefaultMaskSpec;
}

// ---- checks of settings that need no data (UsageError naming the flag) ---------------------------

inline void need_setting(bool ok, const std::string& flag, const std::string& what) {
  if (!ok) throw io::UsageError("--" + flag + ": " + what);
}

// The image, batch and schedule settings that both trainers have (MaePretrainConfig, FinetuneConfig).
template <class Config>
void validate_size_and_schedule(const Config& c) {
  need_setting(c.patch >= 1, "patch", "must be at least 1");
  need_setting(c.image_size >= 1, "image-size", "must be at least 1");
  need_setting(c.batch_size >= 1, "batch-size", "must be at least 1");
  need_setting(c.steps >= 0, "steps", "must not be negative");
  need_setting(c.epochs >= 1 || c.steps > 0, "epochs", "must be at least 1 when --steps is 0");
  need_setting(c.blr > 0, "blr", "must be positive");
  need_setting(c.min_lr >= 0, "min-lr", "must not be negative");
  need_setting(c.warmup >= -1, "warmup", "must be -1 (auto) or a number of steps");
  need_setting(c.weight_decay >= 0, "weight-decay", "must not be negative");
}

// The run-control settings that both trainers have.
template <class Config>
void validate_run_control(const Config& c) {
  need_setting(c.device == "cpu" || c.device == "cuda", "device", "expected cpu or cuda, got '" + c.device + "'");
  need_setting(c.threads >= 0 && c.threads <= 1024, "threads", "must be in [0, 1024]");
  need_setting(c.workers >= 0 && c.workers <= 64, "workers", "must be in [0, 64]");
  need_setting(c.log_every >= 1, "log-every", "must be at least 1");
}

// Checks the values that need no data; throws UsageError naming the flag.
inline void validate_settings(const MaePretrainConfig& c) {
  const auto need = need_setting;
  need(!c.out.empty(), "out", "an output directory is required");
  need(c.tokens == "group" || c.tokens == "joint", "tokens", "expected group or joint, got '" + c.tokens + "'");
  validate_size_and_schedule(c);
  need(c.clip >= 0, "clip", "must not be negative (0 turns clipping off)");
  need(c.drop_path >= 0 && c.drop_path < 1, "drop-path", "must be in [0, 1)");
  validate_run_control(c);
  need(c.ckpt_every >= 0, "ckpt-every", "must not be negative");
  need(c.image_every >= 0, "image-every", "must not be negative");
  need(c.recon_samples >= 0 && c.recon_samples <= 64, "recon-samples", "must be in [0, 64]");
  need(c.stop_after >= 0, "stop-after", "must not be negative");
  need(c.seed >= 0, "seed", "must not be negative");
  need(c.bucket_mb > 0 && c.bucket_mb <= 4096, "bucket-mb", "must be in (0, 4096]");
  encoder_shape(c);
  decoder_shape(c);
  const std::vector<std::string> groups =
      c.tokens == "joint" ? std::vector<std::string>{"joint"} : std::vector<std::string>{"s1", "s2"};
  try {
    mask::parse_strategy(mask_spec(c), groups);
  } catch (const Error& e) {
    const std::string what = e.what();
    throw io::UsageError("--mask: " + what.substr(0, what.find('\n')));
  }
}

}  // namespace loom::train
