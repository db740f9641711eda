// finetune_multilabel: multi-label fine-tuning / linear probing / evaluation of the multi-modal
// encoder. The program lives in include/loom/train/finetune.hpp (docs/trainers.md); under mpirun
// it trains data-parallel (docs/distributed.md).
#include <cstdlib>
#include <iostream>

#include "loom/train/finetune.hpp"
#ifdef LOOM_HAVE_MPI
#include "loom/dist/mpi.hpp"
#endif

int main(int argc, char** argv) {
  if (loom::dist::launched_under_mpi()) {
#ifdef LOOM_HAVE_MPI
    loom::dist::MpiEnvironment mpi(argc, argv);
    loom::dist::MpiCommunicator world;
    return loom::train::finetune_multilabel_main(argc, argv, std::cout, std::cerr, &world);
#else
    // Each process would train alone and all would write the same --out.
    if (const char* n = std::getenv("OMPI_COMM_WORLD_SIZE"); n && std::atoi(n) > 1) {
      std::cerr << "finetune_multilabel: started by mpirun, but this build has no MPI (configure with LOOM_MPI=ON)"
                << std::endl;
      return 1;
    }
#endif
  }
  return loom::train::finetune_multilabel_main(argc, argv);
}
