// Atomic outputs: everything rvec writes goes to a temporary sibling first and is
// renamed into place only when complete, so a failed or interrupted run never
// leaves a file or directory that looks finished.
#pragma once
#include <filesystem>
#include <string>
#include <string_view>

namespace rvec {

// Writes `content` to `path` via "<path>.tmp-<pid>" + fsync + rename.
void write_file_atomic(const std::filesystem::path& path, std::string_view content);

// A directory built in "<final>.rvec-tmp-<pid>" and renamed to `final` by commit().
// Refuses to start if `final` exists unless `force` (then the old one is replaced
// at commit time). The destructor removes the temporary directory if commit()
// was not reached.
class AtomicDir {
 public:
  AtomicDir(std::filesystem::path final_path, bool force);
  ~AtomicDir();
  AtomicDir(const AtomicDir&) = delete;
  AtomicDir& operator=(const AtomicDir&) = delete;
  const std::filesystem::path& tmp() const { return tmp_; }
  const std::filesystem::path& final_path() const { return final_; }
  void commit();

 private:
  std::filesystem::path final_, tmp_;
  bool force_, committed_ = false;
};

std::string read_file(const std::filesystem::path& path);  // throws rvec::Error naming the path

}  // namespace rvec
