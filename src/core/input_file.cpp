#include "core/input_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace rvec {

const char* file_kind(unsigned mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return "a regular file";
    case S_IFDIR: return "a directory";
    case S_IFIFO: return "a FIFO";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    case S_IFSOCK: return "a socket";
    case S_IFLNK: return "a symbolic link";
    default: return "not a regular file";
  }
}

InputFile::InputFile(const std::filesystem::path& path) : path_(path) {
  // O_NONBLOCK: opening a FIFO without a writer returns at once instead of waiting;
  // O_NOCTTY: a terminal device never becomes the controlling terminal.
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd_ < 0) fail("cannot open {}: {}", path.string(), std::strerror(errno));
  struct stat st{};
  if (::fstat(fd_, &st) != 0) {
    int e = errno;
    ::close(fd_);
    fail("cannot stat {}: {}", path.string(), std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd_);
    fail("{}: is {}, not a regular file (rvec reads its inputs only from regular files)", path.string(),
         file_kind(unsigned(st.st_mode)));
  }
  // Regular files ignore O_NONBLOCK, but clear it so that reads behave as usual.
  int fl = ::fcntl(fd_, F_GETFL);
  if (fl >= 0) ::fcntl(fd_, F_SETFL, fl & ~O_NONBLOCK);
  size_ = uint64_t(st.st_size);
}

InputFile::~InputFile() {
  if (fd_ >= 0) ::close(fd_);
}

std::string read_file(const std::filesystem::path& path, uint64_t max_bytes) {
  InputFile f(path);
  if (f.size() > max_bytes)
    fail("{}: {} bytes is over the {}-byte limit for this kind of file", path.string(), f.size(), max_bytes);
  std::string out;
  out.reserve(size_t(f.size()));
  char buf[1 << 16];
  for (;;) {
    ssize_t r = ::read(f.fd(), buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR) continue;
      fail("cannot read {}: {}", path.string(), std::strerror(errno));
    }
    if (r == 0) break;
    out.append(buf, size_t(r));
    if (out.size() > max_bytes)  // grew while being read
      fail("{}: more than the {}-byte limit for this kind of file", path.string(), max_bytes);
  }
  return out;
}

}  // namespace rvec
