// A cache of the SHA-256 of input files, so that applying the same vector again (an alpha
// sweep, an experiment grid) does not re-hash gigabytes. Like git's index, an entry is
// keyed by the absolute path and trusted only while the file's device, inode, size and
// modification time (ns) are unchanged; anything else re-hashes. Stored as JSON in
// $RVEC_CACHE_DIR, else $XDG_CACHE_HOME/rvec, else ~/.cache/rvec (sha256.json), written
// atomically; entries of files that no longer exist are dropped on write. RVEC_HASH_CACHE=0
// disables it. An unreadable or corrupt cache is ignored (and replaced).
#pragma once
#include <filesystem>
#include <functional>
#include <string>

namespace rvec::io {

// sha256 of `file`: from the cache when its entry is still valid, else compute(file),
// recorded in the cache. Thread-safe.
std::string sha256_cached(const std::filesystem::path& file,
                          const std::function<std::string(const std::filesystem::path&)>& compute);

// The cache file in use (empty when disabled or no location is known).
std::filesystem::path hash_cache_path();

}  // namespace rvec::io
