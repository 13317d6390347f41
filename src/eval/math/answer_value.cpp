#include "eval/math/answer_value.h"

#include <cmath>
#include <set>

#include "eval/math/frac_fix.h"
#include "eval/math/pystr.h"
#include "eval/pyregex.h"

namespace rvec::eval::math {

namespace {
using Kind = AnswerValue::Kind;

// Splits at top-level occurrences of `sep` (outside (), [], {}, \{ \}).
std::vector<std::string> split_top(const std::string& s, const std::string& sep) {
  std::vector<std::string> out;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); i++) {
    char c = s[i];
    if (c == '\\' && i + 1 < s.size() && (s[i + 1] == '{' || s[i + 1] == '}')) {
      depth += s[i + 1] == '{' ? 1 : -1;
      i++;
      continue;
    }
    if (c == '(' || c == '[' || c == '{') depth++;
    if (c == ')' || c == ']' || c == '}') depth--;
    if (depth == 0 && s.compare(i, sep.size(), sep) == 0) {
      out.push_back(s.substr(start, i - start));
      start = i + sep.size();
      i += sep.size() - 1;
    }
  }
  out.push_back(s.substr(start));
  return out;
}

// Whether the bracket opening at 0 closes at the last character.
bool wraps_whole(const std::string& s) {
  int depth = 0;
  for (size_t i = 0; i < s.size(); i++) {
    char c = s[i];
    if (c == '(' || c == '[' || c == '{') depth++;
    if (c == ')' || c == ']' || c == '}') depth--;
    if (depth == 0) return i + 1 == s.size();
  }
  return false;
}

bool decimal_literal(const std::string& s) {
  static const PyRegex dec("\\d\\.\\d|(^|[^\\d])\\.\\d");
  return dec.search(s);
}

std::optional<AnswerValue> expr_value(const std::string& s, bool* limit) {
  // Words: "\text{Monday}" or a bare word of three or more letters are compared as text.
  static const PyRegex text_word("^\\\\text\\{\\s*([A-Za-z][A-Za-z ]*?)\\s*\\}$");
  static const PyRegex bare_word("^([A-Za-z]{3,})$");
  auto tw = text_word.findall(s);
  if (tw.empty()) tw = bare_word.findall(s);
  if (!tw.empty()) {
    AnswerValue v;
    v.kind = Kind::Text;
    v.text = tw[0][0];
    return v;
  }
  ParseResult r = parse_expression(s);
  if (r.limit && limit) *limit = true;
  if (!r.value) return std::nullopt;
  AnswerValue v;
  if (r.value->op.empty()) {
    v.kind = Kind::Expr;
    v.expr = r.value->lhs;
    v.has_float = decimal_literal(s);
  } else {
    v.kind = Kind::Relation;
    v.op = r.value->op;
    v.lhs = r.value->lhs;
    v.rhs = r.value->rhs;
    v.has_float = decimal_literal(s);
  }
  return v;
}

std::optional<AnswerValue> items_value(Kind kind, const std::vector<std::string>& parts, bool* limit) {
  AnswerValue v;
  v.kind = kind;
  for (auto& p : parts) {
    auto item = parse_answer_value(p, limit);
    if (!item) return std::nullopt;
    v.items.push_back(*item);
  }
  return v;
}

bool is_symbol(const ExprPtr& e) { return e && e->kind == Expr::Kind::Sym; }

std::optional<bool> infinite_sign(const ExprPtr& e) {
  if (e->kind == Expr::Kind::Infinity) return true;
  if (e->kind == Expr::Kind::Neg && e->args[0]->kind == Expr::Kind::Infinity) return false;
  return std::nullopt;
}

