#pragma once
// The main() of a program that trains data-parallel under mpirun (examples/mae_pretrain.cpp,
// examples/finetune_multilabel.cpp):
//
//   int main(int argc, char** argv) {
//     return loom::dist::launch_main("mae_pretrain", argc, argv, loom::train::mae_pretrain_main);
//   }
//
// Started by an MPI launcher, a build linked with loom::mpi (LOOM_HAVE_MPI) runs
// program_main(argc, argv, std::cout, std::cerr, &world) on the job's communicator; a build without
// MPI refuses a job of several processes (each would train alone and all would write the same
// --out). Otherwise program_main runs as the only process, with no communicator.
#include <cstdlib>
#include <iostream>
#include <string>

#include "loom/dist/communicator.hpp"
#ifdef LOOM_HAVE_MPI
#include "loom/dist/mpi.hpp"
#endif

namespace loom::dist {

template <class ProgramMain>
int launch_main([[maybe_unused]] const std::string& program, int argc, char** argv, ProgramMain&& program_main) {
  if (launched_under_mpi()) {
#ifdef LOOM_HAVE_MPI
    MpiEnvironment mpi(argc, argv);
    MpiCommunicator world;
    return program_main(argc, argv, std::cout, std::cerr, &world);
#else
    if (const char* n = std::getenv("OMPI_COMM_WORLD_SIZE"); n && std::atoi(n) > 1) {
      std::cerr << program << ": started by mpirun, but this build has no MPI (configure with LOOM_MPI=ON)"
                << std::endl;
      return 1;
    }
#endif
  }
  return program_main(argc, argv, std::cout, std::cerr, nullptr);
}

}  // namespace loom::dist
