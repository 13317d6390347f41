// A reader for the LaTeX / plain-text math that answers are written in (numbers, \frac, \sqrt[n],
// ^, _, \pi, implicit multiplication, \cdot, \times, functions, |x|, !, %) into an expression
// tree, and numeric evaluation of that tree with complex doubles. Bounded: inputs longer than
// kMaxExprChars or nested deeper than kMaxExprDepth are refused (ParseResult::limit says so).
#pragma once
#include <complex>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace rvec::eval::math {

inline constexpr size_t kMaxExprChars = 2000;
inline constexpr int kMaxExprDepth = 200;

struct Expr;
using ExprPtr = std::shared_ptr<const Expr>;

struct Expr {
  enum class Kind { Num, Sym, Add, Mul, Pow, Neg, Func, Factorial, Infinity };
  Kind kind = Kind::Num;
  double num = 0;                // Num
  std::string name;              // Sym (symbol name) / Func (function name)
  std::vector<ExprPtr> args;     // Add/Mul: terms; Pow: base, exponent; Neg/Func/Factorial: operand(s)
};

// A relation "lhs op rhs" (op one of = < > \le \ge \ne) or a bare expression (op empty).
struct Relation {
  std::string op;
  ExprPtr lhs, rhs;
};

struct ParseResult {
  std::optional<Relation> value;  // nullopt: not an expression
  std::string error;              // why not
  bool limit = false;             // refused for size or depth
};

// Which parser's conventions to follow: sympy's parse_latex reads \pi as a plain symbol and any
// unknown \command as a symbol named after it, and has no percent; latex2sympy (Math-Verify) reads
// \pi as the constant and % as /100, and fails on unknown commands.
struct ParseOptions {
  bool pi_is_symbol = false;
  bool unknown_commands_are_symbols = false;
  bool percent = true;
  bool leading_dot = true;  // ".5" is a number (latex2sympy) or not (sympy)
};
inline ParseOptions sympy_latex_dialect() { return {true, true, false, false}; }

// Reads `text` as one expression or relation; commas at the top level, unbalanced brackets,
// words that are not functions or (by default) unknown commands make it fail. Numbers are digits
// with an optional decimal part ("5." and "1e3" are not numbers in LaTeX; ".5" per ParseOptions).
ParseResult parse_expression(const std::string& text, const ParseOptions& opts = {});

// Symbols occurring in e.
void collect_symbols(const ExprPtr& e, std::set<std::string>& out);
// Value of e with the given symbol values (absent symbols evaluate to NaN).
std::complex<double> evaluate(const ExprPtr& e, const std::map<std::string, std::complex<double>>& vars);
bool has_infinity(const ExprPtr& e);

// Whether a and b are the same function of their symbols: equal at several pseudo-random points
// (relative tolerance rel_tol, with a 1e-12 absolute floor), non-finite values agreeing. A
// constant pair is compared once.
bool expressions_equal(const ExprPtr& a, const ExprPtr& b, double rel_tol = 1e-9);
// The difference a - b as a tree.
ExprPtr difference(const ExprPtr& a, const ExprPtr& b);

}  // namespace rvec::eval::math
