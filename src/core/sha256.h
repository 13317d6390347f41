// SHA-256 as lowercase hex, via OpenSSL's libcrypto: of a buffer (dataset checks)
// and of a file streamed with large reads (checksums of model inputs in rvec.json).
#pragma once
#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

namespace rvec {

std::string sha256_hex(std::string_view data);
std::string sha256_file(const std::filesystem::path& path);  // throws rvec::Error naming the path

// Incremental hashing (e.g. of a memory-mapped file, without copying it).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t n);
  std::string hex();  // the digest; call once

 private:
  void* ctx_;
};

}  // namespace rvec
