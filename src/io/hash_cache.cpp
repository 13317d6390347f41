#include "io/hash_cache.h"

#include <sys/stat.h>

#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string_view>

#include "core/atomic_output.h"
#include "core/error.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace rvec::io {
namespace {

std::mutex g_mu;

// {dev, ino, size, mtime_ns} of a file, or null when it cannot be stat'ed.
json file_key(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return nullptr;
  return json::array({uint64_t(st.st_dev), uint64_t(st.st_ino), int64_t(st.st_size),
                      int64_t(st.st_mtim.tv_sec) * 1000000000 + int64_t(st.st_mtim.tv_nsec)});
}

json load(const fs::path& cache) {
  try {
    json j = json::parse(read_file(cache));
    if (j.is_object()) return j;
  } catch (const std::exception&) {
  }
  return json::object();
}

}  // namespace

fs::path hash_cache_path() {
  const char* off = std::getenv("RVEC_HASH_CACHE");
  if (off && std::string_view(off) == "0") return {};
  if (const char* d = std::getenv("RVEC_CACHE_DIR"); d && *d) return fs::path(d) / "sha256.json";
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return fs::path(x) / "rvec" / "sha256.json";
  if (const char* h = std::getenv("HOME"); h && *h) return fs::path(h) / ".cache" / "rvec" / "sha256.json";
  return {};
}

std::string sha256_cached(const fs::path& file, const std::function<std::string(const fs::path&)>& compute) {
  const fs::path cache = hash_cache_path();
  const std::string name = fs::absolute(file).lexically_normal().string();
  const json key = file_key(file);
  if (cache.empty() || key.is_null()) return compute(file);
  {
    std::lock_guard lock(g_mu);
    const json j = load(cache);
    auto it = j.find(name);
    if (it != j.end() && it->is_object() && it->value("key", json()) == key && (*it)["sha256"].is_string())
      return (*it)["sha256"].get<std::string>();
  }
  std::string h = compute(file);
  if (file_key(file) != key) return h;  // changed while hashing: do not record
  std::lock_guard lock(g_mu);
  json j = load(cache);
  j[name] = {{"key", key}, {"sha256", h}};
  for (auto it = j.begin(); it != j.end();) {
    std::error_code ec;
    if (!fs::exists(it.key(), ec)) it = j.erase(it);
    else ++it;
  }
  try {
    std::error_code ec;
    fs::create_directories(cache.parent_path(), ec);
    write_file_atomic(cache, j.dump(1) + "\n");
  } catch (const std::exception&) {
    // a cache that cannot be written only costs a re-hash next time
  }
  return h;
}

}  // namespace rvec::io
