// Filters and metrics on tricky outputs; expected values derived by hand from Python `re` /
// lm-eval semantics (and checked once with python3 where noted).
#include <gtest/gtest.h>

#include <cmath>

#include "eval/pyregex.h"
#include "eval/scoring.h"

using namespace rvec::eval;

namespace {
const char* kStrict = "#### (\\-?[0-9\\.\\,]+)";
const char* kFlex = "(-?[$0-9.,]{2,})|(-?[0-9]+)";
const char* kCotStrict = "The answer is (\\-?[0-9\\.\\,]+).";
const char* kBbh = "(?<=the answer is )(.*)(?=.)";
ExactMatchOptions gsm() {
  ExactMatchOptions o;
  o.ignore_case = true;
  o.regexes_to_ignore = {",", "\\$", "(?s).*#### ", "\\.$"};
  return o;
}
}  // namespace

TEST(PyRegex, FindallGroupsAndEmptyMatches) {
  // re.findall('a*', 'baaa') == ['', 'aaa', ''] (Python >= 3.7)
  auto m = PyRegex("a*").findall("baaa");
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0][0], "");
  EXPECT_EQ(m[1][0], "aaa");
  EXPECT_EQ(m[2][0], "");
  // re.sub('x*', '-', 'abxd') == '-a-b--d-'
  EXPECT_EQ(PyRegex("x*").sub("abxd", "-"), "-a-b--d-");
  // two groups -> tuples with "" for the group that did not take part
  auto f = PyRegex(kFlex).findall("I have 3 apples and $1,000.");
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0], (std::vector<std::string>{"", "3"}));
  EXPECT_EQ(f[1], (std::vector<std::string>{"$1,000.", ""}));
  EXPECT_THROW(PyRegex("(unclosed"), std::exception);
  EXPECT_EQ(PyRegex::escape("a.b(c)"), "a\\.b\\(c\\)");
}

TEST(PyRegex, InvalidUtf8DoesNotThrow) {
  std::string bad = "#### 12 \xff\xfe";
  EXPECT_EQ(regex_filter(bad, PyRegex(kStrict)), "12");
}

TEST(Filters, Gsm8kStrictMatch) {
  PyRegex re(kStrict);
  EXPECT_EQ(regex_filter("5 + 13 = 18 apples.\n#### 18", re), "18");
  EXPECT_EQ(regex_filter("so #### -1,234.5\n", re), "-1,234.5");
  EXPECT_EQ(regex_filter("#### $1,000.", re), kInvalid);  // '$' is not in the class
  EXPECT_EQ(regex_filter("The answer is 18.", re), kInvalid);
  EXPECT_EQ(regex_filter("#### 7\n#### 8", re), "7");  // group_select 0: first match
}

TEST(Filters, FlexibleExtractTakesLastNumber) {
  PyRegex re(kFlex);
  EXPECT_EQ(regex_filter("I have 3 apples and $1,000.", re, -1), "$1,000.");
  EXPECT_EQ(regex_filter("from -3 to -12 degrees", re, -1), "-12");
  EXPECT_EQ(regex_filter("It costs 5.", re, -1), "5.");
  EXPECT_EQ(regex_filter("no number here", re, -1), kInvalid);
  EXPECT_EQ(regex_filter("x 7 y", re, -1), "7");  // single digit only matches the 2nd group
}

TEST(Filters, CotStrictDotMatchesAnyCharacter) {
  PyRegex re(kCotStrict);
  EXPECT_EQ(regex_filter("So 6 trees. The answer is 6.", re), "6");
  EXPECT_EQ(regex_filter("The answer is 1,000.", re), "1,000");
  // Upstream quirk (python3 agrees): without a trailing character the final '.' eats a digit.
  EXPECT_EQ(regex_filter("The answer is 42", re), "4");
  EXPECT_EQ(regex_filter("the answer is 42.", re), kInvalid);  // case-sensitive
  EXPECT_EQ(regex_filter("The answer is: 42.", re), kInvalid);
}

TEST(Filters, BbhGetAnswerLookbehind) {
  PyRegex re(kBbh);
  EXPECT_EQ(regex_filter("A is True. So the answer is (B).", re), "(B)");
  EXPECT_EQ(regex_filter("So the answer is True", re), "Tru");  // drops the last character
  EXPECT_EQ(regex_filter("So the answer is valid.", re), "valid");
  EXPECT_EQ(regex_filter("So The answer is valid.", re), kInvalid);
  EXPECT_EQ(regex_filter("the answer is A. And the answer is B.", re), "A. And the answer is B");
  EXPECT_EQ(regex_filter("the answer is }.\nmore", re), "}");  // '.' does not cross the newline
}

TEST(ExactMatch, Gsm8kNormalisationOrder) {
  auto o = gsm();
  std::string ref = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72";
  EXPECT_EQ(exact_match_normalize(ref, o), "72");
  EXPECT_EQ(exact_match("72", ref, o), 1.0);
  EXPECT_EQ(exact_match("$72.", ref, o), 1.0);
  EXPECT_EQ(exact_match("72.0", ref, o), 0.0);
  EXPECT_EQ(exact_match(kInvalid, ref, o), 0.0);
  EXPECT_EQ(exact_match_normalize("$1,000.", o), "1000");
  EXPECT_EQ(exact_match("1,000", "#### 1000", o), 1.0);
  // regexes first, then case: "\.$" strips only the final dot
  EXPECT_EQ(exact_match_normalize("ABC..", o), "abc.");
}

TEST(ExactMatch, CaseAndPunctuationOptions) {
  ExactMatchOptions none;
  EXPECT_EQ(exact_match("(B)", "(B)", none), 1.0);
  EXPECT_EQ(exact_match("(b)", "(B)", none), 0.0);
  ExactMatchOptions ci;
  ci.ignore_case = true;
  EXPECT_EQ(exact_match("(b)", "(B)", ci), 1.0);
  ExactMatchOptions p;
  p.ignore_punctuation = true;
  EXPECT_EQ(exact_match("(B)", "B", p), 1.0);
  EXPECT_EQ(exact_match("B!", "B.", p), 1.0);
}

TEST(Stats, MeanAndStderr) {
  std::vector<double> v{1, 0, 1, 1};
  EXPECT_DOUBLE_EQ(mean(v), 0.75);
  // sample std = sqrt((3 * 0.25^2 + 0.75^2) / 3) = 0.5; / sqrt(4) = 0.25
  ASSERT_TRUE(mean_stderr(v).has_value());
  EXPECT_DOUBLE_EQ(*mean_stderr(v), 0.25);
  EXPECT_FALSE(mean_stderr({1.0}).has_value());
  // pooled: sizes 4 and 2, stderrs 0.25 and 0.5: ((3*0.0625*4) + (1*0.25*2)) / (6-2) = 0.3125; sqrt(0.3125/6)
  EXPECT_NEAR(pooled_stderr({0.25, 0.5}, {4, 2}), std::sqrt(0.3125 / 6.0), 1e-12);
}

TEST(Strip, PythonWhitespace) {
  EXPECT_EQ(py_strip("  \t(B)\n "), "(B)");
  EXPECT_EQ(py_strip("\xc2\xa0x\xe2\x80\x83"), "x");  // NBSP, EM SPACE
  EXPECT_EQ(py_lstrip("\n\nSupport"), "Support");
  EXPECT_EQ(py_strip(""), "");
}
