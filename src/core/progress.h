// Progress reporting for long work: a bar with rate and ETA on a terminal
// (stderr is a TTY), plain lines at most every few seconds otherwise.
// Thread-safe; `quiet` disables all output.
#pragma once
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace rvec {

class Progress {
 public:
  Progress(std::string label, uint64_t total, std::string unit = "", bool quiet = false);
  ~Progress();  // finishes the line if still open
  void add(uint64_t n, const std::string& status = "");   // n more units done
  void set(uint64_t done, const std::string& status = "");
  void finish(const std::string& status = "");
  static bool stderr_is_tty();

 private:
  void draw(bool force);
  std::string label_, unit_, status_;
  uint64_t total_, done_ = 0;
  bool quiet_, tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
  std::mutex mu_;
};

std::string format_duration(double seconds);  // "1m05s", "3.2s"
std::string format_bytes(double bytes);       // "1.5 GB" (decimal units)

}  // namespace rvec
