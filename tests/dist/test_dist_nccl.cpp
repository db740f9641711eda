// The NCCL communicator (loom/dist/nccl.hpp) with one rank on the first GPU: all-reduce (sync and
// async), broadcast and barrier on device buffers of odd sizes and every supported type, and the
// error paths. Skips where no GPU is visible; it must at least compile wherever NCCL is installed.
#include <catch2/catch.hpp>
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "loom/dist/nccl.hpp"
#include "support/check.hpp"

namespace {

namespace dist = loom::dist;

bool have_gpu() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

std::unique_ptr<dist::NcclCommunicator> one_rank() {
  ncclUniqueId id{};
  REQUIRE(ncclGetUniqueId(&id) == ncclSuccess);
  return std::make_unique<dist::NcclCommunicator>(0, 1, id, 0);
}

// Copies `host` to the GPU, runs `op` on the device pointer, returns the values copied back.
template <class T, class Op>
std::vector<double> on_device(const std::vector<T>& host, Op op) {
  void* device = nullptr;
  REQUIRE(cudaMalloc(&device, host.size() * sizeof(T) + 1) == cudaSuccess);
  REQUIRE(cudaMemcpy(device, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  op(device);
  std::vector<T> back(host.size());
  REQUIRE(cudaMemcpy(back.data(), device, host.size() * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
  cudaFree(device);
  return std::vector<double>(back.begin(), back.end());
}

template <class T>
void check_type(dist::NcclCommunicator& comm) {
  for (int64_t n : {1, 7, 1000003}) {
    std::vector<T> values(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) values[size_t(i)] = T(i % 13 + 1);
    const std::vector<double> want(values.begin(), values.end());  // one rank: sum = max = the values
    for (auto op : {dist::ReduceOp::sum, dist::ReduceOp::max, dist::ReduceOp::min}) {
      loom::test::require_close(on_device(values, [&](void* p) { comm.all_reduce(p, n, loom::dtype_traits<T>::tag, op); }),
                                want, {0, 0});
    }
    loom::test::require_close(on_device(values, [&](void* p) {
                                auto request = comm.all_reduce_async(p, n, loom::dtype_traits<T>::tag, dist::ReduceOp::sum);
                                request->wait();
                                REQUIRE(request->test());
                              }),
                              want, {0, 0});
    loom::test::require_close(on_device(values, [&](void* p) { comm.broadcast(p, n * int64_t(sizeof(T)), 0); }), want, {0, 0});
  }
}

}  // namespace

TEST_CASE("NCCL, one rank: all-reduce, broadcast and barrier on device buffers", "[dist][nccl]") {
  if (!have_gpu()) LOOM_SKIP("no CUDA device visible");
  auto comm = one_rank();
  REQUIRE(comm->rank() == 0);
  REQUIRE(comm->size() == 1);
  check_type<float>(*comm);
  check_type<double>(*comm);
  check_type<int64_t>(*comm);
  comm->barrier();
  std::vector<int32_t> ints(2);
  REQUIRE_THROWS_WITH(comm->all_reduce(ints.data(), 2, loom::DType::i32, dist::ReduceOp::sum), Catch::Contains("int32"));
  float x = 0;
  REQUIRE_THROWS_WITH(comm->broadcast(&x, 4, 1), Catch::Contains("root 1"));
  ncclUniqueId id{};
  REQUIRE_THROWS_WITH(dist::NcclCommunicator(1, 1, id, 0), Catch::Contains("rank 1") && Catch::Contains("world of 1"));
}
