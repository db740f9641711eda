// The untyped entry points that loom's ops call for CUDA tensors (loom/cuda/random_fill.hpp,
// loom/cuda/adamw_step.hpp, loom/cuda/mae_tokens.hpp), forwarding to the typed kernel launchers of
// random_fill.cu, adamw.cu, patch_tokens.cu and masked_mse.cu. No kernels here: only the element
// type switch and the shape limits of those kernels, so this file compiles in seconds.
// How to run: tests/cuda/test_device_index.cpp (SKIPs without a GPU) compares every op that lands
// here with the CPU op; benchmarks/gpu/run.sh runs it.
#include "adamw.cuh"
#include "loom/core/error.hpp"
#include "loom/cuda/adamw_step.hpp"
#include "loom/cuda/device_memory.hpp"
#include "loom/cuda/mae_tokens.hpp"
#include "loom/cuda/random_fill.hpp"
#include "masked_mse.cuh"
#include "patch_tokens.cuh"
#include "random_fill.cuh"

namespace loom::cuda {
namespace {

// Calls f(T{}) with T = float or loom::bf16 for `type`; anything else throws naming `op`.
template <class F>
void with_float_type(DType type, const char* op, F&& f) {
  if (type == DType::f32) return f(float{});
  if (type == DType::bf16) return f(loom::bf16{});
  ::loom::detail::fail(op, ": ", dtype_name(type), " is not supported on CUDA (float32 and bfloat16 are)");
}

kernels::AdamWStep step_of(const AdamWScalars& s) {
  kernels::AdamWStep k;
  k.lr = s.lr;
  k.beta1 = s.beta1;
  k.beta2 = s.beta2;
  k.eps = s.eps;
  k.weight_decay = s.weight_decay;
  k.step = s.step;
  return k;
}

constexpr int64_t kMaxTokenElements = 12288;  // patch_tokens.cu's shared-memory token buffer

}  // namespace

void random_uniform(DType type, void* out, int64_t n, uint64_t seed, uint64_t offset, double lo, double hi) {
  with_float_type(type, "uniform", [&](auto tag) {
    using T = decltype(tag);
    kernels::fill_uniform(static_cast<T*>(out), n, seed, offset, lo, hi);
  });
}

void random_normal(DType type, void* out, int64_t n, uint64_t seed, uint64_t offset, double mean, double std) {
  with_float_type(type, "normal", [&](auto tag) {
    using T = decltype(tag);
    kernels::fill_normal(static_cast<T*>(out), n, seed, offset, mean, std);
  });
}

void random_bernoulli(uint8_t* out, int64_t n, uint64_t seed, uint64_t offset, double p) {
  kernels::fill_bernoulli(out, n, seed, offset, p);
}

void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWScalars& s) {
  kernels::adamw_step(param, grad, m, v, n, step_of(s));
}

void adamw_update_mixed(float* master, void* weights_bf16, const void* grad_bf16, float* m, float* v, int64_t n,
                        const AdamWScalars& s) {
  kernels::adamw_step_mixed(master, static_cast<loom::bf16*>(weights_bf16), static_cast<const loom::bf16*>(grad_bf16),
                            m, v, n, step_of(s));
}

bool patchify_tokens(DType type, const void* image, const int64_t* ids_keep, void* tokens, int64_t batch,
                     int64_t kept, int64_t channels, int64_t height, int64_t width, int64_t patch) {
  const kernels::patch::ImageGeometry g{channels, height, width, patch};
  if (batch < 1 || batch > 65535 || kept < 1 || patch < 1 || channels < 1 || height % patch != 0 ||
      width % patch != 0 || g.token_size() > kMaxTokenElements ||
      channels * height * width > INT32_MAX)  // the kernels index within one image in int
    return false;
  with_float_type(type, "patchify", [&](auto tag) {
    using T = decltype(tag);
    kernels::patchify_gather(static_cast<const T*>(image), ids_keep, static_cast<T*>(tokens), batch, kept, g);
  });
  return true;
}

void unshuffle_tokens_forward(DType type, const void* visible, const void* mask_token, const int64_t* ids_restore,
                              void* out, int64_t batch, int64_t kept, int64_t tokens, int64_t dim) {
  with_float_type(type, "unshuffle_tokens", [&](auto tag) {
    using T = decltype(tag);
    kernels::unshuffle_forward(static_cast<const T*>(visible), static_cast<const T*>(mask_token), ids_restore,
                               static_cast<T*>(out), batch, kept, tokens, dim);
  });
}

void unshuffle_tokens_backward(DType type, const void* grad_out, const int64_t* ids_restore, void* grad_visible,
                               float* grad_mask_token, int64_t batch, int64_t kept, int64_t tokens, int64_t dim) {
  with_float_type(type, "unshuffle_tokens backward", [&](auto tag) {
    using T = decltype(tag);
    kernels::unshuffle_backward(static_cast<const T*>(grad_out), ids_restore, static_cast<T*>(grad_visible),
                                grad_mask_token, batch, kept, tokens, dim);
  });
}

float masked_mse(DType type, const void* pred, const void* target, const float* mask, int64_t rows, int64_t patch_size,
                 bool norm_pix, float grad_scale, void* grad_pred) {
  DeviceBuffer<float> row_loss(size_t(rows > 0 ? rows : 0)), result(2);
  with_float_type(type, "masked_group_loss", [&](auto tag) {
    using T = decltype(tag);
    kernels::masked_mse_forward_backward(static_cast<const T*>(pred), static_cast<const T*>(target), mask, rows,
                                         patch_size, norm_pix, grad_scale, static_cast<T*>(grad_pred), row_loss.data(),
                                         result.data());
  });
  return result.to_host()[0];
}

}  // namespace loom::cuda
