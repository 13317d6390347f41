// Prompt construction byte for byte against tests/data/eval/expected_prompts.json, which
// tools/gen_expected_prompts.py wrote independently in Python (CPython's random, lm-eval's
// documented context rules), plus chat rendering against hand-written expectations.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/atomic_output.h"
#include "eval/perturb.h"
#include "eval/runner.h"
#include "eval/tasks.h"
#include "scripted_model.h"

using namespace rvec::eval;
using rvec::eval::testing::ScriptedModel;

namespace {
const nlohmann::json& expected() {
  static nlohmann::json j = nlohmann::json::parse(rvec::read_file(RVEC_TESTDATA_DIR "/eval/expected_prompts.json"));
  return j;
}
DataSource data() { return DataSource(RVEC_DATA_DIR); }

// Prompts of docs [0, n) in order, drawing few-shot exemplars as the runner does.
std::vector<std::string> prompts(const std::string& task, size_t n, PromptOptions po = {},
                                 const LanguageModel* m = nullptr) {
  Task t = load_task(task, data());
  PyRandom rng(1234);
  int k = effective_fewshot(t, po);
  std::vector<std::string> out;
  for (size_t i = 0; i < n; i++) out.push_back(build_prompt(t, t.docs[i], draw_fewshot(t, t.docs[i], k, rng), po, m));
  return out;
}
}  // namespace

TEST(Prompts, Gsm8kFiveShotDefaultSampler) {
  auto p = prompts("gsm8k", 3);
  for (size_t i = 0; i < 3; i++) EXPECT_EQ(p[i], expected()["gsm8k/" + std::to_string(i)].get<std::string>()) << i;
  // Format details by hand: ends with the doc, examples separated by a blank line, " " before targets.
  EXPECT_TRUE(p[0].ends_with("\nAnswer:"));
  EXPECT_EQ(p[0].rfind("Question: ", 0), 0u);
  EXPECT_NE(p[0].find("\nAnswer: "), std::string::npos);
}

TEST(Prompts, Gsm8kCotAndZeroShot) {
  EXPECT_EQ(prompts("gsm8k_cot", 1)[0], expected()["gsm8k_cot/0"].get<std::string>());
  std::string z = prompts("gsm8k_cot_zeroshot", 1)[0];
  EXPECT_EQ(z, expected()["gsm8k_cot_zeroshot/0"].get<std::string>());
  EXPECT_TRUE(z.ends_with("\nA: Let's think step by step."));
  auto c = prompts("gsm8k_cot", 1)[0];
  EXPECT_EQ(c.rfind("Q: There are 15 trees in the grove.", 0), 0u);
  EXPECT_NE(c.find("\nA: There are 15 trees originally. Then there were 21 trees after some more were planted. So "
                   "there must have been 21 - 15 = 6. The answer is 6.\n\nQ: If there are 3 cars"),
            std::string::npos);
}

TEST(Prompts, GsmPlusSameSplitDropsTheDoc) {
  auto p = prompts("gsm_plus", 3);
  for (size_t i = 0; i < 3; i++) EXPECT_EQ(p[i], expected()["gsm_plus/" + std::to_string(i)].get<std::string>()) << i;
}

TEST(Prompts, SciqContextAndContinuations) {
  Task t = load_task("sciq", data());
  EXPECT_EQ(build_prompt(t, t.docs[0], {}, {}, nullptr), expected()["sciq/0"].get<std::string>());
  auto choices = t.doc_to_choice(t.docs[0]);
  auto exp = expected()["sciq/0/continuations"];
  ASSERT_EQ(choices.size(), 4u);
  for (size_t i = 0; i < 4; i++) EXPECT_EQ(t.target_delimiter + choices[i], exp[i].get<std::string>());
  EXPECT_EQ(t.doc_to_gold(t.docs[0]), 3);
}

