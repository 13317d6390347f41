#include "eval/math/pystr.h"

#include <cmath>
#include <cstdlib>

#include "eval/pyregex.h"

namespace rvec::eval::math {

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  if (from.empty()) return s;
  std::string out;
  size_t pos = 0;
  for (size_t p; (p = s.find(from, pos)) != std::string::npos; pos = p + from.size()) {
    out.append(s, pos, p - pos);
    out += to;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

std::string replace_each(std::string s, std::initializer_list<std::pair<const char*, const char*>> pairs) {
  for (auto& [from, to] : pairs) s = replace_all(std::move(s), from, to);
  return s;
}

std::vector<std::string> split_all(const std::string& s, const std::string& sep) {
  std::vector<std::string> parts;
  size_t pos = 0;
  for (size_t p; (p = s.find(sep, pos)) != std::string::npos; pos = p + sep.size()) parts.push_back(s.substr(pos, p - pos));
  parts.push_back(s.substr(pos));
  return parts;
}

size_t count_of(const std::string& s, const std::string& sub) { return split_all(s, sub).size() - 1; }
bool contains(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }
bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

std::string lstrip_chars(const std::string& s, const std::string& chars) {
  size_t b = s.find_first_not_of(chars);
  return b == std::string::npos ? "" : s.substr(b);
}
std::string rstrip_chars(const std::string& s, const std::string& chars) {
  size_t e = s.find_last_not_of(chars);
  return e == std::string::npos ? "" : s.substr(0, e + 1);
}
std::string strip_chars(const std::string& s, const std::string& chars) { return lstrip_chars(rstrip_chars(s, chars), chars); }

bool ascii_isdigit(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

namespace {
// Digits with single underscores between them (Python numeric literal grouping).
bool digit_run(const std::string& s, size_t& i, std::string& out) {
  size_t start = i;
  while (i < s.size()) {
    if (s[i] >= '0' && s[i] <= '9') {
      out += s[i++];
    } else if (s[i] == '_' && i > start && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '9' &&
               s[i - 1] >= '0' && s[i - 1] <= '9') {
      i++;
    } else {
      break;
    }
  }
  return i > start;
}
}  // namespace

std::optional<double> py_float(const std::string& s_in) {
  std::string s = py_strip(s_in);
  if (s.empty()) return std::nullopt;
  std::string low = ascii_lower(s);
  std::string body = low;
  double sign = 1;
  if (body[0] == '+' || body[0] == '-') {
    if (body[0] == '-') sign = -1;
    body = body.substr(1);
  }
  if (body == "inf" || body == "infinity") return sign * HUGE_VAL;
  if (body == "nan") return std::nan("");
  std::string clean;
  size_t i = 0;
  if (s[0] == '+' || s[0] == '-') clean += s[i++];
  bool int_digits = digit_run(s, i, clean);
  bool frac_digits = false;
  if (i < s.size() && s[i] == '.') {
    clean += s[i++];
    frac_digits = digit_run(s, i, clean);
  }
  if (!int_digits && !frac_digits) return std::nullopt;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    clean += s[i++];
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) clean += s[i++];
    if (!digit_run(s, i, clean)) return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;
  return std::strtod(clean.c_str(), nullptr);
}

std::optional<std::string> py_int_str(const std::string& s_in) {
  std::string s = py_strip(s_in);
  size_t i = 0;
  bool neg = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
  std::string digits;
  if (!digit_run(s, i, digits) || i != s.size()) return std::nullopt;
  size_t nz = digits.find_first_not_of('0');
  if (nz == std::string::npos) return std::string("0");
  std::string out;
  if (neg) out += '-';
  out.append(digits, nz, std::string::npos);
  return out;
}

}  // namespace rvec::eval::math

namespace rvec::eval::math {
size_t py_len(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) n++;
  return n;
}
}  // namespace rvec::eval::math
