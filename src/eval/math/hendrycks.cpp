#include "eval/math/hendrycks.h"

#include "eval/math/frac_fix.h"
#include "eval/math/pystr.h"

namespace rvec::eval::math {

std::string hendrycks_extract(const std::string& r) {
  size_t first = r.find('$'), last = r.rfind('$');
  if (first == std::string::npos || first == last) return r;
  return r.substr(first + 1, last - first - 1);
}

namespace {
std::optional<std::string> fix_sqrt(const std::string& s) {
  if (!contains(s, "\\sqrt")) return s;
  auto parts = split_all(s, "\\sqrt");
  std::string out = parts[0];
  for (size_t i = 1; i < parts.size(); i++) {
    if (parts[i].empty()) return std::nullopt;  // split[0] raises IndexError
    if (parts[i][0] != '{')
      out += "\\sqrt{" + parts[i].substr(0, 1) + "}" + parts[i].substr(1);
    else
      out += "\\sqrt" + parts[i];
  }
  return out;
}

// fix_a_slash_b: int() failures raise ValueError (not caught there); a non-canonical a/b is kept.
std::optional<std::string> fix_a_slash_b(const std::string& s) {
  auto parts = split_all(s, "/");
  if (parts.size() != 2) return s;
  auto a = py_int_str(parts[0]), b = py_int_str(parts[1]);
  if (!a || !b) return std::nullopt;
  if (s != *a + "/" + *b) return s;
  return "\\frac{" + *a + "}{" + *b + "}";
}
}  // namespace

std::optional<std::string> hendrycks_strip_string(const std::string& in) {
  std::string s = replace_each(in, {{"\n", ""}, {"\\!", ""}, {"\\\\", "\\"}, {"tfrac", "frac"}, {"dfrac", "frac"},
                                    {"\\left", ""}, {"\\right", ""}, {"^{\\circ}", ""}, {"^\\circ", ""}, {"\\$", ""}});
  if (contains(s, "\\text{ ")) {
    auto parts = split_all(s, "\\text{ ");
    if (parts.size() != 2) return std::nullopt;
    s = parts[0];
  }
  s = replace_each(s, {{"\\%", ""}, {" .", " 0."}, {"{.", "{0."}});
  if (s.empty()) return s;
  if (s[0] == '.') s = "0" + s;
  auto eq = split_all(s, "=");
  if (eq.size() == 2 && py_len(eq[0]) <= 2) s = eq[1];
  auto sq = fix_sqrt(s);
  if (!sq) return std::nullopt;
  s = replace_all(*sq, " ", "");
  auto fr = fix_fracs(s, true);
  if (!fr) return std::nullopt;
  s = *fr;
  if (s == "0.5") s = "\\frac{1}{2}";
  return fix_a_slash_b(s);
}

bool hendrycks_is_equiv(const std::string& a, const std::string& b) {
  auto sa = hendrycks_strip_string(a);
  if (!sa) return a == b;
  auto sb = hendrycks_strip_string(b);
  if (!sb) return a == b;
  return *sa == *sb;
}

}  // namespace rvec::eval::math
