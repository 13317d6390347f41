// English number words as lm-evaluation-harness's bbh_zeroshot reads them: the `word2number` package
// (1.1, `w2n.word_to_num`) that its NumberParseRegexFilter calls on a match of its English-number regex.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace rvec::eval {

// w2n.word_to_num(text) for text without the word "point" (the regex never matches it, so decimals
// never arise): '-' becomes ' ', lower-case, split on whitespace, tokens that are not exactly a number
// word ("and", "twenty,") are dropped, and billion/million/thousand groups are combined with w2n's
// number_formation, quirks included ("one for two" -> 3, "nineteen ninety" -> 109). nullopt where w2n
// raises (no number word, a repeated or misordered multiplier, a multiplier with nothing before it).
std::optional<int64_t> word_to_num(const std::string& text);

// lm-eval bbh/zeroshot/utils.py NumberParseRegexFilter (object_counting, multistep_arithmetic_two):
// the first match of ([-0-9]+) in the response; else the first match of its English-number regex in
// the lower-cased response, through word_to_num; else "[invalid]" (also where lm-eval's word_to_num
// raises and aborts its run).
std::string bbh_number_extract(const std::string& response);

}  // namespace rvec::eval
