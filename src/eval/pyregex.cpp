#define PCRE2_CODE_UNIT_WIDTH 8
#include "eval/pyregex.h"

#include <unicode/ustring.h>

#include <pcre2.h>

#include "core/error.h"

namespace rvec::eval {

PyRegex::PyRegex(const std::string& pattern) : pattern_(pattern) {
  int err = 0;
  PCRE2_SIZE off = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP, &err,
                        &off, nullptr);
  if (!code_) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof buf);
    fail("regex '{}': {} at offset {}", pattern, reinterpret_cast<char*>(buf), off);
  }
  uint32_t n = 0;
  pcre2_pattern_info(static_cast<pcre2_code*>(code_), PCRE2_INFO_CAPTURECOUNT, &n);
  groups_ = int(n);
}

PyRegex::~PyRegex() {
  if (code_) pcre2_code_free(static_cast<pcre2_code*>(code_));
}
PyRegex::PyRegex(PyRegex&& o) noexcept : pattern_(std::move(o.pattern_)), code_(o.code_), groups_(o.groups_) {
  o.code_ = nullptr;
}
PyRegex& PyRegex::operator=(PyRegex&& o) noexcept {
  if (this != &o) {
    if (code_) pcre2_code_free(static_cast<pcre2_code*>(code_));
    pattern_ = std::move(o.pattern_);
    code_ = o.code_;
    groups_ = o.groups_;
    o.code_ = nullptr;
  }
  return *this;
}

template <typename F>
void PyRegex::each_match(const std::string& s, F&& f) const {
  auto* code = static_cast<pcre2_code*>(code_);
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  auto subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  PCRE2_SIZE start = 0;
  uint32_t opts = 0;
  // The subject is valid UTF-8 here (callers pass it through sanitize_utf8 first).
  while (start <= s.size()) {
    int rc = pcre2_match(code, subject, s.size(), start, opts, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) {
      if (opts == 0) break;
      // No non-empty match at `start` after an empty one: advance one character.
      opts = 0;
      if (start >= s.size()) break;
      start++;
      while (start < s.size() && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) start++;
      continue;
    }
    if (rc < 0) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(rc, buf, sizeof buf);
      pcre2_match_data_free(md);
      fail("regex '{}': matching failed: {}", pattern_, reinterpret_cast<char*>(buf));
    }
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    f(ov, rc);
    if (ov[0] == ov[1]) {
      opts = PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED;
      start = ov[1];
    } else {
      opts = 0;
      start = ov[1];
    }
  }
  pcre2_match_data_free(md);
}

namespace {
bool valid_utf8(const std::string& s) {
  size_t i = 0, n = s.size();
  while (i < n) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (!len || i + len > n) return false;
    for (size_t k = 1; k < len; k++)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    if (len == 2 && c < 0xC2) return false;
    i += len;
  }
  return true;
}
// Model output can hold broken UTF-8 (a token boundary inside a code point): replace such bytes
// with U+FFFD, as Python's bytes.decode(errors="replace") would, so matching never fails.
std::string sanitize_utf8(const std::string& s) {
  if (valid_utf8(s)) return s;
  std::string out;
  size_t i = 0, n = s.size();
  while (i < n) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = len && i + len <= n && !(len == 2 && c < 0xC2);
    for (size_t k = 1; ok && k < len; k++) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    if (ok && valid_utf8(s.substr(i, len))) {
      out.append(s, i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      i++;
    }
  }
  return out;
}
}  // namespace

std::string sanitize_utf8_for_regex(const std::string& s) { return sanitize_utf8(s); }

std::vector<std::vector<std::string>> PyRegex::findall(const std::string& s_in) const {
  const std::string s = sanitize_utf8(s_in);
  std::vector<std::vector<std::string>> out;
  each_match(s, [&](PCRE2_SIZE* ov, int rc) {
    std::vector<std::string> m;
    if (groups_ == 0) {
      m.push_back(s.substr(ov[0], ov[1] - ov[0]));
    } else {
      for (int g = 1; g <= groups_; g++) {
        if (g < rc && ov[2 * g] != PCRE2_UNSET)
          m.push_back(s.substr(ov[2 * g], ov[2 * g + 1] - ov[2 * g]));
        else
          m.emplace_back();
      }
    }
    out.push_back(std::move(m));
  });
  return out;
}

