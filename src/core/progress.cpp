#include "core/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace rvec {

bool Progress::stderr_is_tty() { return isatty(STDERR_FILENO) == 1; }

Progress::Progress(std::string label, uint64_t total, std::string unit, bool quiet)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), quiet_(quiet),
      tty_(stderr_is_tty()), start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

Progress::~Progress() {
  if (!finished_) finish();
}

void Progress::add(uint64_t n, const std::string& status) {
  std::lock_guard<std::mutex> lock(mu_);
  done_ += n;
  if (!status.empty()) status_ = status;
  draw(false);
}

void Progress::set(uint64_t done, const std::string& status) {
  std::lock_guard<std::mutex> lock(mu_);
  done_ = done;
  if (!status.empty()) status_ = status;
  draw(false);
}

void Progress::finish(const std::string& status) {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  if (!status.empty()) status_ = status;
  draw(true);
  if (!quiet_ && tty_) std::fputc('\n', stderr);
  finished_ = true;
}

std::string format_duration(double s) {
  if (s < 60) return fmt::format("{:.1f}s", s);
  int t = int(s + 0.5);
  if (t < 3600) return fmt::format("{}m{:02d}s", t / 60, t % 60);
  return fmt::format("{}h{:02d}m", t / 3600, (t % 3600) / 60);
}

std::string format_bytes(double b) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  int i = 0;
  while (b >= 1000 && i < 4) { b /= 1000; ++i; }
  return i == 0 ? fmt::format("{:.0f} {}", b, units[i]) : fmt::format("{:.1f} {}", b, units[i]);
}

void Progress::draw(bool force) {
  if (quiet_ || finished_) return;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_draw_).count();
  if (!force && since < (tty_ ? 0.1 : 5.0)) return;
  last_draw_ = now;
  double el = std::chrono::duration<double>(now - start_).count();
  double frac = total_ ? double(done_) / double(total_) : 1.0;
  std::string eta = (done_ > 0 && done_ < total_) ? format_duration(el / frac - el) : "--";
  std::string counts = unit_ == "B" ? fmt::format("{}/{}", format_bytes(double(done_)), format_bytes(double(total_)))
                                    : fmt::format("{}/{}{}", done_, total_, unit_.empty() ? "" : " " + unit_);
  if (tty_) {
    const int width = 28;
    int fill = int(frac * width + 0.5);
    std::string bar(size_t(fill), '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r\033[K%s [%s] %3.0f%% %s  %s elapsed, ETA %s  %s", label_.c_str(), bar.c_str(),
                 frac * 100, counts.c_str(), format_duration(el).c_str(), eta.c_str(), status_.c_str());
  } else {
    std::fprintf(stderr, "%s: %3.0f%% %s, %s elapsed, ETA %s %s\n", label_.c_str(), frac * 100, counts.c_str(),
                 format_duration(el).c_str(), eta.c_str(), status_.c_str());
  }
  std::fflush(stderr);
}

}  // namespace rvec
