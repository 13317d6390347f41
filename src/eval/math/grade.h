// One entry point for the four answer-checking schemes (rvec grade, the math tasks):
// qwen (Qwen2.5-Math toolkit extract_answer + math_equal), math_verify (Math-Verify parse/verify),
// minerva (lm-eval minerva_math exact_match) and hendrycks (lm-eval hendrycks_math exact_match).
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace rvec::eval::math {

enum class Scheme { Qwen, MathVerify, Minerva, Hendrycks };

Scheme parse_scheme(const std::string& name);  // rvec::Error naming the valid ones
const char* scheme_name(Scheme s);

struct GradeResult {
  bool correct = false;
  std::string extracted;        // the prediction as the scheme compares it
  std::string gold_normalized;  // the gold answer as the scheme compares it
  std::string rule;             // which extraction/equivalence rule decided
  bool limit = false;           // a bounded comparison gave up (counted as wrong)
  nlohmann::json to_json() const;
};

// `gold` is the gold answer as the data files hold it (math500: `answer`, the content of the
// solution's last \boxed{}); math_verify parses it as "\boxed{gold}" unless it already holds a box or
// '$'. `data_name` matters for qwen only (the toolkit's data names; minerva_math keeps units).
GradeResult grade(Scheme scheme, const std::string& gold, const std::string& output,
                  const std::string& data_name = "math");

// Whether two extracted answers (GradeResult::extracted of two generations) are the same answer
// under the scheme's equivalence (majority voting); empty or invalid answers match nothing.
bool same_answer(Scheme scheme, const std::string& a, const std::string& b);

}  // namespace rvec::eval::math
