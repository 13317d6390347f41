// Prompts of the math tasks byte for byte against tests/data/math/expected_prompts.json, written by
// running the reference code (Qwen2.5-Math utils.construct_prompt + parser.parse_question with the
// qwen25-math-cot template; lm-eval minerva_math utils.doc_to_text / list_fewshot_samples with
// lm-eval's few-shot context rule; hendrycks_math's yaml doc_to_text).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/atomic_output.h"
#include "eval/math_tasks.h"
#include "eval/runner.h"
#include "eval/tasks.h"

using namespace rvec::eval;

namespace {
const nlohmann::json& expected() {
  static nlohmann::json j = nlohmann::json::parse(rvec::read_file(RVEC_TESTDATA_DIR "/math/expected_prompts.json"));
  return j;
}
std::string prompt(const std::string& task, size_t i, PromptOptions po = {}) {
  Task t = load_task(task, DataSource(RVEC_DATA_DIR));
  PyRandom rng(1234);
  int k = effective_fewshot(t, po);
  return build_prompt(t, t.docs[i], draw_fewshot(t, t.docs[i], k, rng), po, nullptr);
}
}  // namespace

TEST(MathPrompts, QwenToolkitTemplate) {
  for (const char* task : {"math500", "aime24", "aime25", "amc23", "olympiadbench", "minerva_math"})
    for (size_t i = 0; i < 2; i++) {
      std::string key = std::string(task) + "/" + std::to_string(i);
      EXPECT_EQ(prompt(task, i), expected()[key].get<std::string>()) << key;
    }
}

TEST(MathPrompts, LmEvalMinervaAndHendrycks) {
  for (size_t i = 0; i < 2; i++) {
    EXPECT_EQ(prompt("minerva_math500", i), expected()["minerva_math500/" + std::to_string(i)].get<std::string>()) << i;
    EXPECT_EQ(prompt("hendrycks_math500", i), expected()["hendrycks_math500/" + std::to_string(i)].get<std::string>())
        << i;
    Task t = load_task("minerva_math500", DataSource(RVEC_DATA_DIR));
    EXPECT_EQ(t.doc_to_target(t.docs[i]), expected()["minerva_math500_target/" + std::to_string(i)].get<std::string>());
  }
}

TEST(MathPrompts, ChatMessagesAndThink) {
  Task t = load_task("math500", DataSource(RVEC_DATA_DIR));
  PromptOptions po;
  po.think = true;
  auto msgs = build_chat_messages(t, t.docs[0], {}, po);
  ASSERT_EQ(msgs.size(), 2u);
  EXPECT_EQ(msgs[0].first, "system");
  EXPECT_EQ(msgs[0].second, kQwenCotInstruction);
  EXPECT_EQ(msgs[1].second, t.docs[0]["problem"].get<std::string>() + "\n" + kThinkInstruction);
  // Without --chat the think instruction goes inside the user turn of the template.
  std::string p = prompt("math500", 0, po);
  EXPECT_NE(p.find(kThinkInstruction + "<|im_end|>\n<|im_start|>assistant\n"), std::string::npos);
}

TEST(MathPrompts, Registered) {
  for (const char* task : {"math500", "aime24", "aime25", "amc23", "minerva_math", "olympiadbench", "minerva_math500",
                           "hendrycks_math500"})
    EXPECT_TRUE(is_task(task)) << task;
  EXPECT_EQ(load_task("aime24", DataSource(RVEC_DATA_DIR)).docs.size(), 30u);
  EXPECT_EQ(load_task("olympiadbench", DataSource(RVEC_DATA_DIR)).docs.size(), 675u);
  EXPECT_EQ(load_task("minerva_math", DataSource(RVEC_DATA_DIR)).docs.size(), 272u);
}
