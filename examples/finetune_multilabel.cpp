// finetune_multilabel: multi-label fine-tuning / linear probing / evaluation of the multi-modal
// encoder. The program lives in include/loom/train/finetune.hpp (docs/trainers.md); under mpirun
// it trains data-parallel (docs/distributed.md).
#include "loom/dist/launch.hpp"
#include "loom/train/finetune.hpp"

int main(int argc, char** argv) {
  return loom::dist::launch_main("finetune_multilabel", argc, argv, loom::train::finetune_multilabel_main);
}