std::string PyRegex::sub(const std::string& s_in, const std::string& repl) const {
  const std::string s = sanitize_utf8(s_in);
  std::string out;
  size_t last = 0;
  each_match(s, [&](PCRE2_SIZE* ov, int) {
    out.append(s, last, ov[0] - last);
    out += repl;
    last = ov[1];
  });
  out.append(s, last, std::string::npos);
  return out;
}

std::string PyRegex::sub_template(const std::string& s_in, const std::string& repl) const {
  const std::string s = sanitize_utf8(s_in);
  std::string out;
  size_t last = 0;
  each_match(s, [&](PCRE2_SIZE* ov, int rc) {
    out.append(s, last, ov[0] - last);
    auto group = [&](int g) {
      if (g < rc && ov[2 * g] != PCRE2_UNSET) out.append(s, ov[2 * g], ov[2 * g + 1] - ov[2 * g]);
    };
    for (size_t i = 0; i < repl.size(); i++) {
      char c = repl[i];
      if (c != '\\' || i + 1 == repl.size()) {
        out += c;
        continue;
      }
      char n = repl[i + 1];
      if (n >= '0' && n <= '9') {
        int g = n - '0';
        i++;
        if (i + 1 < repl.size() && repl[i + 1] >= '0' && repl[i + 1] <= '9') g = g * 10 + (repl[++i] - '0');
        if (g > groups_) fail("regex '{}': invalid group reference {} in '{}'", pattern_, g, repl);
        group(g);
      } else if (n == 'g' && i + 2 < repl.size() && repl[i + 2] == '<') {
        size_t close = repl.find('>', i + 3);
        if (close == std::string::npos) fail("regex '{}': unterminated \\g< in '{}'", pattern_, repl);
        int g = std::stoi(repl.substr(i + 3, close - i - 3));
        if (g > groups_) fail("regex '{}': invalid group reference {} in '{}'", pattern_, g, repl);
        group(g);
        i = close;
      } else if (n == '\\') {
        out += '\\';
        i++;
      } else if (n == 'n') {
        out += '\n';
        i++;
      } else {
        out += c;
      }
    }
    last = ov[1];
  });
  out.append(s, last, std::string::npos);
  return out;
}

std::vector<PyRegex::Match> PyRegex::finditer(const std::string& s_in) const {
  const std::string s = sanitize_utf8(s_in);
  std::vector<Match> out;
  each_match(s, [&](PCRE2_SIZE* ov, int rc) {
    Match m;
    m.start = ov[0];
    m.end = ov[1];
    for (int g = 1; g <= groups_; g++)
      m.groups.push_back(g < rc && ov[2 * g] != PCRE2_UNSET ? s.substr(ov[2 * g], ov[2 * g + 1] - ov[2 * g]) : "");
    out.push_back(std::move(m));
  });
  return out;
}

bool PyRegex::match_start(const std::string& s_in) const {
  const std::string s = sanitize_utf8(s_in);
  auto* code = static_cast<pcre2_code*>(code_);
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0, PCRE2_ANCHORED, md, nullptr);
  pcre2_match_data_free(md);
  return rc >= 0;
}

bool PyRegex::search(const std::string& s_in) const {
  const std::string s = sanitize_utf8(s_in);
  bool found = false;
  auto* code = static_cast<pcre2_code*>(code_);
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0, 0, md, nullptr);
  found = rc >= 0;
  pcre2_match_data_free(md);
  return found;
}

std::string PyRegex::escape(const std::string& s) {
  // Python 3.7+: escapes characters other than ASCII letters, digits and '_'... only the special
  // ones since 3.7: "()[]{}?*+-|^$\\.&~# \t\n\r\v\f".
  static const std::string special = "()[]{}?*+-|^$\\.&~# \t\n\r\v\f";
  std::string out;
  for (char c : s) {
    if (special.find(c) != std::string::npos) out += '\\';
    out += c;
  }
  return out;
}

