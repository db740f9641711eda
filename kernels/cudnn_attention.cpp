// cuDNN fused scaled-dot-product attention through the backend (graph) API
// (loom/cuda/cudnn_attention.hpp). Versions:
//   forward  bf16 Q, K, V, O; fp32 scores, softmax and statistics; arbitrary Sq, Skv; D % 8 == 0, D <= 128
// The operation graph, as cuDNN's SDPA engines expect it (the frontend's composite softmax):
//   S = matmul(Q [B,H,Sq,D], Kᵀ [B,H,D,Skv])        Kᵀ: K's memory with its last two strides swapped
//   T = S · scale                                  scale: a by-value fp32 scalar tensor [1,1,1,1]
//   M = max_rows(T)  E = exp(T - M)  Z = sum_rows(E)
//   Stats = M + log(Z)                             [B,H,Sq,1] fp32, written (for a backward pass)
//   P = E / Z;  O = matmul(P, V [B,H,Skv,D])
// Virtual tensors are fp32 and packed. The engine comes from heuristics mode A (then FALLBACK): the
// first configuration whose execution plan finalizes. Plans are cached per thread and shape (the
// plan holds the thread's cuDNN handle).
//   backward bf16 dQ, dK, dV from dO, O and the statistics: cuDNN's single SDPA backward operation
//            (CUDNN_BACKEND_OPERATION_SDPA_BWD_DESCRIPTOR, cuDNN >= 9.17; K not transposed there),
//            same engine search and caching. Not yet run on a GPU (see the test).
// Every cuDNN call is checked (LOOM_CUDNN_CHECK, kernels/cudnn_check.cuh); the descriptors' geometry
// is loom/cuda/cudnn_layout.hpp's (CPU-tested).
// How to run: tests/cuda/test_device_cudnn.cpp (SKIPs without a GPU or without cuDNN) checks O and the
// statistics against a double reference; benchmarks/gpu/bench_attention_gpu.cpp times it (row
// "cudnn_sdpa"); benchmarks/gpu/run.sh runs both.
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
#include <map>
#include <memory>
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

enum Uid : int64_t { kQ = 1, kK, kV, kO, kStats, kScale, kDO, kDQ, kDK, kDV, kFirstVirtual = 100 };

// An SDPA operation graph and its execution plan for one shape; every descriptor is kept alive as
// long as the plan.
struct SdpaPlan {
  std::vector<DescriptorPtr> keep;
  std::vector<cudnnBackendDescriptor_t> ops;
  DescriptorPtr plan;
  int64_t workspace = 0;
  int64_t next_virtual = kFirstVirtual;

  Descriptor& make(cudnnBackendDescriptorType_t type) {
    keep.push_back(std::make_unique<Descriptor>(type));
    return *keep.back();
  }

  Descriptor& tensor(int64_t uid, cudnnDataType_t type, const BackendLayout& l, bool is_virtual,
                     bool by_value = false) {
    Descriptor& t = make(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    const int64_t alignment = 16;
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
  Descriptor& scratch(const BackendLayout& l) { return tensor(next_virtual++, CUDNN_DATA_FLOAT, l, true); }

  void add_op(Descriptor& op) {
    op.finalize();
    ops.push_back(op.get());
  }

  void matmul(const Descriptor& a, const Descriptor& b, const Descriptor& c) {
    Descriptor& desc = make(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
    desc.set(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, &compute).finalize();
    Descriptor& op = make(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
    op.set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_ADESC, a)
        .set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_BDESC, b)
        .set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_CDESC, c)
        .set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_DESC, desc);
    add_op(op);
  }

