// The patch-embedding convolution through cuDNN (loom/cuda/cudnn_conv.hpp), behind
// loom::conv_patch_embed on CUDA tensors (loom/ops/conv_patch_embed.hpp) and nn::PatchEmbed's
// use_conv path. Versions:
//   forward          cudnnConvolutionForward         y [B, D, h, w] from x [B, C, H, W], w [D, C, p, p]
//   backward filter  cudnnConvolutionBackwardFilter  dw
//   backward data    cudnnConvolutionBackwardData    dx (only when the image needs a gradient)
//   backward bias    cudnnConvolutionBackwardBias    db (fp32)
// each in fp32 (FMA math: exact fp32; TF32 tensor cores when loom::cuda::set_allow_tf32(true)) and
// bf16 with fp32 accumulation. NCHW, stride = kernel = p, no padding, cross-correlation. Per shape,
// each direction's algorithm is chosen once from the cudnnGet*_v7 heuristics (deterministic ones
// first) and cached with its descriptors and workspace size; workspaces come from loom's caching
// allocator. Host code only (g++): no kernels of our own here. Every cuDNN call is checked
// (LOOM_CUDNN_CHECK, kernels/cudnn_check.cuh).
// How to run: tests/cuda/test_device_cudnn.cpp (SKIPs without a GPU or without cuDNN) compares the
// op's forward and gradients with the CPU patchify + linear composite; benchmarks/gpu/run.sh runs it.
// Built without cuDNN (CMake did not find it), the functions below throw "built without cuDNN".
#include "loom/cuda/cudnn_conv.hpp"

#include "loom/core/error.hpp"
#include "loom/cuda/cudnn_support.hpp"

#if LOOM_WITH_CUDNN
#include <climits>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "cudnn_check.cuh"
#include "loom/cuda/device_memory.hpp"
#include "loom/cuda/gemm.hpp"

