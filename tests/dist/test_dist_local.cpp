// Data-parallel pieces that need no MPI (built everywhere): the single-process communicator and
// the typed collective helpers, sharding (dist/shard.hpp and the DataLoader's shard option), the
// autograd gradient-ready hook, and DataParallel's bucketing and averaging against a scripted
// two-rank communicator whose "other rank" contributes known gradients.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "loom/data/loader.hpp"
#include "loom/data/synthetic.hpp"
#include "loom/dist/communicator.hpp"
#include "loom/dist/data_parallel.hpp"
#include "loom/dist/shard.hpp"
#include "loom/ops/elementwise.hpp"
#include "loom/ops/reduce.hpp"
#include "support/check.hpp"

namespace {

using loom::Tensor;
namespace dist = loom::dist;

// A world of 2 where this process is rank 0 and the scripted peer (rank 1) adds `peer_value`
// to every element of every sum, and holds the same values as this rank for max / min.
// Records the asynchronous collectives in call order.
class ScriptedPair final : public dist::Communicator {
 public:
  explicit ScriptedPair(double peer_value) : peer_value_(peer_value) {}
  int rank() const override { return 0; }
  int size() const override { return 2; }
  std::string name() const override { return "scripted pair"; }
  void all_reduce(void* data, int64_t count, loom::DType dtype, dist::ReduceOp op) override {
    if (op != dist::ReduceOp::sum) return;
    if (dtype == loom::DType::f32)
      for (int64_t i = 0; i < count; ++i) static_cast<float*>(data)[i] += float(peer_value_);
    else if (dtype == loom::DType::f64)
      for (int64_t i = 0; i < count; ++i) static_cast<double*>(data)[i] += peer_value_;
    else
      for (int64_t i = 0; i < count; ++i) static_cast<int64_t*>(data)[i] += int64_t(peer_value_);
  }
  std::unique_ptr<dist::Request> all_reduce_async(void* data, int64_t count, loom::DType dtype,
                                                  dist::ReduceOp op) override {
    counts.push_back(count);
    during_backward.push_back(in_backward);
    all_reduce(data, count, dtype, op);
    return std::make_unique<dist::CompletedRequest>();
  }
  void broadcast(void*, int64_t, int) override { ++broadcasts; }
  void barrier() override {}
  [[noreturn]] void abort(const std::string& message, int) override { loom::detail::fail("abort: ", message); }

  std::vector<int64_t> counts;       // elements of each asynchronous all-reduce, in order
  std::vector<bool> during_backward;  // whether it started while in_backward was set
  bool in_backward = false;
  int broadcasts = 0;

 private:
  double peer_value_;
};

Tensor<double> leaf(const std::vector<double>& values, loom::Shape shape) {
  Tensor<double> t = Tensor<double>::from_vector(shape, values);
  t.requires_grad_();
  return t;
}

}  // namespace

TEST_CASE("SingleProcess: collectives are the identity, typed helpers check their buffers", "[dist]") {
  dist::SingleProcess single;
  dist::Communicator& comm = single;
  REQUIRE(comm.rank() == 0);
  REQUIRE(comm.size() == 1);
  REQUIRE(comm.is_root());
  for (int64_t n : {1, 7, 1000003}) {
    std::vector<float> f(size_t(n), 1.5f);
    std::vector<double> d(size_t(n), -2.25);
    std::vector<int64_t> i(size_t(n), 7);
    dist::all_reduce_mean(comm, f);
    dist::all_reduce_sum(comm, d);
    dist::all_reduce_mean(comm, i);
    REQUIRE(std::all_of(f.begin(), f.end(), [](float v) { return v == 1.5f; }));
    REQUIRE(std::all_of(d.begin(), d.end(), [](double v) { return v == -2.25; }));
    REQUIRE(std::all_of(i.begin(), i.end(), [](int64_t v) { return v == 7; }));
  }
  REQUIRE(dist::all_reduce_sum(comm, 3.5) == 3.5);
  const Tensor<float> t = Tensor<float>::full({3, 5}, 2.0f);
  const uint64_t version = t.version();
  dist::all_reduce_mean(comm, t);
  dist::broadcast(comm, t);
  REQUIRE(t.version() > version);  // marked as written (saved tensors would notice)
  loom::test::require_close(t, std::vector<double>(15, 2.0), {0, 0});

  // Error paths: non-contiguous tensors, unsupported types, bad roots, abort.
  const Tensor<float> transposed = Tensor<float>::zeros({3, 5}).transpose(0, 1);
  REQUIRE_THROWS_AS(dist::all_reduce_sum(comm, transposed), loom::Error);
  REQUIRE_THROWS_WITH(dist::all_reduce_mean(comm, transposed), Catch::Contains("all_reduce_mean") && Catch::Contains("[5, 3]"));
  REQUIRE_THROWS_WITH(dist::broadcast(comm, Tensor<float>()), Catch::Contains("undefined"));
  std::vector<int32_t> ints(3);
  REQUIRE_THROWS_WITH(comm.all_reduce(ints.data(), 3, loom::DType::i32, dist::ReduceOp::sum), Catch::Contains("int32"));
  REQUIRE_THROWS_WITH(comm.all_reduce(nullptr, 3, loom::DType::f32, dist::ReduceOp::sum), Catch::Contains("null"));
  float one = 0;
  REQUIRE_THROWS_WITH(comm.broadcast(&one, 4, 1), Catch::Contains("root 1"));
  REQUIRE_THROWS_WITH(comm.abort("rank failed", 1), Catch::Contains("rank failed"));
}

