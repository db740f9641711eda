#pragma once
// MpiCommunicator: the Communicator of dist/communicator.hpp over MPI (Open MPI from Debian's
// libopenmpi-dev), for CPU buffers. Compiled only with LOOM_HAVE_MPI, which the CMake target
// loom::mpi defines (it also links MPI::MPI_CXX); loom::loom itself never needs MPI.
//
//   int main(int argc, char** argv) {
//     loom::dist::MpiEnvironment mpi(argc, argv);          // MPI_Init_thread ... MPI_Finalize
//     loom::dist::MpiCommunicator comm;                      // MPI_COMM_WORLD
//     loom::dist::all_reduce_mean(comm, grad);
//   }
//
// Every collective is started non-blocking and waited for with a deadline (LOOM_DIST_TIMEOUT
// seconds, default 600; 0 waits forever): a rank that stops taking part (hung, or dead without the
// launcher noticing) makes the others abort the whole job with a message naming the collective,
// instead of hanging silently. MPI errors are returned (MPI_ERRORS_RETURN) and thrown as loom::Error.
// Only the thread that made the communicator may call it (MPI_THREAD_FUNNELED).
#ifndef LOOM_HAVE_MPI
#error "loom/dist/mpi.hpp needs MPI: link the CMake target loom::mpi (it defines LOOM_HAVE_MPI)"
#endif
// Only MPI's C API is used: leave out the deprecated C++ bindings (and their warnings).
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "loom/dist/communicator.hpp"

namespace loom::dist {

namespace detail {

inline std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  return std::string(text, size_t(length));
}

inline void mpi_check(int code, const char* what) {
  if (code != MPI_SUCCESS) loom::detail::fail("mpi: ", what, " failed: ", mpi_error_text(code));
}

inline MPI_Datatype mpi_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i64: return MPI_INT64_T;
    default: loom::detail::fail("mpi: ", dtype_name(dtype), " buffers are not supported (float32, float64 or int64)");
  }
}

inline MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return MPI_SUM;
    case ReduceOp::max: return MPI_MAX;
    case ReduceOp::min: return MPI_MIN;
  }
  return MPI_SUM;
}

// Seconds a collective may wait: LOOM_DIST_TIMEOUT, default 600 (0: forever).
inline double default_timeout_s() {
  const char* env = std::getenv("LOOM_DIST_TIMEOUT");
  if (!env || !*env) return 600.0;
  char* end = nullptr;
  const double v = std::strtod(env, &end);
  LOOM_CHECK(end && *end == '\0' && v >= 0, "LOOM_DIST_TIMEOUT: expected seconds >= 0, got '", env, "'");
  return v;
}

// MPI counts are int: a larger buffer goes as several pieces of at most this many elements.
inline constexpr int64_t kMaxPiece = int64_t(1) << 30;

}  // namespace detail

// MPI_Init_thread (FUNNELED) for the lifetime of the object, unless MPI was already initialized;
// MPI_Finalize at the end if this object initialized it.
class MpiEnvironment {
 public:
  MpiEnvironment(int& argc, char**& argv) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) return;
    int provided = 0;
    detail::mpi_check(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    owner_ = true;
  }
  MpiEnvironment() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) return;
    int provided = 0;
    detail::mpi_check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    owner_ = true;
  }
  ~MpiEnvironment() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owner_ && !finalized) MPI_Finalize();
  }
  MpiEnvironment(const MpiEnvironment&) = delete;
  MpiEnvironment& operator=(const MpiEnvironment&) = delete;

 private:
  bool owner_ = false;
};

class MpiCommunicator;

// Pieces of one collective in flight; wait() enforces the communicator's deadline.
class MpiRequest final : public Request {
 public:
  MpiRequest(MpiCommunicator& comm, std::string what) : comm_(comm), what_(std::move(what)) {}
  ~MpiRequest() override;
  void wait() override;
  bool test() override {
    if (requests_.empty()) return true;
    int done = 0;
    detail::mpi_check(MPI_Testall(int(requests_.size()), requests_.data(), &done, MPI_STATUSES_IGNORE), what_.c_str());
    if (done) requests_.clear();
    return done != 0;
  }
  std::vector<MPI_Request> requests_;

 private:
  MpiCommunicator& comm_;
  std::string what_;
};

