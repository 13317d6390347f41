// The Qwen2.5-Math toolkit's `math_equal(pred, ref)` with its defaults (include_percentage,
// is_close; spec A6), in its order: the first rule that decides returns. `rule` names it.
#pragma once
#include <string>

namespace rvec::eval::math {

struct Verdict {
  bool correct = false;
  std::string rule;    // which rule decided (or "no_rule_matched")
  bool limit = false;  // a bounded comparison gave up (counted as not equal)
};

Verdict qwen_math_equal(const std::string& pred, const std::string& ref);
// choice_answer_clean as grader.py defines it (the last standalone A-E, upper-cased).
std::string qwen_choice_clean(const std::string& pred);

}  // namespace rvec::eval::math
