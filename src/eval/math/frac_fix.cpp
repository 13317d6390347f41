#include "eval/math/frac_fix.h"

#include "eval/math/pystr.h"

namespace rvec::eval::math {

std::optional<std::string> fix_fracs(const std::string& s, bool empty_raises) {
  auto parts = split_all(s, "\\frac");
  std::string out = parts[0];
  for (size_t k = 1; k < parts.size(); k++) {
    const std::string& sub = parts[k];
    out += "\\frac";
    if (sub.empty() && empty_raises) return std::nullopt;
    if (!sub.empty() && sub[0] == '{') {
      out += sub;
      continue;
    }
    if (sub.size() < 2) return s;
    std::string a(1, sub[0]), b(1, sub[1]);
    if (b != "{")
      out += "{" + a + "}{" + b + "}" + sub.substr(2);
    else
      out += "{" + a + "}" + b + sub.substr(2);
  }
  return out;
}

}  // namespace rvec::eval::math
