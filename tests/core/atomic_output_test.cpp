// Output safety (issue 10 §4): what --force may replace, removal of temporary
// directories left by killed runs, and "no space left" on a full disk.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>

#include "core/atomic_output.h"
#include "core/error.h"
#include "test_util.h"

using namespace rvec;
namespace fs = std::filesystem;

namespace {

std::string error_of(const fs::path& out, bool force) {
  try {
    AtomicDir d(out, force);
    write_file_atomic(d.tmp() / "rvec.json", "{}\n");
    d.commit();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A pid that certainly does not run any more: a child that has exited and been reaped.
pid_t dead_pid() {
  pid_t p = fork();
  if (p == 0) _exit(0);
  int st;
  waitpid(p, &st, 0);
  return p;
}

}  // namespace

TEST(AtomicDir, ForceReplacesOnlyEmptyOrRvecDirectories) {
  test_util::TempDir d("atomic_force");
  // Without --force nothing is replaced.
  fs::create_directory(d.p / "empty");
  EXPECT_NE(error_of(d.p / "empty", false).find("already exists (use --force"), std::string::npos);
  // An empty directory and one holding rvec.json may be replaced.
  EXPECT_EQ(error_of(d.p / "empty", true), "");
  EXPECT_TRUE(fs::is_regular_file(d.p / "empty" / "rvec.json"));
  EXPECT_EQ(error_of(d.p / "empty", true), "");  // now an rvec directory
  // Anything else is refused even with --force, and left untouched.
  struct Case {
    fs::path p;
    std::string why;
  };
  fs::create_directory(d.p / "foreign");
  write_file_atomic(d.p / "foreign" / "notes.txt", "mine\n");
  write_file_atomic(d.p / "file", "data\n");
  ASSERT_EQ(::mkfifo((d.p / "fifo").c_str(), 0600), 0);
  fs::create_symlink("/dev/null", d.p / "devnull");
  fs::create_symlink(d.p / "empty", d.p / "link_to_rvec_dir");
  for (const auto& c : {Case{d.p / "foreign", "a directory rvec did not write (no rvec.json) and not empty"},
                        Case{d.p / "file", "it is a regular file"}, Case{d.p / "fifo", "it is a FIFO"},
                        Case{d.p / "devnull", "it is a symbolic link"},
                        Case{d.p / "link_to_rvec_dir", "it is a symbolic link"}}) {
    std::string msg = error_of(c.p, true);
    EXPECT_NE(msg.find("--force will not replace it"), std::string::npos) << c.p << ": " << msg;
    EXPECT_NE(msg.find(c.why), std::string::npos) << c.p << ": " << msg;
  }
  EXPECT_TRUE(fs::is_regular_file(d.p / "foreign" / "notes.txt"));
  EXPECT_TRUE(fs::is_regular_file(d.p / "file"));
  EXPECT_TRUE(fs::is_fifo(d.p / "fifo"));
  EXPECT_TRUE(fs::is_character_file("/dev/null"));
  // No temporary sibling was left by the refusals.
  for (const auto& e : fs::directory_iterator(d.p))
    EXPECT_EQ(e.path().filename().string().find(".rvec-tmp-"), std::string::npos) << e.path();
}

TEST(AtomicDir, StaleTemporariesOfDeadProcessesAreRemoved) {
  test_util::TempDir d("atomic_stale");
  const pid_t gone = dead_pid();
  fs::path stale = d.p / ("out.rvec-tmp-" + std::to_string(gone));
  fs::path other_stale = d.p / ("other.rvec-tmp-" + std::to_string(gone));
  fs::path live = d.p / ("out.rvec-tmp-" + std::to_string(getppid()));  // a running process
  fs::path file_named_so = d.p / ("x.rvec-tmp-" + std::to_string(gone));
  for (const auto& p : {stale, other_stale, live}) {
    fs::create_directories(p / "sub");
    write_file_atomic(p / "sub" / "model.safetensors", std::string(1000, 'x'));
  }
  write_file_atomic(file_named_so, "not a directory");
  auto removed = AtomicDir::remove_stale_temps(d.p);
  EXPECT_EQ(removed.size(), 2u);
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_FALSE(fs::exists(other_stale));
  EXPECT_TRUE(fs::exists(live));          // its process still runs
  EXPECT_TRUE(fs::exists(file_named_so));  // rvec only ever makes directories so named
  // AtomicDir does it on start and still produces its output.
  fs::create_directories(stale);
  EXPECT_EQ(error_of(d.p / "out", false), "");
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(d.p / "out" / "rvec.json"));
}

TEST(AtomicOutput, DiskFullIsSpeltNoSpaceLeft) {
  EXPECT_EQ(write_error_text(ENOSPC), "no space left on device");
  EXPECT_EQ(write_error_text(EDQUOT), "disk quota exceeded (no space left)");
  EXPECT_EQ(write_error_text(EACCES), std::string(std::strerror(EACCES)));
  // /dev/full fails every write with ENOSPC: the tokenizer-file copy reports it so.
  test_util::TempDir d("atomic_full");
  write_file_atomic(d.p / "tokenizer.json", std::string(100000, 't'));
  if (::access("/dev/full", W_OK) != 0) GTEST_SKIP() << "/dev/full is not available";
  try {
    copy_file_checked(d.p / "tokenizer.json", "/dev/full");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.json to /dev/full: no space left on device"), std::string::npos)
        << e.what();
  }
}
