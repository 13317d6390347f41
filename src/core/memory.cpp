#include "core/memory.h"

#include <sys/statvfs.h>

#include <fstream>
#include <sstream>

#include "core/error.h"

namespace rvec {
namespace {

std::optional<uint64_t> read_u64(const char* path) {
  std::ifstream in(path);  // /proc and /sys pseudo-files: always regular, never block
  uint64_t v;
  if (in >> v) return v;
  return std::nullopt;
}

}  // namespace

std::optional<uint64_t> available_memory_bytes() {
  std::optional<uint64_t> avail;
  std::ifstream mi("/proc/meminfo");
  std::string key;
  uint64_t kb;
  std::string unit;
  while (mi >> key >> kb) {
    std::getline(mi, unit);
    if (key == "MemAvailable:") {
      avail = kb * 1024;
      break;
    }
  }
  auto max = read_u64("/sys/fs/cgroup/memory.max");  // "max" (no limit) does not parse
  auto cur = read_u64("/sys/fs/cgroup/memory.current");
  if (max && cur) {
    uint64_t left = *max > *cur ? *max - *cur : 0;
    avail = avail ? std::min(*avail, left) : left;
  }
  return avail;
}

void check_memory(double need_bytes, const std::string& what) {
  auto avail = available_memory_bytes();
  if (!avail || need_bytes <= double(*avail)) return;
  fail("{} needs an estimated {:.1f} GiB of memory, but only {:.1f} GiB is available", what, need_bytes / (1 << 30),
       double(*avail) / (1 << 30));
}

void check_disk_space(const std::string& dir, double need_bytes, const std::string& what) {
  struct statvfs st{};
  if (::statvfs(dir.c_str(), &st) != 0) return;
  const double free_b = double(st.f_bavail) * double(st.f_frsize);
  if (need_bytes <= free_b) return;
  fail("{} needs an estimated {:.1f} GiB of disk space, but only {:.1f} GiB is free on {}", what,
       need_bytes / (1 << 30), free_b / (1 << 30), dir);
}

}  // namespace rvec