TEST_CASE("divide_by_world: int64 means round toward zero, floats divide exactly", "[dist]") {
  ScriptedPair pair(0.0);
  std::vector<int64_t> i{7, -7, 8};
  dist::divide_by_world(pair, i.data(), 3);
  REQUIRE(i == std::vector<int64_t>{3, -3, 4});
  std::vector<double> d{1.0, -3.0};
  dist::all_reduce_mean(pair, d);  // the peer adds 0: (x + 0) / 2
  REQUIRE(d == std::vector<double>{0.5, -1.5});
}

TEST_CASE("shard_positions: contiguous shares that differ by at most one and tile the range", "[dist]") {
  for (int world : {1, 2, 3, 7}) {
    for (int64_t n : {0, 1, 7, 97, 225}) {
      int64_t next = 10;
      for (int r = 0; r < world; ++r) {
        const auto [first, last] = dist::shard_positions(10, 10 + n, r, world);
        REQUIRE(first == next);
        REQUIRE(last - first >= n / world);
        REQUIRE(last - first <= n / world + 1);
        next = last;
      }
      REQUIRE(next == 10 + n);
    }
  }
  REQUIRE_THROWS_WITH(dist::shard_positions(0, 5, 2, 2), Catch::Contains("rank 2") && Catch::Contains("world of 2"));
  REQUIRE_THROWS_WITH(dist::shard_positions(5, 0, 0, 1), Catch::Contains("[5, 0)"));
  REQUIRE_THROWS_AS(dist::global_batches(10, 0, 2, true), loom::Error);
}

TEST_CASE("epoch_shard: every sample exactly once per epoch over the ranks, shuffled per epoch", "[dist]") {
  for (int64_t n : {1, 7, 97, 225}) {
    for (int world : {1, 2, 3}) {
      for (int64_t batch : {1, 4, 7}) {
        for (bool drop_last : {false, true}) {
          std::vector<std::vector<int64_t>> first_epoch(static_cast<size_t>(world));
          for (int64_t epoch : {0, 1}) {
            std::map<int64_t, int> seen;
            for (int r = 0; r < world; ++r) {
              const auto mine = dist::epoch_shard(n, 42, epoch, r, world, batch, drop_last);
              for (int64_t i : mine) ++seen[i];
              if (epoch == 0) first_epoch[size_t(r)] = mine;
            }
            // Reference: the dataset positions a 1-process run with the global batch covers.
            const int64_t global = batch * world;
            const int64_t covered = drop_last ? n / global * global : n;
            REQUIRE(int64_t(seen.size()) == covered);
            for (const auto& [index, times] : seen) {
              REQUIRE(times == 1);
              REQUIRE(index >= 0);
              REQUIRE(index < n);
            }
          }
          if (n >= 97 && world == 2) {  // a new order each epoch
            REQUIRE(dist::epoch_shard(n, 42, 1, 0, world, batch, drop_last) != first_epoch[0]);
          }
        }
      }
    }
  }
}

TEST_CASE("epoch_shard: global batch b of N ranks is batch b of one rank with batch N*B, same order", "[dist]") {
  const int64_t n = 97, B = 5;
  const int world = 3;
  const std::vector<int64_t> single = dist::epoch_shard(n, 7, 2, 0, 1, B * world, true);
  std::vector<std::vector<int64_t>> ranks;
  for (int r = 0; r < world; ++r) ranks.push_back(dist::epoch_shard(n, 7, 2, r, world, B, true));
  size_t at = 0;
  for (int64_t b = 0; b < dist::global_batches(n, B, world, true); ++b)
    for (int r = 0; r < world; ++r)
      for (int64_t k = 0; k < B; ++k) REQUIRE(ranks[size_t(r)][size_t(b * B + k)] == single[at++]);
  REQUIRE(at == single.size());
}