bool exprs_equal(const ExprPtr& a, const ExprPtr& b, bool rounded) {
  auto ia = infinite_sign(a), ib = infinite_sign(b);
  if (ia || ib) return ia && ib && *ia == *ib;
  if (rounded) {
    std::set<std::string> syms;
    collect_symbols(a, syms);
    collect_symbols(b, syms);
    if (syms.empty()) {
      auto x = evaluate(a, {}), y = evaluate(b, {});
      if (std::abs(x.imag()) > 1e-12 || std::abs(y.imag()) > 1e-12) return false;
      return std::round(x.real() * 1e6) == std::round(y.real() * 1e6);
    }
    return expressions_equal(a, b, 1e-6);
  }
  return expressions_equal(a, b, 1e-12);
}

bool matched_unordered(const std::vector<AnswerValue>& a, const std::vector<AnswerValue>& b) {
  if (a.size() != b.size()) return false;
  std::vector<bool> used(b.size(), false);
  for (auto& x : a) {
    bool found = false;
    for (size_t j = 0; j < b.size() && !found; j++)
      if (!used[j] && answer_values_equal(x, b[j])) used[j] = found = true;
    if (!found) return false;
  }
  return true;
}

bool matched_ordered(const std::vector<AnswerValue>& a, const std::vector<AnswerValue>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++)
    if (!answer_values_equal(a[i], b[i])) return false;
  return true;
}

AnswerValue expr_of(ExprPtr e, bool has_float) {
  AnswerValue v;
  v.kind = Kind::Expr;
  v.expr = std::move(e);
  v.has_float = has_float;
  return v;
}

// A one-variable inequality as an interval (x > 2 -> (2, oo)); nullopt otherwise.
std::optional<AnswerValue> relation_as_interval(const AnswerValue& r) {
  if (r.kind != Kind::Relation || r.op == "=" || r.op == "!=") return std::nullopt;
  auto inf = std::make_shared<Expr>();
  inf->kind = Expr::Kind::Infinity;
  auto ninf = std::make_shared<Expr>();
  ninf->kind = Expr::Kind::Neg;
  ninf->args = {inf};
  bool sym_left = is_symbol(r.lhs);
  if (!sym_left && !is_symbol(r.rhs)) return std::nullopt;
  ExprPtr bound = sym_left ? r.rhs : r.lhs;
  std::string op = r.op;
  if (!sym_left) op = op == "<" ? ">" : op == ">" ? "<" : op == "<=" ? ">=" : "<=";
  AnswerValue v;
  v.kind = Kind::Interval;
  if (op == "<" || op == "<=") {
    v.items = {expr_of(ninf, false), expr_of(bound, r.has_float)};
    v.right_closed = op == "<=";
  } else {
    v.items = {expr_of(bound, r.has_float), expr_of(inf, false)};
    v.left_closed = op == ">=";
  }
  return v;
}
}  // namespace

std::string mv_normalize_latex(const std::string& in) {
  std::string s = in;
  for (const char* k : {"\\left", "\\right", "\\displaystyle", "\\!", "\\,", "\\;", "\\:", "\\$", "$"})
    s = replace_all(s, k, "");
  s = replace_all(replace_all(s, "\\dfrac", "\\frac"), "\\tfrac", "\\frac");
  s = replace_all(replace_all(s, "^{\\circ}", ""), "^\\circ", "");
  s = replace_all(s, "\\mbox", "\\text");
  static const PyRegex and_or(",?\\s*\\\\text\\{\\s*(?:and|or)\\s*\\}");
  s = and_or.sub(s, ",");
  // A trailing unit in \text{...} after a number, a brace or a space.
  static const PyRegex unit("(\\d|\\}|\\s)\\s*\\\\text\\{[^{}]*\\}(\\^\\d|\\^\\{\\d\\})?\\s*$");
  s = unit.sub_template(s, "\\1");
  static const PyRegex unit_word(
      "(\\d|\\})\\s*(?:degrees?|cm|mm|km|m|meters?|inch(?:es)?|feet|foot|ft|yards?|miles?|hours?|minutes?|"
      "seconds?|days?|weeks?|years?|units?|sq|square|kg|g|grams?|lbs?|pounds?|mph)\\s*$");
  s = unit_word.sub_template(s, "\\1");
  static const PyRegex infinity_word("(^|[^\\\\a-zA-Z])(?:infinity|inf)(?![a-zA-Z])");
  s = infinity_word.sub_template(s, "\\1\\\\infty");
  static const PyRegex sqrt_short("\\\\sqrt(\\d)");
  s = sqrt_short.sub_template(s, "\\\\sqrt{\\1}");
  s = *fix_fracs(s, false);
  return py_strip(s);
}

