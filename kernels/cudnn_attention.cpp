// cuDNN fused scaled-dot-product attention through the backend (graph) API
// (loom/cuda/cudnn_attention.hpp). Versions:
//   forward  cuDNN's single SDPA forward operation (CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR,
//            cuDNN >= 9.13.1, the floor cudnn-frontend's unified SDPA node checks) over Q, K, V [B,H,S,D]
//            (K not transposed), writing O and the statistics [B,H,Sq,1] fp32 (natural-log LSE of the
//            scaled scores); the scale is a by-value fp32 scalar tensor [1,1,1,1]. bf16 I/O, arbitrary
//            Sq, Skv; D % 8 == 0, D <= 128.
//   backward bf16 dQ, dK, dV from dO, O and those statistics: cuDNN's single SDPA backward operation
//            (CUDNN_BACKEND_OPERATION_SDPA_BWD_DESCRIPTOR, cuDNN >= 9.17), the same tensor layouts.
// Both directions are one mechanism: one operation in an operation graph, the engine from heuristics
// mode A (then FALLBACK): the first configuration whose execution plan finalizes; plans cached per
// thread, direction and shape (the plan holds the thread's cuDNN handle); the workspace from the
// caching allocator. A loaded cuDNN older than an operation needs is a loom::Error naming both
// versions; a graph cuDNN rejects or has no engine for is the error "no cuDNN engine supports ...".
// Seen on an H200 (sm 90) with cuDNN 9.19 and 9.14: the forward runs and passes the test; neither
// runs the backward (9.19 rejects its graph, "outputGraph.buildDAG()"; cudnn-frontend counts cuDNN
// 9.27 as the first whose heuristics propose its engines), so the test SKIPs it and the attention
// backend falls back to loom's flash backward (cudnn_sdpa_backward_supported).
// Every cuDNN call is checked (LOOM_CUDNN_CHECK, kernels/cudnn_check.cuh) but the graph's and the
// candidate plans' finalize, whose failure means "no engine" / "not this engine"; the descriptors'
// geometry is loom/cuda/cudnn_layout.hpp's (CPU-tested).
// How to run: tests/cuda/test_device_cudnn.cpp (SKIPs without a GPU or without cuDNN) checks O, the
// statistics, dQ, dK and dV against a double reference; benchmarks/gpu/bench_attention_gpu.cpp times it
// (row "cudnn_sdpa"); benchmarks/gpu/run.sh runs both.
#include "loom/cuda/cudnn_attention.hpp"

#include "loom/core/error.hpp"
#include "loom/cuda/cudnn_layout.hpp"
#include "loom/cuda/cudnn_support.hpp"

namespace loom::cuda {

void check_cudnn_sdpa_dims(const CudnnSdpaDims& d) {
  LOOM_CHECK(d.batch > 0 && d.heads > 0 && d.seq_q > 0 && d.seq_kv > 0 && d.head_dim > 0,
             "cudnn_sdpa: every extent must be positive, got [B ", d.batch, ", H ", d.heads, ", Sq ", d.seq_q, ", Skv ",
             d.seq_kv, ", D ", d.head_dim, "]");
  LOOM_CHECK(d.head_dim % 8 == 0 && d.head_dim <= 128, "cudnn_sdpa: cuDNN's fused attention needs a head dim that ",
             "is a multiple of 8 and at most 128, got ", d.head_dim);
}

}  // namespace loom::cuda

#if LOOM_WITH_CUDNN
#include <cudnn.h>
#endif

// The SDPA forward operation's descriptor type and attributes first appear in cuDNN 9.13's headers,
// the backward's in 9.17's. A build against older headers keeps the rest of cuDNN (the patch
// convolution) and reports the missing direction as having no engine (the tests SKIP on that),
// naming the headers' version.
#if LOOM_WITH_CUDNN && CUDNN_VERSION >= 91301
#include <initializer_list>
#include <map>
#include <sstream>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "cudnn_check.cuh"
#include "loom/cuda/device_memory.hpp"

