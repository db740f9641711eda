#pragma once
// The trainers' programs run in-process, as a user would run them from a shell: argv in, exit code
// and the two output streams back.
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "loom/io/json.hpp"
#include "loom/train/finetune.hpp"
#include "loom/train/mae_pretrain.hpp"

namespace loom::test {

struct CliRun {
  int code;
  std::string out, err;
};

// `program args...` through main(argc, argv, out, err).
template <class Main>
CliRun run_main(Main main, const char* program, std::vector<std::string> args) {
  args.insert(args.begin(), program);
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  std::ostringstream out, err;
  const int code = main(int(argv.size()), argv.data(), out, err);
  return {code, out.str(), err.str()};
}

inline CliRun pretrain(std::vector<std::string> args) {
  return run_main([](int c, const char* const* v, std::ostream& o, std::ostream& e) { return train::mae_pretrain_main(c, v, o, e); },
                  "mae_pretrain", std::move(args));
}

inline CliRun finetune(std::vector<std::string> args) {
  return run_main([](int c, const char* const* v, std::ostream& o, std::ostream& e) { return train::finetune_multilabel_main(c, v, o, e); },
                  "finetune_multilabel", std::move(args));
}

// The records of a JSON-lines file (metrics.jsonl), blank lines skipped.
inline std::vector<json::Value> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  std::vector<json::Value> records;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) records.push_back(json::parse(line));
  return records;
}

}  // namespace loom::test
