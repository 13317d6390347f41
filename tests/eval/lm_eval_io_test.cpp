// lm-eval's samples format in and out. tests/data/eval/lm_eval/samples_v0.4.9.2/ is a samples
// fixture written by lm-eval v0.4.9.2's own EvaluationTracker.save_results_samples from examples
// built as its evaluator does, with filters and metrics from its own RegexFilter, TakeFirstFilter,
// bbh MapRegexFilter, exact_match_hf_evaluate and multiple_choice rule, and hashes from its
// hash_string (see tests/data/eval/lm_eval/README.md).
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "core/atomic_output.h"
#include "core/error.h"
#include "core/sha256.h"
#include "eval/lm_eval_io.h"
#include "eval/runner.h"
#include "eval/sandbox.h"
#include "scripted_model.h"
#include "test_util.h"

using namespace rvec::eval;
using nlohmann::json;
using rvec::sha256_hex;
namespace fs = std::filesystem;

namespace {
const std::string kDir = RVEC_TESTDATA_DIR "/eval/lm_eval/samples_v0.4.9.2";
const std::string kDate = "2026-12-04T15-00-00.123456";
const std::vector<std::string> kTasks = {"gsm8k", "sciq", "bbh_zeroshot_web_of_lies", "humaneval"};

std::string file_of(const std::string& task) { return kDir + "/samples_" + task + "_" + kDate + ".jsonl"; }
std::vector<json> lines_of(const std::string& task) {
  std::vector<json> out;
  std::string text = rvec::read_file(file_of(task));
  size_t p = 0;
  while (p < text.size()) {
    size_t e = text.find('\n', p);
    if (e > p) out.push_back(json::parse(text.substr(p, e - p)));
    p = e + 1;
  }
  return out;
}
const json& expected() {
  static json j = json::parse(rvec::read_file(RVEC_TESTDATA_DIR "/eval/lm_eval/samples_v0.4.9.2_expected.json"));
  return j;
}
EvalOptions sandboxed() {
  EvalOptions o;
  o.quiet = true;
  SandboxLimits lim;
  lim.timeout_s = 10;
  auto sb = std::make_shared<Sandbox>(lim);
  o.run_program = [sb](const std::string& p) { return sb->run_python(p).passed; };
  return o;
}
}  // namespace

TEST(LmEvalIo, TaskFromSamplesFileName) {
  EXPECT_EQ(task_from_lm_eval_samples_name("/x/samples_bbh_zeroshot_snarks_2025-01-02T03-04-05.678901.jsonl"),
            "bbh_zeroshot_snarks");
  EXPECT_EQ(task_from_lm_eval_samples_name("samples_gsm8k_2026-12-04T15-00-00.jsonl"), "gsm8k");
  EXPECT_FALSE(task_from_lm_eval_samples_name("gsm8k.jsonl").has_value());
}

TEST(LmEvalIo, RescoresSamplesWrittenByLmEval) {
  std::vector<std::string> files;
  for (auto& t : kTasks) files.push_back(file_of(t));
  EvalResults r = rescore_samples_files(files, sandboxed());
  ASSERT_EQ(r.tasks.size(), kTasks.size());
  for (auto& [task, metrics] : expected()["per_doc"].items()) {
    SCOPED_TRACE(task);
    const TaskResult* t = r.find(task);
    ASSERT_NE(t, nullptr);
    for (auto& [key, values] : metrics.items()) {
      ASSERT_TRUE(t->per_doc.count(key)) << key;
      EXPECT_EQ(t->per_doc.at(key), values.get<std::vector<double>>()) << key;
    }
    EXPECT_EQ(t->per_doc.size(), metrics.size());
  }
  // The prompts lm-eval sent come back from arguments.gen_args_0.arg_0.
  EXPECT_EQ(sha256_hex(r.find("gsm8k")->samples[1].prompt), lines_of("gsm8k")[1]["prompt_hash"]);
}

