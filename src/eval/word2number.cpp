#include "eval/word2number.h"

#include <algorithm>
#include <map>
#include <vector>

#include "eval/pyregex.h"
#include "eval/scoring.h"

namespace rvec::eval {

namespace {
const std::map<std::string, int64_t>& number_words() {
  static const std::map<std::string, int64_t> m = {
      {"zero", 0},          {"one", 1},          {"two", 2},           {"three", 3},        {"four", 4},
      {"five", 5},          {"six", 6},          {"seven", 7},         {"eight", 8},        {"nine", 9},
      {"ten", 10},          {"eleven", 11},      {"twelve", 12},       {"thirteen", 13},    {"fourteen", 14},
      {"fifteen", 15},      {"sixteen", 16},     {"seventeen", 17},    {"eighteen", 18},    {"nineteen", 19},
      {"twenty", 20},       {"thirty", 30},      {"forty", 40},        {"fifty", 50},       {"sixty", 60},
      {"seventy", 70},      {"eighty", 80},      {"ninety", 90},       {"hundred", 100},    {"thousand", 1000},
      {"million", 1000000}, {"billion", 1000000000}};
  return m;
}

// w2n.number_formation: an empty list raises (IndexError) -> nullopt.
std::optional<int64_t> number_formation(const std::vector<std::string>& words, size_t from, size_t to) {
  std::vector<int64_t> n;
  for (size_t i = from; i < to; i++) n.push_back(number_words().at(words[i]));
  if (n.empty()) return std::nullopt;
  if (n.size() == 4) return n[0] * n[1] + n[2] + n[3];
  if (n.size() == 3) return n[0] * n[1] + n[2];
  if (n.size() == 2) return std::count(n.begin(), n.end(), 100) ? n[0] * n[1] : n[0] + n[1];
  return n[0];  // one word, or five and more (w2n's else branch)
}
}  // namespace

std::optional<int64_t> word_to_num(const std::string& text) {
  std::string s = text;
  std::replace(s.begin(), s.end(), '-', ' ');
  s = ascii_lower(s);
  if (!s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return s.size() <= 18 ? std::optional<int64_t>(std::stoll(s)) : std::nullopt;
  static const PyRegex token("\\S+");  // str.split(): runs of non-whitespace
  std::vector<std::string> clean;
  for (auto& m : token.findall(s))
    if (number_words().count(m[0])) clean.push_back(m[0]);
  if (clean.empty()) return std::nullopt;
  auto index = [&](const char* w) -> long {
    auto it = std::find(clean.begin(), clean.end(), w);
    return it == clean.end() ? -1 : long(it - clean.begin());
  };
  for (const char* w : {"thousand", "million", "billion"})
    if (std::count(clean.begin(), clean.end(), w) > 1) return std::nullopt;
  const long b = index("billion"), m = index("million"), t = index("thousand"), last = long(clean.size()) - 1;
  if ((t > -1 && (t < m || t < b)) || (m > -1 && m < b)) return std::nullopt;
  if (clean.size() == 1) return number_words().at(clean[0]);
  int64_t total = 0;
  auto add = [&](long from, long to, int64_t scale) {
    auto v = number_formation(clean, size_t(from), size_t(to));
    if (v) total += *v * scale;
    return v.has_value();
  };
  if (b > -1 && !add(0, b, 1000000000)) return std::nullopt;
  if (m > -1 && !add(b > -1 ? b + 1 : 0, m, 1000000)) return std::nullopt;
  if (t > -1 && !add(m > -1 ? m + 1 : (b > -1 ? b + 1 : 0), t, 1000)) return std::nullopt;
  // The rest: w2n takes the words after the first multiplier that is not the last word (in the order
  // thousand, million, billion), or all words when there is no multiplier.
  long from = -2;
  if (t > -1 && t != last)
    from = t + 1;
  else if (m > -1 && m != last)
    from = m + 1;
  else if (b > -1 && b != last)
    from = b + 1;
  else if (t == -1 && m == -1 && b == -1)
    from = 0;
  if (from >= 0 && !add(from, last + 1, 1)) return std::nullopt;
  return total;
}

std::string bbh_number_extract(const std::string& response) {
  static const PyRegex digits("([-0-9]+)");
  // lm-eval's pattern (from a regex-subreddit answer), for the `regex` module; PCRE2 reads it the
  // same way: (?|teen|ty) is a branch-reset group, so "six", "seven", "nine" alone and "eight" at the
  // end match nothing, and "fourteen" at the end matches as "four" (alternatives are tried in order).
  static const PyRegex words(
      "((?:(?:zero|one|two|three|four|five|(?:twen|thir|for|fif|six|seven|nine)(?|teen|ty)|eight(?:|een|y)|ten|"
      "eleven|twelve|fourteen|hundred|thousand|(?:m|b|tr)illion)(?:zero|one|two|three|four|five|(?:twen|thir|for|"
      "fif|six|seven|nine)(?:|teen|ty)|eight(?|een|y)|ten|eleven|twelve|fourteen|hundred|thousand|(?:m|b|tr)illion|"
      "[^\\S\\r\\n]|,|and|&)+)?(?:zero|one|two|three|four|five|(?:twen|thir|for|fif|six|seven|nine)(?|teen|ty)|"
      "eight(?|een|y)|ten|eleven|twelve|fourteen|hundred|thousand|(?:m|b|tr)illion))");
  auto m = digits.findall(response);
  if (!m.empty()) {
    std::string x = py_strip(m[0][0]);
    if (!x.empty()) return x;
  }
  // Python's str.lower() here equals ASCII lower-casing: no other character lowers into a letter
  // that a number word can use next to its neighbours.
  auto w = words.findall(ascii_lower(response));
  if (!w.empty()) {
    std::string x = py_strip(w[0][0]);
    if (auto v = word_to_num(x); !x.empty() && v) return std::to_string(*v);
  }
  return kInvalid;
}

}  // namespace rvec::eval
