#pragma once
// MappedFile: a whole file mapped into memory, private copy-on-write (MAP_PRIVATE, PROT_READ |
// PROT_WRITE). Tensors can then alias the file's bytes without copying; a tensor that is written to
// (an optimizer step on loaded weights) gets private copies of the touched pages instead of a crash
// or a change to the file. Hold it by std::shared_ptr: tensors keep it alive through their Storage's
// owner, and the file is unmapped when the last of them goes.
//
// Caveat of every mmap reader: if another process truncates the file in place while it is mapped,
// reading the vanished pages raises SIGBUS. loom's own writers never do that (they replace files by
// rename, see atomic_file.hpp), so re-saving a checkpoint that is mapped is safe.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

#include "loom/core/error.hpp"

namespace loom::io {

class MappedFile {
 public:
  explicit MappedFile(std::string path) : path_(std::move(path)) {
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    LOOM_CHECK(fd >= 0, "cannot open ", path_, ": ", std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      const int err = errno;
      ::close(fd);
      LOOM_CHECK(false, "cannot map ", path_, ": ", S_ISREG(st.st_mode) ? std::strerror(err) : "not a regular file");
    }
    size_ = size_t(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
      const int err = errno;
      ::close(fd);
      LOOM_CHECK(p != MAP_FAILED, "cannot map ", path_, " (", size_, " bytes): ", std::strerror(err));
      data_ = static_cast<std::byte*>(p);
    } else {
      ::close(fd);
    }
  }
  ~MappedFile() {
    if (data_) ::munmap(data_, size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::byte* data() const { return data_; }  // page-aligned; nullptr for an empty file
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace loom::io
