// toy_arith_boxed: the toy family's problems through the math pipeline (hand-derived verdicts).
#include <gtest/gtest.h>

#include "eval/runner.h"
#include "eval/tasks.h"
#include "exp/tasks.h"

using namespace rvec;

TEST(ToyMath, BoxedVariantScoresThroughTheMathPipeline) {
  experiment::register_toy_arith();
  eval::Task t = eval::load_task("toy_arith_boxed", eval::DataSource(RVEC_DATA_DIR));
  ASSERT_FALSE(t.docs.empty());
  const eval::Doc& doc = t.docs[0];
  std::string ans = doc.at("answer").get<std::string>();
  std::string gold = eval::py_strip(ans.substr(ans.rfind("####") + 4));
  EXPECT_NE(t.doc_to_text(doc).find("\\boxed{}"), std::string::npos);
  eval::EvalOptions o;
  auto score = [&](const std::string& out) {
    eval::Sample s;
    s.task = t.name;
    s.doc = doc;
    s.output = out;
    eval::score_sample(t, s, o);
    return s.metrics.at("acc,none");
  };
  EXPECT_EQ(score("so \\boxed{" + gold + "}"), 1.0);
  EXPECT_EQ(score("work... #### " + gold), 1.0);  // no box: the toolkit's last-number fallback
  EXPECT_EQ(score("\\boxed{" + gold + "1}"), 0.0);
}