TEST(Prompts, BbhCotFewshotAndZeroshot) {
  for (std::string sub : {"boolean_expressions", "sports_understanding", "date_understanding"}) {
    SCOPED_TRACE(sub);
    EXPECT_EQ(prompts("bbh_cot_fewshot_" + sub, 1)[0], expected()["bbh_cot_fewshot_" + sub + "/0"].get<std::string>());
    EXPECT_EQ(prompts("bbh_zeroshot_" + sub, 1)[0], expected()["bbh_zeroshot_" + sub + "/0"].get<std::string>());
  }
  // Hand-checked pieces: description then a blank line; target follows the "step by step.\n" directly.
  auto b = prompts("bbh_cot_fewshot_boolean_expressions", 1)[0];
  EXPECT_EQ(b.rfind("Evaluate the result of a random Boolean expression.\n\nQ: not ( ( not not True ) ) is\nA: Let's "
                    "think step by step.\nRemember that (i)",
                    0),
            0u);
  EXPECT_TRUE(b.ends_with("\nA: Let's think step by step.\n"));
}

TEST(Prompts, HumanEval) {
  EXPECT_EQ(prompts("humaneval", 1)[0], expected()["humaneval/0"].get<std::string>());
  EXPECT_EQ(prompts("humaneval_instruct", 1)[0], expected()["humaneval_instruct/0"].get<std::string>());
}

TEST(Prompts, ChatFewshotAsMultiturn) {
  // A tiny hand-made GSM8K-format task: 2-shot from a 3-doc train file, so every message is checkable.
  Task t = load_task("gsm8k", data());
  t.docs = {Doc{{"question", "Q0?"}, {"answer", "a0\n#### 0"}}};
  t.fewshot_docs = {Doc{{"question", "F1?"}, {"answer", "f1\n#### 1"}}, Doc{{"question", "F2?"}, {"answer", "f2\n#### 2"}}};
  t.sampler = SamplerKind::FirstN;
  ScriptedModel m;
  PromptOptions po;
  po.chat = true;
  po.num_fewshot = 2;
  PyRandom rng(1234);
  auto shots = draw_fewshot(t, t.docs[0], 2, rng);
  std::string p = build_prompt(t, t.docs[0], shots, po, &m);
  EXPECT_EQ(p,
            "<|im_start|>user\nQuestion: F1?\nAnswer:<|im_end|>\n"
            "<|im_start|>assistant\nf1\n#### 1<|im_end|>\n"
            "<|im_start|>user\nQuestion: F2?\nAnswer:<|im_end|>\n"
            "<|im_start|>assistant\nf2\n#### 2<|im_end|>\n"
            "<|im_start|>user\nQuestion: Q0?\nAnswer:<|im_end|>\n"
            "<|im_start|>assistant\n");
  po.think = true;
  std::string th = build_prompt(t, t.docs[0], shots, po, &m);
  EXPECT_NE(th.find("<|im_start|>user\nQuestion: Q0?\nAnswer:\nThink step by step.<|im_end|>\n<|im_start|>assistant\n"),
            std::string::npos);
  // Few-shot turns are not given the instruction.
  EXPECT_NE(th.find("<|im_start|>user\nQuestion: F1?\nAnswer:<|im_end|>"), std::string::npos);
  m.has_template = false;
  po.think = false;
  EXPECT_THROW(build_prompt(t, t.docs[0], shots, po, &m), std::exception);
}

TEST(Prompts, ChatDescriptionIsSystemAndGenPrefixAppended) {
  ScriptedModel m;
  PromptOptions po;
  po.chat = true;
  Task b = load_task("bbh_zeroshot_boolean_expressions", data());
  std::string p = build_prompt(b, b.docs[0], {}, po, &m);
  EXPECT_EQ(p, "<|im_start|>system\nEvaluate the result of a random Boolean expression.\n\n<|im_end|>\n"
               "<|im_start|>user\nQ: " +
                   b.docs[0]["input"].get<std::string>() + "\nA:<|im_end|>\n<|im_start|>assistant\n");
  Task h = load_task("humaneval_instruct", data());
  std::string prompt0 = h.docs[0]["prompt"].get<std::string>();
  EXPECT_EQ(build_prompt(h, h.docs[0], {}, po, &m),
            "<|im_start|>user\nWrite a solution to the following problem and make sure that it passes the "
            "tests:\n```python\n" +
                prompt0 + "\n```\n<|im_end|>\n<|im_start|>assistant\nHere is the completed function:\n```python\n" +
                prompt0 + "\n");
}

