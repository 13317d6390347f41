// End-to-end tests of the math tasks and `rvec grade`: every math task runs with --limit on the tiny
// Qwen2 fixture model (greedy and --samples), and `rvec grade` agrees with the reference graders'
// verdicts of tests/data/math/grade_cases.jsonl through the CLI (--gold/--output and --jsonl).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <nlohmann/json.hpp>
#include <string>

#include "test_util.h"

namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using rvec::test_util::read_jsonl;
using rvec::test_util::shell_quote;
using rvec::test_util::TempDir;
const fs::path kModel = fs::path(RVEC_TESTDATA_DIR) / "fixtures/qwen2_tiny_bf16_gqa8x2/model";

rvec::test_util::CommandResult run(const std::string& args) {
  return rvec::test_util::run_shell(std::string(RVEC_BIN) + " " + args + " 2>&1");
}

fs::path find_file(const fs::path& dir, const std::string& prefix, const std::string& suffix) {
  for (auto& e : fs::directory_iterator(dir)) {
    std::string n = e.path().filename().string();
    if (n.rfind(prefix, 0) == 0 && n.ends_with(suffix)) return e.path();
  }
  return {};
}
}  // namespace

TEST(MathCli, GradeOneAnswer) {
  auto r = run("grade --scheme qwen --gold " + shell_quote("\\frac{1}{2}") + " --output " +
               shell_quote("so the answer is $\\boxed{0.5}$."));
  ASSERT_EQ(r.rc, 0) << r.out;
  json j = json::parse(r.out);
  EXPECT_EQ(j["correct"], true);
  EXPECT_EQ(j["extracted"], "0.5");
  EXPECT_EQ(j["gold_normalized"], "\\frac{1}{2}");
  EXPECT_TRUE(j["rule"].is_string());
}

TEST(MathCli, GradeJsonlMatchesReferenceRows) {
  TempDir d("grade");
  std::map<std::string, std::vector<json>> by_scheme;
  for (auto& row : read_jsonl(fs::path(RVEC_TESTDATA_DIR) / "math/grade_cases.jsonl"))
    if (by_scheme[row["scheme"]].size() < 25) by_scheme[row["scheme"]].push_back(row);
  ASSERT_EQ(by_scheme.size(), 4u);
  for (auto& [scheme, rows] : by_scheme) {
    fs::path in = d.p / (scheme + ".jsonl");
    {
      std::ofstream f(in);
      for (auto& row : rows) f << json{{"gold", row["gold"]}, {"output", row["output"]}}.dump() << "\n";
    }
    auto r = run("grade --scheme " + scheme + " --jsonl " + in.string());
    ASSERT_EQ(r.rc, 0) << r.out;
    std::istringstream lines(r.out);
    std::string line;
    size_t i = 0;
    while (std::getline(lines, line)) {
      ASSERT_LT(i, rows.size());
      EXPECT_EQ(json::parse(line)["correct"], rows[i]["correct"]) << scheme << " " << rows[i].dump();
      i++;
    }
    EXPECT_EQ(i, rows.size()) << scheme;
  }
}

TEST(MathCli, GradeClearErrors) {
  auto r = run("grade --scheme sympy --gold 1 --output 1");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("unknown grading scheme 'sympy'"), std::string::npos) << r.out;
  r = run("grade --scheme qwen --jsonl /nonexistent/rows.jsonl");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("/nonexistent/rows.jsonl"), std::string::npos) << r.out;
  TempDir d("grade_err");
  {
    std::ofstream f(d.p / "bad.jsonl");
    f << "{\"gold\": \"1\", \"output\": \"1\"}\n{\"gold\": 1}\n";
  }
  r = run("grade --scheme qwen --jsonl " + (d.p / "bad.jsonl").string());
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("bad.jsonl:2"), std::string::npos) << r.out;
}

TEST(MathCli, EveryMathTaskRunsOnTheTinyModel) {
  if (!fs::exists(kModel)) GTEST_SKIP() << "no fixture model at " << kModel;
  auto l = run("eval --list-tasks");
  for (auto n : {"math500\n", "aime24\n", "aime25\n", "amc23\n", "minerva_math\n", "olympiadbench\n",
                 "minerva_math500\n", "hendrycks_math500\n"})
    EXPECT_NE(l.out.find(n), std::string::npos) << n;
  TempDir d("math_e2e");
  auto r = run("eval " + kModel.string() +
               " --tasks math500,aime24,aime25,amc23,minerva_math,olympiadbench,minerva_math500,hendrycks_math500"
               " --limit 1 --max-gen-tokens 4 --quiet --out " + (d.p / "out").string());
  ASSERT_EQ(r.rc, 0) << r.out;
  json j = json::parse(std::ifstream(find_file(d.p / "out", "results_", ".json")));
  for (auto t : {"math500", "aime24", "aime25", "amc23", "minerva_math", "olympiadbench"})
    EXPECT_TRUE(j["results"][t].contains("acc,none")) << t;
  EXPECT_TRUE(j["results"]["minerva_math500"].contains("exact_match,none"));
  EXPECT_TRUE(j["results"]["minerva_math500"].contains("math_verify,none"));
  EXPECT_TRUE(j["results"]["hendrycks_math500"].contains("exact_match,none"));
  EXPECT_EQ(j["n-shot"]["minerva_math500"], 4);
  // Sampled: two generations per problem, reproducible for the seed.
  auto s = run("eval " + kModel.string() + " --tasks aime24 --limit 2 --max-gen-tokens 4 --samples 2 --temperature 0.7"
               " --seed 3 --quiet --out " + (d.p / "s1").string());
  ASSERT_EQ(s.rc, 0) << s.out;
  auto s2 = run("eval " + kModel.string() + " --tasks aime24 --limit 2 --max-gen-tokens 4 --samples 2 --temperature 0.7"
                " --seed 3 --quiet --out " + (d.p / "s2").string());
  ASSERT_EQ(s2.rc, 0) << s2.out;
  json a = json::parse(std::ifstream(find_file(d.p / "s1", "results_", ".json")));
  for (auto k : {"avg@2,none", "pass@2,none", "maj@2,none", "acc,none"}) EXPECT_TRUE(a["results"]["aime24"].contains(k)) << k;
  auto la = read_jsonl(find_file(d.p / "s1", "samples_aime24_", ".jsonl")), lb = read_jsonl(find_file(d.p / "s2", "samples_aime24_", ".jsonl"));
  ASSERT_EQ(la.size(), 2u);
  EXPECT_EQ(la[0]["output"].size(), 2u);
  EXPECT_EQ(la[0]["filtered"]["acc"]["correct"].size(), 2u);
  for (size_t i = 0; i < 2; i++) EXPECT_EQ(la[i]["output"], lb[i]["output"]);
  // aime24's default budget (8192 tokens) does not fit the fixture's 4096-token context: a clear error,
  // not a prompt truncated to nothing.
  auto big = run("eval " + kModel.string() + " --tasks aime24 --limit 1 --quiet --out " + (d.p / "big").string());
  EXPECT_NE(big.rc, 0);
  EXPECT_NE(big.out.find("lower --max-gen-tokens"), std::string::npos) << big.out;
}
