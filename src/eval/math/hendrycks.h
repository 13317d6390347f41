// lm-eval hendrycks_math exact_match (spec B4): the answer between the first and last '$' of the
// response (the whole response with fewer than two), Hendrycks' strip_string, string equality.
#pragma once
#include <optional>
#include <string>

namespace rvec::eval::math {

std::string hendrycks_extract(const std::string& response);
// strip_string; nullopt where the original raises (is_equiv then compares the raw strings).
std::optional<std::string> hendrycks_strip_string(const std::string& s);
// is_equiv(a, b): both stripped and equal; on an exception, a == b.
bool hendrycks_is_equiv(const std::string& a, const std::string& b);

}  // namespace rvec::eval::math
