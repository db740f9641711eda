// mae_pretrain and finetune_multilabel under mpirun (docs/distributed.md). This program is both
// the tests and the trainers: `test_dist_train --mae-pretrain <flags>` (or --finetune) is the
// trainer on the MPI world (what mpirun starts), any other command line runs the Catch2 tests,
// which launch it with `mpirun -np 2`.
//   - 2 processes x --batch-size b log the loss trajectory of 1 process x 2b (1e-4 relative)
//   - a run resumes at another world size, continuing the same trajectory
//   - a failing rank ends the job with a message (MPI_Abort), a hung rank too (LOOM_DIST_TIMEOUT)
//   - fine-tuning: 2 processes x b log the training losses of 1 process x 2b
// Test hooks of the trainer mode (this file only): LOOM_TEST_BREAK_RANK=r with LOOM_TEST_BREAK=data
// (rank r gets an unreadable --data) or hang (rank r sleeps instead of training).
#include <catch2/catch.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "loom/dist/mpi.hpp"
#include "loom/train/finetune.hpp"
#include "loom/train/mae_pretrain.hpp"
#include "support/catch_session.hpp"
#include "support/check.hpp"
#include "support/temp_dir.hpp"
#include "train/trainer_cli.hpp"

namespace {

namespace fs = std::filesystem;
std::string self_path;
using loom::test::TempDir;

// The tiny model on 16x16 synthetic images of tests/train, 10 steps, every step logged; the
// default mask (the paper's mixture, with whole-modality drops) so that ranks see different numbers
// of hidden tokens per group.
std::vector<std::string> tiny_run(const std::string& out, int64_t batch, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"--data", "synthetic:train=48,clouds=0", "--image-size", "16", "--patch", "4",
                                   "--model", "32x1x2", "--decoder", "32x1x2", "--batch-size", std::to_string(batch),
                                   "--threads", "1", "--workers", "1", "--quiet", "--out", out, "--log-every", "1",
                                   "--recon-samples", "2", "--steps", "10", "--warmup", "3", "--blr", "0.2"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

// mae_pretrain in this process (one rank), which must succeed.
void run_single(std::vector<std::string> args) {
  const loom::test::CliRun r = loom::test::pretrain(std::move(args));
  INFO(r.err);
  REQUIRE(r.code == 0);
}

struct Launch {
  int code;
  std::string output;
  double seconds;
};

// mpirun -np <n> <this program> <mode> <args>, with extra environment variables.
Launch run_mpi(int processes, const std::vector<std::string>& args, const std::string& env = "",
               const std::string& mode = "--mae-pretrain") {
  TempDir tmp;
  std::string cmd = env + " OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " LOOM_MPIEXEC " -np " +
                    std::to_string(processes) + " --oversubscribe " + self_path + " " + mode;
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " > " + tmp.file("log") + " 2>&1";
  const auto t0 = std::chrono::steady_clock::now();
  const int status = std::system(cmd.c_str());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::ifstream in(tmp.file("log"));
  std::stringstream text;
  text << in.rdbuf();
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128, text.str(), seconds};
}

std::vector<loom::json::Value> metrics_of(const std::string& dir) {
  return loom::test::read_jsonl((fs::path(dir) / "metrics.jsonl").string());
}

std::vector<double> series(const std::vector<loom::json::Value>& records, const std::string& key) {
  std::vector<double> out;
  for (const auto& r : records) out.push_back(r[key].as_number());
  return out;
}

void require_same_trajectory(const std::string& ours, const std::string& reference, int64_t from_step = 1) {
  const auto a = metrics_of(ours), b = metrics_of(reference);
  REQUIRE(a.size() == 10);
  REQUIRE(b.size() == 10);
  std::vector<loom::json::Value> a_tail(a.begin() + (from_step - 1), a.end()), b_tail(b.begin() + (from_step - 1), b.end());
  REQUIRE(series(a_tail, "step") == series(b_tail, "step"));
  for (const char* key : {"loss", "loss_s1", "loss_s2", "baseline", "lr", "grad_norm"}) {
    INFO(key);
    loom::test::require_close(series(a_tail, key), series(b_tail, key), {0, 1e-4});
  }
}

}  // namespace

