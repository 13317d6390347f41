// The math reasoning tasks: math500, aime24, aime25, amc23, minerva_math, olympiadbench in the
// Qwen2.5-Math toolkit's format (0-shot, qwen25-math-cot prompt, last \boxed{} answer, math_equal),
// and lm-eval's minerva_math500 (4-shot, exact_match + math_verify) and hendrycks_math500 (0-shot,
// exact_match). Prompts and scoring: ../shared/spec/math-eval.md; data: data/math/.
#pragma once
#include <functional>
#include <string>

#include "eval/tasks.h"

namespace rvec::eval {

// The qwen25-math-cot system instruction.
inline const std::string kQwenCotInstruction =
    "Please reason step by step, and put your final answer within \\boxed{}.";

// Calls add(name, factory) for each math task.
void add_math_tasks(const std::function<void(const std::string&, TaskFactory)>& add);

}  // namespace rvec::eval