namespace loom::cuda {
namespace {

// One backend descriptor, owned.
class Descriptor {
 public:
  explicit Descriptor(cudnnBackendDescriptorType_t type) { LOOM_CUDNN_CHECK(cudnnBackendCreateDescriptor(type, &d_)); }
  ~Descriptor() {
    if (d_) (void)cudnnBackendDestroyDescriptor(d_);
  }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;

  template <class V>
  Descriptor& set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, const V* values,
                  int64_t count = 1) {
    LOOM_CUDNN_CHECK(cudnnBackendSetAttribute(d_, name, type, count, values));
    return *this;
  }
  Descriptor& set_descriptor(cudnnBackendAttributeName_t name, const Descriptor& other) {
    return set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, &other.d_);
  }
  void finalize() { LOOM_CUDNN_CHECK(cudnnBackendFinalize(d_)); }
  cudnnBackendDescriptor_t get() const { return d_; }

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
};

using DescriptorPtr = std::unique_ptr<Descriptor>;

enum Uid : int64_t { kQ = 1, kK, kV, kO, kStats, kScale, kDO, kDQ, kDK, kDV };

// cudnnGetVersion()'s major·10000 + minor·100 + patch of the first cuDNN with each operation.
constexpr size_t kSdpaForwardVersion = 91301, kSdpaBackwardVersion = 91700;

