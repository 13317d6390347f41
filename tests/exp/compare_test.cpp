// rvec compare: lm-eval's samples fixture against rvec's re-scoring of it (identical), and
// synthetic runs with hand-derived McNemar counts and p-values.
#include "exp/compare.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "core/atomic_output.h"
#include "core/error.h"
#include "eval/runner.h"
#include "test_util.h"

using namespace rvec;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {
const std::string kDir = RVEC_TESTDATA_DIR "/eval/lm_eval/samples_v0.4.9.2";
const std::string kDate = "2026-12-04T15-00-00.123456";
}  // namespace

TEST(Compare, LmEvalRunAgainstItsRvecRescoringIsIdentical) {
  test_util::TempDir d("compare_same");
  std::vector<std::string> files;
  for (auto t : {"gsm8k", "sciq", "bbh_zeroshot_web_of_lies"})
    files.push_back(kDir + "/samples_" + t + "_" + kDate + ".jsonl");
  eval::EvalOptions o;
  o.quiet = true;
  o.out_dir = d.p.string();
  eval::rescore_samples_files(files, o);
  auto a = eval::load_run_samples(kDir);           // lm-eval's format (humaneval too)
  auto b = eval::load_run_samples(d.p.string());   // rvec's format
  auto cs = experiment::compare_runs(a, b);
  ASSERT_EQ(cs.size(), 6u);  // gsm8k and web_of_lies 2 filters each, sciq acc + acc_norm (humaneval not in B)
  for (auto& c : cs) {
    SCOPED_TRACE(c.task + " " + c.metric);
    EXPECT_EQ(c.n, 3u);
    EXPECT_EQ(c.same_prompt, 3u);
    EXPECT_TRUE(c.differing.empty());
    EXPECT_EQ(c.mean_a, c.mean_b);
    EXPECT_EQ(c.p, 1.0);
  }
  // rvec's own lm_eval/ copy reads back as lm-eval's format with the same metrics.
  auto c2 = experiment::compare_runs(a, eval::load_run_samples((d.p / "lm_eval").string()));
  EXPECT_EQ(c2.size(), 6u);
  for (auto& c : c2) EXPECT_TRUE(c.differing.empty()) << c.task << " " << c.metric;
}

TEST(Compare, PairedCountsAndDifferingDocs) {
  test_util::TempDir d("compare_diff");
  // 8 documents; A right on 0-6, B right on 0-1 and 7: b = 5 (A only), c = 1 (B only).
  auto write = [&](const std::string& name, std::vector<int> right) {
    std::string lines;
    for (size_t i = 0; i < 8; i++) {
      double v = std::find(right.begin(), right.end(), int(i)) != right.end() ? 1.0 : 0.0;
      lines += json{{"task", "gsm8k"}, {"doc_id", i}, {"prompt", "p" + std::to_string(i)},
                    {"output", "x"}, {"filtered", {{"strict-match", std::to_string(int(v))}}},
                    {"metrics", {{"exact_match,strict-match", v}}}}.dump() + "\n";
    }
    write_file_atomic(d.p / name, lines);
    return (d.p / name).string();
  };
  auto a = eval::load_run_samples(write("a.jsonl", {0, 1, 2, 3, 4, 5, 6}));
  auto b = eval::load_run_samples(write("b.jsonl", {0, 1, 7}));
  auto cs = experiment::compare_runs(a, b);
  ASSERT_EQ(cs.size(), 1u);
  EXPECT_EQ(cs[0].mcnemar.b, 5);
  EXPECT_EQ(cs[0].mcnemar.c, 1);
  // Exact two-sided: 2 * (C(6,0) + C(6,1)) / 2^6 = 14/64.
  EXPECT_NEAR(cs[0].p, 14.0 / 64.0, 1e-12);
  EXPECT_EQ(cs[0].differing, (std::vector<size_t>{2, 3, 4, 5, 6, 7}));
  EXPECT_DOUBLE_EQ(cs[0].mean_a, 7.0 / 8);
  EXPECT_DOUBLE_EQ(cs[0].mean_b, 3.0 / 8);
  auto md = experiment::compare_markdown(cs, a, b, 2);
  EXPECT_NE(md.find("- 2: 1 (1) → 0 (0)"), std::string::npos) << md;
  EXPECT_NE(md.find("… 4 more"), std::string::npos) << md;
  EXPECT_THROW(eval::load_run_samples((d.p / "none").string()), rvec::Error);
}
