#pragma once
// copy_state: makes one module's parameters and buffers equal to another's — same architecture,
// any devices. The way to put a model on the GPU with the weights of a CPU model (one initialized
// or loaded from a checkpoint there), and to bring trained device weights back for saving.
// Tensors are written in place with copy_ under NoGradGuard, so the destination's parameters keep
// their identity (an optimizer holding them sees the new values).
#include <string>

#include "loom/autograd/grad_mode.hpp"
#include "loom/nn/module.hpp"

namespace loom::nn {

template <class T, class SrcDev, class DstDev>
void copy_state(const Module<T, SrcDev>& src, const Module<T, DstDev>& dst) {
  const auto from = src.state_dict();
  const auto to = dst.state_dict();
  LOOM_CHECK(from.size() == to.size(), "copy_state: ", src.type_name(), " has ", from.size(),
             " parameters and buffers, ", dst.type_name(), " has ", to.size());
  // Check everything before writing anything: a mismatch leaves the destination as it was.
  for (size_t i = 0; i < from.size(); ++i) {
    LOOM_CHECK(from[i].first == to[i].first, "copy_state: entry ", i, " is '", from[i].first, "' in the source but '",
               to[i].first, "' in the destination");
    LOOM_CHECK(from[i].second.shape() == to[i].second.shape(), "copy_state: '", from[i].first, "' has shape ",
               from[i].second.shape(), " in the source but ", to[i].second.shape(), " in the destination");
  }
  NoGradGuard guard;
  for (size_t i = 0; i < from.size(); ++i) {
    Tensor<T, DstDev> target = to[i].second;
    target.copy_(from[i].second.template to_device<DstDev>());
  }
}

}  // namespace loom::nn
