#include "eval/math/math_verify.h"

#include <algorithm>
#include <vector>

#include "eval/math/pystr.h"
#include "eval/pyregex.h"

namespace rvec::eval::math {

namespace {
struct Candidate {
  int priority;
  size_t end;
  std::string text;
  bool latex;
};

// Brace-matched content of the last \boxed{...} / \fbox{...}; nullopt when none.
std::optional<std::pair<std::string, size_t>> last_boxed(const std::string& s) {
  size_t b = s.rfind("\\boxed"), f = s.rfind("\\fbox");
  size_t idx = b == std::string::npos ? f : (f == std::string::npos ? b : std::max(b, f));
  if (idx == std::string::npos) return std::nullopt;
  size_t p = s.find('{', idx);
  if (p == std::string::npos) return std::nullopt;
  for (size_t q = idx + (s.compare(idx, 6, "\\boxed") == 0 ? 6 : 5); q < p; q++)
    if (!std::isspace(static_cast<unsigned char>(s[q]))) return std::nullopt;
  int depth = 0;
  for (size_t i = p; i < s.size(); i++) {
    if (s[i] == '{') depth++;
    if (s[i] == '}' && --depth == 0) return std::make_pair(s.substr(p + 1, i - p - 1), i + 1);
  }
  return std::make_pair(s.substr(p + 1), s.size());
}

// LaTeX environments: $$..$$, \[..\], $..$ (one line), \(..\) (one line).
const PyRegex& latex_env() {
  static const PyRegex re(
      "(?s)(?<!\\\\)\\$\\$((?:[^$]|\\$(?!\\$))+?)(?<!\\\\)\\$\\$|(?<!\\\\)\\\\\\[(.+?)(?<!\\\\)\\\\\\]|"
      "(?<![\\\\\\d])\\$((?:\\\\\\$|[^\\n$])+?)(?<!\\\\)\\$|(?<!\\\\)\\\\\\(((?:[^\\n])+?)(?<!\\\\)\\\\\\)");
  return re;
}

// Every match of `re` with its end offset and first non-empty group.
std::vector<std::pair<size_t, std::string>> matches(const PyRegex& re, const std::string& s) {
  std::vector<std::pair<size_t, std::string>> out;
  for (auto& m : re.finditer(s))
    for (auto& g : m.groups)
      if (!g.empty()) {
        out.emplace_back(m.end, g);
        break;
      }
  return out;
}

// Up to five inline $...$ answers joined by ",", "and", "or": one set-like candidate "a,b,...".
std::vector<std::pair<size_t, std::string>> joined_envs(const std::string& s) {
  static const std::string env = "\\$((?:\\\\\\$|[^\\n$])+?)\\$";
  static const std::string sep = "\\s*(?:,?\\s*and|,?\\s*or|,)\\s*";
  static const PyRegex re([] {
    std::string p = "(?<![\\\\\\d])" + env + sep + env;
    for (int i = 0; i < 3; i++) p += "(?:" + sep + env + ")?";
    return p;
  }());
  std::vector<std::pair<size_t, std::string>> out;
  for (auto& m : re.finditer(s)) {
    std::string joined;
    for (auto& g : m.groups)
      if (!g.empty()) joined += (joined.empty() ? "" : ",") + g;
    out.emplace_back(m.end, joined);
  }
  return out;
}

const PyRegex& plain_number() {
  static const PyRegex re(
      "(?:^|\\s|=)(?:\\*\\*)?[$\u20ac\u00a3\u00a5]?(-?(?:[1-9]\\d{0,2}(?:,\\d{3})+(?:\\.\\d+)?|\\d+\\.\\d+|\\.\\d+|\\d+)"
      "(?:\\s*(?:%|[Pp]ercent))?)(?=[.,:\\s)$]|$)");
  return re;
}

std::vector<Candidate> candidates(const std::string& text) {
  std::vector<Candidate> c;
  auto add_env_after = [&](const PyRegex& lead, int priority) {
    for (auto& [end, g] : matches(lead, text)) c.push_back({priority, end, g, true});
  };
  static const PyRegex final_is_hope("(?si)final answer is:?\\s*\\$((?:[^$])+?)\\$\\.?\\s?I hope");
  add_env_after(final_is_hope, 0);
  static const PyRegex final_num_hope("(?i)final answer is:?\\s*(-?[\\d.,/]+)\\.?\\s?I hope");
  for (auto& [end, g] : matches(final_num_hope, text)) c.push_back({0, end, g, false});
  if (auto b = last_boxed(text)) c.push_back({50, b->second, b->first, true});
  static const PyRegex final_just_is("(?si)final answer.{0,100}?\\s+is:?\\s*\\$((?:[^$])+?)\\$");
  add_env_after(final_just_is, 50);
  static const PyRegex answer_colon("(?si)answer:.{0,50}?\\$((?:[^$])+?)\\$");
  add_env_after(answer_colon, 100);
  static const PyRegex answer_any("(?si)answer.{0,50}?\\$((?:[^$])+?)\\$");
  add_env_after(answer_any, 200);
  static const PyRegex answer_num("(?i)answer(?::)?.{0,50}?(?:^|\\s|=)(-?\\d[\\d,]*(?:\\.\\d+)?)(?=[.,:\\s)]|$)");
  for (auto& [end, g] : matches(answer_num, text)) c.push_back({200, end, g, false});
  for (auto& [end, g] : joined_envs(text)) c.push_back({300, end, g, true});
  for (auto& [end, g] : matches(latex_env(), text)) c.push_back({300, end, g, true});
  for (auto& [end, g] : matches(plain_number(), text)) c.push_back({300, end, g, false});
  std::stable_sort(c.begin(), c.end(), [](const Candidate& a, const Candidate& b) {
    return a.priority != b.priority ? a.priority < b.priority : a.end > b.end;
  });
  return c;
}
}  // namespace

MvParsed mv_parse(const std::string& text) {
  MvParsed out;
  std::string first_source;
  for (auto& cand : candidates(text)) {
    std::string norm = cand.latex ? mv_normalize_latex(cand.text) : cand.text;
    if (!cand.latex) {
      norm = replace_all(norm, ",", "");
      static const PyRegex pct("\\s*[Pp]ercent$");
      norm = pct.sub(norm, "%");
    }
    if (first_source.empty()) first_source = norm;
    bool limit = false;
    auto v = parse_answer_value(norm, &limit);
    out.limit |= limit;
    if (v) {
      out.value = v;
      out.source = norm;
      return out;
    }
  }
  out.source = first_source;
  return out;
}

bool mv_verify(const MvParsed& gold, const MvParsed& target) {
  if (gold.value && target.value && answer_values_equal(*gold.value, *target.value)) return true;
  std::string a = py_strip(gold.source), b = py_strip(target.source);
  return !a.empty() && a == b;
}

}  // namespace rvec::eval::math
