// The one way rvec opens a file it reads. Inputs come from downloaded checkpoints,
// datasets and user paths, and a FIFO, device or socket at such a path would block
// open()/read() forever (or never end, like /dev/zero): the file is opened
// non-blocking and refused, naming the path and what it is, unless it is a regular file.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>

namespace rvec {

// An open read-only descriptor of a regular file; closes on destruction.
class InputFile {
 public:
  // Throws rvec::Error "cannot open <path>: ..." or "<path>: is a FIFO, not a regular file ...".
  explicit InputFile(const std::filesystem::path& path);
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;
  int fd() const { return fd_; }
  uint64_t size() const { return size_; }  // at open time
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// "a FIFO", "a directory", "a character device", ... for a stat st_mode.
const char* file_kind(unsigned mode);

// The whole content of a regular file; throws rvec::Error naming the path (also when
// it is larger than `max_bytes`).
std::string read_file(const std::filesystem::path& path, uint64_t max_bytes = UINT64_MAX);

}  // namespace rvec
