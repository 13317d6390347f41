#include "eval/math/qwen_equal.h"

#include <cmath>
#include <optional>
#include <vector>

#include "eval/math/pystr.h"
#include "eval/math/symbolic.h"
#include "eval/pyregex.h"

namespace rvec::eval::math {

namespace {
// parse_digits: commas removed, float(); else a trailing % (and a '\' before it) as value/100.
std::optional<double> parse_digits(const std::string& s) {
  std::string t = replace_all(s, ",", "");
  if (auto v = py_float(t)) return v;
  if (ends_with(t, "%")) {
    t.pop_back();
    if (ends_with(t, "\\")) t.pop_back();
    if (auto v = py_float(t)) return *v / 100;
  }
  return std::nullopt;
}

bool isclose(double a, double b) {
  if (a == b) return true;
  if (std::isinf(a) || std::isinf(b)) return false;
  return std::abs(a - b) <= 1e-4 * std::max(std::abs(a), std::abs(b));
}

// str_to_pmatrix: every "{...,...}" group (greedy, as re.findall(r"\{.*,.*\}")) as a pmatrix.
std::string str_to_pmatrix(const std::string& in) {
  static const PyRegex groups("\\{.*,.*\\}");
  std::string out;
  for (auto& m : groups.findall(py_strip(in))) {
    std::string g = strip_chars(m[0], "{}");
    if (!out.empty()) out += ", ";
    out += "\\begin{pmatrix}" + replace_all(g, ",", "\\") + "\\end{pmatrix}";
  }
  return out;
}

bool is_matrix(const std::string& s) {
  return (starts_with(s, "\\begin{pmatrix}") || starts_with(s, "\\begin{bmatrix}")) &&
         (ends_with(s, "\\end{pmatrix}") || ends_with(s, "\\end{bmatrix}"));
}

std::vector<std::string> matrix_rows(const std::string& s) {
  std::string inner = s.substr(15, s.size() - 15 - 13);
  std::vector<std::string> rows;
  for (auto& r : split_all(inner, "\\\\")) {
    std::string t = py_strip(r);
    if (!t.empty()) rows.push_back(t);
  }
  return rows;
}

Verdict done(bool ok, const std::string& rule, bool limit = false) { return Verdict{ok, rule, limit}; }
}  // namespace

std::string qwen_choice_clean(const std::string& p_in) {
  std::string p = lstrip_chars(strip_chars(rstrip_chars(rstrip_chars(strip_chars(p_in, "\n"), "."), "/"), " "), ":");
  static const PyRegex letters("\\b(A|B|C|D|E)\\b");
  std::string upper = p;
  for (auto& c : upper) c = char(std::toupper(static_cast<unsigned char>(c)));
  auto m = letters.findall(upper);
  std::string r = m.empty() ? strip_chars(py_strip(p), ".") : m.back()[0];
  return rstrip_chars(rstrip_chars(r, "."), "/");
}

Verdict qwen_math_equal(const std::string& prediction, const std::string& reference) {
  if (ascii_lower(py_strip(prediction)) == ascii_lower(py_strip(reference))) return done(true, "string_equal");
  if ((reference == "A" || reference == "B" || reference == "C" || reference == "D" || reference == "E") &&
      qwen_choice_clean(prediction) == reference)
    return done(true, "choice");
  auto pd = parse_digits(prediction), rd = parse_digits(reference);
  if (pd && rd) {
    for (double cand : {*rd / 100, *rd, *rd * 100})
      if (isclose(cand, *pd)) return done(true, "numeric");
    return done(false, "numeric");
  }
  if (prediction.empty()) return done(false, "empty_prediction");
  std::string ref = py_strip(reference), pred = py_strip(prediction);
  if (contains(pred, "pmatrix") && !contains(ref, "pmatrix")) ref = str_to_pmatrix(ref);
  std::string ps = pred, rs = ref;
  if ((starts_with(pred, "[") && ends_with(pred, "]") && !starts_with(ref, "(")) ||
      (starts_with(pred, "(") && ends_with(pred, ")") && !starts_with(ref, "["))) {
    ps = strip_chars(ps, "[]()");
    rs = strip_chars(rs, "[]()");
  }
  for (const char* c : {"{", "}", "(", ")"}) {
    ps = replace_all(ps, c, "");
    rs = replace_all(rs, c, "");
  }
  if (ascii_lower(ps) == ascii_lower(rs)) return done(true, "bracket_insensitive_string");
  bool limit = false;
  static const PyRegex bracketed("(\\(|\\[).+(\\)|\\])");
  if (bracketed.match_start(pred) && bracketed.match_start(ref)) {
    auto pp = split_all(pred.substr(1, pred.size() - 2), ","), rp = split_all(ref.substr(1, ref.size() - 2), ",");
    if (pp.size() == rp.size()) {
      bool all = true;
      for (size_t i = 0; i < pp.size() && all; i++) {
        Verdict v = qwen_math_equal(pp[i], rp[i]);
        limit |= v.limit;
        all = v.correct;
      }
      if (all) return done(true, "elementwise");
    }
  }
  if (is_matrix(pred) && is_matrix(ref)) {
    auto pr = matrix_rows(pred), rr = matrix_rows(ref);
    bool matched = pr.size() == rr.size();
    for (size_t i = 0; matched && i < pr.size(); i++) {
      auto pc = split_all(pr[i], "&"), rc = split_all(rr[i], "&");
      if (pc.size() != rc.size()) {
        matched = false;
        break;
      }
      for (size_t j = 0; matched && j < pc.size(); j++) {
        Verdict v = qwen_math_equal(pc[j], rc[j]);
        limit |= v.limit;
        matched = v.correct;
      }
    }
    if (matched) return done(true, "matrix");
  }
  size_t pe = count_of(pred, "="), re = count_of(ref, "=");
  if (pe == 1 && re == 1) {
    auto p2 = split_all(pred, "="), r2 = split_all(ref, "=");
    std::string pexpr = py_strip(p2[0]) + " - (" + py_strip(p2[1]) + ")";
    std::string rexpr = py_strip(r2[0]) + " - (" + py_strip(r2[1]) + ")";
    auto v1 = qwen_symbolic_equal(pexpr, rexpr);
    if (v1.equal) return done(true, "equation");
    auto v2 = qwen_symbolic_equal("-(" + pexpr + ")", rexpr);
    if (v2.equal) return done(true, "equation");
    limit |= v1.limit || v2.limit;
  } else if (pe == 1 && py_len(py_strip(split_all(pred, "=")[0])) <= 2 && re == 0) {
    Verdict v = qwen_math_equal(split_all(pred, "=")[1], ref);
    if (v.correct) return done(true, "equation_rhs:" + v.rule);
    limit |= v.limit;
  } else if (re == 1 && py_len(py_strip(split_all(ref, "=")[0])) <= 2 && pe == 0) {
    Verdict v = qwen_math_equal(pred, split_all(ref, "=")[1]);
    if (v.correct) return done(true, "equation_rhs:" + v.rule);
    limit |= v.limit;
  }
  auto s = qwen_symbolic_equal(pred, ref);
  if (s.equal) return done(true, s.how == "string" ? "symbolic_string" : "symbolic_" + s.how);
  limit |= s.limit;
  return done(false, limit ? "limit: expression too large" : "not_equal", limit);
}

}  // namespace rvec::eval::math
