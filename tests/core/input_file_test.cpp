// Hostile input paths: a FIFO (no writer), a directory, a character device. Each must be
// refused at once with the path and its kind named; none may block.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <future>

#include "core/error.h"
#include "core/atomic_output.h"
#include "core/input_file.h"
#include "core/sha256.h"
#include "test_util.h"

using namespace rvec;
namespace fs = std::filesystem;

namespace {

// Runs `f` and returns its rvec::Error message; fails the test if it takes over a second
// (a blocked open is released by opening the FIFO's write end, so the test never hangs).
template <typename F>
std::string error_within_a_second(F f, const fs::path& fifo = {}) {
  auto fut = std::async(std::launch::async, [f]() -> std::string {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  });
  if (fut.wait_for(std::chrono::seconds(1)) != std::future_status::ready) {
    ADD_FAILURE() << "blocked for more than a second";
    if (!fifo.empty()) {
      int w = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
      if (w >= 0) ::close(w);
    }
  }
  return fut.get();
}

}  // namespace

TEST(InputFile, FifoIsRefusedWithoutBlocking) {
  test_util::TempDir d("input_fifo");
  fs::path fifo = d.p / "config.json";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::string msg = error_within_a_second([&] { read_file(fifo); }, fifo);
  EXPECT_NE(msg.find(fifo.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("is a FIFO, not a regular file"), std::string::npos) << msg;
  msg = error_within_a_second([&] { sha256_file(fifo); }, fifo);
  EXPECT_NE(msg.find("is a FIFO"), std::string::npos) << msg;
}

TEST(InputFile, DirectoryAndDevicesAreRefused) {
  test_util::TempDir d("input_dir");
  EXPECT_NE(error_within_a_second([&] { read_file(d.p); }).find("is a directory"), std::string::npos);
  // /dev/zero would never end and /dev/null would read as an empty file.
  EXPECT_NE(error_within_a_second([] { read_file("/dev/zero"); }).find("/dev/zero: is a character device"),
            std::string::npos);
  EXPECT_NE(error_within_a_second([] { read_file("/dev/null"); }).find("character device"), std::string::npos);
}

TEST(InputFile, RegularFilesReadWholeAndSizeLimitNamesThePath) {
  test_util::TempDir d("input_reg");
  fs::path p = d.p / "a.txt";
  write_file_atomic(p, std::string("abc\0def", 7));
  EXPECT_EQ(read_file(p), std::string("abc\0def", 7));
  try {
    read_file(p, 4);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(p.string() + ": 7 bytes is over the 4-byte limit"), std::string::npos)
        << e.what();
  }
  EXPECT_NE(error_within_a_second([&] { read_file(d.p / "missing"); }).find("cannot open"), std::string::npos);
}
