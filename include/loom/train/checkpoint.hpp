#pragma once
// Training checkpoints: everything needed to continue a run exactly.
//
//   <dir>/<stem>.safetensors   the model's state_dict (timm/MAE names) and the optimizer's moments
//                              as "optim.<param>.exp_avg" / "optim.<param>.exp_avg_sq"; metadata
//                              {"step": "<n>", "format": "loom.train_checkpoint.v1"}
//   <dir>/<stem>.json          {"step": n, "optimizer_steps": n, ...caller's state (RNG, loader
//                              position, config)...}
//
//   loom::train::save_checkpoint(dir, model, optimizer, {{"step", 400}, {"config", cfg}});
//   json::Value state = loom::train::load_checkpoint(dir, model, optimizer);  // state["step"] == 400
//
// Both files are written atomically (temporary file, fsync, rename), weights first: a crash leaves
// the previous pair, or new weights with the previous JSON, which load_checkpoint detects by the
// step recorded in both and refuses with a clear message rather than resuming inconsistently.
// load_checkpoint validates everything (names, shapes, dtypes) before changing the model.
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "loom/core/error.hpp"
#include "loom/io/atomic_file.hpp"
#include "loom/io/json.hpp"
#include "loom/io/safetensors.hpp"
#include "loom/nn/module.hpp"
#include "loom/optim/adamw.hpp"

namespace loom::train {

inline constexpr const char* kOptimizerPrefix = "optim.";
inline constexpr const char* kCheckpointFormat = "loom.train_checkpoint.v1";

struct CheckpointPaths {
  std::string weights, state;
  static CheckpointPaths in(const std::string& dir, const std::string& stem = "checkpoint") {
    const std::filesystem::path d(dir);
    return {(d / (stem + ".safetensors")).string(), (d / (stem + ".json")).string()};
  }
};

inline bool checkpoint_exists(const std::string& dir, const std::string& stem = "checkpoint") {
  const CheckpointPaths p = CheckpointPaths::in(dir, stem);
  return std::filesystem::exists(p.state) && std::filesystem::exists(p.weights);
}

// Writes a JSON document atomically, pretty-printed, with a final newline.
inline void write_json_file(const std::string& path, const json::Value& value) {
  io::AtomicFileWriter out(path);
  out.write(value.dump(2) + "\n");
  out.commit();
}

inline json::Value read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  LOOM_CHECK(in.good(), "cannot open ", path);
  std::ostringstream text;
  text << in.rdbuf();
  try {
    return json::parse(text.str());
  } catch (const Error& e) {
    loom::detail::fail(path, ": ", e.what());
  }
}

// io::load_into for tensors on any device: device tensors are loaded into host copies of their
// current values (all checks before anything is written, as load_into does) and copied back, so
// tensors a lenient load skips keep their values.
template <class T, class Dev>
io::LoadReport load_named(const std::vector<std::pair<std::string, Tensor<T, Dev>>>& targets,
                          const io::SafetensorsFile& file, const io::LoadOptions& options = {}) {
  io::NamedTensorRefs refs;
  if constexpr (!Tensor<T, Dev>::kOnDevice) {
    for (const auto& [name, t] : targets) refs.emplace_back(name, t);
    return io::load_into(refs, file, options);
  } else {
    NoGradGuard guard;
    std::vector<Tensor<T>> host;
    for (const auto& [name, t] : targets) host.push_back(t.template to_device<CPU>());
    for (size_t i = 0; i < targets.size(); ++i) refs.emplace_back(targets[i].first, host[i]);
    io::LoadReport report = io::load_into(refs, file, options);
    for (size_t i = 0; i < targets.size(); ++i) Tensor<T, Dev>(targets[i].second).copy_(host[i].template to_device<Dev>());
    return report;
  }
}

// Host copies of named tensors, for writing them (a no-op handle copy for CPU tensors).
template <class T, class Dev>
io::NamedTensorRefs host_refs(const std::vector<std::pair<std::string, Tensor<T, Dev>>>& named) {
  NoGradGuard guard;
  io::NamedTensorRefs refs;
  for (const auto& [name, t] : named) refs.emplace_back(name, t.template to_device<CPU>());
  return refs;
}

namespace detail {
// Model tensors plus the optimizer's moments under the optimizer prefix, on the training device.
template <class T, class Dev>
std::vector<std::pair<std::string, Tensor<T, Dev>>> checkpoint_entries(const nn::Module<T, Dev>& model,
                                                                       const optim::AdamW<T, Dev>& optimizer) {
  std::vector<std::pair<std::string, Tensor<T, Dev>>> entries = model.state_dict();
  for (const auto& [name, t] : optimizer.named_state()) entries.emplace_back(kOptimizerPrefix + name, t);
  return entries;
}
}  // namespace detail

// Saves model + optimizer under dir/<stem>.*. `state` must be a JSON object holding an integer
// "step"; "optimizer_steps" is added.
template <class T, class Dev>
void save_checkpoint(const std::string& dir, const nn::Module<T, Dev>& model, const optim::AdamW<T, Dev>& optimizer,
                     json::Value state, const std::string& stem = "checkpoint") {
  LOOM_CHECK(state.is_object() && state.contains("step") && state["step"].is_int(),
             "save_checkpoint: the state needs an integer \"step\"");
  const int64_t step = state["step"].as_int();
  state.set("optimizer_steps", optimizer.steps());
  const CheckpointPaths paths = CheckpointPaths::in(dir, stem);
  // Device tensors are saved from host copies: checkpoints are device-independent.
  io::save_safetensors(paths.weights, host_refs(detail::checkpoint_entries(model, optimizer)),
                       {{"step", std::to_string(step)}, {"format", kCheckpointFormat}});
  write_json_file(paths.state, state);
}

// Restores model + optimizer from dir/<stem>.* and returns the saved state. Throws loom::Error
// (leaving model and optimizer untouched) when the files are missing, disagree with each other,
// or do not fit the model.
template <class T, class Dev>
json::Value load_checkpoint(const std::string& dir, nn::Module<T, Dev>& model, optim::AdamW<T, Dev>& optimizer,
                            const std::string& stem = "checkpoint") {
  const CheckpointPaths paths = CheckpointPaths::in(dir, stem);
  LOOM_CHECK(std::filesystem::exists(paths.state), "load_checkpoint: no ", paths.state);
  LOOM_CHECK(std::filesystem::exists(paths.weights), "load_checkpoint: no ", paths.weights);
  json::Value state = read_json_file(paths.state);
  LOOM_CHECK(state.is_object() && state.contains("step") && state["step"].is_int() && state.contains("optimizer_steps"),
             "load_checkpoint: ", paths.state, " lacks \"step\" / \"optimizer_steps\"");
  const int64_t step = state["step"].as_int();
  const io::SafetensorsFile file = io::SafetensorsFile::open(paths.weights);
  const auto& meta = file.metadata();
  const auto it = meta.find("step");
  LOOM_CHECK(it != meta.end() && it->second == std::to_string(step), "load_checkpoint: ", paths.weights,
             " holds step ", it == meta.end() ? std::string("(none)") : it->second, " but ", paths.state, " says step ",
             step, " (a save was interrupted between the two files); cannot resume consistently");
  load_named(detail::checkpoint_entries(model, optimizer), file);  // strict, all-or-nothing
  optimizer.set_steps(state["optimizer_steps"].as_int());
  return state;
}

}  // namespace loom::train
