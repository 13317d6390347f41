// Math-Verify's parse(text) and verify(gold, target) with their defaults (spec C), re-implemented:
// answer candidates are looked for by priority (0: "final answer is $X$. I hope"; 50: the last
// \boxed{} and "final answer ... is X"; 100/200: "answer" followed within 50 characters by LaTeX or a
// number; 300: any $...$, $$...$$, \(...\), \[...\] or anchored plain number), the rightmost
// candidate of the first group that reads wins; the result holds the value and its source string.
#pragma once
#include <optional>
#include <string>

#include "eval/math/answer_value.h"

namespace rvec::eval::math {

struct MvParsed {
  std::optional<AnswerValue> value;
  std::string source;   // the extracted (normalised) string; empty when nothing was found
  bool limit = false;   // a candidate was refused for size or depth
};

MvParsed mv_parse(const std::string& text);
// True if the values compare equal, or (fallback) the two source strings are identical and non-empty.
bool mv_verify(const MvParsed& gold, const MvParsed& target);

}  // namespace rvec::eval::math