TEST(Prompts, NumFewshotOverrideAndLimits) {
  PromptOptions po;
  po.num_fewshot = 0;
  EXPECT_EQ(prompts("gsm8k", 1, po)[0], "Question: " + load_task("gsm8k", data()).docs[0]["question"].get<std::string>() +
                                             "\nAnswer:");
  po.num_fewshot = 9;
  EXPECT_THROW(prompts("gsm8k_cot", 1, po), std::exception);  // only 8 fixed exemplars
}

TEST(Tasks, RegistryAndGroups) {
  auto bbh = group_members("bbh");
  EXPECT_EQ(bbh.size(), 27u);
  EXPECT_EQ(group_members("bbh_zeroshot").size(), 27u);
  auto e = expand_tasks({"gsm8k", "bbh", "gsm8k"});
  EXPECT_EQ(e.size(), 28u);
  EXPECT_EQ(e[0], "gsm8k");
  EXPECT_THROW(expand_tasks({"no_such_task"}), std::exception);
  for (auto n : {"gsm8k", "gsm8k_cot", "gsm8k_cot_zeroshot", "gsm_plus", "sciq", "humaneval", "humaneval_instruct"})
    EXPECT_TRUE(is_task(n)) << n;
  // Sizes of the shipped data.
  EXPECT_EQ(load_task("gsm8k", data()).docs.size(), 1319u);
  EXPECT_EQ(load_task("sciq", data()).docs.size(), 1000u);
  EXPECT_EQ(load_task("humaneval", data()).docs.size(), 164u);
  size_t total = 0;
  for (auto& n : bbh) total += load_task(n, data()).docs.size();
  EXPECT_EQ(total, 6511u);
}

TEST(Tasks, Gsm8kLikeRegistration) {
  auto dir = std::filesystem::temp_directory_path() / ("rvec_eval_toy_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir / "toy");
  rvec::write_file_atomic(dir / "toy" / "test.jsonl",
                          "{\"question\": \"1+1?\", \"answer\": \"1+1=2\\n#### 2\"}\n"
                          "{\"question\": \"2+2?\", \"answer\": \"2+2=4\\n#### 4\"}\n");
  register_gsm8k_like_task("toy_arith_test", "toy/test.jsonl", "toy/test.jsonl", 1);
  DataSource ds(RVEC_DATA_DIR, dir);
  Task t = load_task("toy_arith_test", ds);
  ASSERT_EQ(t.docs.size(), 2u);
  PyRandom rng(1234);
  // Same split: draws 2, drops the doc itself, keeps 1: the other doc.
  auto shots = draw_fewshot(t, t.docs[0], 1, rng);
  ASSERT_EQ(shots.size(), 1u);
  EXPECT_EQ(build_prompt(t, t.docs[0], shots, {}, nullptr),
            "Question: 2+2?\nAnswer: 2+2=4\n#### 4\n\nQuestion: 1+1?\nAnswer:");
  std::filesystem::remove_all(dir);
}

TEST(Data, ChecksumMismatchNamesTheFile) {
  auto dir = std::filesystem::temp_directory_path() / ("rvec_eval_sum_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir / "gsm8k");
  rvec::write_file_atomic(dir / "gsm8k" / "test.jsonl", "{\"question\": \"q\", \"answer\": \"#### 1\"}\n");
  rvec::write_file_atomic(dir / "SHA256SUMS",
                          "0000000000000000000000000000000000000000000000000000000000000000  gsm8k/test.jsonl\n");
  DataRoot root(dir);
  try {
    root.load_jsonl("gsm8k/test.jsonl");
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("gsm8k/test.jsonl"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("sha256 mismatch"), std::string::npos);
  }
  // The shipped data verifies.
  EXPECT_NO_THROW(DataRoot(RVEC_DATA_DIR).load_jsonl("gsm8k/test.jsonl"));
  EXPECT_TRUE(DataRoot(RVEC_DATA_DIR).listed("sciq/test.json"));
  std::filesystem::remove_all(dir);
}
