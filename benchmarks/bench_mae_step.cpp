// bench_mae_step: img/s of loom's MAE training steps, one JSON line per run, for the side-by-side
// comparison with PyTorch (benchmarks/compare_torch.sh, benchmarks/mae_step_torch.py).
//
//   bench_mae_step --config b --mode pretrain --warmup 3 --steps 10 --threads 2
//   bench_mae_step_gpu --device cuda --config b --batch 256     (built with loom::kernels: the same
//       step on CUDA tensors, timed between device synchronizations; benchmarks/gpu/run.sh runs it
//       beside `mae_step_torch.py --device cuda`)
//
// Configurations (the model exactly as examples/mae_pretrain builds it, via train::encoder_shape /
// train::decoder_shape, group tokens S1 {2 bands} + S2 {12 bands}):
//   a  mae_pretrain's default CPU model: nano (encoder 128x4x4, decoder 128x2x4), 64x64, patch 8, batch 64
//   b  the issue's: encoder 192x6x3 (decoder auto: 96x2x4), 120x120, patch 8, batch 32
// Modes:
//   pretrain   mask plan (the default mixture, mask ratio 0.75) + forward + norm-pix loss + backward
//              + global-norm clipping + AdamW step
//   finetune   MultiLabelClassifier on all tokens (avg pool, 19 classes) + BCE + backward + clip + AdamW
//   inference  the classifier's forward under no-grad
// Inputs are fixed random images (data loading is not part of the step, as in the PyTorch script).
//
// Matmul FLOPs, counted analytically (a Linear over M rows: 2·M·in·out; attention over N tokens of
// width D: 4·B·N²·D for Q·Kᵀ and P·V); a block of width D, MLP width 4D, N tokens, batch B:
//   block(B, N, D) = 2·B·N·D·(3D + D + 4D + 4D) + 4·B·N²·D
// pretrain forward = Σ_g 2·B·L·(C_g·p²)·D                       (patch embeddings, all L locations)
//                  + depth·block(B, 1+K, D) + 2·B·(1+K)·D·Dd      (encoder on visible tokens, decoder_embed)
//                  + ddepth·block(B, 1+G·L, Dd)                   (decoder on all tokens)
//                  + Σ_g 2·B·L·Dd·(C_g·p²)                        (per-group prediction heads)
// finetune / inference forward = Σ_g 2·B·L·(C_g·p²)·D + depth·block(B, 1+G·L, D) + 2·B·D·19
// A training step counts 3× its forward (backward: input and weight gradients, 2× each product),
// less one forward of the patch embeddings (their input, the image, needs no gradient).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "loom/core/allocator.hpp"
#include "loom/core/parallel.hpp"
#include "loom/core/random.hpp"
#include "loom/mask/mask.hpp"
#include "loom/models/classifier.hpp"
#include "loom/models/mae.hpp"
#include "loom/ops/loss.hpp"
#include "loom/optim/adamw.hpp"
#include "loom/optim/clip.hpp"
#include "loom/optim/param_groups.hpp"
#include "loom/train/mae_config.hpp"
#if LOOM_WITH_CUDA
#include "loom/cuda/device_memory.hpp"  // synchronize()
#endif

