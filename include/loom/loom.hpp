#pragma once
// loom — a header-only C++20 deep-learning library for multi-modal masked-autoencoder pre-training
// on Sentinel-1 SAR + Sentinel-2 optical images. This umbrella header brings in everything.
//
// ---- A tutorial in 40 lines ---------------------------------------------------------------------
//
//   #include <loom/loom.hpp>
//   using loom::Tensor;
//
//   // Tensors: element type and device in the type, shape at run time, views share storage.
//   auto x = Tensor<float>::from_vector({2, 3}, {1, 2, 3, 4, 5, 6});   // [2, 3]
//   auto xt = x.transpose(0, 1);                                       // [3, 2], no copy
//   auto y = loom::matmul(x, xt) + 1.0;                                // [2, 2], broadcasting
//
//   // Autograd: mark leaves, compute, call backward() on a scalar, read .grad().
//   auto w = loom::randn<float>({3, 4}).requires_grad_();              // [3, 4]
//   auto loss = loom::mean(loom::gelu(loom::matmul(x, w)));
//   loss.backward();                                                   // w.grad(): [3, 4]
//
//   // Modules: layers registered by name (timm names), composed at run time.
//   loom::nn::VisionTransformer<float> vit(
//       loom::nn::VitOptions().image(32, 8, 14).preset("192x6x3"));
//   auto tokens = vit.forward(loom::randn<float>({4, 14, 32, 32}));    // [4, 17, 192]
//   loom::nn::save_module(vit, "vit.safetensors");                     // loads in PyTorch too
//
//   // Optimizers take named parameter groups (no weight decay on norms/biases/tokens).
//   loom::optim::AdamW<float> opt(
//       loom::optim::make_param_groups(vit.named_parameters(), /*weight_decay=*/0.05),
//       loom::optim::AdamWOptions().betas(0.9, 0.95));
//   opt.zero_grad(); /* forward, backward */ opt.step(/*lr=*/1e-4);
//
//   // The mask module: a strategy spec -> a MaskPlan per batch, reproducible from (seed, step).
//   auto strategy = loom::mask::parse_strategy(loom::mask::kDefaultMaskSpec);
//   auto plan = loom::mask::make_mask_plan(strategy, /*B=*/4, /*G=*/2, /*L=*/16,
//                                          /*seed=*/7, /*step=*/0);  // plan.ids_keep: [4, K]
//
//   // Errors are loom::Error with messages that name the op and the shapes.
//   try { loom::matmul(x, x); } catch (const loom::Error& e) { /* "matmul: ... [2, 3] ... [2, 3]" */ }
//
// Threads: LOOM_NUM_THREADS or loom::set_num_threads(n). Memory: loom::memory_stats().
// More: docs/architecture.md, docs/tensor.md, docs/autograd.md, docs/nn.md, docs/masking.md.
// -------------------------------------------------------------------------------------------------

#include "loom/autograd/engine.hpp"
#include "loom/autograd/function.hpp"
#include "loom/autograd/gradcheck.hpp"
#include "loom/autograd/grad_mode.hpp"
#include "loom/core/allocator.hpp"
#include "loom/core/parallel.hpp"
#include "loom/core/random.hpp"
#include "loom/core/tensor.hpp"
#include "loom/io/safetensors.hpp"
#include "loom/io/state_dict.hpp"
#include "loom/mask/mask.hpp"
#include "loom/metrics/average_precision.hpp"
#include "loom/metrics/classification.hpp"
#include "loom/models/mae.hpp"
#include "loom/nn/nn.hpp"
#include "loom/ops/argsort.hpp"
#include "loom/ops/attention.hpp"
#include "loom/ops/concat.hpp"
#include "loom/ops/elementwise.hpp"
#include "loom/ops/gelu.hpp"
#include "loom/ops/index.hpp"
#include "loom/ops/layer_norm.hpp"
#include "loom/ops/linalg.hpp"
#include "loom/ops/loss.hpp"
#include "loom/ops/reduce.hpp"
#include "loom/ops/softmax.hpp"
#include "loom/optim/adamw.hpp"
#include "loom/optim/clip.hpp"
#include "loom/optim/param_groups.hpp"
#include "loom/optim/schedule.hpp"
