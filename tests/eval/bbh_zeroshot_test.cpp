// bbh_zeroshot scoring: strict-match (the raw response) and the per-subtask flexible extraction
// of lm-eval's bbh/zeroshot/utils.py, with hand-derived expectations.
#include <gtest/gtest.h>

#include "eval/runner.h"
#include "eval/tasks.h"

using namespace rvec::eval;

namespace {
Sample scored(const Task& t, const Doc& doc, const std::string& response) {
  Sample s;
  s.task = t.name;
  s.doc = doc;
  s.output = response;
  EvalOptions o;
  score_sample(t, s, o);
  return s;
}
std::string option_text(const Doc& d, char letter) {
  std::string in = d["input"], key = std::string("(") + letter + ") ";
  auto p = in.find(key);
  return in.substr(p + 4, in.find('\n', p) - p - 4);
}
}  // namespace

TEST(BbhZeroshot, MultipleChoiceFallbacks) {
  Task t = load_task("bbh_zeroshot_date_understanding", DataSource(RVEC_DATA_DIR));
  const Doc& d = t.docs[0];
  EXPECT_EQ(scored(t, d, " The answer is (B).").filtered["flexible-extract"], "(B)");
  // No "(X)": the text of an option (normalised: lower case, no punctuation) maps to its letter.
  EXPECT_EQ(scored(t, d, " I would say " + option_text(d, 'C') + " for sure").filtered["flexible-extract"], "(C)");
  // Then ": X".
  EXPECT_EQ(scored(t, d, " Final answer: D").filtered["flexible-extract"], "(D)");
  EXPECT_EQ(scored(t, d, " no idea").filtered["flexible-extract"], kInvalid);
  // Gold-matching extraction scores 1 on flexible-extract.
  std::string gold = d["target"];
  auto s = scored(t, d, " So it is " + gold + ".");
  EXPECT_EQ(s.metrics["exact_match,flexible-extract"], 1.0);
  // strict-match compares the whole response (after "\.$", ",", "\n", "\\", "\"" removal and lower-casing).
  EXPECT_EQ(scored(t, d, gold + ".").metrics["exact_match,strict-match"], 1.0);
  EXPECT_EQ(scored(t, d, " " + gold + ".").metrics["exact_match,strict-match"], 0.0);  // leading space stays
}

TEST(BbhZeroshot, BooleanYesNoNumbersWordSort) {
  DataSource ds(RVEC_DATA_DIR);
  Task b = load_task("bbh_zeroshot_boolean_expressions", ds);
  Doc bd{{"input", "True and False is"}, {"target", "False"}};
  auto s = scored(b, bd, " It evaluates to False, clearly.");
  EXPECT_EQ(s.filtered["flexible-extract"], "False");
  EXPECT_EQ(s.metrics["exact_match,flexible-extract"], 1.0);
  EXPECT_EQ(s.metrics["exact_match,strict-match"], 0.0);

  Task n = load_task("bbh_zeroshot_navigate", ds);
  EXPECT_EQ(scored(n, Doc{{"input", "x"}, {"target", "No"}}, " no, you do not return").metrics["exact_match,flexible-extract"],
            1.0);  // ignore_case

  Task m = load_task("bbh_zeroshot_multistep_arithmetic_two", ds);
  EXPECT_EQ(scored(m, Doc{{"input", "x"}, {"target", "-219"}}, " = -219 is the result").filtered["flexible-extract"], "-219");

  Task w = load_task("bbh_zeroshot_word_sorting", ds);
  Doc wd{{"input", "Sort the following words alphabetically: List: oven costume counterpart"},
         {"target", "costume counterpart oven"}};
  // Words in the order of their last occurrence.
  auto ws = scored(w, wd, " counterpart oven costume. Sorted: costume counterpart oven");
  EXPECT_EQ(ws.filtered["flexible-extract"], "costume counterpart oven");
  EXPECT_EQ(ws.metrics["exact_match,flexible-extract"], 1.0);
}
