// The math tasks end to end on a scripted model: per-sample grading, avg@K / pass@K / maj@K with
// hand-derived values, the samples file's per-generation verdicts, rescore and --resume.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "eval/runner.h"
#include "eval/tasks.h"
#include "scripted_model.h"

using namespace rvec::eval;
using rvec::eval::testing::ScriptedModel;

namespace {
EvalOptions opts(size_t limit) {
  EvalOptions o;
  o.limit = limit;
  o.quiet = true;
  o.shipped_data_dir = RVEC_DATA_DIR;
  return o;
}
}  // namespace

TEST(MathRunner, GreedyAime) {
  Task t = load_task("aime24", DataSource(RVEC_DATA_DIR));
  ScriptedModel m;
  // Doc 0 right (boxed), doc 1 wrong, doc 2 right without a box (last number).
  m.gen = [&](const std::string& p) {
    if (p.find(t.docs[0]["problem"].get<std::string>()) != std::string::npos)
      return "so $\\boxed{" + t.docs[0]["answer"].get<std::string>() + "}$<|im_end|>junk";
    if (p.find(t.docs[1]["problem"].get<std::string>()) != std::string::npos) return std::string("\\boxed{1}");
    return "The answer is " + t.docs[2]["answer"].get<std::string>();
  };
  TaskResult r = evaluate_task(m, "aime24", opts(3));
  EXPECT_NEAR(r.metrics.at("acc,none").value, 2.0 / 3, 1e-12);
  EXPECT_EQ(r.samples[0].output.get<std::string>().find("junk"), std::string::npos);  // cut at <|im_end|>
  EXPECT_EQ(r.samples[1].filtered["acc"]["extracted"], "1");
  EXPECT_EQ(r.samples[2].filtered["acc"]["rule"].get<std::string>().rfind("answer_is/", 0), 0u);
  EXPECT_EQ(m.last_gen[0].max_new_tokens, 8192);
}

TEST(MathRunner, SampledMetrics) {
  Task t = load_task("amc23", DataSource(RVEC_DATA_DIR));
  ScriptedModel m;
  // Four samples per doc, chosen by seed (sample j of doc i has seed i*4 + j):
  // doc 0: right, wrong(5), wrong(5), right          -> avg 0.5, pass 1, maj: tie 2-2, first class (right) -> 1
  // doc 1: wrong(7), wrong(7.0), wrong(8), right     -> avg 0.25, pass 1, maj 7 (7.0 same answer) -> 0
  m.gen_req = [&](const GenRequest& q) {
    size_t doc = q.seed / 4, j = q.seed % 4;
    std::string gold = t.docs[doc]["answer"].get<std::string>();
    static const char* d0[] = {"G", "5", "5", "G"};
    static const char* d1[] = {"7", "7.0", "8", "G"};
    std::string a = (doc == 0 ? d0 : d1)[j];
    return "\\boxed{" + (a == "G" ? gold : a) + "}";
  };
  EvalOptions o = opts(2);
  o.samples = 4;
  o.temperature = 0.6;
  TaskResult r = evaluate_task(m, "amc23", o);
  EXPECT_NEAR(r.metrics.at("avg@4,none").value, 0.375, 1e-12);
  EXPECT_NEAR(r.metrics.at("pass@4,none").value, 1.0, 1e-12);
  EXPECT_NEAR(r.metrics.at("maj@4,none").value, 0.5, 1e-12);
  EXPECT_NEAR(r.metrics.at("acc,none").value, 0.5, 1e-12);  // first sample of each doc
  ASSERT_TRUE(r.metrics.at("avg@4,none").stderr_.has_value());
  EXPECT_NEAR(*r.metrics.at("avg@4,none").stderr_, 0.125, 1e-12);  // sd(0.5, 0.25) / sqrt(2)
  EXPECT_EQ(r.samples[1].filtered["acc"]["correct"], nlohmann::json({false, false, false, true}));
  EXPECT_EQ(r.samples[1].filtered["acc"]["majority"], "7");
  // --top-k reaches the model with every request, and is recorded in the task's generation kwargs.
  o.top_k = 5;
  evaluate_task(m, "amc23", o);
  ASSERT_FALSE(m.last_gen.empty());
  EXPECT_EQ(m.last_gen[0].top_k, 5);
  EvalOptions greedy = opts(1);
  greedy.top_k = 5;
  EXPECT_THROW(check_sampling_options(greedy, {"amc23"}), rvec::Error);
}

TEST(MathRunner, SamplesNeedTemperatureAndRescoreMatches) {
  EvalOptions o = opts(2);
  o.samples = 2;
  EXPECT_THROW(check_sampling_options(o, {"math500"}), rvec::Error);
  o.temperature = 0.7;
  EXPECT_NO_THROW(check_sampling_options(o, {"math500", "minerva_math500"}));
  EXPECT_THROW(check_sampling_options(o, {"gsm8k"}), rvec::Error);

  std::filesystem::path dir = std::filesystem::temp_directory_path() / "rvec_math_runner_test";
  std::filesystem::remove_all(dir);
  ScriptedModel m;
  m.gen = [](const std::string&) {
    return std::string("Final Answer: The final answer is $\\left( 3, \\frac{\\pi}{2} \\right)$. I hope it is correct.");
  };
  EvalOptions g = opts(2);
  g.out_dir = dir.string();
  EvalResults r = run_eval(m, {"minerva_math500"}, g);
  const TaskResult& tr = r.tasks[0];
  // Doc 0's answer is this tuple: Math-Verify reads it; minerva's exact_match needs sympy's parse_latex,
  // which reads no tuples (reference behaviour, see grade_cases.jsonl), so it scores 0.
  EXPECT_EQ(tr.samples[0].metrics.at("exact_match,none"), 0.0);
  EXPECT_EQ(tr.samples[0].metrics.at("math_verify,none"), 1.0);
  EXPECT_EQ(tr.samples[1].metrics.at("math_verify,none"), 0.0);
  std::string samples;
  for (auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().filename().string().rfind("samples_minerva_math500", 0) == 0) samples = e.path().string();
  ASSERT_FALSE(samples.empty());
  EvalOptions ro = opts(2);
  EvalResults again = rescore_samples_file(samples, ro);
  EXPECT_EQ(again.tasks[0].metrics.at("exact_match,none").value, tr.metrics.at("exact_match,none").value);
  EXPECT_EQ(again.tasks[0].metrics.at("math_verify,none").value, tr.metrics.at("math_verify,none").value);
  // --resume: nothing is generated again.
  ScriptedModel m2;
  g.resume = true;
  run_eval(m2, {"minerva_math500"}, g);
  EXPECT_EQ(m2.gen_requests, 0u);
  std::filesystem::remove_all(dir);
}
