#pragma once
// load_into: fills named tensors (a model's state_dict()) from a safetensors file.
//
//   auto report = loom::io::load_into(model.state_dict(), file);                  // strict
//   auto report = loom::io::load_into(model.state_dict(), file, false);           // lenient
//   auto opts = loom::io::LoadOptions().reshape("patch_embed.proj.weight");       // conv -> linear
//   loom::io::load_into(model.state_dict(), file, opts);
//
// All-or-nothing: every check runs before the first target is written, so a failing load leaves
// the model as it was. Checks, each a loom::Error naming the tensor:
// - names: in strict mode (the default) a target without a tensor in the file ("missing") or a file
//   tensor that no target takes ("unexpected") is an error listing them; with strict(false) both
//   lists are returned in the LoadReport and the matching tensors are loaded.
// - dtypes: the stored dtype must be the target's (BOOL counts as uint8). convert_dtypes(true)
//   allows conversion within floating types (e.g. an F32 or F16 checkpoint into a bf16 model) and
//   within integer types (range-checked).
// - shapes: the stored shape must be the target's, unless the name was given to reshape() (same
//   element count, row-major: a conv patch-embed weight [D, C, p, p] becomes a Linear weight
//   [D, C*p*p]) or to transform() (any mapping, e.g. a permute, whose result must fit the target).
// Targets are written in place with copy_ under NoGradGuard, so parameters that require grad keep
// their identity (optimizers holding them see the new values) and non-contiguous targets work.
// Converting loads build all converted tensors before writing any (peak memory: one converted
// copy of the checkpoint); same-dtype loads alias the mapped file and copy once.
#include <algorithm>
#include <functional>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "loom/autograd/grad_mode.hpp"
#include "loom/io/any_tensor.hpp"
#include "loom/io/safetensors.hpp"

namespace loom::io {

struct LoadReport {
  std::vector<std::string> loaded;      // target names that were filled, in target order
  std::vector<std::string> missing;     // targets without a tensor in the file
  std::vector<std::string> unexpected;  // file tensors that no target takes, in file order
  std::vector<std::string> dropped;     // file tensors the name map dropped on purpose
};

class LoadOptions {
 public:
  // Gets the stored tensor (already in the target's element type, stored shape) and returns the
  // tensor to copy into the target (target's element type and shape).
  using Transform = std::function<AnyTensorRef(const AnyTensorRef& stored)>;
  // Maps a file tensor name to the target name that receives it; "" drops the tensor.
  using NameMap = std::function<std::string(const std::string& stored_name)>;

  LoadOptions() = default;
  LoadOptions(bool strict) : strict_(strict) {}  // NOLINT: lets load_into(targets, file, false) read naturally

  LoadOptions& strict(bool on) {
    strict_ = on;
    return *this;
  }
  bool strict() const { return strict_; }

  LoadOptions& convert_dtypes(bool on) {
    convert_dtypes_ = on;
    return *this;
  }
  bool convert_dtypes() const { return convert_dtypes_; }

  // Allows the tensor loaded into target `name` to be reshaped (same element count, row-major).
  LoadOptions& reshape(std::string name) {
    reshape_.push_back(std::move(name));
    return *this;
  }
  bool reshapes(const std::string& name) const {
    return std::find(reshape_.begin(), reshape_.end(), name) != reshape_.end();
  }

  LoadOptions& transform(std::string name, Transform fn) {
    transforms_[std::move(name)] = std::move(fn);
    return *this;
  }
  const Transform* transform_for(const std::string& name) const {
    const auto it = transforms_.find(name);
    return it == transforms_.end() ? nullptr : &it->second;
  }

  LoadOptions& map_names(NameMap fn) {
    name_map_ = std::move(fn);
    return *this;
  }
  std::string target_name(const std::string& stored_name) const { return name_map_ ? name_map_(stored_name) : stored_name; }

 private:
  bool strict_ = true;
  bool convert_dtypes_ = false;
  std::vector<std::string> reshape_;
  std::map<std::string, Transform> transforms_;
  NameMap name_map_;
};

namespace detail {
inline std::string join_names(const std::vector<std::string>& names, size_t limit = 20) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < limit; ++i) out += (i ? ", '" : "'") + names[i] + "'";
  if (names.size() > limit) out += ", ... (" + std::to_string(names.size()) + " in all)";
  return out;
}
}  // namespace detail