std::optional<AnswerValue> parse_answer_value(const std::string& in, bool* limit) {
  std::string s = py_strip(in);
  if (s.empty()) return std::nullopt;
  if (ends_with(s, "\\%") || ends_with(s, "%")) {
    std::string body = py_strip(s.substr(0, s.size() - (ends_with(s, "\\%") ? 2 : 1)));
    auto v = parse_answer_value(body, limit);
    if (!v || v->kind != Kind::Expr) return std::nullopt;
    auto hundred = std::make_shared<Expr>();
    hundred->num = 0.01;
    auto m = std::make_shared<Expr>();
    m->kind = Expr::Kind::Mul;
    m->args = {v->expr, hundred};
    v->expr = m;
    return v;
  }
  if (s == "\\mathbb{R}" || s == "\\mathbb R") return parse_answer_value("(-\\infty,\\infty)", limit);
  if (s == "\\emptyset" || s == "\\varnothing" || s == "\\{\\}" || s == "\\{ \\}") {
    AnswerValue e;
    e.kind = Kind::Set;
    return e;
  }
  static const PyRegex thousands("^-?\\d{1,3}(?:,\\d{3})+(?:\\.\\d+)?$");
  if (thousands.search(s)) return parse_answer_value(replace_all(s, ",", ""), limit);
  static const PyRegex mixed("^(-?)(\\d+)\\\\frac\\{(\\d+)\\}\\{(\\d+)\\}$");
  if (auto m = mixed.findall(s); !m.empty())
    return parse_answer_value(m[0][0] + "(" + m[0][1] + "+\\frac{" + m[0][2] + "}{" + m[0][3] + "})", limit);
  auto unions = split_top(s, "\\cup");
  if (unions.size() > 1) return items_value(Kind::Union, unions, limit);
  if (starts_with(s, "\\begin{pmatrix}") || starts_with(s, "\\begin{bmatrix}")) {
    if (!(ends_with(s, "\\end{pmatrix}") || ends_with(s, "\\end{bmatrix}"))) return std::nullopt;
    std::string inner = s.substr(15, s.size() - 28);
    AnswerValue m;
    m.kind = Kind::Matrix;
    for (auto& row : split_all(inner, "\\\\")) {
      if (py_strip(row).empty()) continue;
      auto r = items_value(Kind::Tuple, split_all(row, "&"), limit);
      if (!r) return std::nullopt;
      m.items.push_back(*r);
    }
    return m;
  }
  if (starts_with(s, "\\{") && ends_with(s, "\\}")) return items_value(Kind::Set, split_top(s.substr(2, s.size() - 4), ","), limit);
  char open = s[0], close = s.back();
  if ((open == '(' || open == '[') && (close == ')' || close == ']') && wraps_whole(s)) {
    auto parts = split_top(s.substr(1, s.size() - 2), ",");
    if (parts.size() >= 2) {
      if (parts.size() == 2 && !(open == '(' && close == ')')) {
        auto v = items_value(Kind::Interval, parts, limit);
        if (v) v->left_closed = open == '[', v->right_closed = close == ']';
        return v;
      }
      return items_value(Kind::Tuple, parts, limit);
    }
  }
  auto commas = split_top(s, ",");
  if (commas.size() > 1) return items_value(Kind::Set, commas, limit);
  auto pm = split_top(s, "\\pm");
  if (pm.size() == 2) {
    std::string a = py_strip(pm[0]).empty() ? "0" : pm[0];
    return items_value(Kind::Set, {a + "+(" + pm[1] + ")", a + "-(" + pm[1] + ")"}, limit);
  }
  // a < x < b style chains become intervals.
  static const PyRegex chain("^(.+?)(<|\\\\le|\\\\leq|\\\\lt)([a-zA-Z])(<|\\\\le|\\\\leq|\\\\lt)(.+)$");
  auto c = chain.findall(replace_all(s, " ", ""));
  if (!c.empty()) {
    auto v = items_value(Kind::Interval, {c[0][0], c[0][4]}, limit);
    if (v) v->left_closed = c[0][1] != "<" && c[0][1] != "\\lt", v->right_closed = c[0][3] != "<" && c[0][3] != "\\lt";
    return v;
  }
  return expr_value(s, limit);
}

