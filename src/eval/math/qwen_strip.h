// The Qwen2.5-Math toolkit's answer normalisation `strip_string(s, skip_unit)` (spec A5), step by
// step in its order, quirks included (the substring "and" is deleted everywhere, single-letter unit
// words between non-word characters are deleted, spelled-out numbers become digits).
#pragma once
#include <string>

namespace rvec::eval::math {

std::string qwen_strip_string(const std::string& s, bool skip_unit);

}  // namespace rvec::eval::math
