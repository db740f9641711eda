// mae_pretrain: masked-autoencoder pre-training of loom's multi-modal (Sentinel-1 + Sentinel-2)
// ViT encoder. The whole program is loom::train::mae_pretrain_main (include/loom/train/
// mae_pretrain.hpp), so that tests run exactly what users run; docs/trainers.md describes flags,
// outputs and resume semantics, docs/distributed.md the data-parallel runs under mpirun.
//
//   mae_pretrain --data synthetic --out runs/nano --model nano --epochs 30
//   mae_pretrain --data bigearthnet:/data/ben --out runs/ben --model small --batch-size 256 --epochs 400
//   mae_pretrain --out runs/nano --resume
//   mpirun -np 4 mae_pretrain --data packed:/data/ben.pack --out runs/ben --batch-size 64 --threads 8
#include "loom/dist/launch.hpp"
#include "loom/train/mae_pretrain.hpp"

int main(int argc, char** argv) {
  return loom::dist::launch_main("mae_pretrain", argc, argv, loom::train::mae_pretrain_main);
}
