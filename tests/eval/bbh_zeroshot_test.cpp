// bbh_zeroshot scoring: strict-match (the raw response) and the per-subtask flexible extraction
// of lm-eval's bbh/zeroshot/utils.py, with hand-derived expectations.
#include <gtest/gtest.h>

#include "eval/runner.h"
#include "eval/tasks.h"
#include "eval/word2number.h"

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

// lm-eval's NumberParseRegexFilter (object_counting, multistep_arithmetic_two): the first ([-0-9]+)
// match, else its English-number regex on the lower-cased response through word2number's
// word_to_num. Expectations derived by hand from the regex and w2n 1.1 (and checked once against
// Python's `regex` module with w2n).
TEST(BbhZeroshot, NumberWordsFallbackAsLmEval) {
  // Digits first, the first match (group_select 0); a lone "-" is a match too.
  EXPECT_EQ(bbh_number_extract(" There are 7 apples, not 8."), "7");
  EXPECT_EQ(bbh_number_extract(" Twenty-one"), "-");
  EXPECT_EQ(bbh_number_extract(" The answer - is unknown"), "-");
  // Words: whole phrases joined by spaces, "and", "&" and commas.
  EXPECT_EQ(bbh_number_extract(" There are seventeen apples."), "17");
  EXPECT_EQ(bbh_number_extract(" twenty one"), "21");
  EXPECT_EQ(bbh_number_extract(" One hundred and five"), "105");
  EXPECT_EQ(bbh_number_extract(" two thousand three hundred and forty five"), "2345");
  EXPECT_EQ(bbh_number_extract(" forty two million"), "42000000");
  EXPECT_EQ(bbh_number_extract(" zero"), "0");
  EXPECT_EQ(bbh_number_extract(" twelve and fifteen"), "27");  // w2n adds two plain words
  EXPECT_EQ(bbh_number_extract(" nineteen ninety"), "109");
  // (?|teen|ty) is a branch-reset group with no empty branch: "six"/"seven"/"nine" alone and a final
  // "eight" match nothing, so "sixty seven" ends at "sixty" and "seven hundred" is just "hundred".
  EXPECT_EQ(bbh_number_extract(" sixty seven"), "60");
  EXPECT_EQ(bbh_number_extract(" seven hundred"), "100");
  EXPECT_EQ(bbh_number_extract(" eighty eight"), "80");
  EXPECT_EQ(bbh_number_extract(" There are Seven apples."), kInvalid);
  EXPECT_EQ(bbh_number_extract(" eight"), kInvalid);
  // Alternatives are tried in order: a final "fourteen" matches as "four".
  EXPECT_EQ(bbh_number_extract(" Fourteen apples"), "4");
  // No word boundaries: "someone" holds "one" (the first match wins).
  EXPECT_EQ(bbh_number_extract(" Someone has twenty"), "1");
  EXPECT_EQ(bbh_number_extract(" one for two"), "3");  // "for" joins the phrase, w2n drops it: 1 + 2
  EXPECT_EQ(bbh_number_extract(" ten\nfive"), "10");   // newlines do not join
  // Where lm-eval's word_to_num raises (its run stops), rvec reports "[invalid]".
  EXPECT_EQ(bbh_number_extract(" twenty,one"), kInvalid);          // one token "twenty,one": no number word
  EXPECT_EQ(bbh_number_extract(" a thousand and one"), kInvalid);  // nothing before "thousand"
  EXPECT_EQ(bbh_number_extract(" no number here"), kInvalid);

  // Through the task: filtered answer and exact_match against the target.
  Task t = load_task("bbh_zeroshot_object_counting", DataSource(RVEC_DATA_DIR));
  auto s = scored(t, Doc{{"input", "x"}, {"target", "15"}}, " You have fifteen objects.");
  EXPECT_EQ(s.filtered["flexible-extract"], "15");
  EXPECT_EQ(s.metrics["exact_match,flexible-extract"], 1.0);
  EXPECT_EQ(s.metrics["exact_match,strict-match"], 0.0);
  Task m = load_task("bbh_zeroshot_multistep_arithmetic_two", DataSource(RVEC_DATA_DIR));
  EXPECT_EQ(scored(m, Doc{{"input", "x"}, {"target", "0"}}, " It comes to zero.").metrics["exact_match,flexible-extract"],
            1.0);
}

TEST(WordToNum, W2nArithmetic) {
  EXPECT_EQ(word_to_num("three hundred"), 300);
  EXPECT_EQ(word_to_num("two-hundred"), 200);  // '-' is a space
  EXPECT_EQ(word_to_num("Fifty & five"), 55);
  EXPECT_EQ(word_to_num("one hundred twenty"), 120);      // 3 words: 1 * 100 + 20
  EXPECT_EQ(word_to_num("one two three four"), 9);        // 4 words: 1 * 2 + 3 + 4
  EXPECT_EQ(word_to_num("one one one one one"), 1);       // 5 and more: the first
  EXPECT_EQ(word_to_num("twenty three thousand"), 23000);
  EXPECT_EQ(word_to_num("thousand"), 1000);
  // thousand is last, so w2n's remainder is the words after "million": 2e6 + 3e3 + (3 + 1000).
  EXPECT_EQ(word_to_num("two million three thousand"), 2004003);
  // million is last: the remainder is after "billion": 1e9 + 2e6 + (2 + 1e6).
  EXPECT_EQ(word_to_num("one billion two million"), 1003000002);
  EXPECT_EQ(word_to_num("42"), 42);
  // w2n raises: no number word, repeated or misordered multipliers, nothing before a multiplier.
  EXPECT_EQ(word_to_num("and"), std::nullopt);
  EXPECT_EQ(word_to_num("one thousand thousand"), std::nullopt);
  EXPECT_EQ(word_to_num("thousand million"), std::nullopt);
  EXPECT_EQ(word_to_num("million and one"), std::nullopt);
}