bool answer_values_equal(const AnswerValue& g, const AnswerValue& p) {
  // Assignments and equations against a non-equation: compare the right side.
  if (g.kind == Kind::Relation && g.op == "=" && p.kind != Kind::Relation && is_symbol(g.lhs))
    return answer_values_equal(expr_of(g.rhs, g.has_float), p);
  if (p.kind == Kind::Relation && p.op == "=" && g.kind != Kind::Relation)
    return answer_values_equal(g, expr_of(p.rhs, p.has_float));
  if (g.kind == Kind::Relation && (p.kind == Kind::Interval || (p.kind == Kind::Tuple && p.items.size() == 2))) {
    auto iv = relation_as_interval(g);
    return iv && answer_values_equal(*iv, p);
  }
  // A symbol and a one-word text compare by name.
  if (g.kind == Kind::Text && p.kind == Kind::Expr && is_symbol(p.expr)) return g.text == p.expr->name;
  if (p.kind == Kind::Text && g.kind == Kind::Expr && is_symbol(g.expr)) return p.text == g.expr->name;
  // A bare list (read as a set) against a tuple: the same members.
  if ((g.kind == Kind::Set && p.kind == Kind::Tuple) || (g.kind == Kind::Tuple && p.kind == Kind::Set))
    return matched_unordered(g.items, p.items);
  if (g.kind != p.kind) {
    // (a, b) read as a tuple equals the open interval (a, b).
    if (g.kind == Kind::Tuple && p.kind == Kind::Interval && g.items.size() == 2 && !p.left_closed && !p.right_closed)
      return matched_ordered(g.items, p.items);
    if (p.kind == Kind::Tuple && g.kind == Kind::Interval && p.items.size() == 2 && !g.left_closed && !g.right_closed)
      return matched_ordered(g.items, p.items);
    return false;
  }
  switch (g.kind) {
    case Kind::Expr:
      return exprs_equal(g.expr, p.expr, g.has_float || p.has_float);
    case Kind::Text:
      return g.text == p.text;
    case Kind::Set:
    case Kind::Union:
      return matched_unordered(g.items, p.items);
    case Kind::Tuple:
    case Kind::Matrix:
      return matched_ordered(g.items, p.items);
    case Kind::Interval:
      return g.left_closed == p.left_closed && g.right_closed == p.right_closed && matched_ordered(g.items, p.items);
    case Kind::Relation: {
      if (g.op != p.op) return false;
      if (is_symbol(g.lhs) && is_symbol(p.lhs) && g.lhs->name == p.lhs->name)
        return exprs_equal(g.rhs, p.rhs, g.has_float || p.has_float);
      ExprPtr dg = difference(g.lhs, g.rhs), dp = difference(p.lhs, p.rhs);
      return expressions_equal(dg, dp) || expressions_equal(dg, difference(std::make_shared<Expr>(), dp));
    }
  }
  return false;
}

}  // namespace rvec::eval::math