namespace {
// Length of a whitespace code point at s[i] (Python str.isspace), 0 if none.
size_t space_len_at(const std::string& s, size_t i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return 1;
  if (c == 0xC2 && i + 1 < s.size()) {
    unsigned char d = static_cast<unsigned char>(s[i + 1]);
    if (d == 0x85 || d == 0xA0) return 2;
  }
  if (c == 0xE3 && i + 2 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
      static_cast<unsigned char>(s[i + 2]) == 0x80)
    return 3;  // U+3000
  if (c == 0xE2 && i + 2 < s.size()) {
    unsigned char d = static_cast<unsigned char>(s[i + 1]), e = static_cast<unsigned char>(s[i + 2]);
    if (d == 0x80 && ((e >= 0x80 && e <= 0x8A) || e == 0xA8 || e == 0xA9 || e == 0xAF)) return 3;
    if (d == 0x81 && e == 0x9F) return 3;  // U+205F
  }
  if (c == 0xE1 && i + 2 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x9A &&
      static_cast<unsigned char>(s[i + 2]) == 0x80)
    return 3;  // U+1680
  return 0;
}
}  // namespace

std::string py_lstrip(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t n = space_len_at(s, i);
    if (!n) break;
    i += n;
  }
  return s.substr(i);
}

std::string py_rstrip(const std::string& s) {
  // Scan forward remembering where the trailing run of whitespace starts.
  size_t i = 0, run_start = 0;
  bool in_run = false;
  while (i < s.size()) {
    size_t n = space_len_at(s, i);
    if (n) {
      if (!in_run) run_start = i, in_run = true;
      i += n;
    } else {
      in_run = false;
      i++;
    }
  }
  return in_run ? s.substr(0, run_start) : s;
}

std::string py_strip(const std::string& s) { return py_rstrip(py_lstrip(s)); }

std::string ascii_lower(const std::string& s) {
  std::string o = s;
  for (auto& c : o)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return o;
}

std::string py_lower(const std::string& s) {
  UErrorCode err = U_ZERO_ERROR;
  int32_t n16 = 0;
  u_strFromUTF8(nullptr, 0, &n16, s.data(), int32_t(s.size()), &err);
  if (err != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(err)) return ascii_lower(s);
  std::u16string u(size_t(n16), u'\0');
  err = U_ZERO_ERROR;
  u_strFromUTF8(reinterpret_cast<UChar*>(u.data()), n16, nullptr, s.data(), int32_t(s.size()), &err);
  if (U_FAILURE(err)) return ascii_lower(s);
  // Lower-casing may lengthen the text (U+0130 -> i + U+0307): size the buffer first.
  err = U_ZERO_ERROR;
  int32_t nl = u_strToLower(nullptr, 0, reinterpret_cast<const UChar*>(u.data()), n16, "", &err);
  if (err != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(err)) return ascii_lower(s);
  std::u16string l(size_t(nl), u'\0');
  err = U_ZERO_ERROR;
  u_strToLower(reinterpret_cast<UChar*>(l.data()), nl, reinterpret_cast<const UChar*>(u.data()), n16, "", &err);
  if (U_FAILURE(err)) return ascii_lower(s);
  err = U_ZERO_ERROR;
  int32_t n8 = 0;
  u_strToUTF8(nullptr, 0, &n8, reinterpret_cast<const UChar*>(l.data()), nl, &err);
  std::string out(size_t(n8), '\0');
  err = U_ZERO_ERROR;
  u_strToUTF8(out.data(), n8, nullptr, reinterpret_cast<const UChar*>(l.data()), nl, &err);
  return U_FAILURE(err) ? ascii_lower(s) : out;
}

std::string remove_unicode_punctuation(const std::string& s) {
  static const PyRegex punct("\\p{P}");
  return punct.sub(s, "");
}

}  // namespace rvec::eval
