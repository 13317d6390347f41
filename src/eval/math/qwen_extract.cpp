#include "eval/math/qwen_extract.h"

#include "core/error.h"
#include "eval/math/boxed.h"
#include "eval/math/pystr.h"
#include "eval/math/qwen_strip.h"
#include "eval/pyregex.h"

namespace rvec::eval::math {

bool qwen_skip_unit(const std::string& data_name) { return data_name == "carp_en" || data_name == "minerva_math"; }

namespace {
// extract_answer without run_execute's second strip.
std::string extract_once(const std::string& pred_in, const std::string& data_name, std::string* rule) {
  std::string s = replace_all(pred_in, "\u043a\u0438", "");
  std::string pred, r;
  if (contains(s, "final answer is $") && contains(s, "$. I hope")) {
    std::string tmp = s.substr(s.find("final answer is $") + 17);
    pred = py_strip(tmp.substr(0, tmp.find("$. I hope") == std::string::npos ? tmp.size() : tmp.find("$. I hope")));
    r = "minerva_sentence";
  } else if (contains(s, "boxed")) {
    pred = qwen_last_box(s);
    r = "boxed";
    if (split_all(s, "boxed").back().empty()) {
      if (rule) *rule = r;
      return "";
    }
  } else if (contains(s, "he answer is")) {
    pred = py_strip(split_all(s, "he answer is").back());
    r = "answer_is";
  } else if (contains(s, "final answer is")) {
    pred = py_strip(split_all(s, "final answer is").back());
    r = "final_answer_is";
  } else if (contains(s, "\u7b54\u6848\u662f")) {
    std::string after = py_strip(s.substr(s.find("\u7b54\u6848\u662f") + 9));
    pred = py_strip(split_all(after, "\n\n")[0]);
    r = "chinese_answer";
  } else {
    static const PyRegex number("-?\\d*\\.?\\d+");
    auto m = number.findall(replace_all(s, ",", ""));
    pred = m.empty() ? "" : m.back()[0];
    r = m.empty() ? "none" : "last_number";
  }
  static const PyRegex newline_ws("\\n\\s*");
  pred = newline_ws.sub(pred, "");
  if (!pred.empty() && pred[0] == ':') pred = pred.substr(1);
  if (!pred.empty() && pred.back() == '.') pred.pop_back();
  if (!pred.empty() && pred.back() == '/') pred.pop_back();
  if (rule) *rule = r;
  return qwen_strip_string(pred, qwen_skip_unit(data_name));
}
}  // namespace

std::string qwen_extract_answer(const std::string& pred, const std::string& data_name, std::string* rule) {
  return qwen_strip_string(extract_once(pred, data_name, rule), qwen_skip_unit(data_name));
}

std::string qwen_gold_from_answer(const std::string& gold, const std::string& data_name) {
  if (data_name == "math" || data_name == "math500") {
    // extract_answer's post-processing of the boxed content, then strip_string again.
    std::string g = extract_once("\\boxed{" + gold + "}", data_name, nullptr);
    return qwen_strip_string(g, false);
  }
  if (data_name == "minerva_math") {
    std::string g = extract_once("\\boxed{" + gold + "}", data_name, nullptr);
    return replace_all(replace_all(replace_all(g, "\\neq", "\\ne"), "\\leq", "\\le"), "\\geq", "\\ge");
  }
  if (data_name == "olympiadbench") return qwen_strip_string(strip_chars(gold, "$"), false);
  return qwen_strip_string(gold, data_name == "carp_en");
}

std::string qwen_gold(const nlohmann::json& doc, const std::string& data_name) {
  auto field = [&](const char* k) {
    if (!doc.contains(k) || !doc[k].is_string()) fail("{} document has no string field '{}'", data_name, k);
    return doc[k].get<std::string>();
  };
  if (data_name == "math" || data_name == "math500" || data_name == "minerva_math") {
    std::string g = extract_once(field("solution"), data_name, nullptr);
    if (data_name == "minerva_math")
      return replace_all(replace_all(replace_all(g, "\\neq", "\\ne"), "\\leq", "\\le"), "\\geq", "\\ge");
    return qwen_strip_string(g, false);
  }
  return qwen_gold_from_answer(field("answer"), data_name);
}

std::string qwen_question(const nlohmann::json& doc, const std::string& data_name) {
  std::string q;
  for (const char* k : {"question", "problem", "Question", "input"})
    if (doc.contains(k) && doc[k].is_string()) {
      q = doc[k].get<std::string>();
      break;
    }
  std::string g = ascii_lower(qwen_gold(doc, data_name));
  if (g == "true" || g == "false") q += " (True or False)";
  if (g == "yes" || g == "no") q += " (Yes or No)";
  return py_strip(q);
}

}  // namespace rvec::eval::math
