// The unit words the Qwen2.5-Math toolkit's strip_string deletes (its `unit_texts`, "units mainly
// from MathQA"), as data: QwenLM/Qwen2.5-Math @ a45202bd evaluation/parser.py (MIT licence,
// (c) 2024 Zhibin Gou). Each entry is a Python regex fragment ('.' matches any character); the toolkit
// appends every entry with "s" after the list, which qwen_unit_texts() does too.
#include "eval/math/qwen_units.h"

namespace rvec::eval::math {

const std::vector<std::string>& qwen_unit_texts() {
  static const std::vector<std::string> units = [] {
    std::vector<std::string> u = {
        "east", "degree", "mph", "kmph", "ft", "m sqaure", " m east", "sq m", "deg", "mile", "q .", "monkey",
        "prime", "ratio", "profit of rs", "rd", "o", "gm", "p . m", "lb", "tile", "per", "dm", "lt", "gain",
        "ab", "way", "west", "a .", "b .", "c .", "d .", "e .", "f .", "g .", "h .", "t", "a", "h", "no change",
        "men", "soldier", "pie", "bc", "excess", "st", "inches", "noon", "percent", "by", "gal", "kmh", "c",
        "acre", "rise", "a . m", "th", "π r 2", "sq", "mark", "l", "toy", "coin", "sq . m", "gallon", "° f",
        "profit", "minw", "yr", "women", "feet", "am", "pm", "hr", "cu cm", "square", "v â € ™", "are", "rupee",
        "rounds", "cubic", "cc", "mtr", "s", "ohm", "number", "kmph", "day", "hour", "minute", "min", "second",
        "man", "woman", "sec", "cube", "mt", "sq inch", "mp", "∏ cm ³", "hectare", "more", "sec", "unit",
        "cu . m", "cm 2", "rs .", "rs", "kg", "g", "month", "km", "m", "cm", "mm", "apple", "liter", "loss",
        "yard", "pure", "year", "increase", "decrease", "d", "less", "Surface", "litre", "pi sq m", "s .",
        "metre", "meter", "inch",
    };
    size_t n = u.size();
    for (size_t i = 0; i < n; i++) u.push_back(u[i] + "s");
    return u;
  }();
  return units;
}

}  // namespace rvec::eval::math
