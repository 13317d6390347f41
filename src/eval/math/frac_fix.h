// The MATH-dataset `\frac` shorthand repair shared by the Qwen toolkit and Hendrycks' strip_string:
// "\frac12" -> "\frac{1}{2}", "\frac1{72}" -> "\frac{1}{72}" (each \frac not followed by '{').
#pragma once
#include <optional>
#include <string>

namespace rvec::eval::math {

// nullopt where the original raises: a "\frac" followed by nothing when `empty_raises` (Hendrycks
// indexes substr[0]); a "\frac" followed by one character returns the input unchanged (both).
std::optional<std::string> fix_fracs(const std::string& s, bool empty_raises);

}  // namespace rvec::eval::math
