#pragma once
// Communicator: the collective operations data-parallel training needs (docs/distributed.md),
// behind one small interface so the trainers never name a transport:
//   rank() / size()                 this process's place in the job
//   all_reduce(buffer, op)          sum / max / min in place, on every rank the same result
//   all_reduce_async(buffer, op)    the same, started now and finished by Request::wait()
//   broadcast(buffer, root)         root's bytes on every rank
//   barrier()
// Implementations: SingleProcess (here; the default, every collective is the identity),
// MpiCommunicator (dist/mpi.hpp, CPU buffers), NcclCommunicator (dist/nccl.hpp, device buffers).
//
//   loom::dist::SingleProcess single;
//   loom::dist::Communicator& comm = single;
//   loom::dist::all_reduce_mean(comm, grad);          // a contiguous CPU tensor, in place
//   loom::dist::all_reduce_sum(comm, counts.data(), int64_t(counts.size()));
//
// Typed helpers cover float, double and int64 buffers and CPU tensors of those types. The mean of
// int64 values is the sum divided by the world size, rounded toward zero.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "loom/core/dtype.hpp"
#include "loom/core/error.hpp"
#include "loom/core/tensor.hpp"

namespace loom::dist {

enum class ReduceOp { sum, max, min };

inline const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return "sum";
    case ReduceOp::max: return "max";
    case ReduceOp::min: return "min";
  }
  return "?";
}

// The element types collectives accept.
template <class T>
inline constexpr bool kCollectiveElement =
    std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, int64_t>;

// A started collective. wait() returns once the buffer holds the result (or throws);
// test() says whether it has (and lets the transport make progress).
class Request {
 public:
  virtual ~Request() = default;
  virtual void wait() = 0;
  virtual bool test() = 0;
};

// A request that completed when it was made (transports without asynchronous collectives).
class CompletedRequest final : public Request {
 public:
  void wait() override {}
  bool test() override { return true; }
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;

  // Buffers are `count` elements of `dtype` (f32, f64 or i64) at `data`.
  virtual void all_reduce(void* data, int64_t count, DType dtype, ReduceOp op) = 0;
  // The buffer must stay alive and untouched until the request's wait() returns.
  virtual std::unique_ptr<Request> all_reduce_async(void* data, int64_t count, DType dtype, ReduceOp op) {
    all_reduce(data, count, dtype, op);
    return std::make_unique<CompletedRequest>();
  }
  virtual void broadcast(void* data, int64_t bytes, int root) = 0;
  virtual void barrier() = 0;
  // Ends every process of the job with `message` (the launcher's contract for a failed rank).
  // A single process has nothing to end and throws loom::Error instead.
  [[noreturn]] virtual void abort(const std::string& message, int code) = 0;

  bool is_root() const { return rank() == 0; }
};

// One process: every collective leaves the buffers as they are.
class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "single process"; }
  void all_reduce(void* data, int64_t count, DType dtype, ReduceOp op) override {
    check_buffer("all_reduce", data, count, dtype);
    (void)op;
  }
  void broadcast(void* data, int64_t bytes, int root) override {
    LOOM_CHECK(root == 0, "broadcast: root ", root, " outside a world of 1 process");
    LOOM_CHECK(bytes >= 0 && (data != nullptr || bytes == 0), "broadcast: ", bytes, " bytes at a null buffer");
  }
  void barrier() override {}
  [[noreturn]] void abort(const std::string& message, int code) override {
    loom::detail::fail("abort (code ", code, "): ", message);
  }

  static void check_buffer(const char* op, const void* data, int64_t count, DType dtype) {
    LOOM_CHECK(dtype == DType::f32 || dtype == DType::f64 || dtype == DType::i64, op, ": ", dtype_name(dtype),
               " buffers are not supported (float32, float64 or int64)");
    LOOM_CHECK(count >= 0 && (data != nullptr || count == 0), op, ": ", count, " elements at a null buffer");
  }
};

// Whether this process was started by an MPI launcher (mpirun / mpiexec of Open MPI or MPICH,
// srun with PMI): the trainers then join the job's communicator instead of running alone.
inline bool launched_under_mpi() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (const char* v = std::getenv(name); v && *v) return true;
  return false;
}

// ---- typed helpers -------------------------------------------------------------------------------

template <class T>
void all_reduce_sum(Communicator& comm, T* data, int64_t count) {
  static_assert(kCollectiveElement<T>, "all_reduce_sum: float, double or int64_t");
  comm.all_reduce(data, count, dtype_traits<T>::tag, ReduceOp::sum);
}

template <class T>
void all_reduce_max(Communicator& comm, T* data, int64_t count) {
  static_assert(kCollectiveElement<T>, "all_reduce_max: float, double or int64_t");
  comm.all_reduce(data, count, dtype_traits<T>::tag, ReduceOp::max);
}

// The sum divided by the world size (int64: rounded toward zero).
template <class T>
void divide_by_world(Communicator& comm, T* data, int64_t count) {
  const int n = comm.size();
  if (n == 1) return;
  for (int64_t i = 0; i < count; ++i) data[i] = T(data[i] / T(n));
}

template <class T>
void all_reduce_mean(Communicator& comm, T* data, int64_t count) {
  all_reduce_sum(comm, data, count);
  divide_by_world(comm, data, count);
}

template <class T>
void all_reduce_sum(Communicator& comm, std::vector<T>& v) {
  all_reduce_sum(comm, v.data(), int64_t(v.size()));
}
template <class T>
void all_reduce_mean(Communicator& comm, std::vector<T>& v) {
  all_reduce_mean(comm, v.data(), int64_t(v.size()));
}

// One value summed over the ranks.
template <class T>
T all_reduce_sum(Communicator& comm, T value) {
  all_reduce_sum(comm, &value, 1);
  return value;
}

template <class T>
void require_contiguous(const Tensor<T, CPU>& t, const char* op) {
  LOOM_CHECK(t.defined(), op, ": undefined tensor");
  LOOM_CHECK(t.is_contiguous(), op, ": the tensor of shape ", t.shape(), " and strides ", t.strides(),
             " is not contiguous; collectives work on whole buffers (use contiguous())");
}

// In place on a contiguous CPU tensor.
template <class T>
void all_reduce_sum(Communicator& comm, const Tensor<T, CPU>& t) {
  require_contiguous(t, "all_reduce_sum");
  all_reduce_sum(comm, t.data(), t.numel());
  t.bump_version();
}
template <class T>
void all_reduce_mean(Communicator& comm, const Tensor<T, CPU>& t) {
  require_contiguous(t, "all_reduce_mean");
  all_reduce_mean(comm, t.data(), t.numel());
  t.bump_version();
}

// Root's values in every rank's tensor (same shape on every rank).
template <class T>
void broadcast(Communicator& comm, const Tensor<T, CPU>& t, int root = 0) {
  require_contiguous(t, "broadcast");
  comm.broadcast(t.data(), t.numel() * int64_t(sizeof(T)), root);
  t.bump_version();
}

template <class T>
void broadcast(Communicator& comm, std::vector<T>& v, int root = 0) {
  static_assert(std::is_trivially_copyable_v<T>, "broadcast: trivially copyable elements");
  comm.broadcast(v.data(), int64_t(v.size() * sizeof(T)), root);
}

}  // namespace loom::dist
