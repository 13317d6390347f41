#include "core/atomic_output.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace fs = std::filesystem;

namespace rvec {

void write_file_atomic(const fs::path& path, std::string_view content) {
  fs::path tmp = path;
  tmp += ".tmp-" + std::to_string(getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot create {}: {}", tmp.string(), std::strerror(errno));
  size_t off = 0;
  while (off < content.size()) {
    ssize_t w = ::write(fd, content.data() + off, content.size() - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      fail("cannot write {}: {}", tmp.string(), std::strerror(e));
    }
    off += size_t(w);
  }
  ::fsync(fd);
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    fail("cannot rename {} to {}: {}", tmp.string(), path.string(), std::strerror(e));
  }
}

AtomicDir::AtomicDir(fs::path final_path, bool force) : final_(std::move(final_path)), force_(force) {
  if (final_.has_filename() == false) final_ = final_.parent_path();
  if (fs::exists(final_) && !force_)
    fail("output {} already exists (use --force to replace it)", final_.string());
  tmp_ = final_;
  tmp_ += ".rvec-tmp-" + std::to_string(getpid());
  std::error_code ec;
  fs::remove_all(tmp_, ec);
  if (!final_.parent_path().empty()) fs::create_directories(final_.parent_path(), ec);
  if (!fs::create_directory(tmp_, ec) || ec)
    fail("cannot create temporary output directory {}: {}", tmp_.string(), ec.message());
}

AtomicDir::~AtomicDir() {
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }
}

void AtomicDir::commit() {
  std::error_code ec;
  if (fs::exists(final_)) {
    if (!force_) fail("output {} appeared while writing; not replacing it", final_.string());
    fs::path old = final_;
    old += ".rvec-old-" + std::to_string(getpid());
    fs::rename(final_, old, ec);
    if (ec) fail("cannot move old output {} aside: {}", final_.string(), ec.message());
    fs::rename(tmp_, final_, ec);
    if (ec) fail("cannot rename {} to {}: {}", tmp_.string(), final_.string(), ec.message());
    fs::remove_all(old, ec);
  } else {
    fs::rename(tmp_, final_, ec);
    if (ec) fail("cannot rename {} to {}: {}", tmp_.string(), final_.string(), ec.message());
  }
  committed_ = true;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open {}: {}", path.string(), std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail("cannot read {}", path.string());
  return ss.str();
}

}  // namespace rvec