TEST(LmEvalIo, MalformedLmEvalLineNamesFileAndLine) {
  rvec::test_util::TempDir d("lmeval_io");
  fs::path p = d.p / ("samples_sciq_" + kDate + ".jsonl");
  json l = lines_of("sciq")[0];
  l["resps"] = json::array({json::array({json::array({"x", "True"})})});
  rvec::write_file_atomic(p, l.dump() + "\n");
  try {
    rescore_samples_files({p.string()}, EvalOptions{});
    FAIL() << "no error";
  } catch (const rvec::Error& e) {
    EXPECT_NE(std::string(e.what()).find(p.string() + ":1"), std::string::npos) << e.what();
  }
  fs::path q = d.p / "mine.jsonl";
  rvec::write_file_atomic(q, lines_of("sciq")[0].dump() + "\n");
  EXPECT_THROW(rescore_samples_files({q.string()}, EvalOptions{}), rvec::Error);  // no task in the name
  EXPECT_EQ(rescore_samples_files({q.string()}, EvalOptions{}, "sciq").tasks.at(0).per_doc.at("acc,none"),
            std::vector<double>{1.0});
}

// rvec's own run on the same documents and responses writes lines lm-eval would have written:
// same hashes (doc in dataset field order, prompt, str(target)), filters and metrics.
TEST(LmEvalIo, WritesLmEvalLinesAndTaskHashes) {
  std::map<std::string, std::string> gen_by_prompt_hash;
  std::map<std::pair<std::string, std::string>, double> ll_by_request;
  for (auto& t : kTasks)
    for (auto& l : lines_of(t))
      for (auto& [k, a] : l["arguments"].items()) {
        if (a["arg_1"].is_string())
          ll_by_request[{sha256_hex(a["arg_0"].get<std::string>()), a["arg_1"].get<std::string>()}] =
              std::stod(l["resps"][std::stoul(k.substr(9))][0][0].get<std::string>());
        else
          gen_by_prompt_hash[l["prompt_hash"]] = l["resps"][0][0];
      }
  rvec::eval::testing::ScriptedModel m;
  m.gen = [&](const std::string& prompt) {
    auto it = gen_by_prompt_hash.find(sha256_hex(prompt));
    return it == gen_by_prompt_hash.end() ? std::string("unknown prompt") : it->second;
  };
  m.ll = [&](const std::string& ctx, const std::string& cont) {
    auto it = ll_by_request.find({sha256_hex(ctx), cont});
    return it == ll_by_request.end() ? -1e9 : it->second;
  };
  EvalOptions o = sandboxed();
  EvalResults r;
  for (auto& task : kTasks) {
    SCOPED_TRACE(task);
    auto want = lines_of(task);
    o.limit = task == "humaneval" ? 2 : 3;
    TaskResult tr = evaluate_task(m, task, o);
    auto got = lm_eval_sample_lines(tr);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); i++) {
      SCOPED_TRACE(i);
      for (auto k : {"doc_id", "doc", "target", "filter", "metrics", "doc_hash", "prompt_hash", "target_hash"})
        EXPECT_EQ(got[i][k], want[i][k]) << k;
      for (auto& name : want[i]["metrics"]) EXPECT_EQ(got[i][name.get<std::string>()], want[i][name.get<std::string>()]);
      if (task == "sciq") {
        EXPECT_EQ(got[i]["arguments"], want[i]["arguments"]);
        for (size_t c = 0; c < 4; c++) EXPECT_EQ(got[i]["resps"][c][0][0], want[i]["resps"][c][0][0]);
      } else {
        EXPECT_EQ(got[i]["resps"], want[i]["resps"]);
        EXPECT_EQ(got[i]["filtered_resps"], want[i]["filtered_resps"]);
        EXPECT_EQ(got[i]["arguments"]["gen_args_0"]["arg_0"], want[i]["arguments"]["gen_args_0"]["arg_0"]);
      }
    }
    EXPECT_EQ(lm_eval_task_hash(got), expected()["task_hashes"][task]);
    r.tasks.push_back(std::move(tr));
  }
  json j = r.to_json();
  for (auto& t : kTasks) EXPECT_EQ(j["task_hashes"][t], expected()["task_hashes"][t]);
}
