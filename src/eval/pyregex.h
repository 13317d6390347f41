// Python `re` semantics where lm-evaluation-harness relies on them, on top of PCRE2
// (UTF + UCP, so \d \w \b are Unicode-aware as in Python 3 str patterns). findall and sub
// step over empty matches as Python >= 3.7 does (an empty match may follow a non-empty one).
#pragma once
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace rvec::eval {

class PyRegex {
 public:
  explicit PyRegex(const std::string& pattern);  // throws rvec::Error naming the pattern
  ~PyRegex();
  PyRegex(PyRegex&&) noexcept;
  PyRegex& operator=(PyRegex&&) noexcept;
  PyRegex(const PyRegex&) = delete;
  PyRegex& operator=(const PyRegex&) = delete;

  const std::string& pattern() const { return pattern_; }
  int group_count() const { return groups_; }
  // re.findall: each match as its groups (unmatched group -> ""); a pattern without groups
  // gives one element per match: the whole match.
  std::vector<std::vector<std::string>> findall(const std::string& s) const;
  // re.sub(pattern, repl, s) with a literal replacement.
  std::string sub(const std::string& s, const std::string& repl) const;
  // re.sub with a template: \1..\99 and \g<n> insert groups (unmatched -> ""), \\ a backslash,
  // \n a newline; other escapes are kept as written.
  std::string sub_template(const std::string& s, const std::string& repl) const;
  struct Match {
    size_t start = 0, end = 0;        // byte offsets in the (UTF-8 sanitised) subject
    std::vector<std::string> groups;  // group 1.. ("" when unmatched)
  };
  // re.finditer: every match with its span.
  std::vector<Match> finditer(const std::string& s) const;
  // re.match: a match starting at the beginning of s.
  bool match_start(const std::string& s) const;
  bool search(const std::string& s) const;
  static std::string escape(const std::string& s);  // re.escape

 private:
  // Calls f(ovector pointer) for each successive match (Python iteration order).
  template <typename F>
  void each_match(const std::string& s, F&& f) const;
  std::string pattern_;
  void* code_ = nullptr;
  int groups_ = 0;
};

// Python str.strip() (whitespace as str.isspace for ASCII and common Unicode spaces).
std::string py_strip(const std::string& s);
std::string py_lstrip(const std::string& s);
std::string py_rstrip(const std::string& s);
std::string ascii_lower(const std::string& s);
// Python str.lower(): full Unicode lower-casing (ICU root locale); invalid UTF-8 falls back to ascii_lower.
std::string py_lower(const std::string& s);
// Removes every character of Unicode general category P* (lm-eval's ExtendedRegexFilter
// punct_tbl; string.punctuation's symbols such as $ + < = > ^ ` | ~ stay).
std::string remove_unicode_punctuation(const std::string& s);
// Invalid UTF-8 bytes replaced by U+FFFD (what the regex functions match against).
std::string sanitize_utf8_for_regex(const std::string& s);

}  // namespace rvec::eval
