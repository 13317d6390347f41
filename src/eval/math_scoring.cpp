#include "eval/math_scoring.h"

#include "core/error.h"
#include "eval/passk.h"

namespace rvec::eval {

namespace {
std::vector<std::string> outputs_of(const Task& t, const Sample& s) {
  if (s.output.is_string()) return {s.output.get<std::string>()};
  std::vector<std::string> outs;
  if (s.output.is_array())
    for (auto& o : s.output)
      if (o.is_string()) outs.push_back(o.get<std::string>());
  if (outs.empty() || outs.size() != s.output.size())
    fail("{} doc {}: output must be a string or a non-empty list of strings", t.name, s.doc_id);
  return outs;
}

// Index of the representative of the majority class of equivalent answers, or -1 if none voted.
int majority(math::Scheme scheme, const std::vector<math::GradeResult>& g) {
  std::vector<size_t> reps, counts;
  for (size_t i = 0; i < g.size(); i++) {
    if (g[i].extracted.empty()) continue;
    bool placed = false;
    for (size_t c = 0; c < reps.size() && !placed; c++)
      if (math::same_answer(scheme, g[reps[c]].extracted, g[i].extracted)) counts[c]++, placed = true;
    if (!placed) reps.push_back(i), counts.push_back(1);
  }
  if (reps.empty()) return -1;
  size_t best = 0;
  for (size_t c = 1; c < reps.size(); c++)
    if (counts[c] > counts[best]) best = c;
  return int(reps[best]);
}

std::string prefix(const Task& t, size_t mi) { return mi == 0 ? "" : t.math_metrics[mi].name + "_"; }
}  // namespace

std::vector<std::string> math_metric_names(const Task& t, int samples) {
  std::vector<std::string> names;
  for (size_t mi = 0; mi < t.math_metrics.size(); mi++) {
    names.push_back(t.math_metrics[mi].name);
    if (samples > 1)
      for (const char* kind : {"avg", "pass", "maj"})
        names.push_back(prefix(t, mi) + kind + "@" + std::to_string(samples));
  }
  return names;
}

void score_math_sample(const Task& t, Sample& s) {
  auto outs = outputs_of(t, s);
  const bool multi = !s.output.is_string();
  s.filtered = nlohmann::json::object();
  s.metrics.clear();
  s.target = t.math_metrics.empty() ? "" : t.math_metrics[0].gold(s.doc);
  for (size_t mi = 0; mi < t.math_metrics.size(); mi++) {
    const MathMetric& m = t.math_metrics[mi];
    std::string gold = m.gold(s.doc);
    std::vector<math::GradeResult> g;
    for (auto& o : outs) g.push_back(math::grade(m.scheme, gold, o, m.data_name));
    if (!multi) {
      s.filtered[m.name] = g[0].to_json();
      s.metrics[m.name + ",none"] = g[0].correct ? 1.0 : 0.0;
      continue;
    }
    nlohmann::json ex = nlohmann::json::array(), ok = nlohmann::json::array(), rule = nlohmann::json::array();
    int c = 0;
    for (auto& r : g) {
      ex.push_back(r.extracted);
      ok.push_back(r.correct);
      rule.push_back(r.rule);
      c += r.correct;
    }
    int n = int(g.size());
    int maj = majority(m.scheme, g);
    s.filtered[m.name] = {{"extracted", ex}, {"correct", ok}, {"rule", rule}, {"gold_normalized", g[0].gold_normalized},
                          {"majority", maj < 0 ? nlohmann::json(nullptr) : nlohmann::json(g[size_t(maj)].extracted)}};
    std::string p = prefix(t, mi), k = std::to_string(n);
    s.metrics[m.name + ",none"] = g[0].correct ? 1.0 : 0.0;
    s.metrics[p + "avg@" + k + ",none"] = double(c) / n;
    s.metrics[p + "pass@" + k + ",none"] = pass_at_k(n, c, n);
    s.metrics[p + "maj@" + k + ",none"] = maj >= 0 && g[size_t(maj)].correct ? 1.0 : 0.0;
  }
}

}  // namespace rvec::eval
