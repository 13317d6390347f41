// SHA-256 (FIPS 180-4) for checking the shipped datasets against data/SHA256SUMS.
#pragma once
#include <string>
#include <string_view>

namespace rvec::eval {
std::string sha256_hex(std::string_view data);
}
