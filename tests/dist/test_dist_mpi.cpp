// Collectives over MPI, run by CTest as `mpirun -np 2 test_dist_mpi` (any world size works: the
// expectations are closed forms in the world size N). Rank r contributes (r + 1) * k(i) with
// k(i) = i mod 13 + 1, so the sum is k(i) N(N+1)/2, the mean k(i) (N+1)/2 and the maximum k(i) N,
// all exact in float for small N.
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "loom/data/loader.hpp"
#include "loom/data/synthetic.hpp"
#include "loom/dist/data_parallel.hpp"
#include "loom/dist/mpi.hpp"
#include "loom/dist/shard.hpp"
#include "loom/ops/elementwise.hpp"
#include "loom/ops/reduce.hpp"
#include "support/check.hpp"

namespace {

namespace dist = loom::dist;
using loom::Tensor;

double k_of(int64_t i) { return double(i % 13 + 1); }

template <class T>
void check_all_reduce(dist::MpiCommunicator& comm, int64_t n) {
  const int N = comm.size(), r = comm.rank();
  auto contribution = [&](std::vector<T>& v) {
    v.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) v[size_t(i)] = T(double(r + 1) * k_of(i));
  };
  std::vector<T> sum, mean, max, async;
  contribution(sum), contribution(mean), contribution(max), contribution(async);
  dist::all_reduce_sum(comm, sum);
  dist::all_reduce_mean(comm, mean);
  dist::all_reduce_max(comm, max.data(), n);
  comm.all_reduce_async(async.data(), n, loom::dtype_traits<T>::tag, dist::ReduceOp::sum)->wait();
  std::vector<double> want_sum, want_mean, want_max, got_sum, got_mean, got_max, got_async;
  for (int64_t i = 0; i < n; ++i) {
    const double s = k_of(i) * N * (N + 1) / 2;
    want_sum.push_back(s);
    // int64 means round toward zero; floating means are exact here.
    want_mean.push_back(std::is_integral_v<T> ? double(int64_t(s) / N) : s / N);
    want_max.push_back(k_of(i) * N);
    got_sum.push_back(double(sum[size_t(i)]));
    got_mean.push_back(double(mean[size_t(i)]));
    got_max.push_back(double(max[size_t(i)]));
    got_async.push_back(double(async[size_t(i)]));
  }
  loom::test::require_close(got_sum, want_sum, {0, 0});
  loom::test::require_close(got_mean, want_mean, {0, 0});
  loom::test::require_close(got_max, want_max, {0, 0});
  loom::test::require_close(got_async, want_sum, {0, 0});
}

}  // namespace

TEST_CASE("MPI all-reduce: sum, mean, max and async on odd sizes, float, double and int64", "[dist][mpi]") {
  dist::MpiCommunicator comm;
  REQUIRE(comm.size() >= 1);
  REQUIRE(comm.rank() < comm.size());
  for (int64_t n : {1, 7, 1000003}) {
    INFO("n = " << n);
    check_all_reduce<float>(comm, n);
    check_all_reduce<double>(comm, n);
    check_all_reduce<int64_t>(comm, n);
  }
  // Zero elements are allowed (an empty bucket), and a value helper.
  std::vector<float> none;
  dist::all_reduce_sum(comm, none);
  REQUIRE(dist::all_reduce_sum(comm, int64_t(comm.rank() + 1)) == int64_t(comm.size()) * (comm.size() + 1) / 2);
}

TEST_CASE("MPI all-reduce on tensors, error paths throw on every rank alike", "[dist][mpi]") {
  dist::MpiCommunicator comm;
  const int N = comm.size();
  const Tensor<double> t = Tensor<double>::full({3, 7}, double(comm.rank() + 1));
  dist::all_reduce_mean(comm, t);
  loom::test::require_close(t, std::vector<double>(21, double(N + 1) / 2), {0, 0});
  const Tensor<float> transposed = Tensor<float>::zeros({7, 3}).transpose(0, 1);
  REQUIRE_THROWS_WITH(dist::all_reduce_sum(comm, transposed), Catch::Contains("[3, 7]") && Catch::Contains("contiguous"));
  std::vector<int32_t> ints(2);
  REQUIRE_THROWS_WITH(comm.all_reduce(ints.data(), 2, loom::DType::i32, dist::ReduceOp::sum), Catch::Contains("int32"));
  float x = 0;
  REQUIRE_THROWS_WITH(comm.broadcast(&x, 4, N), Catch::Contains("root " + std::to_string(N)));
}

