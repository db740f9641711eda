#pragma once
// AtomicFileWriter: writes a file so that readers see either the old content or the complete new
// content, never a prefix, even across a crash or power loss:
//   1. write everything to a fresh temporary file in the destination's directory (same filesystem,
//      so the rename below is atomic), created with O_EXCL so concurrent writers never share it;
//   2. fsync the temporary file (data reaches the disk before the name points at it);
//   3. rename it over the destination (atomic replace, POSIX);
//   4. fsync the directory (the rename itself is durable).
// If anything fails, or the writer is destroyed without commit(), the temporary file is removed and
// the destination is untouched. Readers that have the old file open or mmap'ed keep reading the old
// content (its inode lives on until they close it).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "loom/core/error.hpp"

namespace loom::io {

class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path) : path_(std::move(path)) {
    LOOM_CHECK(!path_.empty(), "atomic write: empty path");
    const std::filesystem::path target(path_);
    dir_ = target.has_parent_path() ? target.parent_path().string() : std::string(".");
    static std::atomic<uint64_t> counter{0};
    for (int attempt = 0; attempt < 100 && fd_ < 0; ++attempt) {
      // Built with append rather than operator+ chains: g++ 12 warns falsely (-Wrestrict) on the latter.
      std::string name = ".";
      name.append(target.filename().string()).append(".tmp-").append(std::to_string(::getpid()));
      name.append("-").append(std::to_string(counter++));
      temp_ = (std::filesystem::path(dir_) / name).string();
      fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd_ < 0 && errno != EEXIST) break;
    }
    LOOM_CHECK(fd_ >= 0, "atomic write of ", path_, ": cannot create a temporary file in ", dir_, ": ",
               std::strerror(errno));
  }
  ~AtomicFileWriter() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(temp_.c_str());
  }
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  // Appends bytes. Small pieces are gathered in a buffer; large ones go straight to the file.
  void write(const void* data, size_t bytes) {
    LOOM_CHECK(fd_ >= 0 && !committed_, "atomic write of ", path_, ": write after commit");
    if (buffer_.size() + bytes <= kBufferBytes) {
      const char* p = static_cast<const char*>(data);
      buffer_.insert(buffer_.end(), p, p + bytes);
      return;
    }
    flush();
    if (bytes <= kBufferBytes) return write(data, bytes);
    write_fully(data, bytes);
  }
  void write(std::string_view s) { write(s.data(), s.size()); }
  size_t bytes_written() const { return written_ + buffer_.size(); }
  const std::string& temp_path() const { return temp_; }

  // Makes the new content durable and visible under the destination name.
  void commit() {
    LOOM_CHECK(fd_ >= 0 && !committed_, "atomic write of ", path_, ": commit twice");
    flush();
    LOOM_CHECK(::fsync(fd_) == 0, "atomic write of ", path_, ": fsync failed: ", std::strerror(errno));
    const int fd = fd_;
    fd_ = -1;
    LOOM_CHECK(::close(fd) == 0, "atomic write of ", path_, ": close failed: ", std::strerror(errno));
    LOOM_CHECK(::rename(temp_.c_str(), path_.c_str()) == 0, "atomic write of ", path_, ": rename from ", temp_,
               " failed: ", std::strerror(errno));
    committed_ = true;
    // Persist the directory entry. Some filesystems refuse fsync on directories (EINVAL): the
    // rename has happened by then, so that is not an error.
    const int dir_fd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd >= 0) {
      const int rc = ::fsync(dir_fd);
      const int err = errno;
      ::close(dir_fd);
      LOOM_CHECK(rc == 0 || err == EINVAL || err == EROFS, "atomic write of ", path_, ": fsync of directory ", dir_,
                 " failed: ", std::strerror(err));
    }
  }

 private:
  static constexpr size_t kBufferBytes = size_t(1) << 20;

  void flush() {
    write_fully(buffer_.data(), buffer_.size());
    buffer_.clear();
  }
  // Retries short writes and EINTR.
  void write_fully(const void* data, size_t bytes) {
    const char* p = static_cast<const char*>(data);
    while (bytes > 0) {
      const ssize_t n = ::write(fd_, p, std::min<size_t>(bytes, size_t(1) << 30));
      if (n < 0 && errno == EINTR) continue;
      LOOM_CHECK(n > 0, "atomic write of ", path_, ": writing ", temp_, " failed: ", std::strerror(errno));
      p += n;
      bytes -= size_t(n);
      written_ += size_t(n);
    }
  }

  std::string path_, dir_, temp_;
  std::vector<char> buffer_;
  int fd_ = -1;
  bool committed_ = false;
  size_t written_ = 0;
};

}  // namespace loom::io
