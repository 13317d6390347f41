#include "eval/math/qwen_strip.h"

#include <memory>
#include <vector>

#include "eval/math/frac_fix.h"
#include "eval/math/pystr.h"
#include "eval/math/qwen_units.h"
#include "eval/pyregex.h"
#include "eval/word2number.h"

namespace rvec::eval::math {

namespace {
const std::vector<std::unique_ptr<PyRegex>>& unit_regexes() {
  static const auto res = [] {
    std::vector<std::unique_ptr<PyRegex>> v;
    for (auto& u : qwen_unit_texts()) v.push_back(std::make_unique<PyRegex>("(^|\\W)" + u + "($|\\W)"));
    return v;
  }();
  return res;
}

// w2n.word_to_num over the whole string; "point" (decimal words) is not supported by word_to_num,
// so such strings are kept as they are.
std::string convert_word_number(const std::string& s) {
  std::string low = ascii_lower(s);
  if (contains(low, "point")) return s;
  std::string t = replace_all(low, "-", " ");
  if (ascii_isdigit(t)) {
    auto v = py_int_str(t);
    return v ? *v : s;
  }
  auto v = word_to_num(s);
  return v ? std::to_string(*v) : s;
}

// `a/b` with integer sides (or sides containing "sqrt") written canonically -> \frac{a}{b}.
std::string fix_a_slash_b(const std::string& s) {
  auto parts = split_all(s, "/");
  if (parts.size() != 2) return s;
  std::string a = parts[0], b = parts[1];
  if (!contains(a, "sqrt")) {
    auto v = py_int_str(a);
    if (!v) return s;
    a = *v;
  }
  if (!contains(b, "sqrt")) {
    auto v = py_int_str(b);
    if (!v) return s;
    b = *v;
  }
  if (s != a + "/" + b) return s;
  return "\\frac{" + a + "}{" + b + "}";
}
}  // namespace

std::string qwen_strip_string(const std::string& in, bool skip_unit) {
  std::string s = py_strip(in);
  s = replace_all(s, "\n", "");
  s = rstrip_chars(s, ".");
  s = replace_all(s, "\\!", "");
  static const PyRegex array_begin("\\\\begin\\{array\\}\\{.*?\\}");
  static const PyRegex array_end("\\\\end\\{array\\}");
  s = array_begin.sub(s, "\\begin{pmatrix}");
  s = array_end.sub(s, "\\end{pmatrix}");
  s = replace_each(s, {{"bmatrix", "pmatrix"}, {"tfrac", "frac"}, {"dfrac", "frac"}, {"\\neq", "\\ne"},
                       {"\\leq", "\\le"}, {"\\geq", "\\ge"}, {"\\left", ""}, {"\\right", ""}, {"\\{", "{"},
                       {"\\}", "}"}});
  static const PyRegex trailing_text("\\\\text\\{.*?\\}$");
  std::string t = py_strip(trailing_text.sub(s, ""));
  if (!t.empty() && t != s) s = t;
  if (!skip_unit) {
    for (int pass = 0; pass < 2; pass++)
      for (auto& re : unit_regexes()) {
        std::string u = re->sub_template(s, "\\1\\2");
        if (!u.empty()) s = u;
      }
  }
  s = replace_each(s, {{"^{\\circ}", ""}, {"^\\circ", ""}, {"\\$", ""}, {"$", ""}, {"\\(", ""}, {"\\)", ""}});
  s = convert_word_number(s);
  static const PyRegex text_cmd("\\\\text\\{(.*?)\\}");
  s = text_cmd.sub_template(s, "\\1");
  for (const char* key : {"x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to"})
    s = replace_all(s, key, "");
  s = replace_each(s, {{"\\emptyset", "{}"}, {"(-\\infty,\\infty)", "\\mathbb{R}"}, {"\\%", ""}, {"%", ""},
                       {" .", " 0."}, {"{.", "{0."}});
  // (The toolkit's "strip one pair of brackets when isalnum()" step never fires: brackets are not
  // alphanumeric.)
  s = replace_all(s, "infinity", "\\infty");
  if (!contains(s, "\\infty")) s = replace_all(s, "inf", "\\infty");
  s = replace_all(s, "+\\inity", "\\infty");
  s = replace_all(s, "and", "");
  s = replace_all(s, "\\mathbf", "");
  static const PyRegex mbox("\\\\mbox{.*?}");
  s = mbox.sub(s, "");
  if (contains(s, "j") && !contains(s, "i")) s = replace_all(s, "j", "i");
  static const PyRegex trailing_zeros_inner("(\\d+)\\.0*([^\\d])");
  static const PyRegex trailing_zeros_end("(\\d+)\\.0*$");
  s = trailing_zeros_inner.sub_template(s, "\\1\\2");
  s = trailing_zeros_end.sub_template(s, "\\1");
  if (s.empty()) return s;
  if (s[0] == '.') s = "0" + s;
  auto eq = split_all(s, "=");
  if (eq.size() == 2 && py_len(eq[0]) <= 2) s = eq[1];
  static const PyRegex sqrt_word("\\\\sqrt(\\w+)");
  s = sqrt_word.sub_template(s, "\\\\sqrt{\\1}");
  s = replace_all(s, " ", "");
  s = *fix_fracs(s, false);
  s = fix_a_slash_b(s);
  return s;
}

}  // namespace rvec::eval::math
