#include "eval/math/symbolic.h"

#include <cmath>
#include <set>

#include "eval/math/expr.h"
#include "eval/math/pystr.h"

namespace rvec::eval::math {

namespace {
bool is_constant(const ExprPtr& e) {
  std::set<std::string> s;
  collect_symbols(e, s);
  return s.empty();
}

// isclose(float(N(a)), float(N(b)), rel_tol=1e-4) for real constants.
bool constants_close(const ExprPtr& a, const ExprPtr& b) {
  if (!is_constant(a) || !is_constant(b) || has_infinity(a) || has_infinity(b)) return false;
  auto x = evaluate(a, {}), y = evaluate(b, {});
  if (std::abs(x.imag()) > 1e-12 || std::abs(y.imag()) > 1e-12) return false;
  if (!std::isfinite(x.real()) || !std::isfinite(y.real())) return false;
  return std::abs(x.real() - y.real()) <= 1e-4 * std::max(std::abs(x.real()), std::abs(y.real()));
}
}  // namespace

SymbolicVerdict qwen_symbolic_equal(const std::string& a_in, const std::string& b_in) {
  SymbolicVerdict v;
  // The toolkit first tries each string with "\\" replaced by "\".
  // sympy's parse_latex is tried first (and reads nearly everything the others do).
  const ParseOptions o = sympy_latex_dialect();
  ParseResult a = parse_expression(replace_all(a_in, "\\\\", "\\"), o);
  if (!a.value) a = parse_expression(a_in, o);
  ParseResult b = parse_expression(replace_all(b_in, "\\\\", "\\"), o);
  if (!b.value) b = parse_expression(b_in, o);
  v.limit = a.limit || b.limit;
  if (!a.value || !b.value) {
    v.equal = !a.value && !b.value && a_in == b_in;
    v.how = v.equal ? "string" : "unparsable: " + (a.value ? b.error : a.error);
    return v;
  }
  const Relation &x = *a.value, &y = *b.value;
  if (x.op.empty() && y.op.empty()) {
    if (expressions_equal(x.lhs, y.lhs)) {
      v.equal = true, v.how = "symbolic";
    } else if (constants_close(x.lhs, y.lhs)) {
      v.equal = true, v.how = "numeric";
    } else {
      v.how = "different values";
    }
    return v;
  }
  if (!x.op.empty() && !y.op.empty()) {
    ExprPtr dx = difference(x.lhs, x.rhs), dy = difference(y.lhs, y.rhs);
    ExprPtr neg_dy = difference(std::make_shared<Expr>(), dy);  // 0 - dy
    if (x.op == y.op && (expressions_equal(dx, dy) || expressions_equal(dx, neg_dy))) {
      v.equal = true, v.how = "relation";
      return v;
    }
  }
  v.how = "different relations";
  return v;
}

SymbolicVerdict minerva_is_equiv(const std::string& a_in, const std::string& b_in) {
  SymbolicVerdict v;
  ParseResult a = parse_expression(a_in, sympy_latex_dialect()), b = parse_expression(b_in, sympy_latex_dialect());
  v.limit = a.limit || b.limit;
  if (!a.value || !b.value) {
    v.how = "unparsable: " + (a.value ? b.error : a.error);
    return v;
  }
  if (!a.value->op.empty() || !b.value->op.empty()) {
    v.how = "relation";
    return v;
  }
  v.equal = expressions_equal(a.value->lhs, b.value->lhs);
  v.how = v.equal ? "symbolic" : "different values";
  return v;
}

}  // namespace rvec::eval::math