TEST_CASE("mpirun -np 2 with --batch-size b logs the loss trajectory of 1 process with 2b", "[dist][mpi][train]") {
  TempDir dir;
  run_single(tiny_run(dir.file("one"), 8));
  const Launch two = run_mpi(2, tiny_run(dir.file("two"), 4));
  INFO(two.output);
  REQUIRE(two.code == 0);
  require_same_trajectory(dir.file("two"), dir.file("one"));
  // Global batch semantics in what rank 0 wrote.
  const auto config = loom::train::read_json_file(dir.file("two/config.json"));
  REQUIRE(config["run"]["processes"].as_int() == 2);
  REQUIRE(config["run"]["global_batch_size"].as_int() == 8);
  REQUIRE(config["optimizer"]["lr"].as_number() == Approx(0.2 * 8 / 256).epsilon(1e-12));
  REQUIRE(fs::exists(dir.file("two/checkpoint.safetensors")));
  REQUIRE(fs::exists(dir.file("two/recon_10.png")));
}

TEST_CASE("a data-parallel run resumes at another world size on the same trajectory", "[dist][mpi][train]") {
  TempDir dir;
  run_single(tiny_run(dir.file("reference"), 8));
  // 2 processes for 5 steps, then 1 process (batch 8 = the global batch, derived on resume).
  const Launch first = run_mpi(2, tiny_run(dir.file("two_then_one"), 4, {"--stop-after", "5"}));
  INFO(first.output);
  REQUIRE(first.code == 0);
  run_single({"--out", dir.file("two_then_one"), "--resume", "--quiet", "--threads", "1"});
  require_same_trajectory(dir.file("two_then_one"), dir.file("reference"), 6);
  // 1 process for 5 steps, then 2 (batch 4 each).
  run_single(tiny_run(dir.file("one_then_two"), 8, {"--stop-after", "5"}));
  const Launch second = run_mpi(2, {"--out", dir.file("one_then_two"), "--resume", "--quiet", "--threads", "1"});
  INFO(second.output);
  REQUIRE(second.code == 0);
  require_same_trajectory(dir.file("one_then_two"), dir.file("reference"), 6);
  // A global batch that does not split over the world size is a usage error naming --batch-size.
  TempDir odd;
  run_single(tiny_run(odd.file("run"), 5, {"--stop-after", "1"}));
  const Launch bad = run_mpi(2, {"--out", odd.file("run"), "--resume", "--quiet"});
  REQUIRE(bad.code != 0);
  REQUIRE(bad.output.find("--batch-size: the resumed run's global batch 5") != std::string::npos);
}

TEST_CASE("a failing rank aborts the whole job with its message", "[dist][mpi][train]") {
  TempDir dir;
  const Launch r = run_mpi(2, tiny_run(dir.file("run"), 4), "LOOM_TEST_BREAK_RANK=1 LOOM_TEST_BREAK=data LOOM_DIST_TIMEOUT=60");
  INFO(r.output);
  REQUIRE(r.code != 0);
  REQUIRE(r.output.find("rank 1 of 2") != std::string::npos);
  REQUIRE(r.output.find("nowhere") != std::string::npos);  // the failing rank's own message
  REQUIRE(r.output.find("aborting all 2 processes") != std::string::npos);
  REQUIRE(r.seconds < 50);
}

TEST_CASE("a hung rank makes the others abort after LOOM_DIST_TIMEOUT, not hang", "[dist][mpi][train]") {
  TempDir dir;
  const Launch r = run_mpi(2, tiny_run(dir.file("run"), 4), "LOOM_TEST_BREAK_RANK=1 LOOM_TEST_BREAK=hang LOOM_DIST_TIMEOUT=2");
  INFO(r.output);
  REQUIRE(r.code != 0);
  REQUIRE(r.output.find("rank 0 of 2") != std::string::npos);
  REQUIRE(r.output.find("did not complete within 2 s") != std::string::npos);
  REQUIRE(r.seconds < 40);
  REQUIRE_FALSE(fs::exists(dir.file("run/checkpoint.json")));
}