std::string cudnn_version_name(size_t v) {
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

// What this cuDNN cannot run (too old a library or headers, a graph it rejects or has no engine
// for): a capability, not a wrong call, so cudnn_sdpa_backward_supported can answer false on it.
class NoSdpaEngine : public ::loom::Error {
 public:
  using ::loom::Error::Error;
};

template <class... Parts>
[[noreturn]] void fail_no_engine(const Parts&... parts) {
  std::ostringstream message;
  (message << ... << parts);
  throw NoSdpaEngine(message.str());
}

// The loaded library (not the headers) decides which operations exist at run time.
void require_cudnn_version(size_t needed, const char* direction) {
  const size_t loaded = cudnnGetVersion();
  if (loaded < needed)
    fail_no_engine("cudnn_sdpa: no cuDNN engine supports the SDPA ", direction, " graph here: cuDNN's single SDPA ",
                   direction, " operation needs cuDNN >= ", cudnn_version_name(needed),
                   ", but the loaded library is cuDNN ", cudnn_version_name(loaded));
}

// One operand of an SDPA operation: its tensor descriptor and the operation attribute it is set on.
struct SdpaOperand {
  int64_t uid;
  cudnnDataType_t type;
  BackendLayout layout;
  bool by_value;
  cudnnBackendAttributeName_t attribute;
};

// The layouts both directions share: contiguous bf16 rows (K as it is, not transposed), the fp32
// statistics one value per query row, the scale a single by-value fp32.
struct SdpaLayouts {
  BackendLayout rows_q, rows_kv, stats, scalar;
  explicit SdpaLayouts(const CudnnSdpaDims& d)
      : rows_q(packed_layout({d.batch, d.heads, d.seq_q, d.head_dim})),    // Q, O, dO, dQ [B, H, Sq, D]
        rows_kv(packed_layout({d.batch, d.heads, d.seq_kv, d.head_dim})),  // K, V, dK, dV [B, H, Skv, D]
        stats(packed_layout({d.batch, d.heads, d.seq_q, 1})),              // [B, H, Sq, 1]
        scalar(packed_layout({1, 1, 1, 1})) {}
};

// An SDPA operation graph and its execution plan for one shape; every descriptor is kept alive as
// long as the plan.
struct SdpaPlan {
  std::vector<DescriptorPtr> keep;
  std::vector<cudnnBackendDescriptor_t> ops;
  DescriptorPtr plan;
  int64_t workspace = 0;

  Descriptor& make(cudnnBackendDescriptorType_t type) {
    keep.push_back(std::make_unique<Descriptor>(type));
    return *keep.back();
  }

  Descriptor& tensor(int64_t uid, cudnnDataType_t type, const BackendLayout& l, bool by_value) {
    Descriptor& t = make(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    const int64_t alignment = 16;
    const bool is_virtual = false;
    t.set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, &type)
        .set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, l.dims.data(), 4)
        .set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, l.strides.data(), 4)
        .set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, &uid)
        .set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, &alignment)
        .set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, &is_virtual);
    if (by_value) t.set(CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, &by_value);
    t.finalize();
    return t;
  }

  // One SDPA operation (forward or backward) with every operand's tensor descriptor set on it.
  void add_sdpa_op(cudnnBackendDescriptorType_t type, std::initializer_list<SdpaOperand> operands) {
    Descriptor& op = make(type);
    for (const SdpaOperand& t : operands)
      op.set_descriptor(t.attribute, tensor(t.uid, t.type, t.layout, t.by_value));
    op.finalize();
    ops.push_back(op.get());
  }

  // The forward: Q, K, V and the scale in; O and the statistics (which the backward consumes) out.
  void build_forward(const CudnnSdpaDims& d) {
    const SdpaLayouts l(d);
    add_sdpa_op(CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR,
                {
                    {kQ, CUDNN_DATA_BFLOAT16, l.rows_q, false, CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC},
                    {kK, CUDNN_DATA_BFLOAT16, l.rows_kv, false, CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC},
                    {kV, CUDNN_DATA_BFLOAT16, l.rows_kv, false, CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC},
                    {kO, CUDNN_DATA_BFLOAT16, l.rows_q, false, CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC},
                    {kStats, CUDNN_DATA_FLOAT, l.stats, false, CUDNN_ATTR_OPERATION_SDPA_FWD_STATSDESC},
                    {kScale, CUDNN_DATA_FLOAT, l.scalar, true, CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC},
                });
  }

  // The backward: Q, K, V, O, dO, the forward's statistics and the scale in; dQ, dK, dV out.
  void build_backward(const CudnnSdpaDims& d) {
#if CUDNN_VERSION < 91700
    fail_no_engine("cudnn_sdpa_backward: no cuDNN engine supports the SDPA backward graph for [B ", d.batch,
                         ", H ", d.heads, ", Sq ", d.seq_q, ", Skv ", d.seq_kv, ", D ", d.head_dim,
                         "] in this build: it was compiled against cuDNN ", CUDNN_MAJOR, ".", CUDNN_MINOR,
                         " headers, which predate the SDPA backward operation (9.17)");
#else
    const SdpaLayouts l(d);
    add_sdpa_op(CUDNN_BACKEND_OPERATION_SDPA_BWD_DESCRIPTOR,
                {
                    {kQ, CUDNN_DATA_BFLOAT16, l.rows_q, false, CUDNN_ATTR_OPERATION_SDPA_BWD_QDESC},
                    {kK, CUDNN_DATA_BFLOAT16, l.rows_kv, false, CUDNN_ATTR_OPERATION_SDPA_BWD_KDESC},
                    {kV, CUDNN_DATA_BFLOAT16, l.rows_kv, false, CUDNN_ATTR_OPERATION_SDPA_BWD_VDESC},
                    {kO, CUDNN_DATA_BFLOAT16, l.rows_q, false, CUDNN_ATTR_OPERATION_SDPA_BWD_ODESC},
                    {kDO, CUDNN_DATA_BFLOAT16, l.rows_q, false, CUDNN_ATTR_OPERATION_SDPA_BWD_DODDESC},
                    {kStats, CUDNN_DATA_FLOAT, l.stats, false, CUDNN_ATTR_OPERATION_SDPA_BWD_STATSDESC},
                    {kScale, CUDNN_DATA_FLOAT, l.scalar, true, CUDNN_ATTR_OPERATION_SDPA_BWD_SCALEDESC},
                    {kDQ, CUDNN_DATA_BFLOAT16, l.rows_q, false, CUDNN_ATTR_OPERATION_SDPA_BWD_DQDESC},
                    {kDK, CUDNN_DATA_BFLOAT16, l.rows_kv, false, CUDNN_ATTR_OPERATION_SDPA_BWD_DKDESC},
                    {kDV, CUDNN_DATA_BFLOAT16, l.rows_kv, false, CUDNN_ATTR_OPERATION_SDPA_BWD_DVDESC},
                });
#endif
  }

  // Finalizes the operation graph and takes the first engine that runs it.
  void make_plan(cudnnHandle_t h, const CudnnSdpaDims& d, const char* direction) {
    Descriptor& graph = make(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    graph.set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, ops.data(), int64_t(ops.size()))
        .set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, &h);
    // A cuDNN with no engine for the operation may reject the graph itself rather than return no
    // engine configurations (cuDNN 9.19 does so for the SDPA backward on sm 90: "outputGraph.buildDAG()"):
    // the same capability gap, reported the same way, with cuDNN's reason.
    if (cudnnBackendFinalize(graph.get()) != CUDNN_STATUS_SUCCESS) {
      char reason[512] = {0};
      cudnnGetLastErrorString(reason, sizeof(reason));
      no_engine(d, direction, std::string("; cuDNN rejects the operation graph: ") + reason);
    }
    for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK})
      if (try_engines(h, graph, mode)) return;
    no_engine(d, direction, "");
  }

  [[noreturn]] static void no_engine(const CudnnSdpaDims& d, const char* direction, const std::string& why) {
    fail_no_engine("cudnn_sdpa: no cuDNN engine supports the SDPA ", direction, " graph for [B ", d.batch,
                         ", H ", d.heads, ", Sq ", d.seq_q, ", Skv ", d.seq_kv, ", D ", d.head_dim,
                         "] on this GPU (cuDNN ", cudnn_version_name(cudnnGetVersion()), ")", why);
  }

  // The first engine configuration of heuristics `mode` whose plan finalizes becomes the plan.
  bool try_engines(cudnnHandle_t h, const Descriptor& graph, cudnnBackendHeurMode_t mode) {
    Descriptor heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    heur.set_descriptor(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph)
        .set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, &mode);
    heur.finalize();
    int64_t count = 0;
    LOOM_CUDNN_CHECK(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                              0, &count, nullptr));
    if (count <= 0) return false;
    std::vector<DescriptorPtr> configs;
    std::vector<cudnnBackendDescriptor_t> raw;
    for (int64_t i = 0; i < count; ++i) {
      configs.push_back(std::make_unique<Descriptor>(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR));
      raw.push_back(configs.back()->get());
    }
    int64_t returned = 0;
    LOOM_CUDNN_CHECK(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                              count, &returned, raw.data()));
    for (int64_t i = 0; i < returned; ++i) {
      auto candidate = std::make_unique<Descriptor>(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
      candidate->set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, &h)
          .set_descriptor(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, *configs[size_t(i)]);
      // An engine that cannot run this graph fails here: not an error, try the next one.
      if (cudnnBackendFinalize(candidate->get()) != CUDNN_STATUS_SUCCESS) continue;
      int64_t got = 0;
      LOOM_CUDNN_CHECK(cudnnBackendGetAttribute(candidate->get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                                CUDNN_TYPE_INT64, 1, &got, &workspace));
      plan = std::move(candidate);
      keep.push_back(std::move(configs[size_t(i)]));  // the plan refers to its engine configuration
      return true;
    }
    return false;
  }
};

