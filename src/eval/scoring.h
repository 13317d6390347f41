// lm-evaluation-harness filters and metrics: the regex filter (re.findall, group_select,
// first non-empty group, strip, "[invalid]"), exact_match (regexes_to_ignore, then
// ignore_case, then ignore_punctuation), means with the sample standard error, and the
// pooled standard error of a size-weighted group.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "eval/pyregex.h"

namespace rvec::eval {

inline const std::string kInvalid = "[invalid]";

// lm-eval RegexFilter on one response.
std::string regex_filter(const std::string& response, const PyRegex& re, int group_select = 0,
                         const std::string& fallback = kInvalid);

struct ExactMatchOptions {
  std::vector<std::string> regexes_to_ignore;
  bool ignore_case = false;
  bool ignore_punctuation = false;
};

// Applies the exact_match normalisation (HF `evaluate` exact_match, as lm-eval calls it).
std::string exact_match_normalize(const std::string& s, const ExactMatchOptions& o);
double exact_match(const std::string& prediction, const std::string& reference, const ExactMatchOptions& o);

double mean(const std::vector<double>& v);
// Sample standard deviation (n-1) over sqrt(n); nullopt when n < 2 (lm-eval reports "N/A").
std::optional<double> mean_stderr(const std::vector<double>& v);
// lm-eval's pooled_sample_stderr for a group mean weighted by subtask size.
double pooled_stderr(const std::vector<double>& stderrs, const std::vector<size_t>& sizes);

}  // namespace rvec::eval
