// SHA-256 as lowercase hex, via OpenSSL's libcrypto: of a buffer (dataset checks)
// and of a file streamed with large reads (checksums of model inputs in rvec.json).
#pragma once
#include <filesystem>
#include <string>
#include <string_view>

namespace rvec {

std::string sha256_hex(std::string_view data);
std::string sha256_file(const std::filesystem::path& path);  // throws rvec::Error naming the path

}  // namespace rvec
