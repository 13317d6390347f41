// `rvec compare RUN_A RUN_B`: two runs (rvec's or lm-eval's samples files, as recorded) compared
// document by document: per task and metric, the paired means, a paired test (exact McNemar for
// 0/1 scores, the seeded paired bootstrap otherwise) and the documents whose scores differ.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eval/lm_eval_io.h"
#include "exp/stats.h"

namespace rvec::experiment {

struct MetricComparison {
  std::string task, metric;
  size_t n = 0;                      // documents scored in both runs
  size_t only_a = 0, only_b = 0;     // documents scored in one run only
  size_t same_prompt = 0;            // of the n, how many had the same prompt (sha256) in both
  double mean_a = 0, mean_b = 0;
  bool binary = true;                // every value 0 or 1: McNemar
  McNemarResult mcnemar;             // binary: b = A right/B wrong, c = A wrong/B right
  BootstrapResult bootstrap;         // non-binary
  double p = 1;                      // the test's two-sided p-value
  std::vector<size_t> differing;     // doc_ids whose value differs
};

// Metrics present in both runs for tasks present in both, sorted by task then metric.
std::vector<MetricComparison> compare_runs(const eval::RunSamples& a, const eval::RunSamples& b);
std::string compare_markdown(const std::vector<MetricComparison>& c, const eval::RunSamples& a,
                             const eval::RunSamples& b, size_t max_listed);
nlohmann::json compare_json(const std::vector<MetricComparison>& c);

}  // namespace rvec::experiment
