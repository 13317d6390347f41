// The Qwen2.5-Math toolkit's unit word list (spec A5 step 7), with the "+s" plurals appended.
#pragma once
#include <string>
#include <vector>

namespace rvec::eval::math {
const std::vector<std::string>& qwen_unit_texts();
}  // namespace rvec::eval::math
