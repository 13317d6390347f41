// Symbolic equivalence of two answer strings in place of sympy: both are read by parse_expression
// and compared as functions of their symbols (expressions_equal), relations by |lhs - rhs| up to
// sign. Used by the Qwen toolkit's symbolic_equal step (spec A6.11) and lm-eval minerva is_equiv
// (B2). Bounded by parse_expression's limits; a refused input counts as not equal.
#pragma once
#include <string>

namespace rvec::eval::math {

struct SymbolicVerdict {
  bool equal = false;
  bool limit = false;  // an input was refused for size or depth
  std::string how;     // "symbolic", "numeric", "relation", "string" or why not
};

// Qwen toolkit symbolic_equal: identical strings when either side does not parse; otherwise equal
// expressions (random points), relations with equal |lhs - rhs|, or constants within rel. 1e-4.
SymbolicVerdict qwen_symbolic_equal(const std::string& a, const std::string& b);
// lm-eval minerva is_equiv on normalised answers: both must parse (sympy parse_latex), then
// simplify(a - b) == 0 (here: equal at random points with rel. 1e-9); unparsable -> false.
SymbolicVerdict minerva_is_equiv(const std::string& a, const std::string& b);

}  // namespace rvec::eval::math