class MpiCommunicator final : public Communicator {
 public:
  // A communicator over `comm` (not duplicated: collectives of others on it must keep the order).
  explicit MpiCommunicator(MPI_Comm comm = MPI_COMM_WORLD, double timeout_s = detail::default_timeout_s())
      : comm_(comm), timeout_s_(timeout_s) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    LOOM_CHECK(initialized, "MpiCommunicator: MPI is not initialized (make an MpiEnvironment first)");
    LOOM_CHECK(timeout_s >= 0, "MpiCommunicator: timeout ", timeout_s, " s must not be negative");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    detail::mpi_check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    detail::mpi_check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "MPI (" + std::to_string(size_) + " processes)"; }
  double timeout_s() const { return timeout_s_; }
  void set_timeout_s(double seconds) { timeout_s_ = seconds; }

  void all_reduce(void* data, int64_t count, DType dtype, ReduceOp op) override {
    all_reduce_async(data, count, dtype, op)->wait();
  }

  std::unique_ptr<Request> all_reduce_async(void* data, int64_t count, DType dtype, ReduceOp op) override {
    SingleProcess::check_buffer("all_reduce", data, count, dtype);
    auto request = std::make_unique<MpiRequest>(
        *this, std::string("all-reduce ") + reduce_op_name(op) + " of " + std::to_string(count) + " " + dtype_name(dtype));
    const MPI_Datatype type = detail::mpi_type(dtype);
    const size_t element = dtype_size(dtype);
    for (int64_t begin = 0; begin < count; begin += detail::kMaxPiece) {
      const int n = int(std::min(detail::kMaxPiece, count - begin));
      MPI_Request r;
      detail::mpi_check(MPI_Iallreduce(MPI_IN_PLACE, static_cast<char*>(data) + size_t(begin) * element, n, type,
                                       detail::mpi_op(op), comm_, &r),
                        "MPI_Iallreduce");
      request->requests_.push_back(r);
    }
    return request;
  }

  void broadcast(void* data, int64_t bytes, int root) override {
    LOOM_CHECK(root >= 0 && root < size_, "broadcast: root ", root, " outside a world of ", size_, " processes");
    LOOM_CHECK(bytes >= 0 && (data != nullptr || bytes == 0), "broadcast: ", bytes, " bytes at a null buffer");
    MpiRequest request(*this, "broadcast of " + std::to_string(bytes) + " bytes from rank " + std::to_string(root));
    for (int64_t begin = 0; begin < bytes; begin += detail::kMaxPiece) {
      MPI_Request r;
      detail::mpi_check(MPI_Ibcast(static_cast<char*>(data) + begin, int(std::min(detail::kMaxPiece, bytes - begin)),
                                   MPI_BYTE, root, comm_, &r),
                        "MPI_Ibcast");
      request.requests_.push_back(r);
    }
    request.wait();
  }

  void barrier() override {
    MpiRequest request(*this, "barrier");
    MPI_Request r;
    detail::mpi_check(MPI_Ibarrier(comm_, &r), "MPI_Ibarrier");
    request.requests_.push_back(r);
    request.wait();
  }

  [[noreturn]] void abort(const std::string& message, int code) override {
    std::cerr << "loom: rank " << rank_ << " of " << size_ << ": " << message << "; aborting all " << size_
              << " processes" << std::endl;
    MPI_Abort(comm_, code == 0 ? 1 : code);
    std::abort();  // MPI_Abort does not return; this satisfies [[noreturn]]
  }

 private:
  friend class MpiRequest;
  static size_t dtype_size(DType dtype) {
    switch (dtype) {
      case DType::f32: return 4;
      case DType::f64: return 8;
      case DType::i64: return 8;
      default: return 1;
    }
  }

  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
  double timeout_s_ = 600.0;
};

inline void MpiRequest::wait() {
  if (requests_.empty()) return;
  const double limit = comm_.timeout_s();
  if (limit == 0) {
    detail::mpi_check(MPI_Waitall(int(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE), what_.c_str());
    requests_.clear();
    return;
  }
  // Poll: MPI progresses a message only inside MPI calls, so the first 2 ms spin (yielding) as
  // MPI_Waitall would; a longer wait is another rank still computing, and polling every 50 us then
  // leaves the core to it (ranks may share cores) at little cost in latency.
  const auto start = std::chrono::steady_clock::now();
  while (!test()) {
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (waited > limit)
      comm_.abort("loom::dist: " + what_ + " did not complete within " + std::to_string(int64_t(limit)) +
                      " s (LOOM_DIST_TIMEOUT): another rank died, hung or left the collective",
                  3);
    if (waited < 2e-3) std::this_thread::yield();
    else std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

// A request still in flight when dropped (an exception unwound its owner) is waited for, within
// the deadline, so that MPI does not write into freed memory later.
inline MpiRequest::~MpiRequest() {
  try {
    wait();
  } catch (...) {  // an MPI error while unwinding: the job is failing already
  }
}

}  // namespace loom::dist
