#pragma once
// All of loom::nn.
#include "loom/nn/attention.hpp"
#include "loom/nn/block.hpp"
#include "loom/nn/checkpoint.hpp"
#include "loom/nn/dropout.hpp"
#include "loom/nn/init.hpp"
#include "loom/nn/layer_norm.hpp"
#include "loom/nn/linear.hpp"
#include "loom/nn/mlp.hpp"
#include "loom/nn/module.hpp"
#include "loom/nn/patch_embed.hpp"
#include "loom/nn/pos_embed.hpp"
#include "loom/nn/vit.hpp"