namespace {

using loom::Tensor;

struct Args {
  std::string config_name = "b", mode = "pretrain", device = "cpu";
  int warmup = 3, steps = 10, threads = 2;
  int64_t batch = 0;  // 0: the configuration's
};

struct BenchConfig {
  std::string name;
  std::string model;  // mae_pretrain --model
  int64_t image = 0, patch = 8, batch = 0;
};

BenchConfig config_named(const std::string& name) {
  if (name == "a") return {"a", "nano", 64, 8, 64};
  if (name == "b") return {"b", "192x6x3", 120, 8, 32};
  throw loom::Error("bench_mae_step: unknown --config '" + name + "' (expected a or b)");
}

double block_flops(double B, double N, double D) { return 2 * B * N * D * (12 * D) + 4 * B * N * N * D; }

// CPU seconds this process used (all threads, user + system), for the script's machine-load estimate.
double process_cpu_s() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

template <class Dev>
Tensor<float, Dev> random_images(int64_t B, int64_t C, int64_t S, loom::Generator& gen) {
  return loom::uniform<float, loom::CPU>({B, C, S, S}, -1.0, 1.0, gen).to_device<Dev>();  // [B, C, S, S]
}

// Waits for the device's queued work (a no-op on the CPU), so that wall time covers the step.
template <class Dev>
void synchronize() {
#if LOOM_WITH_CUDA
  if constexpr (Tensor<float, Dev>::kOnDevice) loom::cuda::synchronize();
#endif
}

// Seconds spent in each phase of the step (forward + loss, backward, clipping + optimizer),
// summed over the timed steps; on a device each lap waits for the phase's kernels first.
template <class Dev>
struct PhaseClock {
  double forward = 0, backward = 0, update = 0;
  std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();
  void start() { last = std::chrono::steady_clock::now(); }
  void lap(double& into) {
    synchronize<Dev>();
    const auto now = std::chrono::steady_clock::now();
    into += std::chrono::duration<double>(now - last).count();
    last = now;
  }
};

template <class Dev>
int64_t parameter_count(const std::vector<Tensor<float, Dev>>& params) {
  int64_t n = 0;
  for (const auto& p : params) n += p.numel();
  return n;
}



template <class Dev>
int run(const Args& args) {
  using FloatTensor = Tensor<float, Dev>;
  const std::string& mode = args.mode;
  const int warmup = args.warmup, steps = args.steps, threads = args.threads;
  loom::set_num_threads(threads);
  BenchConfig bc = config_named(args.config_name);
  if (args.batch > 0) bc.batch = args.batch;

  // The model as mae_pretrain builds it.
  loom::train::MaePretrainConfig tc;
  tc.model = bc.model;
  tc.patch = bc.patch;
  const loom::train::ModelShape enc = loom::train::encoder_shape(tc), dec = loom::train::decoder_shape(tc);
  loom::models::EncoderConfig e;
  e.groups = {{"s1", 2}, {"s2", 12}};
  e.img_size = bc.image, e.patch = bc.patch;
  e.dim = enc.dim, e.depth = enc.depth, e.heads = enc.heads;
  const int G = e.G();
  const int64_t L = e.locations(), B = bc.batch, p2 = bc.patch * bc.patch;
  const double D = double(e.dim), Dd = double(dec.dim);

  loom::Generator gen(0);
  const FloatTensor s1 = random_images<Dev>(B, 2, bc.image, gen), s2 = random_images<Dev>(B, 12, bc.image, gen);
  double patch_embed_flops = 0, pred_flops = 0;
  for (int g = 0; g < G; ++g) {
    patch_embed_flops += 2.0 * double(B * L) * double(e.group_channels(g) * p2) * D;
    pred_flops += 2.0 * double(B * L) * Dd * double(e.group_channels(g) * p2);
  }

  std::function<void(int64_t)> step;
  PhaseClock<Dev> clock;
  std::vector<FloatTensor> params;
  double forward_flops = 0;
  bool training = mode != "inference";
  std::unique_ptr<loom::models::MaskedAutoencoder<float, Dev>> mae;
  std::unique_ptr<loom::models::MultiLabelClassifier<float, Dev>> clf;
  std::unique_ptr<loom::optim::AdamW<float, Dev>> opt;
  const loom::mask::Strategy strategy = loom::mask::parse_strategy(loom::train::mask_spec(tc), {"s1", "s2"});
  const int64_t K = loom::mask::visible_count(strategy, G, L);
  const FloatTensor labels = [&] {
    const Tensor<float> u = loom::uniform<float, loom::CPU>({B, 19}, 0.0, 1.0, gen);
    std::vector<float> y;
    for (float v : u.to_vector()) y.push_back(v < 0.2f ? 1.0f : 0.0f);
    return FloatTensor::from_vector({B, 19}, y);  // [B, 19] multi-hot
  }();
  const double lr = 1e-4, clip = 1.0;

  if (mode == "pretrain") {
    loom::models::MaeConfig mc;
    mc.encoder = e;
    mc.decoder_dim = dec.dim, mc.decoder_depth = dec.depth, mc.decoder_heads = dec.heads;
    mc.norm_pix = true;
    mae = std::make_unique<loom::models::MaskedAutoencoder<float, Dev>>(mc, gen);
    mae->train();
    params = mae->parameters();
    opt = std::make_unique<loom::optim::AdamW<float, Dev>>(loom::optim::make_param_groups(mae->named_parameters(), 0.05),
                                                      loom::optim::AdamWOptions().betas(0.9, 0.95).with_eps(1e-8));
    forward_flops = patch_embed_flops + double(e.depth) * block_flops(double(B), double(1 + K), D) +
                    2.0 * double(B * (1 + K)) * D * Dd + double(dec.depth) * block_flops(double(B), double(1 + G * L), Dd) +
                    pred_flops;
    step = [&](int64_t s) {
      clock.start();
      const auto plan = loom::mask::make_mask_plan_on<Dev>(strategy, B, G, L, 0, uint64_t(s));
      opt->zero_grad();
      const loom::models::MaeOutput<float, Dev> out = mae->forward({s1, s2}, plan);
      clock.lap(clock.forward);
      out.loss.total.backward();
      clock.lap(clock.backward);
      loom::optim::clip_grad_norm(params, clip);
      opt->step(lr);
      clock.lap(clock.update);
    };
  } else {
    loom::models::ClassifierConfig cc;
    cc.encoder = e;
    cc.num_classes = 19;
    clf = std::make_unique<loom::models::MultiLabelClassifier<float, Dev>>(cc, gen);
    // The final norm is unused with average pooling (timm: Identity); PyTorch's model has no such
    // parameters, so they are frozen here and left out of the count.
    clf->norm->weight.requires_grad_(false);
    clf->norm->bias.requires_grad_(false);
    for (const auto& p : clf->parameters())
      if (p.requires_grad()) params.push_back(p);
    forward_flops = patch_embed_flops + double(e.depth) * block_flops(double(B), double(1 + G * L), D) + 2.0 * double(B) * D * 19;
    if (training) {
      clf->train();
      opt = std::make_unique<loom::optim::AdamW<float, Dev>>(loom::optim::make_param_groups(clf->named_parameters(), 0.05),
                                                        loom::optim::AdamWOptions().betas(0.9, 0.999).with_eps(1e-8));
      step = [&](int64_t) {
        clock.start();
        opt->zero_grad();
        const FloatTensor logits = clf->forward({s1, s2});  // [B, 19]
        const FloatTensor loss = loom::binary_cross_entropy_with_logits(logits, labels);
        clock.lap(clock.forward);
        loss.backward();
        clock.lap(clock.backward);
        loom::optim::clip_grad_norm(params, clip);
        opt->step(lr);
        clock.lap(clock.update);
      };
    } else {
      clf->eval();
      step = [&](int64_t) {
        clock.start();
        loom::NoGradGuard guard;
        const FloatTensor logits = clf->forward({s1, s2});
        (void)logits;
        clock.lap(clock.forward);
      };
    }
  }
  const double step_flops = training ? 3.0 * forward_flops - patch_embed_flops : forward_flops;

  for (int s = 0; s < warmup; ++s) step(s);
  synchronize<Dev>();
  // Allocations that missed loom's block cache during the timed steps (0: no steady-state
  // allocation from the system, hence no page faults on fresh pages).
  const int64_t misses_before = loom::memory_stats<Dev>().system_allocations;
  clock = PhaseClock<Dev>{};
  std::vector<double> times;
  for (int s = 0; s < steps; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    step(warmup + s);
    synchronize<Dev>();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::vector<double> sorted = times;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted.empty() ? 0.0 : sorted[sorted.size() / 2];
  double total = 0;
  for (double t : times) total += t;
  const double mean = times.empty() ? 0.0 : total / double(times.size());
  const loom::MemoryStats mem = loom::memory_stats<Dev>();
  const int64_t steady_misses = mem.system_allocations - misses_before;
  std::printf(
      "{\"impl\": \"loom\", \"device\": \"%s\", \"config\": \"%s\", \"mode\": \"%s\", \"batch\": %lld, \"threads\": %d, \"params\": %lld, "
      "\"img_per_s\": %.3f, \"step_ms_median\": %.2f, \"step_ms_mean\": %.2f, \"peak_rss_mib\": %.1f, "
      "\"tensor_peak_mib\": %.1f, \"gflop_per_step\": %.3f, \"gflops\": %.2f, \"visible_tokens\": %lld, "
      "\"steady_state_system_allocations\": %lld, \"forward_ms\": %.1f, \"backward_ms\": %.1f, \"update_ms\": %.1f, \"cpu_s\": %.2f}\n",
      Dev::name, bc.name.c_str(), mode.c_str(), (long long)B, threads, (long long)parameter_count(params),
      double(B) / median, 1e3 * median, 1e3 * mean, peak_rss_mib(), double(mem.peak_bytes) / (1 << 20), step_flops * 1e-9,
      step_flops * 1e-9 / median, (long long)K, (long long)steady_misses, 1e3 * clock.forward / std::max(1, steps),
      1e3 * clock.backward / std::max(1, steps), 1e3 * clock.update / std::max(1, steps), process_cpu_s());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw loom::Error("bench_mae_step: " + a + " needs a value");
      return argv[++i];
    };
    if (a == "--config") args.config_name = value();
    else if (a == "--mode") args.mode = value();
    else if (a == "--device") args.device = value();
    else if (a == "--warmup") args.warmup = std::stoi(value());
    else if (a == "--steps") args.steps = std::stoi(value());
    else if (a == "--threads") args.threads = std::stoi(value());
    else if (a == "--batch") args.batch = std::stoll(value());
    else {
      std::fprintf(stderr, "usage: bench_mae_step [--config a|b] [--mode pretrain|finetune|inference] [--device cpu|cuda] "
                           "[--batch N] [--warmup N] [--steps N] [--threads N]\n");
      return 2;
    }
  }
  if (args.mode != "pretrain" && args.mode != "finetune" && args.mode != "inference") {
    std::fprintf(stderr, "bench_mae_step: unknown --mode '%s'\n", args.mode.c_str());
    return 2;
  }
  try {
    if (args.device == "cpu") return run<loom::CPU>(args);
#if LOOM_WITH_CUDA
    if (args.device == "cuda") {
      if (const char* why = loom::detail::cuda_unavailable_reason()) {
        std::fprintf(stderr, "bench_mae_step: --device cuda: %s\n", why);
        return 1;
      }
      return run<loom::CUDA>(args);
    }
#endif
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_mae_step: error: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "bench_mae_step: unknown --device '%s' (this build has cpu%s)\n", args.device.c_str(),
               loom::detail::kCudaBackend ? " and cuda" : "; bench_mae_step_gpu has cuda");
  return 2;
}
