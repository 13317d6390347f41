#include "io/hash_cache.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/atomic_output.h"
#include "core/sha256.h"
#include "test_util.h"

using namespace rvec;
namespace fs = std::filesystem;

namespace {

// Points the cache at a scratch directory for one test (restoring the environment after)
// and hashes with a `compute` that counts its calls.
struct CacheEnv {
  test_util::TempDir dir{"hash_cache"};
  int calls = 0;
  std::function<std::string(const fs::path&)> compute = [this](const fs::path& p) {
    ++calls;
    return sha256_file(p);
  };
  CacheEnv() {
    ::setenv("RVEC_CACHE_DIR", (dir.p / "cache").c_str(), 1);
    ::unsetenv("RVEC_HASH_CACHE");
  }
  ~CacheEnv() { ::unsetenv("RVEC_CACHE_DIR"); }
};

void write(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

}  // namespace

TEST(HashCache, SecondLookupOfAnUnchangedFileSkipsHashing) {
  CacheEnv env;
  const fs::path f = env.dir.p / "a.safetensors";
  write(f, "abc");
  auto& compute = env.compute;
  int& calls = env.calls;
  // SHA-256("abc"), FIPS 180-2 appendix B.1.
  const std::string abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
  EXPECT_EQ(io::sha256_cached(f, compute), abc);
  EXPECT_EQ(io::sha256_cached(f, compute), abc);
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(fs::exists(io::hash_cache_path()));
  EXPECT_EQ(io::hash_cache_path(), env.dir.p / "cache" / "sha256.json");
}

TEST(HashCache, ChangedFileIsHashedAgain) {
  CacheEnv env;
  const fs::path f = env.dir.p / "a.safetensors";
  write(f, "abc");
  auto& compute = env.compute;
  int& calls = env.calls;
  io::sha256_cached(f, compute);
  // Same size, new content and a different mtime (set explicitly: the write may land in
  // the same clock tick).
  write(f, "abd");
  struct timespec ts[2] = {{0, UTIME_OMIT}, {12345, 678}};
  ASSERT_EQ(::utimensat(AT_FDCWD, f.c_str(), ts, 0), 0);
  EXPECT_EQ(io::sha256_cached(f, compute), sha256_hex("abd"));
  EXPECT_EQ(calls, 2);
  // A file replaced by another (new inode) with identical size and mtime: hashed again too.
  const fs::path g = env.dir.p / "b";
  write(g, "abe");
  ASSERT_EQ(::utimensat(AT_FDCWD, g.c_str(), ts, 0), 0);
  fs::rename(g, f);
  EXPECT_EQ(io::sha256_cached(f, compute), sha256_hex("abe"));
  EXPECT_EQ(calls, 3);
}

TEST(HashCache, CorruptCacheIsIgnoredAndDisabledCacheWritesNothing) {
  CacheEnv env;
  const fs::path f = env.dir.p / "a.safetensors";
  write(f, "abc");
  fs::create_directories(env.dir.p / "cache");
  write(env.dir.p / "cache" / "sha256.json", "{not json");
  auto& compute = env.compute;
  int& calls = env.calls;
  EXPECT_EQ(io::sha256_cached(f, compute), sha256_hex("abc"));
  auto j = nlohmann::json::parse(read_file(env.dir.p / "cache" / "sha256.json"));  // rewritten, valid
  EXPECT_TRUE(j.contains(fs::absolute(f).lexically_normal().string()));
  // A cached entry whose file is gone is dropped on the next write.
  const fs::path g = env.dir.p / "g";
  write(g, "x");
  io::sha256_cached(g, compute);
  fs::remove(g);
  io::sha256_cached(f, compute);  // hit: no write
  write(g, "y");
  io::sha256_cached(g, compute);  // miss: write (g exists again)
  fs::remove(f);
  const fs::path h = env.dir.p / "h";
  write(h, "z");
  io::sha256_cached(h, compute);  // miss: write, f is gone
  j = nlohmann::json::parse(read_file(env.dir.p / "cache" / "sha256.json"));
  EXPECT_FALSE(j.contains(fs::absolute(f).lexically_normal().string()));
  EXPECT_TRUE(j.contains(fs::absolute(h).lexically_normal().string()));

  ::setenv("RVEC_HASH_CACHE", "0", 1);
  fs::remove_all(env.dir.p / "cache");
  calls = 0;
  io::sha256_cached(h, compute);
  io::sha256_cached(h, compute);
  EXPECT_EQ(calls, 2);
  EXPECT_FALSE(fs::exists(env.dir.p / "cache"));
  ::unsetenv("RVEC_HASH_CACHE");
}
