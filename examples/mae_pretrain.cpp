// mae_pretrain: masked-autoencoder pre-training of loom's multi-modal (Sentinel-1 + Sentinel-2)
// ViT encoder. The whole program is loom::train::mae_pretrain_main (include/loom/train/
// mae_pretrain.hpp), so that tests run exactly what users run; docs/trainers.md describes flags,
// outputs and resume semantics, docs/distributed.md the data-parallel runs under mpirun.
//
//   mae_pretrain --data synthetic --out runs/nano --model nano --epochs 30
//   mae_pretrain --data bigearthnet:/data/ben --out runs/ben --model small --batch-size 256 --epochs 400
//   mae_pretrain --out runs/nano --resume
//   mpirun -np 4 mae_pretrain --data packed:/data/ben.pack --out runs/ben --batch-size 64 --threads 8
#include <cstdlib>
#include <iostream>

#include "loom/train/mae_pretrain.hpp"
#ifdef LOOM_HAVE_MPI
#include "loom/dist/mpi.hpp"
#endif

int main(int argc, char** argv) {
  if (loom::dist::launched_under_mpi()) {
#ifdef LOOM_HAVE_MPI
    loom::dist::MpiEnvironment mpi(argc, argv);
    loom::dist::MpiCommunicator world;
    return loom::train::mae_pretrain_main(argc, argv, std::cout, std::cerr, &world);
#else
    // Each process would train alone and all would write the same --out.
    if (const char* n = std::getenv("OMPI_COMM_WORLD_SIZE"); n && std::atoi(n) > 1) {
      std::cerr << "mae_pretrain: started by mpirun, but this build has no MPI (configure with LOOM_MPI=ON)" << std::endl;
      return 1;
    }
#endif
  }
  return loom::train::mae_pretrain_main(argc, argv);
}