TEST_CASE("finetune_multilabel: mpirun -np 2 with --batch-size b logs the training losses of 1 process with 2b",
          "[dist][mpi][train]") {
  TempDir dir;
  auto args = [&](const std::string& out, int64_t batch, bool probe) {
    std::vector<std::string> a = {"--data", "synthetic:train=96,val=48,test=40,clouds=0", "--image-size", "16",
                                  "--patch", "4", "--model", "32x1x2", "--batch-size", std::to_string(batch),
                                  "--threads", "1", "--workers", "1", "--quiet", "--out", out, "--log-every", "1",
                                  "--steps", "6", "--blr", "0.05", "--eval-every", "3", "--drop-path", "0"};
    if (probe) a.push_back("--linear-probe");
    return a;
  };
  for (bool probe : {false, true}) {
    INFO("linear probe: " << probe);
    const std::string one = dir.file(probe ? "probe_one" : "one"), two = dir.file(probe ? "probe_two" : "two");
    {
      std::vector<std::string> a = args(one, 16, probe);
      a.insert(a.begin(), "finetune_multilabel");
      std::vector<const char*> argv;
      for (const auto& x : a) argv.push_back(x.c_str());
      std::ostringstream out, err;
      const int code = loom::train::finetune_multilabel_main(int(argv.size()), argv.data(), out, err);
      INFO(err.str());
      REQUIRE(code == 0);
    }
    const Launch r = run_mpi(2, args(two, 8, probe), "", "--finetune");
    INFO(r.output);
    REQUIRE(r.code == 0);
    auto train_records = [](const std::string& d) {
      std::vector<loom::json::Value> out;
      for (auto& rec : metrics_of(d))
        if (rec["split"].as_string() == "train") out.push_back(rec);
      return out;
    };
    const auto a = train_records(two), b = train_records(one);
    REQUIRE(a.size() == 6);
    REQUIRE(b.size() == 6);
    for (const char* key : {"loss", "lr", "grad_norm"}) {
      INFO(key);
      loom::test::require_close(series(a, key), series(b, key), {0, 1e-4});
    }
    REQUIRE(fs::exists(fs::path(two) / "report.json"));
  }
}

int main(int argc, char** argv) {
  self_path = fs::absolute(argv[0]).string();
  if (argc >= 2 && std::strcmp(argv[1], "--finetune") == 0) {
    loom::dist::MpiEnvironment mpi(argc, argv);
    loom::dist::MpiCommunicator world;
    std::vector<const char*> pointers(argv + 1, argv + argc);
    pointers[0] = "finetune_multilabel";
    return loom::train::finetune_multilabel_main(int(pointers.size()), pointers.data(), std::cout, std::cerr, &world);
  }
  if (argc >= 2 && std::strcmp(argv[1], "--mae-pretrain") == 0) {
    loom::dist::MpiEnvironment mpi(argc, argv);
    loom::dist::MpiCommunicator world;
    std::vector<std::string> args(argv + 1, argv + argc);
    args[0] = "mae_pretrain";
    const char* break_rank = std::getenv("LOOM_TEST_BREAK_RANK");
    const char* how = std::getenv("LOOM_TEST_BREAK");
    if (break_rank && how && std::atoi(break_rank) == world.rank()) {
      if (std::strcmp(how, "hang") == 0) std::this_thread::sleep_for(std::chrono::seconds(60));
      for (size_t i = 0; i + 1 < args.size(); ++i)
        if (args[i] == "--data") args[i + 1] = "bigearthnet:/nowhere";
    }
    std::vector<const char*> pointers;
    for (const auto& a : args) pointers.push_back(a.c_str());
    return loom::train::mae_pretrain_main(int(pointers.size()), pointers.data(), std::cout, std::cerr, &world);
  }
  return loom::test::run_catch_session(argc, argv);
}
