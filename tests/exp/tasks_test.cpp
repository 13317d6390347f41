// toy_arith as the evaluation harness runs it (prompt, generation parameters, scoring).
#include "exp/tasks.h"

#include <gtest/gtest.h>

#include <map>

#include "eval/runner.h"
#include "eval/tasks.h"

using namespace rvec;

namespace {

// Replies from a script keyed by document index; records what it was asked.
struct ScriptedLM : eval::LanguageModel {
  std::vector<std::string> replies;
  std::vector<eval::GenRequest> seen;
  std::string name() const override { return "scripted"; }
  void generate(const std::vector<eval::GenRequest>& reqs,
                const std::function<void(size_t, const std::string&)>& on_done) override {
    for (size_t i = 0; i < reqs.size(); ++i) {
      seen.push_back(reqs[i]);
      on_done(i, eval::cut_at_stop(replies.at(i), reqs[i].until));
    }
  }
  void loglikelihood(const std::vector<eval::LoglikRequest>&,
                     const std::function<void(size_t, const eval::LoglikResult&)>&) override {
    FAIL() << "toy_arith is a generation task";
  }
  std::optional<std::string> apply_chat_template(const std::vector<std::pair<std::string, std::string>>& rc,
                                                 bool add_generation_prompt,
      const nlohmann::ordered_json& /*template_kwargs*/) const override {
    std::string s;
    for (auto& [r, c] : rc) s += "<|im_start|>" + r + "\n" + c + "<|im_end|>\n";
    if (add_generation_prompt) s += "<|im_start|>assistant\n";
    return s;
  }
};

}  // namespace

TEST(ToyArith, PromptGenerationAndStrictMatchScoring) {
  experiment::register_toy_arith();
  ASSERT_TRUE(eval::is_task("toy_arith"));
  ScriptedLM lm;
  lm.replies = {
      "5 + 3 = 8 . #### 8<|im_end|>garbage",  // correct; cut at the stop string
      "12 - 4 = 8 . #### 8.",                 // trailing period ignored -> correct
      "7 x 2 = 15 . #### 15",                 // wrong number
      "20 - 6 = 14 . 14 + 3 = 17 . 17",       // no '#### n' -> [invalid] under strict-match
      "#### 7 #### 9",                        // first match counts -> correct (gold 7)
      "#### 8,0",                             // commas stripped: "80" != "8"
  };
  eval::EvalOptions o;
  o.chat = true;
  o.quiet = true;
  o.shipped_data_dir = std::string(RVEC_TESTDATA_DIR) + "/exp";
  auto r = eval::evaluate_task(lm, "toy_arith", o);
  ASSERT_EQ(lm.seen.size(), 6u);
  EXPECT_EQ(lm.seen[0].prompt,
            "<|im_start|>user\nTom has 5 apples. He buys 3 more. How many apples does he have?<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(lm.seen[0].max_new_tokens, 96);
  EXPECT_EQ(lm.seen[0].temperature, 0);
  EXPECT_NE(std::find(lm.seen[0].until.begin(), lm.seen[0].until.end(), "<|im_end|>"), lm.seen[0].until.end());
  EXPECT_NE(std::find(lm.seen[0].until.begin(), lm.seen[0].until.end(), "<|endoftext|>"), lm.seen[0].until.end());
  const auto& pd = r.per_doc.at("exact_match,strict-match");
  EXPECT_EQ(pd, (std::vector<double>{1, 1, 0, 0, 1, 0}));
  EXPECT_DOUBLE_EQ(r.metrics.at("exact_match,strict-match").value, 0.5);
}

