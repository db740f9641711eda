#pragma once
// Grad mode: whether ops record the autograd graph on this thread.
//   NoGradGuard   — RAII; ops inside build no graph (optimizer updates, evaluation).
//   InferenceMode — the same, named for intent: forward passes whose results never need gradients.
namespace loom::detail {
inline thread_local bool tls_grad_enabled = true;
}

namespace loom::autograd {

inline bool grad_enabled() { return loom::detail::tls_grad_enabled; }
inline void set_grad_enabled(bool on) { loom::detail::tls_grad_enabled = on; }

class NoGradGuard {
 public:
  NoGradGuard() : previous_(grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(previous_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// Re-enables recording inside a no-grad region (e.g. a custom function's forward that uses autograd).
class EnableGradGuard {
 public:
  EnableGradGuard() : previous_(grad_enabled()) { set_grad_enabled(true); }
  ~EnableGradGuard() { set_grad_enabled(previous_); }
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool previous_;
};

using InferenceMode = NoGradGuard;

}  // namespace loom::autograd

namespace loom {
using autograd::NoGradGuard;
using autograd::InferenceMode;
}