inline LoadReport load_into(const NamedTensorRefs& targets, const SafetensorsFile& file,
                            const LoadOptions& options = {}) {
  const std::string where = "load_into(" + file.path() + "): ";
  LoadReport report;

  std::unordered_map<std::string, size_t> target_index;
  for (size_t i = 0; i < targets.size(); ++i) {
    const auto& [name, t] = targets[i];
    LOOM_CHECK(t.defined(), where, "target '", name, "' is an undefined tensor");
    LOOM_CHECK(target_index.emplace(name, i).second, where, "target name '", name, "' appears twice");
  }

  // Pair file tensors with targets.
  std::vector<std::string> source_of(targets.size());  // file name feeding each target, "" if none
  for (const std::string& stored : file.names()) {
    const std::string target = options.target_name(stored);
    if (target.empty()) {
      report.dropped.push_back(stored);
      continue;
    }
    const auto it = target_index.find(target);
    if (it == target_index.end()) {
      report.unexpected.push_back(stored);
      continue;
    }
    LOOM_CHECK(source_of[it->second].empty(), where, "file tensors '", source_of[it->second], "' and '", stored,
               "' both map to target '", target, "'");
    source_of[it->second] = stored;
  }
  for (size_t i = 0; i < targets.size(); ++i)
    if (source_of[i].empty()) report.missing.push_back(targets[i].first);
  if (options.strict() && (!report.missing.empty() || !report.unexpected.empty()))
    loom::detail::fail(where, "the file does not match the targets: ",
                       report.missing.empty() ? std::string() : "missing " + detail::join_names(report.missing),
                       !report.missing.empty() && !report.unexpected.empty() ? "; " : "",
                       report.unexpected.empty() ? std::string() : "unexpected " + detail::join_names(report.unexpected),
                       " (LoadOptions().strict(false) loads the tensors that match and reports the rest)");

  // Phase 1: check and prepare every source tensor; nothing is written yet.
  std::vector<std::pair<size_t, AnyTensorRef>> plan;
  for (size_t i = 0; i < targets.size(); ++i) {
    if (source_of[i].empty()) continue;
    const std::string& name = targets[i].first;
    const TensorInfo& info = file.info(source_of[i]);
    const std::string label = name == info.name ? "tensor '" + name + "'" : "tensor '" + info.name + "' (for '" + name + "')";
    targets[i].second.visit([&](const auto& target) {
      using T = typename std::decay_t<decltype(target)>::value_type;
      const bool same_dtype = info.stored->exact && info.stored->natural == dtype_traits<T>::tag;
      LOOM_CHECK(same_dtype || options.convert_dtypes(), where, label, " is stored as ", info.dtype,
                 " but the target is ", dtype_traits<T>::name,
                 " (LoadOptions().convert_dtypes(true) converts within floating or within integer types)");
      const LoadOptions::Transform* transform = options.transform_for(name);
      const bool same_shape = info.shape == target.shape().vec();
      if (!same_shape && !transform) {
        const bool reshapeable = info.numel() == target.numel() && info.stored->kind != StoredKind::unsupported;
        LOOM_CHECK(options.reshapes(name) && reshapeable, where, label, " has shape ", info.shape_str(),
                   " in the file but the target has shape ", target.shape(),
                   reshapeable ? " (same element count: LoadOptions().reshape(name) loads it reshaped)" : "");
      }
      Tensor<T> source = file.load<T>(info.name);
      if (transform) {
        const AnyTensorRef result = (*transform)(AnyTensorRef(source));
        LOOM_CHECK(result.defined() && result.dtype() == dtype_traits<T>::tag && result.shape() == target.shape(),
                   where, "the transform of ", label, " returned ",
                   result.defined() ? std::string(dtype_name(result.dtype())) + " of shape " + result.shape().str()
                                    : std::string("an undefined tensor"),
                   ", the target is ", dtype_traits<T>::name, " of shape ", target.shape());
        source = result.get<T>();
      } else if (!same_shape) {
        NoGradGuard no_grad;
        source = source.reshape(target.shape());
      }
      plan.emplace_back(i, AnyTensorRef(source));
    });
  }

  // Phase 2: write.
  NoGradGuard no_grad;
  for (const auto& [i, source] : plan) {
    targets[i].second.visit([&](const auto& target) {
      using T = typename std::decay_t<decltype(target)>::value_type;
      Tensor<T> destination = target;
      destination.copy_(source.get<T>());
    });
    report.loaded.push_back(targets[i].first);
  }
  return report;
}

// Any range of (name, Tensor<T>) pairs, e.g. a module's state_dict(), or a map of AnyTensorRef.
template <class Range>
  requires(!std::same_as<std::decay_t<Range>, NamedTensorRefs>) && requires(const Range& r) {
    { std::string(std::get<0>(*std::begin(r))) };
    { AnyTensorRef(std::get<1>(*std::begin(r))) };
  }
LoadReport load_into(const Range& targets, const SafetensorsFile& file, const LoadOptions& options = {}) {
  NamedTensorRefs refs;
  for (const auto& item : targets) refs.emplace_back(std::string(std::get<0>(item)), AnyTensorRef(std::get<1>(item)));
  return load_into(refs, file, options);
}

// Opens `path` and loads it (the file stays mapped only while loaded tensors alias it).
template <class Targets>
LoadReport load_into(const Targets& targets, const std::string& path, const LoadOptions& options = {}) {
  return load_into(targets, SafetensorsFile::open(path), options);
}

}  // namespace loom::io