namespace loom::cuda {
namespace {

cudnnDataType_t data_type(DType type) {
  switch (type) {
    case DType::f32: return CUDNN_DATA_FLOAT;
    case DType::bf16: return CUDNN_DATA_BFLOAT16;
    default: ::loom::detail::fail("conv_patch_embed: cuDNN path supports float32 and bfloat16, got ", dtype_name(type));
  }
}

int as_int(int64_t v, const char* what) {
  LOOM_CHECK(v > 0 && v <= INT_MAX, "conv_patch_embed: ", what, " = ", v, " is outside cuDNN's 32-bit range");
  return int(v);
}

// A workspace from the caching allocator, released after the (stream-ordered) call that uses it.
struct Workspace {
  explicit Workspace(size_t bytes) : bytes(bytes), ptr(bytes ? device_allocate(bytes) : nullptr) {}
  ~Workspace() {
    if (ptr) device_release(ptr);
  }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  size_t bytes;
  void* ptr;
};

// Picks the first heuristic result that succeeded, preferring deterministic algorithms. Never an
// algorithm that down-converts (ALLOW_CONVERSION); `exact_fp32` also rejects tensor-core math (TF32)
// and its descriptor stays FMA-only (DEFAULT math would permit TF32 on Ampere and later).
template <class Perf>
const Perf& pick(const Perf* perf, int count, bool exact_fp32, const char* direction) {
  const Perf* chosen = nullptr;
  for (int i = 0; i < count; ++i) {
    const Perf& p = perf[i];
    if (p.status != CUDNN_STATUS_SUCCESS) continue;
    if (p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;
    if (exact_fp32 && p.mathType == CUDNN_TENSOR_OP_MATH) continue;
    if (!chosen || (p.determinism == CUDNN_DETERMINISTIC && chosen->determinism != CUDNN_DETERMINISTIC)) chosen = &p;
    if (chosen->determinism == CUDNN_DETERMINISTIC) break;
  }
  LOOM_CHECK(chosen != nullptr, "conv_patch_embed: cuDNN offers no ", direction, " algorithm for this shape (",
             count, " heuristic results)");
  return *chosen;
}

// Descriptors and chosen algorithms for one (type, shape, TF32 setting); each direction chosen on first use.
struct PatchConvPlan {
  PatchConvPlan(DType type, const PatchConvDims& d, bool tf32) : exact_fp32(type == DType::f32 && !tf32) {
    const cudnnDataType_t dt = data_type(type);
    LOOM_CUDNN_CHECK(cudnnCreateTensorDescriptor(&x));
    LOOM_CUDNN_CHECK(cudnnCreateTensorDescriptor(&y));
    LOOM_CUDNN_CHECK(cudnnCreateTensorDescriptor(&bias));
    LOOM_CUDNN_CHECK(cudnnCreateFilterDescriptor(&w));
    LOOM_CUDNN_CHECK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, dt, as_int(d.batch, "batch"),
                                                as_int(d.channels, "channels"), as_int(d.height, "height"),
                                                as_int(d.width, "width")));
    LOOM_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w, dt, CUDNN_TENSOR_NCHW, as_int(d.dim, "dim"),
                                                as_int(d.channels, "channels"), as_int(d.patch, "patch"),
                                                as_int(d.patch, "patch")));
    const auto out = d.conv_output();
    LOOM_CUDNN_CHECK(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, dt, int(out[0]), int(out[1]), int(out[2]),
                                                int(out[3])));
    LOOM_CUDNN_CHECK(cudnnSetTensor4dDescriptor(bias, CUDNN_TENSOR_NCHW, dt, 1, int(out[1]), 1, 1));
    // One convolution descriptor per direction: each carries the math type of its algorithm.
    for (cudnnConvolutionDescriptor_t* c : {&conv_fwd, &conv_bwd_filter, &conv_bwd_data}) {
      LOOM_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(c));
      const int p = int(d.patch);
      LOOM_CUDNN_CHECK(
          cudnnSetConvolution2dDescriptor(*c, 0, 0, p, p, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
      LOOM_CUDNN_CHECK(cudnnSetConvolutionMathType(*c, exact_fp32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH));
    }
    int n = 0, c = 0, h = 0, wd = 0;
    LOOM_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(conv_fwd, x, w, &n, &c, &h, &wd));
    LOOM_CHECK(n == out[0] && c == out[1] && h == out[2] && wd == out[3], "conv_patch_embed: cuDNN output [", n, ", ",
               c, ", ", h, ", ", wd, "] differs from the expected [", out[0], ", ", out[1], ", ", out[2], ", ", out[3],
               "]");
  }
  ~PatchConvPlan() {  // host-side descriptor frees: safe at process exit
    (void)cudnnDestroyTensorDescriptor(x);
    (void)cudnnDestroyTensorDescriptor(y);
    (void)cudnnDestroyTensorDescriptor(bias);
    (void)cudnnDestroyFilterDescriptor(w);
    for (auto c : {conv_fwd, conv_bwd_filter, conv_bwd_data}) (void)cudnnDestroyConvolutionDescriptor(c);
  }
  PatchConvPlan(const PatchConvPlan&) = delete;
  PatchConvPlan& operator=(const PatchConvPlan&) = delete;

  void choose_forward(cudnnHandle_t h) {
    if (fwd_ready) return;
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int count = 0;
    LOOM_CUDNN_CHECK(
        cudnnGetConvolutionForwardAlgorithm_v7(h, x, w, conv_fwd, y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &count, perf));
    const auto& p = pick(perf, count, exact_fp32, "forward");
    fwd_algo = p.algo;
    if (!exact_fp32) LOOM_CUDNN_CHECK(cudnnSetConvolutionMathType(conv_fwd, p.mathType));
    LOOM_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, x, w, conv_fwd, y, fwd_algo, &fwd_workspace));
    fwd_ready = true;
  }
  void choose_backward_filter(cudnnHandle_t h) {
    if (filter_ready) return;
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int count = 0;
    LOOM_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
        h, x, y, conv_bwd_filter, w, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &count, perf));
    const auto& p = pick(perf, count, exact_fp32, "backward-filter");
    filter_algo = p.algo;
    if (!exact_fp32) LOOM_CUDNN_CHECK(cudnnSetConvolutionMathType(conv_bwd_filter, p.mathType));
    LOOM_CUDNN_CHECK(
        cudnnGetConvolutionBackwardFilterWorkspaceSize(h, x, y, conv_bwd_filter, w, filter_algo, &filter_workspace));
    filter_ready = true;
  }
  void choose_backward_data(cudnnHandle_t h) {
    if (data_ready) return;
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int count = 0;
    LOOM_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, w, y, conv_bwd_data, x,
                                                                 CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &count, perf));
    const auto& p = pick(perf, count, exact_fp32, "backward-data");
    data_algo = p.algo;
    if (!exact_fp32) LOOM_CUDNN_CHECK(cudnnSetConvolutionMathType(conv_bwd_data, p.mathType));
    LOOM_CUDNN_CHECK(
        cudnnGetConvolutionBackwardDataWorkspaceSize(h, w, y, conv_bwd_data, x, data_algo, &data_workspace));
    data_ready = true;
  }

  bool exact_fp32;
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, bias = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv_fwd = nullptr, conv_bwd_filter = nullptr, conv_bwd_data = nullptr;
  bool fwd_ready = false, filter_ready = false, data_ready = false;
  cudnnConvolutionFwdAlgo_t fwd_algo{};
  cudnnConvolutionBwdFilterAlgo_t filter_algo{};
  cudnnConvolutionBwdDataAlgo_t data_algo{};
  size_t fwd_workspace = 0, filter_workspace = 0, data_workspace = 0;
};

