#include "text/chat_template_lexer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "core/error.h"

namespace rvec::text::jinja {
namespace {

struct ExprLexer {
  std::vector<Tok> toks;
  ExprLexer(const std::string& src, int line) {
    size_t i = 0, n = src.size();
    while (i < n) {
      char c = src[i];
      if (std::isspace(static_cast<unsigned char>(c))) {
        ++i;
      } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t j = i;
        while (j < n && (std::isalnum(static_cast<unsigned char>(src[j])) || src[j] == '_')) ++j;
        toks.push_back({Tok::Name, src.substr(i, j - i)});
        i = j;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t j = i;
        bool is_float = false;
        while (j < n && (std::isdigit(static_cast<unsigned char>(src[j])) || src[j] == '_')) ++j;
        if (j + 1 < n && src[j] == '.' && std::isdigit(static_cast<unsigned char>(src[j + 1]))) {
          is_float = true;
          ++j;
          while (j < n && std::isdigit(static_cast<unsigned char>(src[j]))) ++j;
        }
        // An exponent makes a float, as in Jinja2 (1e11, 2.5E-3).
        if (j < n && (src[j] == 'e' || src[j] == 'E')) {
          size_t k = j + 1;
          if (k < n && (src[k] == '+' || src[k] == '-')) ++k;
          if (k < n && std::isdigit(static_cast<unsigned char>(src[k]))) {
            is_float = true;
            j = k;
            while (j < n && std::isdigit(static_cast<unsigned char>(src[j]))) ++j;
          }
        }
        std::string num = src.substr(i, j - i);
        num.erase(std::remove(num.begin(), num.end(), '_'), num.end());
        toks.push_back({is_float ? Tok::Float : Tok::Int, num});
        i = j;
      } else if (c == '\'' || c == '"') {
        std::string s;
        size_t j = i + 1;
        for (;; ++j) {
          if (j >= n) fail("chat template: line {}: unterminated string literal", line);
          char d = src[j];
          if (d == c) break;
          if (d == '\\' && j + 1 < n) {
            char e = src[++j];
            switch (e) {
              case 'n': s += '\n'; break;
              case 't': s += '\t'; break;
              case 'r': s += '\r'; break;
              case '\\': s += '\\'; break;
              case '\'': s += '\''; break;
              case '"': s += '"'; break;
              default:
                s += '\\';
                s += e;
            }
          } else {
            s += d;
          }
        }
        toks.push_back({Tok::Str, s});
        i = j + 1;
      } else {
        static const char* ops2[] = {"==", "!=", "<=", ">=", "//", "**"};
        bool found = false;
        for (const char* op : ops2)
          if (src.compare(i, 2, op) == 0) {
            toks.push_back({Tok::Op, op});
            i += 2;
            found = true;
            break;
          }
        if (found) continue;
        if (std::string("+-*/%~()[]{}.,:|=<>").find(c) == std::string::npos)
          fail("chat template: line {}: unexpected character '{}' in expression", line, c);
        toks.push_back({Tok::Op, std::string(1, c)});
        ++i;
      }
    }
    toks.push_back({Tok::End, ""});
  }
};

}  // namespace

std::vector<Tok> lex_expression(const std::string& src, int line) { return ExprLexer(src, line).toks; }

std::vector<Item> lex_template(const std::string& src) {
  std::vector<Item> items;
  size_t pos = 0, n = src.size();
  bool strip_next = false;
  auto line_of = [&](size_t at) { return 1 + int(std::count(src.begin(), src.begin() + std::ptrdiff_t(at), '\n')); };
  while (pos <= n) {
    size_t k = pos;
    for (; k + 1 < n; ++k)
      if (src[k] == '{' && (src[k + 1] == '{' || src[k + 1] == '%' || src[k + 1] == '#')) break;
    if (k + 1 >= n) k = n;
    std::string text = src.substr(pos, k - pos);
    if (strip_next) text.erase(0, text.find_first_not_of(" \t\r\n\v\f") == std::string::npos
                                      ? text.size()
                                      : text.find_first_not_of(" \t\r\n\v\f"));
    strip_next = false;
    if (k >= n) {
      if (!text.empty()) items.push_back({Item::Text, text, line_of(pos)});
      break;
    }
    char kind = src[k + 1];
    char mod = k + 2 < n ? src[k + 2] : '\0';
    if (mod == '-') {
      size_t e = text.find_last_not_of(" \t\r\n\v\f");
      text.erase(e == std::string::npos ? 0 : e + 1);
    } else if (kind != '{' && mod != '+') {  // lstrip_blocks
      size_t nl = text.rfind('\n');
      size_t from = nl == std::string::npos ? 0 : nl + 1;
      bool line_start = nl != std::string::npos || pos == 0 || src[pos - 1] == '\n';
      if (line_start && text.find_first_not_of(" \t", from) == std::string::npos) text.erase(from);
    }
    if (!text.empty()) items.push_back({Item::Text, text, line_of(pos)});
    // find the closing delimiter, skipping string literals
    const char* close = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
    size_t j = k + 2;
    char quote = 0;
    for (; j + 1 < n; ++j) {
      char c = src[j];
      if (kind != '#') {
        if (quote) {
          if (c == '\\') {
            ++j;
          } else if (c == quote) {
            quote = 0;
          }
          continue;
        }
        if (c == '\'' || c == '"') {
          quote = c;
          continue;
        }
      }
      if (src[j] == close[0] && src[j + 1] == close[1]) break;
    }
    if (j + 1 >= n) fail("chat template: line {}: unclosed '{{{}'", line_of(k), kind);
    size_t in_start = k + 2 + ((mod == '-' || mod == '+') ? 1 : 0);
    size_t in_end = j;
    bool close_minus = in_end > in_start && src[in_end - 1] == '-';
    bool close_plus = in_end > in_start && src[in_end - 1] == '+';
    if (close_minus || close_plus) --in_end;
    std::string inner = src.substr(in_start, in_end - in_start);
    if (kind == '{') items.push_back({Item::Expr, inner, line_of(k)});
    if (kind == '%') {
      // {% raw %}...{% endraw %}
      std::string trimmed = inner;
      trimmed.erase(0, trimmed.find_first_not_of(" \t\r\n"));
      trimmed.erase(trimmed.find_last_not_of(" \t\r\n") + 1);
      if (trimmed == "raw") {
        size_t endraw = src.find("endraw", j);
        size_t open = endraw == std::string::npos ? std::string::npos : src.rfind("{%", endraw);
        size_t close2 = endraw == std::string::npos ? std::string::npos : src.find("%}", endraw);
        if (open == std::string::npos || close2 == std::string::npos)
          fail("chat template: line {}: {{% raw %}} without {{% endraw %}}", line_of(k));
        items.push_back({Item::Text, src.substr(j + 2, open - j - 2), line_of(j)});
        pos = close2 + 2;
        continue;
      }
      items.push_back({Item::Stmt, inner, line_of(k)});
    }
    pos = j + 2;
    if (close_minus) {
      strip_next = true;
    } else if (kind != '{' && !close_plus) {  // trim_blocks
      if (pos < n && src[pos] == '\n') {
        ++pos;
      } else if (pos + 1 < n && src[pos] == '\r' && src[pos + 1] == '\n') {
        pos += 2;
      }
    }
  }
  return items;
}

}  // namespace rvec::text::jinja
