#pragma once
// A fresh directory under the system temp folder, removed (with its contents) at scope exit.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace loom::test {

struct TempDir {
  std::filesystem::path path;

  explicit TempDir(const std::string& tag = "tmp") {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("loom_test_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& relative) const { return (path / relative).string(); }

  // Writes `text` to path/relative, creating folders on the way; returns the full path.
  std::string write(const std::string& relative, const std::string& text) const {
    const std::filesystem::path p = path / relative;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
    return p.string();
  }
};

}  // namespace loom::test
