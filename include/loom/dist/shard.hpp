#pragma once
// Dataset sharding for data-parallel training: which samples each rank reads in an epoch.
//
// The epoch's order is one permutation of the dataset drawn from (seed, epoch), the same on every
// rank (the DataLoader's order: randperm with the Philox generator at counter offset epoch·2^40).
// It is cut into global batches of world·B positions; rank r takes its contiguous share of each
// global batch (positions [r·B, (r+1)·B) of a full one). So global batch b of an N-process run holds
// exactly the samples of batch b of a 1-process run with batch N·B, in the same order, and the ranks
// together read every sample of the epoch exactly once (drop_last leaves out the last
// n mod (N·B) positions, as a 1-process run with batch N·B does).
//
//   auto share = loom::dist::shard_positions(global_begin, global_end, rank, world);  // [first, last)
//   std::vector<int64_t> mine = loom::dist::epoch_shard(n, seed, epoch, rank, world, B, drop_last);
#include <cstdint>
#include <utility>
#include <vector>

#include "loom/core/error.hpp"
#include "loom/core/random.hpp"

namespace loom::dist {

// Rank `rank`'s contiguous share [first, last) of positions [begin, end): shares differ by at most
// one position, lower ranks take the larger ones.
inline std::pair<int64_t, int64_t> shard_positions(int64_t begin, int64_t end, int rank, int world) {
  LOOM_CHECK(world >= 1 && rank >= 0 && rank < world, "shard_positions: rank ", rank, " outside a world of ", world);
  LOOM_CHECK(begin <= end, "shard_positions: empty range [", begin, ", ", end, ")");
  const int64_t n = end - begin, base = n / world, extra = n % world;
  const int64_t first = begin + rank * base + std::min<int64_t>(rank, extra);
  return {first, first + base + (rank < extra ? 1 : 0)};
}

// Global batches of `world`·`batch` positions in an epoch of n samples.
inline int64_t global_batches(int64_t n, int64_t batch, int world, bool drop_last) {
  LOOM_CHECK(batch >= 1 && world >= 1, "global_batches: batch ", batch, " and world ", world, " must be positive");
  const int64_t global = batch * world;
  return drop_last ? n / global : (n + global - 1) / global;
}

// The epoch's order of the n dataset indices (the same permutation on every rank).
inline std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch, bool shuffle = true) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  if (!shuffle) {
    for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
    return order;
  }
  Generator gen(seed, uint64_t(epoch) << 40);
  return randperm(n, gen).to_vector();
}

// Positions [first, last) of the epoch order that rank `rank` reads as its batch b.
inline std::pair<int64_t, int64_t> batch_shard(int64_t n, int64_t b, int64_t batch, int rank, int world) {
  const int64_t global = batch * world;
  const int64_t begin = std::min(n, b * global), end = std::min(n, begin + global);
  return shard_positions(begin, end, rank, world);
}

// All dataset indices rank `rank` reads in `epoch`, batch after batch.
inline std::vector<int64_t> epoch_shard(int64_t n, uint64_t seed, int64_t epoch, int rank, int world, int64_t batch,
                                        bool drop_last, bool shuffle = true) {
  const std::vector<int64_t> order = epoch_permutation(n, seed, epoch, shuffle);
  std::vector<int64_t> mine;
  for (int64_t b = 0; b < global_batches(n, batch, world, drop_last); ++b) {
    const auto [first, last] = batch_shard(n, b, batch, rank, world);
    for (int64_t p = first; p < last; ++p) mine.push_back(order[size_t(p)]);
  }
  return mine;
}

}  // namespace loom::dist
