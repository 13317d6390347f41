// A compiled PCRE2 regular expression (search semantics: matches anywhere).
#pragma once
#include <memory>
#include <string>
#include <string_view>

namespace rvec::arith {

class Regex {
 public:
  explicit Regex(const std::string& pattern);  // throws rvec::Error with PCRE2's message
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex(const Regex&) = delete;
  bool search(std::string_view s) const;
  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  void* code_ = nullptr;
};

}  // namespace rvec::arith
