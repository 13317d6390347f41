// The Qwen2.5-Math toolkit's answer extraction (spec A4), gold answers (A3) and question text (A2):
// what `extract_answer`, `parse_ground_truth` and `parse_question` do for the data sets rvec ships.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace rvec::eval::math {

// True for the toolkit's data names whose answers keep their units (carp_en, minerva_math).
bool qwen_skip_unit(const std::string& data_name);
// extract_answer(pred, data_name) followed by run_execute's second strip_string. `rule` (optional)
// receives which extraction rule fired: minerva_sentence, boxed, answer_is, final_answer_is,
// chinese_answer, last_number, none.
std::string qwen_extract_answer(const std::string& pred, const std::string& data_name, std::string* rule = nullptr);
// The gold answer as parse_ground_truth computes it from a gold answer string as the data files
// hold it (math/math500: the boxed content of the solution; others: the `answer` field):
// math/math500 strip twice, minerva_math keeps units and maps \neq/\leq/\geq, olympiadbench strips
// '$' from both ends first, the rest strip once.
std::string qwen_gold_from_answer(const std::string& gold, const std::string& data_name);
// parse_ground_truth on a document of the shipped files (math500/minerva_math: from `solution`).
std::string qwen_gold(const nlohmann::json& doc, const std::string& data_name);
// parse_question: the first of question/problem/Question/input, plus " (True or False)" or
// " (Yes or No)" for such gold answers; stripped.
std::string qwen_question(const nlohmann::json& doc, const std::string& data_name);

}  // namespace rvec::eval::math