  // y = mode(x) or mode(x, b) (b broadcast along its size-1 dims)
  void pointwise(cudnnPointwiseMode_t mode, const Descriptor& x, const Descriptor* b, const Descriptor& y) {
    Descriptor& desc = make(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    const cudnnDataType_t precision = CUDNN_DATA_FLOAT;
    desc.set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, &mode)
        .set(CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, &precision)
        .finalize();
    Descriptor& op = make(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    op.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, desc)
        .set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x);
    if (b) op.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, *b);
    op.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y);
    add_op(op);
  }

  // y [.., 1] = reduce over the last dim of x
  void reduce_rows(cudnnReduceTensorOp_t reduction, const Descriptor& x, const Descriptor& y) {
    Descriptor& desc = make(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
    desc.set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, &reduction)
        .set(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, &compute)
        .finalize();
    Descriptor& op = make(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
    op.set_descriptor(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x)
        .set_descriptor(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y)
        .set_descriptor(CUDNN_ATTR_OPERATION_REDUCTION_DESC, desc);
    add_op(op);
  }

  // The forward graph (header comment): composite softmax with statistics between two matmuls.
  void build_forward(const CudnnSdpaDims& d) {
    const int64_t B = d.batch, H = d.heads, Sq = d.seq_q, Skv = d.seq_kv, D = d.head_dim;
    const BackendLayout scores = packed_layout({B, H, Sq, Skv}), rows = packed_layout({B, H, Sq, 1});
    Descriptor& q = tensor(kQ, CUDNN_DATA_BFLOAT16, packed_layout({B, H, Sq, D}), false);
    Descriptor& kt = tensor(kK, CUDNN_DATA_BFLOAT16, transpose_last_two(packed_layout({B, H, Skv, D})), false);
    Descriptor& v = tensor(kV, CUDNN_DATA_BFLOAT16, packed_layout({B, H, Skv, D}), false);
    Descriptor& o = tensor(kO, CUDNN_DATA_BFLOAT16, packed_layout({B, H, Sq, D}), false);
    Descriptor& stats = tensor(kStats, CUDNN_DATA_FLOAT, rows, false);
    Descriptor& scale = tensor(kScale, CUDNN_DATA_FLOAT, packed_layout({1, 1, 1, 1}), false, /*by_value=*/true);

    Descriptor& s = scratch(scores);
    matmul(q, kt, s);
    Descriptor& t = scratch(scores);
    pointwise(CUDNN_POINTWISE_MUL, s, &scale, t);
    Descriptor& m = scratch(rows);
    reduce_rows(CUDNN_REDUCE_TENSOR_MAX, t, m);
    Descriptor& shifted = scratch(scores);
    pointwise(CUDNN_POINTWISE_SUB, t, &m, shifted);
    Descriptor& e = scratch(scores);
    pointwise(CUDNN_POINTWISE_EXP, shifted, nullptr, e);
    Descriptor& z = scratch(rows);
    reduce_rows(CUDNN_REDUCE_TENSOR_ADD, e, z);
    Descriptor& log_z = scratch(rows);
    pointwise(CUDNN_POINTWISE_LOG, z, nullptr, log_z);
    pointwise(CUDNN_POINTWISE_ADD, m, &log_z, stats);
    Descriptor& p = scratch(scores);
    pointwise(CUDNN_POINTWISE_DIV, e, &z, p);
    matmul(p, v, o);
  }

  // The backward: cuDNN's single SDPA backward operation (cuDNN >= 9.17) over Q, K, V (not
  // transposed), O, dO, the forward's statistics and the scale, writing dQ, dK, dV.
  void build_backward(const CudnnSdpaDims& d) {
    const int64_t B = d.batch, H = d.heads, Sq = d.seq_q, Skv = d.seq_kv, D = d.head_dim;
    const BackendLayout rows_q = packed_layout({B, H, Sq, D}), rows_kv = packed_layout({B, H, Skv, D});
    Descriptor& op = make(CUDNN_BACKEND_OPERATION_SDPA_BWD_DESCRIPTOR);
    const struct {
      int64_t uid;
      cudnnDataType_t type;
      BackendLayout layout;
      bool by_value;
      cudnnBackendAttributeName_t attribute;
    } operands[] = {
        {kQ, CUDNN_DATA_BFLOAT16, rows_q, false, CUDNN_ATTR_OPERATION_SDPA_BWD_QDESC},
        {kK, CUDNN_DATA_BFLOAT16, rows_kv, false, CUDNN_ATTR_OPERATION_SDPA_BWD_KDESC},
        {kV, CUDNN_DATA_BFLOAT16, rows_kv, false, CUDNN_ATTR_OPERATION_SDPA_BWD_VDESC},
        {kO, CUDNN_DATA_BFLOAT16, rows_q, false, CUDNN_ATTR_OPERATION_SDPA_BWD_ODESC},
        {kDO, CUDNN_DATA_BFLOAT16, rows_q, false, CUDNN_ATTR_OPERATION_SDPA_BWD_DODDESC},
        {kStats, CUDNN_DATA_FLOAT, packed_layout({B, H, Sq, 1}), false, CUDNN_ATTR_OPERATION_SDPA_BWD_STATSDESC},
        {kScale, CUDNN_DATA_FLOAT, packed_layout({1, 1, 1, 1}), true, CUDNN_ATTR_OPERATION_SDPA_BWD_SCALEDESC},
        {kDQ, CUDNN_DATA_BFLOAT16, rows_q, false, CUDNN_ATTR_OPERATION_SDPA_BWD_DQDESC},
        {kDK, CUDNN_DATA_BFLOAT16, rows_kv, false, CUDNN_ATTR_OPERATION_SDPA_BWD_DKDESC},
        {kDV, CUDNN_DATA_BFLOAT16, rows_kv, false, CUDNN_ATTR_OPERATION_SDPA_BWD_DVDESC},
    };
    for (const auto& t : operands)
      op.set_descriptor(t.attribute, tensor(t.uid, t.type, t.layout, false, t.by_value));
    add_op(op);
  }

  // Finalizes the operation graph and takes the first engine that runs it.
  void make_plan(cudnnHandle_t h, const CudnnSdpaDims& d, const char* direction) {
    const int64_t B = d.batch, H = d.heads, Sq = d.seq_q, Skv = d.seq_kv, D = d.head_dim;
    Descriptor& graph = make(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    graph.set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, ops.data(), int64_t(ops.size()))
        .set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, &h)
        .finalize();
    for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK})
      if (try_engines(h, graph, mode)) return;
    ::loom::detail::fail("cudnn_sdpa: no cuDNN engine supports the SDPA ", direction, " graph for [B ", B, ", H ", H,
                         ", Sq ", Sq, ", Skv ", Skv, ", D ", D, "] on this GPU (cuDNN ", cudnnGetVersion(), ")");
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
    auto fresh = std::make_unique<SdpaPlan>();
    if (backward) fresh->build_backward(d);
    else fresh->build_forward(d);
    fresh->make_plan(h, d, backward ? "backward" : "forward");
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

}  // namespace loom::cuda

#else  // built without cuDNN

namespace loom::cuda {

void cudnn_sdpa_forward(const CudnnSdpaDims& d, const void*, const void*, const void*, void*, float*) {
  check_cudnn_sdpa_dims(d);
  ::loom::detail::fail("cudnn_sdpa_forward: ", kNoCudnnMessage);
}
void cudnn_sdpa_backward(const CudnnSdpaDims& d, const void*, const void*, const void*, const void*, const void*,
                         const float*, void*, void*, void*) {
  check_cudnn_sdpa_dims(d);
  ::loom::detail::fail("cudnn_sdpa_backward: ", kNoCudnnMessage);
}

}  // namespace loom::cuda

#endif
