// Memory the process may still allocate, to refuse a size flag (bench --batch, ...)
// before allocating instead of paging the machine to death.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace rvec {

// min(MemAvailable of /proc/meminfo, cgroup v2 memory.max - memory.current); nullopt
// when neither can be read.
std::optional<uint64_t> available_memory_bytes();

// Throws rvec::Error "<what> needs an estimated X GiB of memory, but only Y GiB is
// available" when `need_bytes` exceeds available_memory_bytes() (no check if unknown).
void check_memory(double need_bytes, const std::string& what);

// Throws rvec::Error "<what> needs an estimated X GiB of disk space, but only Y GiB is
// free on <dir>" when `need_bytes` exceeds the space free to unprivileged users there.
void check_disk_space(const std::string& dir, double need_bytes, const std::string& what);

}  // namespace rvec