TEST_CASE("DataLoader shard option: each rank's batches are its share of the global batches", "[dist]") {
  auto dataset = loom::data::open_dataset("synthetic:train=23,clouds=0,size=8");
  const int world = 2;
  const int64_t B = 3;
  std::set<int64_t> all;
  for (int r = 0; r < world; ++r) {
    loom::data::DataLoader loader(*dataset, loom::data::LoaderOptions().batch_size(B).workers(0).seed(9).drop_last(true).shard(r, world));
    REQUIRE(loader.num_batches() == 23 / (B * world));
    const std::vector<int64_t> expected = dist::epoch_shard(23, 9, 1, r, world, B, true);
    loader.start_epoch(1);
    std::vector<int64_t> got;
    while (auto batch = loader.next()) {
      REQUIRE(batch->size() == B);
      got.insert(got.end(), batch->indices.begin(), batch->indices.end());
    }
    REQUIRE(got == expected);
    all.insert(got.begin(), got.end());
  }
  REQUIRE(all.size() == size_t(23 / (B * world) * B * world));
  REQUIRE_THROWS_WITH(loom::data::DataLoader(*dataset, loom::data::LoaderOptions().shard(2, 2)),
                      Catch::Contains("shard rank 2") && Catch::Contains("world of 2"));
}