// The calling thread's plan for (direction, shape), built on first use.
SdpaPlan& cached_plan(cudnnHandle_t h, const CudnnSdpaDims& d, bool backward) {
  using Key = std::tuple<bool, int64_t, int64_t, int64_t, int64_t, int64_t>;
  thread_local std::map<Key, std::unique_ptr<SdpaPlan>> plans;
  auto& plan = plans[Key{backward, d.batch, d.heads, d.seq_q, d.seq_kv, d.head_dim}];
  if (!plan) {
    const char* direction = backward ? "backward" : "forward";
    require_cudnn_version(backward ? kSdpaBackwardVersion : kSdpaForwardVersion, direction);
    auto fresh = std::make_unique<SdpaPlan>();
    if (backward) fresh->build_backward(d);
    else fresh->build_forward(d);
    fresh->make_plan(h, d, direction);
    plan = std::move(fresh);
  }
  return *plan;
}

// Runs `plan` with the variant pack (uids[i] -> pointers[i]) and a workspace from the caching allocator.
void execute(cudnnHandle_t h, const SdpaPlan& plan, const std::vector<int64_t>& uids, const std::vector<void*>& pointers) {
  void* workspace = plan.workspace > 0 ? device_allocate(size_t(plan.workspace)) : nullptr;
  struct Release {
    void* p;
    ~Release() {
      if (p) device_release(p);
    }
  } release{workspace};
  Descriptor pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, uids.data(), int64_t(uids.size()))
      .set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, pointers.data(), int64_t(pointers.size()))
      .set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, &workspace);
  pack.finalize();
  LOOM_CUDNN_CHECK(cudnnBackendExecute(h, plan.plan->get(), pack.get()));
}

}  // namespace

