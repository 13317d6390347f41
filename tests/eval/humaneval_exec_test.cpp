// HumanEval execution: the program text, the 164 canonical solutions (all pass), hand-written wrong
// solutions (all fail, with the expected error), and the pass@k estimator against hand-computed values.
#include "eval/humaneval_exec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "eval/passk.h"
#include "core/sha256.h"

using namespace rvec::eval;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<nlohmann::json> read_jsonl(const std::string& text) {
  std::vector<nlohmann::json> rows;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

const std::vector<HumanEvalProblem>& problems() {
  static const std::vector<HumanEvalProblem> ps = [] {
    std::string text = read_file(std::string(RVEC_DATA_DIR) + "/humaneval/HumanEval.jsonl");
    EXPECT_EQ(rvec::sha256_hex(text), "1d49078ba3e2b196b9344535bef34a43021f038fad9561d6ee7c53450609a6a2");
    std::vector<HumanEvalProblem> v;
    for (auto& j : read_jsonl(text)) v.push_back(humaneval_problem(j));
    return v;
  }();
  return ps;
}

// Generous wall-clock limit: these tests check results, not speed, and CI machines are loaded.
SandboxLimits test_limits() {
  SandboxLimits l;
  l.timeout_s = 10;
  return l;
}

}  // namespace

TEST(HumanEvalProgram, ExactlyAsSpecified) {
  EXPECT_EQ(humaneval_program("def f():\n    return 1", "def check(c):\n    assert c() == 1", "f"),
            "def f():\n    return 1\ndef check(c):\n    assert c() == 1\ncheck(f)");
  EXPECT_EQ(humaneval_program("", "", "g"), "\n\ncheck(g)");
}

