// All-reduce bandwidth of loom's MPI communicator on gradient-sized buffers (docs/distributed.md).
// Run under MPI:  mpirun -np 2 --oversubscribe bench_allreduce [--repeats 10]
// Prints, for each buffer size, the median time of a float all-reduce (sum) and the bandwidths
// NCCL-tests style: algbw = bytes / time, busbw = algbw * 2 (N - 1) / N (what a ring moves per rank).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "loom/dist/mpi.hpp"

int main(int argc, char** argv) {
  loom::dist::MpiEnvironment mpi(argc, argv);
  loom::dist::MpiCommunicator comm;
  int repeats = 10;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--repeats") == 0) repeats = std::max(1, std::atoi(argv[i + 1]));
  const int N = comm.size();
  if (comm.rank() == 0) std::printf("ranks,bytes,median_ms,algbw_GBps,busbw_GBps\n");
  for (int64_t bytes : {int64_t(1) << 16, int64_t(1) << 20, int64_t(4) << 20, int64_t(25) << 20, int64_t(100) << 20}) {
    std::vector<float> buffer(size_t(bytes / 4), 1.0f);
    std::vector<double> times;
    for (int r = 0; r < repeats + 1; ++r) {
      comm.barrier();
      const auto t0 = std::chrono::steady_clock::now();
      loom::dist::all_reduce_sum(comm, buffer);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (r > 0) times.push_back(s);  // the first call warms up the transport
    }
    std::sort(times.begin(), times.end());
    double t = times[times.size() / 2];
    loom::dist::all_reduce_max(comm, &t, 1);  // the slowest rank's time
    const double algbw = double(bytes) / t / 1e9;
    if (comm.rank() == 0)
      std::printf("%d,%lld,%.3f,%.3f,%.3f\n", N, (long long)bytes, t * 1e3, algbw, algbw * 2.0 * (N - 1) / N);
  }
  return 0;
}
