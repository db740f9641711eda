#pragma once
// The settings of multi-label fine-tuning (the finetune_multilabel trainer): one struct, bound field
// by field to command-line flags and written to config.json. Model and training flags mean what
// they mean for mae_pretrain (mae_config.hpp: presets, DIMxDEPTHxHEADS).
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "loom/io/cli.hpp"
#include "loom/io/json.hpp"
#include "loom/train/mae_config.hpp"

namespace loom::train {

struct FinetuneConfig {
  // data
  std::string data = "synthetic";
  std::string val_data;   // "" : synthetic -> split=val of --data; otherwise --data itself
  std::string test_data;  // "" : synthetic -> split=test of --data; otherwise the validation data
  std::string out;
  std::string init;        // encoder.safetensors (or any checkpoint holding encoder names); "": from scratch
  std::string checkpoint;  // --evaluate: the fine-tuned classifier (best.safetensors)
  int64_t image_size = 64;
  int64_t workers = 1;
  bool augment = false;
  double label_fraction = 1.0;
  // model
  std::string model = "nano";
  int64_t patch = 8;
  std::string tokens = "group";
  std::string modalities = "s1s2";
  std::string pool = "avg";
  double drop_path = 0.1;
  // optimization
  int64_t steps = 0;
  int64_t epochs = 10;
  int64_t batch_size = 64;
  double blr = 5e-3;
  double min_lr = 1e-6;
  int64_t warmup = -1;
  double weight_decay = 0.05;
  double layer_decay = 0.75;
  double clip = 0.0;
  bool pos_weight = false;
  bool linear_probe = false;
  int64_t seed = 0;
  // run control
  bool evaluate = false;
  bool save_predictions = false;
  int64_t eval_every = 0;
  std::string device = "cpu";
  int64_t threads = 0;
  int64_t log_every = 10;
  bool quiet = false;
};

inline std::vector<ConfigField> finetune_fields(FinetuneConfig& c) {
  constexpr OnResume k = OnResume::per_run;  // fine-tuning runs are not resumed
  return {
      {"data", "training dataset spec (docs/data.md); with --evaluate, the data to score", &c.data, k},
      {"val-data", "validation dataset spec (default: split=val of synthetic --data, else --data)", &c.val_data, k},
      {"test-data", "test dataset spec (default: split=test of synthetic --data, else the validation data)", &c.test_data, k},
      {"out", "output directory (required)", &c.out, k},
      {"init", "pre-trained encoder (encoder.safetensors of mae_pretrain); none: random init (supervised baseline)", &c.init, k},
      {"checkpoint", "--evaluate: the fine-tuned classifier to score (best.safetensors of a run)", &c.checkpoint, k},
      {"image-size", "image size in pixels of synthetic data (other datasets bring their own)", &c.image_size, k},
      {"workers", "data-loading threads (0: load on the training thread)", &c.workers, k},
      {"augment", "random flips / quarter turns of the training images", &c.augment, k},
      {"label-fraction", "share of the training set used, drawn without replacement from --seed (written to label_subset.txt)",
       &c.label_fraction, k},
      {"model", "encoder: nano, tiny, small, base or DIMxDEPTHxHEADS (must match --init)", &c.model, k},
      {"patch", "patch size in pixels", &c.patch, k},
      {"tokens", "group (one token per modality group and location) or joint (one per location)", &c.tokens, k},
      {"modalities", "s1, s2, s1s2 or s1s2-half (each location through one modality, a fixed checkerboard)", &c.modalities, k},
      {"pool", "avg (mean of patch tokens -> fc_norm -> head, as timm/MAE) or cls (norm -> cls token -> head)", &c.pool, k},
      {"drop-path", "stochastic depth rate of the encoder's last block", &c.drop_path, k},
      {"steps", "optimizer steps (0: --epochs passes over the training subset)", &c.steps, k},
      {"epochs", "passes over the training subset when --steps is 0", &c.epochs, k},
      {"batch-size", "samples per step (at most the training subset's size)", &c.batch_size, k},
      {"blr", "base learning rate: lr = blr * batch-size / 256", &c.blr, k},
      {"min-lr", "learning rate at the end of the cosine decay", &c.min_lr, k},
      {"warmup", "linear warm-up steps (-1: 5% of the steps)", &c.warmup, k},
      {"weight-decay", "AdamW weight decay (none on biases, norms, tokens, position and group embeddings)", &c.weight_decay, k},
      {"layer-decay", "layer-wise lr decay: layer l gets lr * decay^(depth + 1 - l)", &c.layer_decay, k},
      {"clip", "global gradient-norm clipping threshold (0: off)", &c.clip, k},
      {"pos-weight", "class-balanced positive weights in the loss (negatives / positives per class)", &c.pos_weight, k},
      {"linear-probe", "frozen encoder: features computed once, then only fc_norm and head are trained", &c.linear_probe, k},
      {"seed", "seed of initialization, label subset, data order and stochastic depth", &c.seed, k},
      {"evaluate", "score --checkpoint on --data and write the report (no training)", &c.evaluate, k},
      {"save-predictions", "write predictions.csv (patch name, one probability per class) of the scored split", &c.save_predictions, k},
      {"eval-every", "steps between validation passes (0: every epoch)", &c.eval_every, k},
      {"device", "cpu or cuda (training and validation on the GPU; needs a build with the CUDA backend)", &c.device, k},
      {"threads", "compute threads (0: LOOM_NUM_THREADS or all cores)", &c.threads, k},
      {"log-every", "steps between metrics.jsonl records (and progress lines when not on a terminal)", &c.log_every, k},
      {"quiet", "no progress output", &c.quiet, k},
  };
}

inline void bind_flags(io::Cli& cli, FinetuneConfig& c) { bind_fields(cli, finetune_fields(c)); }

inline json::Value settings_to_json(const FinetuneConfig& config) {
  FinetuneConfig c = config;  // finetune_fields points into a mutable config
  return fields_to_json(finetune_fields(c));
}

// The encoder shape of --model (a preset or DIMxDEPTHxHEADS); UsageError naming --model.
inline ModelShape finetune_encoder_shape(const FinetuneConfig& c) { return model_encoder_shape(c.model); }

// Checks the values that need no data; throws UsageError naming the flag.
inline void validate_settings(const FinetuneConfig& c) {
  const auto need = need_setting;
  need(!c.out.empty(), "out", "an output directory is required");
  if (c.evaluate) {
    need(!c.checkpoint.empty(), "checkpoint", "--evaluate needs the fine-tuned classifier to score");
  } else {
    need(c.checkpoint.empty(), "checkpoint", "only used with --evaluate (to start from a pre-trained encoder use --init)");
  }
  need(c.tokens == "group" || c.tokens == "joint", "tokens", "expected group or joint, got '" + c.tokens + "'");
  need(c.modalities == "s1" || c.modalities == "s2" || c.modalities == "s1s2" || c.modalities == "s1s2-half",
       "modalities", "expected s1, s2, s1s2 or s1s2-half, got '" + c.modalities + "'");
  need(c.pool == "avg" || c.pool == "cls", "pool", "expected avg or cls, got '" + c.pool + "'");
  validate_size_and_schedule(c);
  need(c.layer_decay > 0 && c.layer_decay <= 1, "layer-decay", "must be in (0, 1]");
  need(c.clip >= 0, "clip", "must not be negative (0 turns clipping off)");
  need(c.drop_path >= 0 && c.drop_path < 1, "drop-path", "must be in [0, 1)");
  need(c.label_fraction > 0 && c.label_fraction <= 1, "label-fraction", "must be in (0, 1]");
  validate_run_control(c);
  need(c.eval_every >= 0, "eval-every", "must not be negative");
  need(c.seed >= 0, "seed", "must not be negative");
  finetune_encoder_shape(c);
}

}  // namespace loom::train
