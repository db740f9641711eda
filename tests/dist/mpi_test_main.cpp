// main() of the MPI test programs (run as `mpirun -np 2 test_dist_mpi`): MPI around a Catch2
// session; the exit code is non-zero when any rank saw a failure.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <algorithm>

#include "loom/dist/mpi.hpp"

int main(int argc, char** argv) {
  loom::dist::MpiEnvironment mpi(argc, argv);
  int failed = Catch::Session().run(argc, argv);
  loom::dist::MpiCommunicator world;
  int64_t any = std::min(failed, 1);
  loom::dist::all_reduce_max(world, &any, 1);
  return int(any);
}
