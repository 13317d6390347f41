// The math answer checkers against tests/data/math/grade_cases.jsonl: (gold, output) pairs whose
// verdicts (and, where the scheme exposes them, extracted/normalised answers) were produced by
// running the reference graders themselves (Qwen2.5-Math evaluation/parser.py + grader.py, lm-eval
// minerva_math/hendrycks_math utils.py, Math-Verify 0.8.0), each row citing the spec rule it exercises
// (../shared/spec/math-eval.md). Rows listed in grade_known_divergences.jsonl are cases where rvec
// is known to differ (README "Math reasoning evaluation", limits); they must still differ, so the
// list cannot go stale silently.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "core/error.h"
#include "eval/math/grade.h"
#include "eval/math/qwen_strip.h"
#include "eval/math/expr.h"

using nlohmann::json;
using namespace rvec::eval::math;

namespace {
std::vector<json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  std::vector<json> rows;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) rows.push_back(json::parse(line));
  return rows;
}
std::string key(const json& r) {
  return r["scheme"].get<std::string>() + "\x1f" + r.value("data_name", std::string("math")) + "\x1f" +
         r["gold"].get<std::string>() + "\x1f" + r["output"].get<std::string>();
}
}  // namespace

TEST(MathGrade, AgreesWithReferenceGraders) {
  auto rows = read_jsonl(std::string(RVEC_TESTDATA_DIR) + "/math/grade_cases.jsonl");
  ASSERT_GE(rows.size(), 300u);
  std::map<std::string, std::string> known;
  for (auto& d : read_jsonl(std::string(RVEC_TESTDATA_DIR) + "/math/grade_known_divergences.jsonl"))
    known[key(d)] = d["why"].get<std::string>();
  size_t agree = 0, diverge_ok = 0;
  std::set<std::string> seen_known;
  for (auto& r : rows) {
    Scheme s = parse_scheme(r["scheme"]);
    GradeResult g = grade(s, r["gold"], r["output"], r.value("data_name", std::string("math")));
    bool same = g.correct == r["correct"].get<bool>();
    if (same && s != Scheme::MathVerify && r.contains("extracted")) same = g.extracted == r["extracted"].get<std::string>();
    if (same && r.contains("gold_normalized")) same = g.gold_normalized == r["gold_normalized"].get<std::string>();
    auto k = known.find(key(r));
    if (k != known.end()) {
      seen_known.insert(k->first);
      EXPECT_FALSE(same) << "listed as a known divergence but now agrees (remove it from the list): "
                         << r.dump();
      diverge_ok += !same;
      continue;
    }
    EXPECT_TRUE(same) << r["rule"].get<std::string>() << "\n  case: " << r.dump() << "\n  rvec: " << g.to_json().dump();
    agree += same;
  }
  EXPECT_EQ(seen_known.size(), known.size()) << "a known divergence matches no case";
  std::cout << agree << " agreeing cases, " << diverge_ok << " known divergences\n";
}

TEST(MathGrade, HandDerivedStripString) {
  // Spec A5, step by step.
  EXPECT_EQ(qwen_strip_string("27.0", false), "27");                      // step 20
  EXPECT_EQ(qwen_strip_string("\\dfrac{1}{2}", false), "\\frac{1}{2}");   // step 4
  EXPECT_EQ(qwen_strip_string("\\left( 1, 2 \\right)", false), "(1,2)");  // steps 5, 24
  EXPECT_EQ(qwen_strip_string("k = 3", false), "3");                      // step 22
  EXPECT_EQ(qwen_strip_string("abc=3", false), "abc=3");                  // step 22 (long lhs)
  EXPECT_EQ(qwen_strip_string("\\frac12", false), "\\frac{1}{2}");        // step 25
  EXPECT_EQ(qwen_strip_string("3/4", false), "\\frac{3}{4}");             // step 26
  EXPECT_EQ(qwen_strip_string("\\pm 1", false), "\\1");                   // D: "pm" is a unit word
  EXPECT_EQ(qwen_strip_string("5 cm", true), "5cm");                      // skip_unit keeps units
  EXPECT_EQ(qwen_strip_string("\\text{Brandon}", false), "Bron");         // step 18 deletes "and"
}

TEST(MathGrade, BoundedComparison) {
  // A hostile, deeply nested output is refused by the expression reader and counts as wrong.
  // (Its value, 2^(1/2^300), rounds to 1: only the limit stops it from matching.)
  std::string nested;
  for (int i = 0; i < 300; i++) nested += "\\sqrt{";
  nested += "2" + std::string(300, '}');
  GradeResult g = grade(Scheme::Qwen, "1", "\\boxed{" + nested + "}");
  EXPECT_FALSE(g.correct);
  EXPECT_TRUE(g.limit) << g.to_json().dump();
  ParseResult r = parse_expression(nested);
  EXPECT_FALSE(r.value);
  EXPECT_TRUE(r.limit);
}

TEST(MathGrade, SchemeNamesAreChecked) {
  EXPECT_THROW(parse_scheme("sympy"), rvec::Error);
  EXPECT_EQ(std::string(scheme_name(parse_scheme("math_verify"))), "math_verify");
}
