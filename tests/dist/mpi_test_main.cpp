// main() of the MPI test programs (run as `mpirun -np 2 test_dist_mpi`): MPI around a Catch2
// session; the exit code is non-zero when any rank saw a failure.
#include <algorithm>

#include "loom/dist/mpi.hpp"
#include "support/catch_session.hpp"

int main(int argc, char** argv) {
  loom::dist::MpiEnvironment mpi(argc, argv);
  int failed = loom::test::run_catch_session(argc, argv);
  loom::dist::MpiCommunicator world;
  int64_t any = std::min(failed, 1);
  loom::dist::all_reduce_max(world, &any, 1);
  return int(any);
}
