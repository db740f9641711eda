#pragma once
// NcclCommunicator: the Communicator of dist/communicator.hpp over NCCL, for buffers in GPU memory
// (one process per GPU). Compiled only with LOOM_HAVE_NCCL, which the CMake target loom::nccl
// defines (nccl.h and libnccl from the CUDA install, plus the CUDA runtime).
//
//   loom::dist::MpiEnvironment mpi(argc, argv);
//   loom::dist::MpiCommunicator world;                        // bootstrap: ranks and the unique id
//   auto nccl = loom::dist::NcclCommunicator::from_mpi(world, /*device=*/local_rank);
//   nccl->all_reduce(device_ptr, n, loom::DType::f32, loom::dist::ReduceOp::sum);
//
// Collectives are enqueued on the communicator's stream; all_reduce/broadcast/barrier return once
// the stream has finished them, all_reduce_async returns a request that waits on a CUDA event.
// abort() aborts the NCCL communicator (so no GPU waits forever) and then the launcher's job
// through the bootstrap communicator. NCCL errors are thrown as loom::Error.
#ifndef LOOM_HAVE_NCCL
#error "loom/dist/nccl.hpp needs NCCL: link the CMake target loom::nccl (it defines LOOM_HAVE_NCCL)"
#endif
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "loom/dist/communicator.hpp"

namespace loom::dist {

namespace detail {

inline void nccl_check(ncclResult_t code, const char* what) {
  if (code != ncclSuccess) loom::detail::fail("nccl: ", what, " failed: ", ncclGetErrorString(code));
}
inline void cuda_check(cudaError_t code, const char* what) {
  if (code != cudaSuccess) loom::detail::fail("nccl: ", what, " failed: ", cudaGetErrorString(code));
}

inline ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::i64: return ncclInt64;
    default: loom::detail::fail("nccl: ", dtype_name(dtype), " buffers are not supported (float32, float64 or int64)");
  }
}

inline ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return ncclSum;
    case ReduceOp::max: return ncclMax;
    case ReduceOp::min: return ncclMin;
  }
  return ncclSum;
}

}  // namespace detail

// Completes when the stream reaches the event recorded after the collective.
class NcclRequest final : public Request {
 public:
  explicit NcclRequest(cudaStream_t stream) {
    detail::cuda_check(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming), "cudaEventCreate");
    detail::cuda_check(cudaEventRecord(event_, stream), "cudaEventRecord");
  }
  ~NcclRequest() override { cudaEventDestroy(event_); }
  NcclRequest(const NcclRequest&) = delete;
  NcclRequest& operator=(const NcclRequest&) = delete;
  void wait() override { detail::cuda_check(cudaEventSynchronize(event_), "cudaEventSynchronize"); }
  bool test() override {
    const cudaError_t status = cudaEventQuery(event_);
    if (status == cudaErrorNotReady) return false;
    detail::cuda_check(status, "cudaEventQuery");
    return true;
  }

 private:
  cudaEvent_t event_{};
};

class NcclCommunicator final : public Communicator {
 public:
  // Joins the NCCL clique `id` as `rank` of `size` on CUDA device `device`. `bootstrap` (optional,
  // must outlive this object) is the communicator whose abort ends the job.
  NcclCommunicator(int rank, int size, const ncclUniqueId& id, int device, Communicator* bootstrap = nullptr)
      : rank_(rank), size_(size), device_(device), bootstrap_(bootstrap) {
    LOOM_CHECK(size >= 1 && rank >= 0 && rank < size, "NcclCommunicator: rank ", rank, " outside a world of ", size);
    detail::cuda_check(cudaSetDevice(device), "cudaSetDevice");
    detail::cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    detail::nccl_check(ncclCommInitRank(&comm_, size, id, rank), "ncclCommInitRank");
    detail::cuda_check(cudaMalloc(&scratch_, sizeof(float)), "cudaMalloc");
  }
  ~NcclCommunicator() override {
    if (scratch_) cudaFree(scratch_);
    if (comm_) ncclCommDestroy(comm_);
    if (stream_) cudaStreamDestroy(stream_);
  }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  // Rank 0 makes the unique id and broadcasts it over `bootstrap` (typically MPI); every rank
  // then joins with the same rank and size as in `bootstrap`.
  static std::unique_ptr<NcclCommunicator> from_bootstrap(Communicator& bootstrap, int device) {
    ncclUniqueId id{};
    if (bootstrap.rank() == 0) detail::nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    bootstrap.broadcast(&id, int64_t(sizeof id), 0);
    return std::make_unique<NcclCommunicator>(bootstrap.rank(), bootstrap.size(), id, device, &bootstrap);
  }
  static std::unique_ptr<NcclCommunicator> from_mpi(Communicator& mpi, int device) { return from_bootstrap(mpi, device); }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "NCCL (" + std::to_string(size_) + " GPUs)"; }
  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }

  // `data` points to GPU memory.
  void all_reduce(void* data, int64_t count, DType dtype, ReduceOp op) override {
    all_reduce_async(data, count, dtype, op)->wait();
  }
  std::unique_ptr<Request> all_reduce_async(void* data, int64_t count, DType dtype, ReduceOp op) override {
    SingleProcess::check_buffer("all_reduce", data, count, dtype);
    detail::nccl_check(ncclAllReduce(data, data, size_t(count), detail::nccl_type(dtype), detail::nccl_op(op), comm_, stream_),
                       "ncclAllReduce");
    return std::make_unique<NcclRequest>(stream_);
  }
  void broadcast(void* data, int64_t bytes, int root) override {
    LOOM_CHECK(root >= 0 && root < size_, "broadcast: root ", root, " outside a world of ", size_, " processes");
    LOOM_CHECK(bytes >= 0 && (data != nullptr || bytes == 0), "broadcast: ", bytes, " bytes at a null buffer");
    detail::nccl_check(ncclBroadcast(data, data, size_t(bytes), ncclUint8, root, comm_, stream_), "ncclBroadcast");
    detail::cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }
  void barrier() override { all_reduce(scratch_, 1, DType::f32, ReduceOp::sum); }
  [[noreturn]] void abort(const std::string& message, int code) override {
    if (comm_) {
      ncclCommAbort(comm_);
      comm_ = nullptr;
    }
    if (bootstrap_) bootstrap_->abort(message, code);
    std::cerr << "loom: rank " << rank_ << " of " << size_ << ": " << message << "; aborting" << std::endl;
    std::abort();  // no launcher to tell: the process ends here
  }

 private:
  int rank_ = 0, size_ = 1, device_ = 0;
  Communicator* bootstrap_ = nullptr;
  cudaStream_t stream_ = nullptr;
  ncclComm_t comm_ = nullptr;
  float* scratch_ = nullptr;
};

}  // namespace loom::dist
