// finetune_multilabel: multi-label fine-tuning / linear probing / evaluation of the multi-modal
// encoder. The program lives in include/loom/train/finetune.hpp (docs/trainers.md).
#include "loom/train/finetune.hpp"

int main(int argc, char** argv) { return loom::train::finetune_multilabel_main(argc, argv); }
