#include "exp/compare.h"

#include <fmt/format.h>

#include <cmath>
#include <set>

#include "core/error.h"

namespace rvec::experiment {

std::vector<MetricComparison> compare_runs(const eval::RunSamples& a, const eval::RunSamples& b) {
  std::vector<MetricComparison> out;
  for (auto& [task, docs_a] : a) {
    auto itb = b.find(task);
    if (itb == b.end()) continue;
    const auto& docs_b = itb->second;
    std::set<std::string> metrics;
    for (auto& [id, r] : docs_a)
      for (auto& [k, v] : r.metrics) metrics.insert(k);
    for (auto& m : metrics) {
      MetricComparison c;
      c.task = task, c.metric = m;
      std::vector<double> va, vb;
      for (auto& [id, ra] : docs_a) {
        auto ma = ra.metrics.find(m);
        if (ma == ra.metrics.end()) continue;
        auto rb = docs_b.find(id);
        if (rb == docs_b.end() || !rb->second.metrics.count(m)) {
          c.only_a++;
          continue;
        }
        double x = ma->second, y = rb->second.metrics.at(m);
        va.push_back(x), vb.push_back(y);
        if (!ra.prompt_hash.empty() && ra.prompt_hash == rb->second.prompt_hash) c.same_prompt++;
        if (x != y) c.differing.push_back(id);
        if ((x != 0 && x != 1) || (y != 0 && y != 1)) c.binary = false;
      }
      for (auto& [id, rb] : docs_b)
        if (rb.metrics.count(m) && (!docs_a.count(id) || !docs_a.at(id).metrics.count(m))) c.only_b++;
      if (va.empty()) continue;
      c.n = va.size();
      c.mean_a = mean(va), c.mean_b = mean(vb);
      if (c.binary) {
        c.mcnemar = mcnemar(va, vb);
        c.p = c.mcnemar.p_exact;
      } else {
        c.bootstrap = paired_bootstrap(va, vb);
        c.p = c.bootstrap.p;
      }
      out.push_back(std::move(c));
    }
  }
  return out;
}

std::string compare_markdown(const std::vector<MetricComparison>& cs, const eval::RunSamples& a,
                             const eval::RunSamples& b, size_t max_listed) {
  std::string md =
      "|task|metric|n|A|B|B−A|test|p|differing docs|same prompt|\n|---|---|---:|---:|---:|---:|---|---:|---:|---:|\n";
  for (auto& c : cs)
    md += fmt::format("|{}|{}|{}|{:.4f}|{:.4f}|{:+.4f}|{}|{:.4g}|{}|{}/{}|\n", c.task, c.metric, c.n, c.mean_a, c.mean_b,
                      c.mean_b - c.mean_a,
                      c.binary ? fmt::format("McNemar b={} c={}", c.mcnemar.b, c.mcnemar.c) : std::string("bootstrap"),
                      c.p, c.differing.size(), c.same_prompt, c.n);
  for (auto& c : cs) {
    if (c.differing.empty()) continue;
    md += fmt::format("\n{} {} — documents that differ (doc_id: A → B):\n", c.task, c.metric);
    std::string filter = c.metric.substr(c.metric.find(',') + 1);
    for (size_t i = 0; i < c.differing.size() && i < max_listed; i++) {
      size_t id = c.differing[i];
      auto& ra = a.at(c.task).at(id);
      auto& rb = b.at(c.task).at(id);
      auto ans = [&](const eval::DocRecord& r) {
        auto it = r.answers.find(filter);
        std::string s = it == r.answers.end() ? "" : it->second;
        if (s.size() > 60) s = s.substr(0, 57) + "...";
        for (auto& ch : s)
          if (ch == '\n') ch = ' ';
        return s;
      };
      md += fmt::format("- {}: {} ({}) → {} ({}){}\n", id, ra.metrics.at(c.metric), ans(ra), rb.metrics.at(c.metric), ans(rb),
                        ra.prompt_hash == rb.prompt_hash ? "" : " [prompts differ]");
    }
    if (c.differing.size() > max_listed) md += fmt::format("- … {} more\n", c.differing.size() - max_listed);
  }
  return md;
}

nlohmann::json compare_json(const std::vector<MetricComparison>& cs) {
  nlohmann::json out = nlohmann::json::array();
  for (auto& c : cs) {
    nlohmann::json e = {{"task", c.task},         {"metric", c.metric},       {"n", c.n},
                        {"only_a", c.only_a},     {"only_b", c.only_b},       {"same_prompt", c.same_prompt},
                        {"mean_a", c.mean_a},     {"mean_b", c.mean_b},       {"delta", c.mean_b - c.mean_a},
                        {"test", c.binary ? "mcnemar_exact" : "paired_bootstrap"}, {"p", c.p},
                        {"differing", c.differing}};
    if (c.binary) e["mcnemar"] = {{"b", c.mcnemar.b}, {"c", c.mcnemar.c}};
    else e["bootstrap"] = {{"ci_low", c.bootstrap.ci_low}, {"ci_high", c.bootstrap.ci_high}};
    out.push_back(e);
  }
  return out;
}

}  // namespace rvec::experiment
