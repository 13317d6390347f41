// Finding the final boxed answer: lm-eval's last_boxed_only_string/remove_boxed (MATH,
// minerva_math, hendrycks_math) and the Qwen2.5-Math toolkit's "text after the last `boxed`"
// with brace matching (spec A4 rule b, B2, B4).
#pragma once
#include <optional>
#include <string>

namespace rvec::eval::math {

// lm-eval last_boxed_only_string: "\boxed <x>" (space form, up to the next '$') when the text has
// "\boxed ", else the last "\boxed{...}" (or "\fbox{...}" when there is no \boxed) with balanced
// braces; nullopt when there is none or its braces never close.
std::optional<std::string> last_boxed_only_string(const std::string& text);
// lm-eval remove_boxed: the content of "\boxed{...}" / "\boxed ..."; nullopt where lm-eval's
// assertions fail (e.g. an \fbox{...} string).
std::optional<std::string> remove_boxed(const std::string& boxed);
// Qwen toolkit: the text after the last "boxed"; if it starts with '{', its content up to the
// matching '}' (to the end when unclosed), else the text up to the first '$', stripped.
std::string qwen_last_box(const std::string& text);

}  // namespace rvec::eval::math