void cudnn_sdpa_forward(const CudnnSdpaDims& d, const void* q, const void* k, const void* v, void* o, float* stats) {
  check_cudnn_sdpa_dims(d);
  cudnnHandle_t h = cudnn_handle();
  float scale = d.scale;  // by value: the variant pack points at host memory
  execute(h, cached_plan(h, d, false), {kQ, kK, kV, kO, kStats, kScale},
          {const_cast<void*>(q), const_cast<void*>(k), const_cast<void*>(v), o, stats, &scale});
}

void cudnn_sdpa_backward(const CudnnSdpaDims& d, const void* q, const void* k, const void* v, const void* o,
                         const void* d_o, const float* stats, void* dq, void* dk, void* dv) {
  check_cudnn_sdpa_dims(d);
  cudnnHandle_t h = cudnn_handle();
  float scale = d.scale;
  execute(h, cached_plan(h, d, true), {kQ, kK, kV, kO, kDO, kStats, kScale, kDQ, kDK, kDV},
          {const_cast<void*>(q), const_cast<void*>(k), const_cast<void*>(v), const_cast<void*>(o),
           const_cast<void*>(d_o), const_cast<float*>(stats), &scale, dq, dk, dv});
}

bool cudnn_sdpa_backward_supported(const CudnnSdpaDims& d) {
  check_cudnn_sdpa_dims(d);
  // Answered once per thread and shape: a "no" is asked again every training step, and finding it
  // means querying cuDNN's heuristics for every engine.
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>;
  thread_local std::map<Key, bool> known;
  const Key key{d.batch, d.heads, d.seq_q, d.seq_kv, d.head_dim};
  if (const auto found = known.find(key); found != known.end()) return found->second;
  bool supported = true;
  try {
    cached_plan(cudnn_handle(), d, true);  // kept for cudnn_sdpa_backward
  } catch (const NoSdpaEngine&) {  // any other failure reaches the caller, and is asked again next time
    supported = false;
  }
  known.emplace(key, supported);
  return supported;
}

}  // namespace loom::cuda

#else  // built without cuDNN, or with headers older than the SDPA forward operation

namespace loom::cuda {
namespace {

[[noreturn]] void fail_unavailable(const char* direction) {
#if LOOM_WITH_CUDNN
  ::loom::detail::fail("cudnn_sdpa_", direction, ": no cuDNN engine supports the SDPA ", direction,
                       " graph in this build: it was compiled against cuDNN ", CUDNN_MAJOR, ".", CUDNN_MINOR,
                       " headers, which predate the SDPA operations (9.13.1)");
#else
  ::loom::detail::fail("cudnn_sdpa_", direction, ": ", kNoCudnnMessage);
#endif
}

}  // namespace

void cudnn_sdpa_forward(const CudnnSdpaDims& d, const void*, const void*, const void*, void*, float*) {
  check_cudnn_sdpa_dims(d);
  fail_unavailable("forward");
}
void cudnn_sdpa_backward(const CudnnSdpaDims& d, const void*, const void*, const void*, const void*, const void*,
                         const float*, void*, void*, void*) {
  check_cudnn_sdpa_dims(d);
  fail_unavailable("backward");
}
bool cudnn_sdpa_backward_supported(const CudnnSdpaDims& d) {
  check_cudnn_sdpa_dims(d);
  return false;
}

}  // namespace loom::cuda

#endif
