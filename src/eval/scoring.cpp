#include "eval/scoring.h"

#include <cmath>

#include "core/error.h"

namespace rvec::eval {

std::string regex_filter(const std::string& response, const PyRegex& re, int group_select,
                         const std::string& fallback) {
  auto matches = re.findall(response);
  if (matches.empty()) return fallback;
  long idx = group_select < 0 ? long(matches.size()) + group_select : group_select;
  if (idx < 0 || idx >= long(matches.size())) return fallback;
  const auto& m = matches[size_t(idx)];
  std::string picked;
  if (m.size() == 1) {
    picked = m[0];
  } else {
    bool found = false;
    for (auto& g : m)
      if (!g.empty()) {
        picked = g, found = true;
        break;
      }
    if (!found) return fallback;
  }
  return py_strip(picked);
}

std::string exact_match_normalize(const std::string& s, const ExactMatchOptions& o) {
  std::string r = s;
  for (auto& pat : o.regexes_to_ignore) r = PyRegex(pat).sub(r, "");
  if (o.ignore_case) r = py_lower(r);  // HF exact_match: np.char.lower, i.e. str.lower
  if (o.ignore_punctuation) {
    static const std::string punct = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";  // string.punctuation
    std::string t;
    for (char c : r)
      if (punct.find(c) == std::string::npos) t += c;
    r = t;
  }
  return r;
}

double exact_match(const std::string& prediction, const std::string& reference, const ExactMatchOptions& o) {
  return exact_match_normalize(prediction, o) == exact_match_normalize(reference, o) ? 1.0 : 0.0;
}

double mean(const std::vector<double>& v) {
  if (v.empty()) return 0.0;
  double s = 0;
  for (double x : v) s += x;
  return s / double(v.size());
}

std::optional<double> mean_stderr(const std::vector<double>& v) {
  if (v.size() < 2) return std::nullopt;
  double mu = mean(v), ss = 0;
  for (double x : v) ss += (x - mu) * (x - mu);
  return std::sqrt(ss / double(v.size() - 1)) / std::sqrt(double(v.size()));
}

double pooled_stderr(const std::vector<double>& stderrs, const std::vector<size_t>& sizes) {
  if (stderrs.size() != sizes.size()) fail("pooled_stderr: {} stderrs for {} sizes", stderrs.size(), sizes.size());
  double num = 0, total = 0;
  for (size_t i = 0; i < sizes.size(); i++) {
    double n = double(sizes[i]);
    num += (n - 1) * stderrs[i] * stderrs[i] * n;
    total += n;
  }
  double denom = total - double(sizes.size());
  if (denom <= 0 || total <= 0) return 0.0;
  return std::sqrt(num / denom / total);
}

}  // namespace rvec::eval
