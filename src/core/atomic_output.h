// Atomic outputs: everything rvec writes goes to a temporary sibling first and is
// renamed into place only when complete, so a failed or interrupted run never
// leaves a file or directory that looks finished.
#pragma once
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "core/input_file.h"  // read_file

namespace rvec {

// Writes `content` to `path` via "<path>.tmp-<pid>" + fsync + rename.
void write_file_atomic(const std::filesystem::path& path, std::string_view content);

// Copies a regular file (refusing FIFOs/devices as input_file.h does) to `dst`,
// which is created or truncated; errors name both paths, disk full as "no space left".
void copy_file_checked(const std::filesystem::path& src, const std::filesystem::path& dst);

// strerror() for a failed write, with ENOSPC/EDQUOT spelt "no space left on device" /
// "disk quota exceeded (no space left)" so a full disk is recognisable whatever errno
// text the libc has.
std::string write_error_text(int err);

// A directory built in "<final>.rvec-tmp-<pid>" and renamed to `final` by commit().
// Refuses to start if `final` exists unless `force`; even then only an empty directory
// or one rvec wrote (holding rvec.json) is replaced, at commit time; anything else (a
// file, a device such as /dev/null, a symlink, a foreign directory) is an error.
// On start, "<name>.rvec-tmp-<pid>" siblings left by processes that no longer run
// (killed runs) are removed, with a note on stderr. The destructor removes the
// temporary directory if commit() was not reached.
class AtomicDir {
 public:
  AtomicDir(std::filesystem::path final_path, bool force);
  ~AtomicDir();
  AtomicDir(const AtomicDir&) = delete;
  AtomicDir& operator=(const AtomicDir&) = delete;
  const std::filesystem::path& tmp() const { return tmp_; }
  const std::filesystem::path& final_path() const { return final_; }
  void commit();
  // Why `p` may not be replaced by --force ("" when it may).
  static std::string replace_refusal(const std::filesystem::path& p);
  // Removes stale "<x>.rvec-tmp-<pid>" directories in `dir` (pid not running); returns them.
  static std::vector<std::filesystem::path> remove_stale_temps(const std::filesystem::path& dir);

 private:
  std::filesystem::path final_, tmp_;
  bool force_, committed_ = false;
};

}  // namespace rvec
