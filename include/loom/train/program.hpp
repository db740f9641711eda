#pragma once
// What the trainer programs (mae_pretrain_main, finetune_multilabel_main) share around their own
// work: --help printed by rank 0 only, errors reported as one line with a fixed exit code (the
// whole mpirun job ended through Communicator::abort), the trainer picked from --device, and the
// trainer's own check that it can run on its device.
//
//   io::Cli cli("my_trainer --data <spec>", "...");
//   bind_flags(cli, cfg);
//   return loom::train::run_program("my_trainer", cli, argc, argv, out, err, comm, [&] {
//     ...                                          // bad usage: throw io::UsageError("--flag: ...")
//     loom::train::run_trainer<BasicMyTrainer>(cfg, out, comm);
//     return 0;
//   });
#include <exception>
#include <ostream>
#include <sstream>
#include <string>

#include "loom/core/device.hpp"
#include "loom/core/device_backend.hpp"
#include "loom/core/error.hpp"
#include "loom/dist/communicator.hpp"
#include "loom/io/cli.hpp"

namespace loom::train {

// Parses argv into cli's bound settings, then returns body()'s exit code. Other exit codes: 0 after
// --help (printed to `out` by rank 0 only); 2 for an io::UsageError, reported as
// "<program>: <the message's first line> (see --help)"; 1 for any other exception, reported as
// "<program>: error: <message>". With a communicator of several ranks the report ends the whole job
// (Communicator::abort with that line and code) instead of one rank leaving the others waiting.
template <class Body>
int run_program(const std::string& program, io::Cli& cli, int argc, const char* const* argv, std::ostream& out,
                std::ostream& err, dist::Communicator* comm, Body&& body) {
  const int world = comm ? comm->size() : 1;
  try {
    std::ostringstream not_root;  // --help: printed once, by rank 0
    if (!cli.parse(argc, argv, !comm || comm->rank() == 0 ? out : not_root)) return 0;
    return body();
  } catch (const io::UsageError& e) {
    const std::string what = e.what();
    const std::string line = program + ": " + what.substr(0, what.find('\n')) + " (see --help)";
    if (world > 1) comm->abort(line, 2);
    err << line << std::endl;
    return 2;
  } catch (const std::exception& e) {
    if (world > 1) comm->abort(program + ": error: " + e.what(), 1);
    err << program << ": error: " << e.what() << std::endl;
    return 1;
  }
}

// Builds Trainer<CPU> or Trainer<CUDA> from cfg.device ("cpu" or "cuda") and returns its run().
// "cuda" in a build without the CUDA backend (not linked with loom::kernels) is a UsageError.
template <template <class> class Trainer, class Config>
auto run_trainer(const Config& cfg, std::ostream& log, dist::Communicator* comm) {
  if (cfg.device == "cuda") {
#if LOOM_WITH_CUDA
    return Trainer<CUDA>(cfg, log, comm).run();
#else
    throw io::UsageError("--device cuda: this build has no CUDA backend (configure with LOOM_CUDA=ON so that the "
                         "trainers link loom::kernels)");
#endif
  }
  return Trainer<CPU>(cfg, log, comm).run();
}

// What a trainer on Dev checks before it builds anything (messages start with `program`): that
// --device names Dev (`dispatcher` picks the trainer from --device), that a GPU is usable, and that
// a GPU run is a single process.
template <class Dev>
void check_trainer_device(const std::string& program, const std::string& device, const std::string& dispatcher,
                          int world) {
  LOOM_CHECK(device == Dev::name, program, ": --device ", device, " given to the trainer for ", Dev::name, " (",
             dispatcher, " picks the trainer from --device)");
  constexpr bool kOnDevice = Dev::kind == DeviceKind::cuda;
  if (const char* why = kOnDevice ? loom::detail::cuda_unavailable_reason() : nullptr)
    loom::detail::fail("--device cuda: no usable GPU (", why, ")");
  if (kOnDevice && world > 1)
    throw io::UsageError("--device: data-parallel training on GPUs (NCCL) is not wired into the trainer yet; "
                         "run one process per GPU job or use --device cpu under mpirun");
}

}  // namespace loom::train
