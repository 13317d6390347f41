// rvec::Error: the one exception type rvec throws for bad input or failed I/O.
// Messages name the file, tensor or line at fault; the CLI prints them and exits non-zero.
#pragma once
#include <fmt/format.h>
#include <stdexcept>
#include <string>

namespace rvec {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

// fail("{}: tensor '{}' has {} bytes", path, name, n) throws rvec::Error.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace rvec
