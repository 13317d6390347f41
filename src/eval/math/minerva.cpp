#include "eval/math/minerva.h"

#include <utility>
#include <vector>

#include "eval/math/pystr.h"
#include "eval/pyregex.h"

namespace rvec::eval::math {

std::string minerva_unnormalized_answer(const std::string& response) {
  static const PyRegex sentence("Final Answer: The final answer is(.*?). I hope it is correct.");
  auto m = sentence.findall(response + "I hope it is correct.");
  if (m.empty()) return kMinervaInvalid;
  return py_strip(m[0][0]);
}

std::string minerva_normalize_final_answer(const std::string& in) {
  static const std::vector<std::pair<std::string, std::string>> substitutions = {
      {"an ", ""}, {"a ", ""}, {".$", "$"}, {"\\$", ""}, {"\\ ", ""}, {" ", ""}, {"mbox", "text"},
      {",\\text{and}", ","}, {"\\text{and}", ","}, {"\\text{m}", "\\text{}"}};
  static const std::vector<std::string> removed = {
      "square", "ways", "integers", "dollars", "mph", "inches", "ft", "hours", "km", "units", "\\ldots", "sue",
      "points", "feet", "minutes", "digits", "cents", "degrees", "cm", "gm", "pounds", "meters", "meals", "edges",
      "students", "childrentickets", "multiples", "\\text{s}", "\\text{.}", "\\text{\ns}", "\\text{}^2",
      "\\text{}^3", "\\text{\n}", "\\text{}", "\\mathrm{th}", "^\\circ", "^{\\circ}", "\\;", ",\\!", "{,}", "\"",
      "\\dots"};
  std::string s = split_all(in, "=").back();
  for (auto& [a, b] : substitutions) s = replace_all(s, a, b);
  for (auto& r : removed) s = replace_all(s, r, "");
  static const PyRegex dollars("(.*?)(\\$)(.*?)(\\$)(.*)");
  static const PyRegex text("(\\\\text\\{)(.*?)(\\})");
  static const PyRegex textbf("(\\\\textbf\\{)(.*?)(\\})");
  static const PyRegex overline("(\\\\overline\\{)(.*?)(\\})");
  static const PyRegex boxed("(\\\\boxed\\{)(.*)(\\})");
  static const PyRegex frac("(frac)([^{])(.)");
  static const PyRegex sqrt("(sqrt)([^{])");
  s = dollars.sub_template(s, "$\\3$");
  s = text.sub_template(s, "\\2");
  s = textbf.sub_template(s, "\\2");
  s = overline.sub_template(s, "\\2");
  s = boxed.sub_template(s, "\\2");
  s = frac.sub_template(s, "frac{\\2}{\\3}");
  s = sqrt.sub_template(s, "sqrt{\\2}");
  s = replace_all(s, "$", "");
  if (ascii_isdigit(replace_all(s, ",", ""))) s = replace_all(s, ",", "");
  return s;
}

}  // namespace rvec::eval::math