TEST(HumanEvalProblem, FromJson) {
  auto j = nlohmann::json::parse(
      R"({"task_id":"HumanEval/9","prompt":"p","canonical_solution":"s","test":"t","entry_point":"e"})");
  auto p = humaneval_problem(j);
  EXPECT_EQ(p.task_id, "HumanEval/9");
  EXPECT_EQ(p.prompt, "p");
  EXPECT_EQ(p.canonical_solution, "s");
  EXPECT_EQ(p.test, "t");
  EXPECT_EQ(p.entry_point, "e");
  j.erase("test");
  try {
    humaneval_problem(j);
    ADD_FAILURE() << "expected rvec::Error";
  } catch (const rvec::Error& e) {
    EXPECT_NE(std::string(e.what()).find("HumanEval/9"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'test'"), std::string::npos) << e.what();
  }
}

TEST(HumanEvalExec, AllCanonicalSolutionsPass) {
  const auto& ps = problems();
  ASSERT_EQ(ps.size(), 164u);
  std::vector<HumanEvalCandidate> cands;
  for (const auto& p : ps) cands.push_back({p.prompt + p.canonical_solution, p.test, p.entry_point});
  Sandbox sb(test_limits());
  auto res = execute_humaneval(sb, cands, 4);
  ASSERT_EQ(res.size(), ps.size());
  int passed = 0;
  double slowest = 0;
  for (size_t i = 0; i < ps.size(); ++i) {
    EXPECT_TRUE(res[i].passed) << ps[i].task_id << " (" << sb.mode_name() << "): " << res[i].status() << "\n"
                               << res[i].stderr_tail;
    passed += res[i].passed;
    slowest = std::max(slowest, res[i].seconds);
  }
  EXPECT_EQ(passed, 164);
  RecordProperty("sandbox_mode", sb.mode_name());
  RecordProperty("slowest_seconds", std::to_string(slowest));
}

TEST(HumanEvalExec, WrongSolutionsFail) {
  std::map<std::string, const HumanEvalProblem*> by_id;
  for (const auto& p : problems()) by_id[p.task_id] = &p;
  auto rows = read_jsonl(read_file(std::string(RVEC_TESTDATA_DIR) + "/sandbox/wrong_solutions.jsonl"));
  ASSERT_GE(rows.size(), 10u);
  std::vector<HumanEvalCandidate> cands;
  SandboxLimits l = test_limits();
  l.timeout_s = 2;  // one of them never returns
  for (auto& r : rows) {
    const HumanEvalProblem* p = by_id.at(r["task_id"].get<std::string>());
    cands.push_back({p->prompt + r["completion"].get<std::string>(), p->test, p->entry_point});
  }
  Sandbox sb(l);
  auto res = execute_humaneval(sb, cands, 4);
  for (size_t i = 0; i < rows.size(); ++i) {
    std::string expected = rows[i]["expected_status"];
    EXPECT_FALSE(res[i].passed) << rows[i]["task_id"] << ": " << rows[i]["why"];
    if (expected == "timed out")
      EXPECT_EQ(res[i].status(), "timed out") << rows[i]["task_id"];
    else
      EXPECT_EQ(res[i].status(), "failed: " + expected.substr(0, expected.find(':')))  // the exception's name
          << rows[i]["task_id"] << ": " << rows[i]["why"];
  }
}

TEST(HumanEvalExec, EmptyCompletionsFailEverywhere) {
  // The bare prompt (a function with only a docstring returns None) fails every problem's tests; a sample
  // of 41 problems (every 4th) keeps the test fast.
  const auto& ps = problems();
  std::vector<HumanEvalCandidate> cands;
  std::vector<std::string> ids;
  for (size_t i = 0; i < ps.size(); i += 4) {
    cands.push_back({ps[i].prompt, ps[i].test, ps[i].entry_point});
    ids.push_back(ps[i].task_id);
  }
  Sandbox sb(test_limits());
  auto res = execute_humaneval(sb, cands, 4);
  for (size_t i = 0; i < res.size(); ++i) EXPECT_FALSE(res[i].passed) << ids[i];
}

// ---------------------------------------------------------------- pass@k

TEST(PassAtK, HandComputedValues) {
  EXPECT_DOUBLE_EQ(pass_at_k(5, 2, 1), 0.4);                    // c/n
  EXPECT_NEAR(pass_at_k(10, 3, 5), 1.0 - 21.0 / 252.0, 1e-15);  // 1 - C(7,5)/C(10,5)
  EXPECT_NEAR(pass_at_k(10, 3, 1), 0.3, 1e-15);
  EXPECT_NEAR(pass_at_k(4, 1, 2), 0.5, 1e-15);  // 1 - C(3,2)/C(4,2) = 1 - 3/6
  EXPECT_NEAR(pass_at_k(6, 2, 3), 0.8, 1e-15);  // 1 - C(4,3)/C(6,3) = 1 - 4/20
  EXPECT_EQ(pass_at_k(1, 1, 1), 1.0);
  EXPECT_EQ(pass_at_k(1, 0, 1), 0.0);
  EXPECT_EQ(pass_at_k(10, 0, 10), 0.0);
  EXPECT_EQ(pass_at_k(10, 10, 1), 1.0);
  EXPECT_EQ(pass_at_k(5, 4, 2), 1.0);  // n - c < k: every pair contains a correct sample
  EXPECT_EQ(pass_at_k(10, 1, 10), 1.0);
}

TEST(PassAtK, LargeNIsStable) {
  // 1 - C(187,100)/C(200,100) via log-gamma as an independent reference (the binomials overflow doubles).
  auto lc = [](double n, double k) { return std::lgamma(n + 1) - std::lgamma(k + 1) - std::lgamma(n - k + 1); };
  double ref = 1.0 - std::exp(lc(187, 100) - lc(200, 100));
  EXPECT_NEAR(pass_at_k(200, 13, 100), ref, 1e-12);
  EXPECT_NEAR(pass_at_k(2000, 1, 10), 0.005, 1e-15);  // 1 - C(1999,10)/C(2000,10) = 10/2000
  EXPECT_NEAR(pass_at_k(1000, 500, 1), 0.5, 1e-15);
}

TEST(PassAtK, InvalidArgumentsThrow) {
  EXPECT_THROW(pass_at_k(0, 0, 1), rvec::Error);
  EXPECT_THROW(pass_at_k(5, 6, 1), rvec::Error);
  EXPECT_THROW(pass_at_k(5, -1, 1), rvec::Error);
  EXPECT_THROW(pass_at_k(5, 2, 0), rvec::Error);
  EXPECT_THROW(pass_at_k(5, 2, 6), rvec::Error);
}

TEST(PassAtK, MeanOverProblems) {
  EXPECT_NEAR(mean_pass_at_k({{5, 2}, {5, 0}, {5, 5}}, 1), (0.4 + 0.0 + 1.0) / 3, 1e-15);
  EXPECT_NEAR(mean_pass_at_k({{10, 3}, {4, 1}}, 2), ((1.0 - 21.0 / 45.0) + 0.5) / 2, 1e-15);  // C(7,2)/C(10,2)
  EXPECT_EQ(mean_pass_at_k({}, 1), 0.0);
}
