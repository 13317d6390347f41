// Structured answers as Math-Verify compares them (spec C1/C2): numbers and expressions, sets
// (\{...\}, bare lists, \pm), tuples, intervals with open/closed ends, unions, matrices,
// equations/assignments, inequalities and text. Built on parse_expression.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "eval/math/expr.h"

namespace rvec::eval::math {

struct AnswerValue {
  enum class Kind { Expr, Set, Tuple, Interval, Union, Matrix, Relation, Text };
  Kind kind = Kind::Expr;
  ExprPtr expr;            // Expr
  bool has_float = false;  // Expr written with a decimal point (compared rounded to 6 decimals)
  std::string op;          // Relation: = < > <= >= !=
  ExprPtr lhs, rhs;        // Relation
  std::vector<AnswerValue> items;  // Set/Tuple/Union members, Interval ends, Matrix rows (Tuples)
  bool left_closed = false, right_closed = false;  // Interval
  std::string text;        // Text
};

// Math-Verify style LaTeX normalisation of one extracted answer (units in \text, \left/\right,
// spacing, \dfrac, degrees, "\text{and}" -> ",", \frac12 / \sqrt2 shorthand).
std::string mv_normalize_latex(const std::string& s);
// Reads a normalised answer; nullopt when it is not one of the forms above. `limit` is set when a
// part was refused for size or depth.
std::optional<AnswerValue> parse_answer_value(const std::string& s, bool* limit = nullptr);
// Math-Verify's comparison of a gold value with a predicted one (strict, float_rounding=6).
bool answer_values_equal(const AnswerValue& gold, const AnswerValue& pred);

}  // namespace rvec::eval::math
