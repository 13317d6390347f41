#include "eval/math/boxed.h"

#include "eval/math/pystr.h"
#include "eval/pyregex.h"

namespace rvec::eval::math {

std::optional<std::string> last_boxed_only_string(const std::string& s) {
  if (contains(s, "\\boxed ")) {
    auto parts = split_all(s, "\\boxed ");
    return "\\boxed " + split_all(parts.back(), "$")[0];
  }
  size_t idx = s.rfind("\\boxed");
  if (idx == std::string::npos) idx = s.rfind("\\fbox");
  if (idx == std::string::npos) return std::nullopt;
  int open = 0;
  for (size_t i = idx; i < s.size(); i++) {
    if (s[i] == '{') open++;
    if (s[i] == '}') {
      open--;
      if (open == 0) return s.substr(idx, i + 1 - idx);
    }
  }
  return std::nullopt;
}

std::optional<std::string> remove_boxed(const std::string& s) {
  if (contains(s, "\\boxed ")) {
    if (!starts_with(s, "\\boxed ")) return std::nullopt;
    return s.substr(7);
  }
  if (!starts_with(s, "\\boxed{") || s.back() != '}') return std::nullopt;
  return s.substr(7, s.size() - 8);
}

std::string qwen_last_box(const std::string& text) {
  std::string ans = split_all(text, "boxed").back();
  if (ans.empty()) return "";
  if (ans[0] != '{') return py_strip(split_all(ans, "$")[0]);
  int stack = 1;
  std::string a;
  for (size_t i = 1; i < ans.size(); i++) {
    char c = ans[i];
    if (c == '{') {
      stack++;
    } else if (c == '}') {
      if (--stack == 0) break;
    }
    a += c;
  }
  return a;
}

}  // namespace rvec::eval::math
