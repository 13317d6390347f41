// lm-eval minerva_math exact_match (spec B2): the "Final Answer: The final answer is X. I hope it is
// correct." sentence, Lewkowycz et al.'s normalize_final_answer, and is_equiv.
#pragma once
#include <string>

namespace rvec::eval::math {

inline const std::string kMinervaInvalid = "[invalidanswer]";

// get_unnormalized_answer: group 1 of the sentence regex (response + "I hope it is correct."),
// stripped; "[invalidanswer]" when absent.
std::string minerva_unnormalized_answer(const std::string& response);
std::string minerva_normalize_final_answer(const std::string& answer);

}  // namespace rvec::eval::math