TEST_CASE("MPI broadcast: the root's bytes on every rank, from any root", "[dist][mpi]") {
  dist::MpiCommunicator comm;
  for (int root : {0, comm.size() - 1}) {
    const Tensor<float> t = Tensor<float>::full({1000003}, float(comm.rank() * 10 + 3));
    dist::broadcast(comm, t, root);
    loom::test::require_close(t, std::vector<double>(1000003, double(root * 10 + 3)), {0, 0});
    std::vector<int64_t> v(7, comm.rank());
    dist::broadcast(comm, v, root);
    REQUIRE(v == std::vector<int64_t>(7, root));
  }
  comm.barrier();
}

TEST_CASE("MPI DataParallel: rank 0's parameters everywhere, mean gradients in buckets", "[dist][mpi]") {
  dist::MpiCommunicator comm;
  const int N = comm.size(), r = comm.rank();
  // Different initial values per rank: broadcast_parameters must make them rank 0's.
  Tensor<double> w = Tensor<double>::full({7}, double(r + 5)).requires_grad_();
  Tensor<double> b = Tensor<double>::full({1000003}, double(-r)).requires_grad_();
  dist::DataParallel<double> dp(comm, {w, b}, {.bucket_bytes = 64, .overlap = true});
  REQUIRE(dp.buckets().size() == 2);
  dp.broadcast_parameters();
  loom::test::require_close(w, std::vector<double>(7, 5.0), {0, 0});
  loom::test::require_close(b, std::vector<double>(1000003, 0.0), {0, 0});
  // loss_r = (r + 1) * (sum(w * x) + sum(b)): d/dw = (r + 1) x, d/db = r + 1; means (N + 1)/2 of those.
  const Tensor<double> x = Tensor<double>::from_vector({7}, {1, 2, 3, 4, 5, 6, 7});
  for (int step = 0; step < 2; ++step) {
    w.zero_grad(), b.zero_grad();
    loom::mul(loom::add(loom::sum(loom::mul(w, x)), loom::sum(b)), double(r + 1)).backward();
    dp.finish_gradient_sync();
    std::vector<double> gw;
    for (int i = 1; i <= 7; ++i) gw.push_back(i * double(N + 1) / 2);
    loom::test::require_close(w.grad(), gw, {0, 0});
    loom::test::require_close(b.grad(), std::vector<double>(1000003, double(N + 1) / 2), {0, 0});
    REQUIRE(dp.last_sync().buckets == 2);
  }
}

TEST_CASE("MPI sharded DataLoader: every sample exactly once per epoch over the ranks", "[dist][mpi]") {
  dist::MpiCommunicator comm;
  const int64_t n = 97, B = 4;
  auto dataset = loom::data::open_dataset("synthetic:train=97,clouds=0,size=8");
  for (bool drop_last : {true, false}) {
    loom::data::DataLoader loader(
        *dataset, loom::data::LoaderOptions().batch_size(B).workers(1).seed(3).drop_last(drop_last).shard(comm.rank(), comm.size()));
    for (int64_t epoch : {0, 1}) {
      std::vector<int64_t> times(size_t(n), 0);
      loader.start_epoch(epoch);
      while (auto batch = loader.next())
        for (int64_t i : batch->indices) ++times[size_t(i)];
      dist::all_reduce_sum(comm, times);
      const int64_t covered = drop_last ? n / (B * comm.size()) * B * comm.size() : n;
      int64_t once = 0, more = 0;
      for (int64_t t : times) once += t == 1, more += t > 1;
      REQUIRE(more == 0);
      REQUIRE(once == covered);
      // The samples covered are the first positions of the shared epoch order.
      const std::vector<int64_t> order = dist::epoch_permutation(n, 3, epoch);
      for (int64_t p = 0; p < covered; ++p) REQUIRE(times[size_t(order[size_t(p)])] == 1);
    }
  }
}