TEST_CASE("add_grad_ready_hook: runs once per backward after the leaf's gradient is final", "[dist][autograd]") {
  Tensor<double> a = leaf({1, 2, 3}, {3}), b = leaf({4, 5, 6}, {3});
  std::vector<std::string> events;
  std::vector<double> seen_grad;
  const uint64_t ha = loom::autograd::add_grad_ready_hook(a, [&] {
    events.push_back("a");
    seen_grad = a.grad().to_vector();
  });
  loom::autograd::add_grad_ready_hook(b, [&] { events.push_back("b"); });
  // a is used twice: the hook must see the sum of both uses, once.
  Tensor<double> loss = loom::sum(loom::add(loom::mul(a, b), loom::mul(a, 2.0)));
  loss.backward();
  REQUIRE(std::count(events.begin(), events.end(), "a") == 1);
  REQUIRE(std::count(events.begin(), events.end(), "b") == 1);
  REQUIRE(seen_grad == std::vector<double>{6, 7, 8});  // b + 2
  loom::autograd::remove_grad_ready_hook(a, ha);
  events.clear();
  loom::sum(loom::mul(a, b)).backward();
  REQUIRE(events == std::vector<std::string>{"b"});

  // Non-contiguous leaf (a transposed view made a leaf).
  Tensor<double> base = Tensor<double>::from_vector({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor<double> t = base.transpose(0, 1).detach().requires_grad_();
  int fired = 0;
  loom::autograd::add_grad_ready_hook(t, [&] { ++fired; });
  loom::sum(loom::mul(t, t)).backward();
  REQUIRE(fired == 1);

  Tensor<double> plain = Tensor<double>::ones({2});
  REQUIRE_THROWS_WITH(loom::autograd::add_grad_ready_hook(plain, [] {}), Catch::Contains("leaf that requires grad"));
  Tensor<double> inner = loom::mul(a, 2.0);
  REQUIRE_THROWS_AS(loom::autograd::add_grad_ready_hook(inner, [] {}), loom::Error);
}

TEST_CASE("DataParallel: buckets in reverse parameter order, bounded by bucket_bytes", "[dist]") {
  ScriptedPair pair(0.0);
  // float parameters of 10, 300, 20, 30, 5 elements; a 400-byte bucket holds 100 floats.
  std::vector<Tensor<float>> params;
  for (int64_t n : {10, 300, 20, 30, 5}) {
    params.push_back(Tensor<float>::zeros({n}));
    params.back().requires_grad_();
  }
  dist::DataParallel<float> dp(pair, params, {.bucket_bytes = 400, .overlap = true});
  const auto& buckets = dp.buckets();
  REQUIRE(buckets.size() == 3);
  REQUIRE(buckets[0].params == std::vector<size_t>{4, 3, 2});  // 5 + 30 + 20 floats = 220 bytes
  REQUIRE(buckets[1].params == std::vector<size_t>{1});        // 1200 bytes: a bucket of its own
  REQUIRE(buckets[2].params == std::vector<size_t>{0});
  REQUIRE(buckets[0].elements == 55);
  REQUIRE_THROWS_WITH(dist::DataParallel<float>(pair, {Tensor<float>::zeros({2})}), Catch::Contains("parameter 0"));
  REQUIRE_THROWS_WITH(dist::DataParallel<float>(pair, params, {.bucket_bytes = 0}), Catch::Contains("bucket_bytes 0"));
}

TEST_CASE("DataParallel: averaged gradients, buckets started in order during backward", "[dist]") {
  // loss = sum(w0 * x) + sum(w1 * w1) + 3 * sum(w2); the peer contributes 1.0 to every gradient.
  ScriptedPair pair(1.0);
  Tensor<double> w0 = leaf({1, 2, 3, 4, 5, 6, 7}, {7}), w1 = leaf({0.5, -1}, {2}), w2 = leaf({2}, {1});
  const Tensor<double> x = Tensor<double>::from_vector({7}, {1, -1, 2, -2, 3, -3, 4});
  dist::DataParallel<double> dp(pair, {w0, w1, w2}, {.bucket_bytes = 16, .overlap = true});
  REQUIRE(dp.buckets().size() == 3);
  for (int step = 0; step < 2; ++step) {
    w0.zero_grad(), w1.zero_grad(), w2.zero_grad();
    pair.counts.clear(), pair.during_backward.clear();
    Tensor<double> loss = loom::add(loom::add(loom::sum(loom::mul(w0, x)), loom::sum(loom::mul(w1, w1))),
                                    loom::mul(loom::sum(w2), 3.0));
    pair.in_backward = true;
    loss.backward();
    pair.in_backward = false;
    dp.finish_gradient_sync();
    // Buckets start in index order (w2, w1, w0) and all of them during backward.
    REQUIRE(pair.counts == std::vector<int64_t>{1, 2, 7});
    REQUIRE(pair.during_backward == std::vector<bool>{true, true, true});
    REQUIRE(dp.last_sync().started_during_backward == 3);
    REQUIRE(dp.last_sync().bytes == 10 * 8);
    std::vector<double> g0;
    for (double v : x.to_vector()) g0.push_back((v + 1.0) / 2);
    loom::test::require_close(w0.grad(), g0, {1e-15, 0});
    loom::test::require_close(w1.grad(), {(1.0 + 1.0) / 2, (-2.0 + 1.0) / 2}, {1e-15, 0});
    loom::test::require_close(w2.grad(), {(3.0 + 1.0) / 2}, {1e-15, 0});
  }

  // A parameter without a gradient this step contributes zeros and gets the peer's mean.
  w0.set_grad(Tensor<double>()), w1.set_grad(Tensor<double>()), w2.set_grad(Tensor<double>());
  pair.counts.clear(), pair.during_backward.clear();
  pair.in_backward = true;
  loom::sum(loom::mul(w0, x)).backward();
  pair.in_backward = false;
  dp.finish_gradient_sync();
  // w0's bucket is last: nothing could start during backward (buckets start in order).
  REQUIRE(pair.during_backward == std::vector<bool>{false, false, false});
  loom::test::require_close(w2.grad(), {0.5}, {0, 0});
  loom::test::require_close(w1.grad(), {0.5, 0.5}, {0, 0});

  // Two backward passes without a sync in between are a usage error.
  loom::sum(w2).backward();
  REQUIRE_THROWS_WITH(loom::sum(w2).backward(), Catch::Contains("became ready twice") && Catch::Contains("[1]"));
}

TEST_CASE("DataParallel: no overlap starts every bucket at finish, sync off skips the hooks", "[dist]") {
  ScriptedPair pair(0.0);
  Tensor<double> w = leaf({1, 2}, {2});
  dist::DataParallel<double> dp(pair, {w}, {.bucket_bytes = 8, .overlap = false});
  pair.in_backward = true;
  loom::sum(w).backward();
  pair.in_backward = false;
  REQUIRE(pair.counts.empty());
  dp.finish_gradient_sync();
  REQUIRE(pair.counts == std::vector<int64_t>{2});
  loom::test::require_close(w.grad(), {0.5, 0.5}, {0, 0});

  dp.set_sync(false);  // gradient accumulation: two backward passes, no collectives
  loom::sum(w).backward();
  loom::sum(w).backward();
  REQUIRE(pair.counts.size() == 1);
  REQUIRE_THROWS_WITH(dp.finish_gradient_sync(), Catch::Contains("sync is off"));
  dp.set_sync(true);
  dp.broadcast_parameters();
  REQUIRE(pair.broadcasts == 1);
}