// Calls f(plan) under the cache lock (plans are shared by all threads; the choice of an algorithm
// writes into its plan).
template <class F>
void with_plan(DType type, const PatchConvDims& d, F&& f) {
  using Key = std::tuple<int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool>;
  static std::mutex mutex;
  static std::map<Key, std::unique_ptr<PatchConvPlan>> plans;
  const bool tf32 = type == DType::f32 && allow_tf32();
  const Key key{int(type), d.batch, d.channels, d.height, d.width, d.dim, d.patch, tf32};
  std::lock_guard<std::mutex> lock(mutex);
  auto& plan = plans[key];
  if (!plan) plan = std::make_unique<PatchConvPlan>(type, d, tf32);
  f(*plan);
}

const float kOne = 1.0f, kZero = 0.0f;  // alpha, beta: float for float and bf16 data

}  // namespace

void cudnn_patch_conv_forward(DType type, const PatchConvDims& d, const void* x, const void* w, void* y) {
  cudnnHandle_t h = cudnn_handle();
  with_plan(type, d, [&](PatchConvPlan& plan) {
    plan.choose_forward(h);
    Workspace ws(plan.fwd_workspace);
    LOOM_CUDNN_CHECK(cudnnConvolutionForward(h, &kOne, plan.x, x, plan.w, w, plan.conv_fwd, plan.fwd_algo, ws.ptr,
                                             ws.bytes, &kZero, plan.y, y));
  });
}

void cudnn_patch_conv_backward_filter(DType type, const PatchConvDims& d, const void* x, const void* dy, void* dw) {
  cudnnHandle_t h = cudnn_handle();
  with_plan(type, d, [&](PatchConvPlan& plan) {
    plan.choose_backward_filter(h);
    Workspace ws(plan.filter_workspace);
    LOOM_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &kOne, plan.x, x, plan.y, dy, plan.conv_bwd_filter,
                                                    plan.filter_algo, ws.ptr, ws.bytes, &kZero, plan.w, dw));
  });
}

void cudnn_patch_conv_backward_data(DType type, const PatchConvDims& d, const void* w, const void* dy, void* dx) {
  cudnnHandle_t h = cudnn_handle();
  with_plan(type, d, [&](PatchConvPlan& plan) {
    plan.choose_backward_data(h);
    Workspace ws(plan.data_workspace);
    LOOM_CUDNN_CHECK(cudnnConvolutionBackwardData(h, &kOne, plan.w, w, plan.y, dy, plan.conv_bwd_data, plan.data_algo,
                                                  ws.ptr, ws.bytes, &kZero, plan.x, dx));
  });
}

void cudnn_patch_conv_backward_bias(DType type, const PatchConvDims& d, const void* dy, void* db) {
  LOOM_CHECK(type == DType::f32, "conv_patch_embed: the cuDNN bias gradient is float32 only, got ", dtype_name(type));
  cudnnHandle_t h = cudnn_handle();
  with_plan(type, d, [&](PatchConvPlan& plan) {
    LOOM_CUDNN_CHECK(cudnnConvolutionBackwardBias(h, &kOne, plan.y, dy, &kZero, plan.bias, db));
  });
}

}  // namespace loom::cuda

#else  // built without cuDNN: every entry point says so

namespace loom::cuda {

void cudnn_patch_conv_forward(DType, const PatchConvDims&, const void*, const void*, void*) {
  ::loom::detail::fail("cudnn_patch_conv_forward: ", kNoCudnnMessage);
}
void cudnn_patch_conv_backward_filter(DType, const PatchConvDims&, const void*, const void*, void*) {
  ::loom::detail::fail("cudnn_patch_conv_backward_filter: ", kNoCudnnMessage);
}
void cudnn_patch_conv_backward_data(DType, const PatchConvDims&, const void*, const void*, void*) {
  ::loom::detail::fail("cudnn_patch_conv_backward_data: ", kNoCudnnMessage);
}
void cudnn_patch_conv_backward_bias(DType, const PatchConvDims&, const void*, void*) {
  ::loom::detail::fail("cudnn_patch_conv_backward_bias: ", kNoCudnnMessage);
}

}  // namespace loom::cuda

#endif
