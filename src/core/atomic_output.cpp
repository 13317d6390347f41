#include "core/atomic_output.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "core/error.h"

namespace fs = std::filesystem;

namespace rvec {

namespace {

// 0 or the errno of the failed write.
int write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += w;
    n -= size_t(w);
  }
  return 0;
}

constexpr std::string_view kTmpTag = ".rvec-tmp-";

bool pid_gone(long pid) { return pid > 0 && ::kill(pid_t(pid), 0) != 0 && errno == ESRCH; }

}  // namespace

std::string write_error_text(int err) {
  if (err == ENOSPC) return "no space left on device";
  if (err == EDQUOT) return "disk quota exceeded (no space left)";
  return std::strerror(err);
}

void copy_file_checked(const fs::path& src, const fs::path& dst) {
  InputFile in(src);
  int out = ::open(dst.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) fail("cannot copy {} to {}: {}", src.string(), dst.string(), write_error_text(errno));
  std::vector<char> buf(size_t(1) << 20);
  for (;;) {
    ssize_t r = ::read(in.fd(), buf.data(), buf.size());
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      ::close(out);
      fail("cannot copy {} to {}: reading: {}", src.string(), dst.string(), std::strerror(e));
    }
    if (r == 0) break;
    if (int e = write_all(out, buf.data(), size_t(r)); e != 0) {
      ::close(out);
      fail("cannot copy {} to {}: {}", src.string(), dst.string(), write_error_text(e));
    }
  }
  if (::close(out) != 0) fail("cannot copy {} to {}: {}", src.string(), dst.string(), write_error_text(errno));
}

void write_file_atomic(const fs::path& path, std::string_view content) {
  fs::path tmp = path;
  tmp += ".tmp-" + std::to_string(getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot create {}: {}", tmp.string(), write_error_text(errno));
  if (int e = write_all(fd, content.data(), content.size()); e != 0) {
    ::close(fd);
    ::unlink(tmp.c_str());
    fail("cannot write {}: {}", tmp.string(), write_error_text(e));
  }
  // A full disk may only show at fsync/close (delayed allocation, NFS).
  if (::fsync(fd) != 0 && errno != EINVAL) {
    int e = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    fail("cannot write {}: {}", tmp.string(), write_error_text(e));
  }
  if (::close(fd) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    fail("cannot write {}: {}", tmp.string(), write_error_text(e));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    fail("cannot rename {} to {}: {}", tmp.string(), path.string(), std::strerror(e));
  }
}

std::string AtomicDir::replace_refusal(const fs::path& p) {
  std::error_code ec;
  auto st = fs::symlink_status(p, ec);
  if (ec) return ec.message();
  if (fs::is_symlink(st)) return "it is a symbolic link";
  if (!fs::is_directory(st)) {
    struct stat sb{};
    return fmt::format("it is {}", ::lstat(p.c_str(), &sb) == 0 ? file_kind(unsigned(sb.st_mode)) : "not a directory");
  }
  if (fs::is_regular_file(fs::symlink_status(p / "rvec.json", ec))) return "";
  if (fs::is_empty(p, ec) && !ec) return "";
  return "it is a directory rvec did not write (no rvec.json) and not empty";
}

std::vector<fs::path> AtomicDir::remove_stale_temps(const fs::path& dir) {
  std::vector<fs::path> removed;
  std::error_code ec;
  for (fs::directory_iterator it(dir.empty() ? fs::path(".") : dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    size_t at = name.rfind(kTmpTag);
    if (at == std::string::npos || at == 0) continue;
    const std::string digits = name.substr(at + kTmpTag.size());
    if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const long pid = std::stol(digits);
    std::error_code e2;
    if (pid == long(getpid()) || !pid_gone(pid) || !it->is_directory(e2) || it->is_symlink(e2)) continue;
    fs::remove_all(it->path(), e2);
    if (!e2) removed.push_back(it->path());
  }
  return removed;
}

AtomicDir::AtomicDir(fs::path final_path, bool force) : final_(std::move(final_path)), force_(force) {
  if (final_.has_filename() == false) final_ = final_.parent_path();
  std::error_code ec;
  if (fs::exists(fs::symlink_status(final_, ec))) {
    if (!force_) fail("output {} already exists (use --force to replace it)", final_.string());
    if (auto why = replace_refusal(final_); !why.empty())
      fail("output {} exists and --force will not replace it: {} (--force replaces only an empty directory or "
           "one rvec wrote)", final_.string(), why);
  }
  for (const auto& p : remove_stale_temps(final_.parent_path()))
    fmt::print(stderr, "rvec: removed {}, left by an interrupted run (its process no longer exists)\n", p.string());
  tmp_ = final_;
  tmp_ += std::string(kTmpTag) + std::to_string(getpid());
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
  if (fs::exists(fs::symlink_status(final_, ec))) {
    if (!force_) fail("output {} appeared while writing; not replacing it", final_.string());
    if (auto why = replace_refusal(final_); !why.empty())
      fail("output {} changed while writing and --force will not replace it: {}", final_.string(), why);
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

}  // namespace rvec
