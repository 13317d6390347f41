// Parity with the pinned lm-evaluation-harness release (v0.4.9.2): every BBH task's description
// and version, every bbh_zeroshot filter rule on crafted outputs, and the humaneval_instruct
// plain-text prompt under both delimiter rules. The expectations in tests/data/eval/lm_eval/ were
// produced by running lm-eval's own YAMLs, utils.py filters and fewshot_context (v0.4.9.2 and
// v0.4.11) in a throwaway Python script with stubs for its unavailable dependencies.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include <map>
#include <set>

#include "core/atomic_output.h"
#include "core/error.h"
#include "eval/runner.h"
#include "eval/tasks.h"

using namespace rvec::eval;

namespace {
const nlohmann::json& bbh() {
  static nlohmann::json j = nlohmann::json::parse(rvec::read_file(RVEC_TESTDATA_DIR "/eval/lm_eval/bbh_v0.4.9.2.json"));
  return j;
}
DataSource data() { return DataSource(RVEC_DATA_DIR); }
}  // namespace

TEST(LmEvalParity, BbhDescriptionsAndVersionsOfEveryTask) {
  size_t checked = 0;
  for (auto& [name, e] : bbh()["tasks"].items()) {
    SCOPED_TRACE(name);
    if (e.value("group", false)) continue;
    Task t = load_task(name, data());
    EXPECT_EQ(t.description, e["description"].get<std::string>());
    EXPECT_EQ(t.version, e["version"].get<double>());
    checked++;
  }
  EXPECT_EQ(checked, 54u);
  // The multi-paragraph description that the first-line parser lost.
  Task s = load_task("bbh_zeroshot_snarks", data());
  EXPECT_NE(s.description.find("\n\nAccording to Cambridge University Dictionary, sarcasm is"), std::string::npos);
  EXPECT_TRUE(s.description.ends_with("ambivalent or witty remarks.\n\n"));
}

TEST(LmEvalParity, BbhZeroshotFilterRules) {
  std::map<std::string, Task> tasks;
  size_t n = 0;
  std::set<std::string> covered;
  for (auto& c : bbh()["filter_cases"]) {
    std::string name = c["task"];
    if (!tasks.count(name)) tasks.emplace(name, load_task(name, data()));
    const Task& t = tasks.at(name);
    std::string resp = c["response"];
    SCOPED_TRACE(name + " <- " + resp);
    ASSERT_EQ(t.filters.size(), c["filtered"].size());
    for (auto& f : t.filters) EXPECT_EQ(f.apply(resp, c["doc"]), c["filtered"][f.name].get<std::string>()) << f.name;
    covered.insert(name);
    n++;
  }
  EXPECT_EQ(covered.size(), 27u);
  EXPECT_GT(n, 100u);
}

TEST(LmEvalParity, BbhZeroshotPhraseMapsScore) {
  // web_of_lies: lm-eval maps "does not tell the truth" to "no", which exact_match (ignore_case)
  // scores against the target "No"; the old \b(Yes|No|yes|no)\b rule gave "[invalid]".
  Task w = load_task("bbh_zeroshot_web_of_lies", data());
  Sample s;
  s.task = w.name;
  s.doc = Doc{{"input", "Does Fidel tell the truth?"}, {"target", "No"}};
  s.output = " Fidel does not tell the truth.";
  score_sample(w, s, EvalOptions{});
  EXPECT_EQ(s.filtered["flexible-extract"], "no");
  EXPECT_EQ(s.metrics["exact_match,flexible-extract"], 1.0);
  Task d = load_task("bbh_zeroshot_dyck_languages", data());
  s.task = d.name;
  s.doc = d.docs[0];  // target "] ]"
  s.output = " The closing sequence is: ] ]";
  score_sample(d, s, EvalOptions{});
  EXPECT_EQ(s.filtered["flexible-extract"], "");  // first match is the lone space after "The", stripped
  s.output = "] ]";
  score_sample(d, s, EvalOptions{});
  EXPECT_EQ(s.metrics["exact_match,flexible-extract"], 1.0);
}

TEST(LmEvalParity, HumanevalInstructPlainDelimiterPerVersion) {
  auto j = nlohmann::json::parse(rvec::read_file(RVEC_TESTDATA_DIR "/eval/lm_eval/humaneval_instruct_plain.json"));
  Task t = load_task("humaneval_instruct", data());
  for (int i = 0; i < 2; i++) {
    PromptOptions po;
    EXPECT_EQ(build_prompt(t, t.docs[size_t(i)], {}, po, nullptr), j[fmt::format("0.4.9.2/humaneval_instruct/{}", i)]);
    po.lm_eval = parse_lm_eval_version("0.4.11");
    EXPECT_EQ(build_prompt(t, t.docs[size_t(i)], {}, po, nullptr), j[fmt::format("0.4.11/humaneval_instruct/{}", i)]);
  }
  EXPECT_EQ(parse_lm_eval_version("v0.4.9.2"), LmEvalVersion::V0_4_9_2);
  EXPECT_THROW(parse_lm_eval_version("0.4.3"), rvec::Error);
}

TEST(LmEvalParity, PythonLowerAndUnicodePunctuation) {
  EXPECT_EQ(py_lower("ÉCOLE Straße ΣΑΣ"), "école straße σας");
  EXPECT_EQ(remove_unicode_punctuation("don’t — a+b=c $5 «x»!"), "dont  a+b=c $5 x");
}

TEST(LmEvalParity, SystemInstructionAndSingleTurnChatFewshot) {
  // lm-eval v0.4.9.2 fewshot_context (chat template rendering the message list as JSON) on
  // bbh_cot_fewshot_boolean_expressions doc 0, 3 shots, --system_instruction "You are careful.".
  auto j = nlohmann::json::parse(rvec::read_file(RVEC_TESTDATA_DIR "/eval/lm_eval/chat_system_instruction_v0.4.9.2.json"));
  Task t = load_task("bbh_cot_fewshot_boolean_expressions", data());
  PyRandom rng(1234);
  auto shots = draw_fewshot(t, t.docs[0], 3, rng);
  PromptOptions po;
  po.system_instruction = "You are careful.";
  EXPECT_EQ(build_prompt(t, t.docs[0], shots, po, nullptr), j["plain"].get<std::string>());
  for (bool multi : {true, false}) {
    SCOPED_TRACE(multi);
    po.chat = true;
    po.fewshot_as_multiturn = multi;
    auto msgs = build_chat_messages(t, t.docs[0], shots, po);
    const auto& want = j[multi ? "multiturn" : "singleturn"];
    ASSERT_EQ(msgs.size(), want.size());
    for (size_t i = 0; i < msgs.size(); i++) {
      EXPECT_EQ(msgs[i].first, want[i]["role"].get<std::string>()) << i;
      EXPECT_EQ(msgs[i].second, want[i]["content"].get<std::string>()) << i;
    }
  }
}
