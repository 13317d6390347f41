// End-to-end tests of `rvec eval` and `rvec rescore` on the tiny Qwen2 fixture model: the
// results file's structure, scores recomputed from the samples file, and resume after kill -9.
#include <gtest/gtest.h>

#include "test_util.h"

#include <array>
#include <set>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
const fs::path kModel = fs::path(RVEC_TESTDATA_DIR) / "fixtures/qwen2_tiny_bf16_gqa8x2/model";

using Result = rvec::test_util::CommandResult;
using rvec::test_util::TempDir;

Result run(const std::string& args) { return rvec::test_util::run_shell(std::string(RVEC_BIN) + " " + args + " 2>&1"); }

fs::path find_file(const fs::path& dir, const std::string& prefix, const std::string& suffix) {
  for (auto& e : fs::directory_iterator(dir)) {
    auto n = e.path().filename().string();
    if (n.rfind(prefix, 0) == 0 && n.ends_with(suffix)) return e.path();
  }
  return {};
}

using rvec::test_util::read_jsonl;

json read_json(const fs::path& p) {
  std::ifstream in(p);
  return json::parse(in);
}

size_t count_lines(const fs::path& p) {
  std::ifstream in(p);
  std::string l;
  size_t n = 0;
  while (std::getline(in, l)) n++;
  return n;
}
}  // namespace

TEST(EvalCli, ListTasksNeedsNoModel) {
  auto r = run("eval --list-tasks");
  ASSERT_EQ(r.rc, 0) << r.out;
  for (auto n : {"gsm8k\n", "gsm8k_cot\n", "gsm8k_cot_zeroshot\n", "gsm_plus\n", "sciq\n", "humaneval\n",
                 "humaneval_instruct\n", "bbh_cot_fewshot_word_sorting\n", "bbh_zeroshot_navigate\n", "distractor\n"})
    EXPECT_NE(r.out.find(n), std::string::npos) << n;
  EXPECT_NE(r.out.find("bbh "), std::string::npos);
}

TEST(EvalCli, ClearErrors) {
  auto r = run("eval --tasks gsm8k");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("MODEL"), std::string::npos) << r.out;
  r = run("eval " + kModel.string() + " --tasks no_such_task --limit 1");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("unknown task 'no_such_task'"), std::string::npos) << r.out;
  r = run("eval " + kModel.string() + " --tasks gsm8k --perturb nope --limit 1");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("unknown perturbation"), std::string::npos) << r.out;
  r = run("rescore /nonexistent/samples.jsonl");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("/nonexistent/samples.jsonl"), std::string::npos) << r.out;
}

TEST(EvalCli, TinyModelResultsMatchRescoredSamples) {
  if (!fs::exists(kModel)) GTEST_SKIP() << "no fixture model at " << kModel;
  TempDir d("e2e");
  auto r = run("eval " + kModel.string() + " --tasks gsm8k,sciq --limit 2 --num-fewshot 0 --max-gen-tokens 6 --quiet --out " +
               (d.p / "out").string());
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("|gsm8k|"), std::string::npos) << r.out;
  fs::path res = find_file(d.p / "out", "results_", ".json");
  ASSERT_FALSE(res.empty());
  json j = read_json(res);
  for (auto k : {"results", "configs", "versions", "n-shot", "higher_is_better", "n-samples", "config", "date"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["n-shot"]["gsm8k"], 0);
  EXPECT_EQ(j["config"]["limit"], 2);
  EXPECT_EQ(j["configs"]["gsm8k"]["generation_kwargs"]["max_gen_toks"], 6);
  for (auto task : {"gsm8k", "sciq"}) {
    fs::path sp = find_file(d.p / "out", std::string("samples_") + task + "_", ".jsonl");
    ASSERT_FALSE(sp.empty()) << task;
    auto lines = read_jsonl(sp);
    ASSERT_EQ(lines.size(), 2u);
    std::map<std::string, double> sums;
    for (auto& l : lines) {
      for (auto k : {"task", "doc_id", "prompt", "output", "target", "filtered", "metrics"})
        EXPECT_TRUE(l.contains(k)) << k;
      for (auto& [k, v] : l["metrics"].items()) sums[k] += v.get<double>();
    }
    for (auto& [k, s] : sums) EXPECT_DOUBLE_EQ(j["results"][task][k].get<double>(), s / 2) << task << " " << k;
    // rescore recomputes the same numbers from the samples file alone
    auto rr = run("rescore " + sp.string() + " --out " + (d.p / task).string());
    ASSERT_EQ(rr.rc, 0) << rr.out;
    json j2 = read_json(find_file(d.p / task, "results_", ".json"));
    for (auto& [k, s] : sums) EXPECT_DOUBLE_EQ(j2["results"][task][k].get<double>(), s / 2) << task << " " << k;
  }
  // sciq output holds one [logprob, is_greedy] per choice
  auto sl = read_jsonl(find_file(d.p / "out", "samples_sciq_", ".jsonl"));
  ASSERT_EQ(sl[0]["output"].size(), 4u);
  EXPECT_TRUE(sl[0]["output"][0][0].is_number());
}

TEST(EvalCli, ResumeAfterKillGivesIdenticalResults) {
  if (!fs::exists(kModel)) GTEST_SKIP() << "no fixture model at " << kModel;
  TempDir d("kill");
  const std::string common = " --tasks gsm8k --limit 3 --num-fewshot 1 --batch 1 --max-gen-tokens 12 --quiet";
  auto full = run("eval " + kModel.string() + common + " --out " + (d.p / "full").string());
  ASSERT_EQ(full.rc, 0) << full.out;

  fs::path out = d.p / "killed";
  fs::path cache = out / "cache" / "gsm8k.jsonl";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::string o = out.string(), m = kModel.string();
    execl(RVEC_BIN, RVEC_BIN, "eval", m.c_str(), "--tasks", "gsm8k", "--limit", "3", "--num-fewshot", "1", "--batch",
          "1", "--max-gen-tokens", "12", "--quiet", "--out", o.c_str(), (char*)nullptr);
    _exit(127);
  }
  // Kill -9 as soon as the first sample is in the cache (or when the run ends by itself).
  int status = 0;
  bool exited = false;
  for (int i = 0; i < 6000; i++) {
    if (fs::exists(cache) && count_lines(cache) >= 1) break;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      exited = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!exited) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  ASSERT_TRUE(fs::exists(cache));
  size_t cached = count_lines(cache);
  EXPECT_GE(cached, 1u);
  std::printf("[ info ] killed=%d, samples cached before the kill: %zu of 3\n", int(!exited), cached);
  auto resumed = run("eval " + kModel.string() + common + " --resume --out " + out.string());
  ASSERT_EQ(resumed.rc, 0) << resumed.out;
  json a = read_json(find_file(d.p / "full", "results_", ".json"));
  json b = read_json(find_file(out, "results_", ".json"));
  EXPECT_EQ(a["results"], b["results"]);
  auto sa = read_jsonl(find_file(d.p / "full", "samples_gsm8k_", ".jsonl"));
  auto sb = read_jsonl(find_file(out, "samples_gsm8k_", ".jsonl"));
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); i++) {
    EXPECT_EQ(sa[i]["output"], sb[i]["output"]) << i;
    EXPECT_EQ(sa[i]["prompt"], sb[i]["prompt"]) << i;
  }
}

TEST(EvalCli, RescoreHumanEvalRunsProgramsInTheSandbox) {
  // Canonical solutions pass, a wrong one fails: pass@1 = 3/4 (the programs really run).
  TempDir d("he");
  std::ifstream in(fs::path(RVEC_DATA_DIR) / "humaneval/HumanEval.jsonl");
  std::string line, content;
  for (int i = 0; i < 4 && std::getline(in, line); i++) {
    json doc = json::parse(line);
    std::string out = i == 3 ? "    return None\n" : doc["canonical_solution"].get<std::string>();
    content += json{{"task", "humaneval"}, {"doc_id", i}, {"output", out}}.dump() + "\n";
  }
  fs::path sp = d.p / "samples_humaneval.jsonl";
  {
    std::ofstream o(sp);
    o << content;
  }
  auto r = run("rescore " + sp.string() + " --out " + (d.p / "out").string());
  ASSERT_EQ(r.rc, 0) << r.out;
  json j = read_json(find_file(d.p / "out", "results_", ".json"));
  EXPECT_DOUBLE_EQ(j["results"]["humaneval"]["pass@1,create_test"].get<double>(), 0.75) << r.out;
  auto lines = read_jsonl(find_file(d.p / "out", "samples_humaneval_", ".jsonl"));
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[3]["metrics"]["pass@1,create_test"], 0.0);
  EXPECT_NE(r.out.find("sandbox mode"), std::string::npos) << r.out;
}

TEST(EvalCli, HumanEvalSamplesPassAtKOnTinyModel) {
  if (!fs::exists(kModel)) GTEST_SKIP() << "no fixture model at " << kModel;
  TempDir d("samples");
  const std::string common = "eval " + kModel.string() +
                             " --tasks humaneval --limit 2 --samples 3 --temperature 1.0 --top-p 0.9 --seed 5"
                             " --max-gen-tokens 4 --quiet --out ";
  auto r = run(common + (d.p / "a").string());
  ASSERT_EQ(r.rc, 0) << r.out;
  json j = read_json(find_file(d.p / "a", "results_", ".json"));
  EXPECT_EQ(j["config"]["repeats"], 3);
  EXPECT_EQ(j["configs"]["humaneval"]["generation_kwargs"]["top_p"], 0.9);
  EXPECT_TRUE(j["results"]["humaneval"].contains("pass@1,create_test"));
  EXPECT_FALSE(j["results"]["humaneval"].contains("pass@10,create_test"));  // 10 > 3 samples
  fs::path sp = find_file(d.p / "a", "samples_humaneval_", ".jsonl");
  auto lines = read_jsonl(sp);
  ASSERT_EQ(lines.size(), 2u);
  double sum = 0;
  for (auto& l : lines) {
    ASSERT_TRUE(l["output"].is_array());
    ASSERT_EQ(l["output"].size(), 3u);
    ASSERT_EQ(l["filtered"]["create_test"].size(), 3u);
    sum += l["metrics"]["pass@1,create_test"].get<double>();
  }
  EXPECT_DOUBLE_EQ(j["results"]["humaneval"]["pass@1,create_test"].get<double>(), sum / 2);
  // Each sample has its own seed: 4 sampled tokens at temperature 1 differ between samples.
  std::set<std::string> distinct(lines[0]["output"].begin(), lines[0]["output"].end());
  EXPECT_GT(distinct.size(), 1u) << lines[0]["output"].dump();
  EXPECT_EQ(count_lines(d.p / "a" / "cache" / "humaneval.jsonl"), 6u);  // one cache line per generation

  // Reproducible: the same command gives the same generations.
  auto r2 = run(common + (d.p / "b").string());
  ASSERT_EQ(r2.rc, 0) << r2.out;
  auto lines2 = read_jsonl(find_file(d.p / "b", "samples_humaneval_", ".jsonl"));
  for (size_t i = 0; i < 2; i++) EXPECT_EQ(lines[i]["output"], lines2[i]["output"]) << i;

  // rescore re-runs the 6 programs and gets the same numbers.
  auto rr = run("rescore " + sp.string() + " --out " + (d.p / "re").string());
  ASSERT_EQ(rr.rc, 0) << rr.out;
  json j2 = read_json(find_file(d.p / "re", "results_", ".json"));
  EXPECT_EQ(j2["results"]["humaneval"]["pass@1,create_test"], j["results"]["humaneval"]["pass@1,create_test"]);
}

TEST(EvalCli, SamplesOptionErrors) {
  auto r = run("eval " + kModel.string() + " --tasks humaneval --limit 1 --samples 5 --quiet");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("greedy decoding would give 5 identical samples"), std::string::npos) << r.out;
  r = run("eval " + kModel.string() + " --tasks humaneval,gsm8k --limit 1 --samples 5 --temperature 0.7 --quiet");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("'gsm8k' is scored on one generation"), std::string::npos) << r.out;
}

// The largest difference between two sciq runs' loglikelihoods (samples files in dirs a and b),
// each within bf16 error of the other's.
double sciq_loglik_max_diff(const fs::path& a_dir, const fs::path& b_dir) {
  auto se = read_jsonl(find_file(a_dir, "samples_sciq_", ".jsonl"));
  auto sb = read_jsonl(find_file(b_dir, "samples_sciq_", ".jsonl"));
  EXPECT_EQ(se.size(), sb.size());
  double maxdiff = 0;
  for (size_t i = 0; i < std::min(se.size(), sb.size()); ++i)
    for (size_t c = 0; c < se[i]["output"].size(); ++c) {
      const double a = se[i]["output"][c][0], b = sb[i]["output"][c][0];
      EXPECT_NEAR(a, b, 2e-2 * std::abs(a) + 0.05) << i << " " << c;
      maxdiff = std::max(maxdiff, std::abs(a - b));
    }
  return maxdiff;
}

TEST(EvalCli, Bf16DotIsRecordedAndStaysWithinBf16Error) {
  if (!fs::exists(kModel)) GTEST_SKIP() << "no fixture model at " << kModel;
  TempDir d("e2e_bf16dot");
  auto exact = run("eval " + kModel.string() + " --tasks sciq --limit 2 --quiet --out " + (d.p / "f32").string());
  auto fast = run("eval " + kModel.string() + " --tasks sciq --limit 2 --bf16-dot --quiet --out " + (d.p / "bf").string());
  ASSERT_EQ(exact.rc, 0) << exact.out;
  ASSERT_EQ(fast.rc, 0) << fast.out;
  json je = read_json(find_file(d.p / "f32", "results_", ".json"));
  json jb = read_json(find_file(d.p / "bf", "results_", ".json"));
  EXPECT_EQ(je["config"]["model_args"].get<std::string>().find("bf16_dot"), std::string::npos);
  EXPECT_NE(jb["config"]["model_args"].get<std::string>().find("bf16_dot=True"), std::string::npos);
  const double maxdiff = sciq_loglik_max_diff(d.p / "f32", d.p / "bf");
  std::ifstream cpu("/proc/cpuinfo");
  std::string info((std::istreambuf_iterator<char>(cpu)), std::istreambuf_iterator<char>());
  if (info.find("avx512_bf16") != std::string::npos) {
    EXPECT_GT(maxdiff, 0.0);  // the fast path really ran
  }
}

// --kv-cache-dtype bf16 is recorded in the results' model_args, moves the loglikelihoods by the
// cache's rounding only, and is refused for a server (which sets its own KV cache type).
TEST(EvalCli, KvCacheDtypeIsRecordedAndRefusedForServers) {
  if (!fs::exists(kModel)) GTEST_SKIP() << "no fixture model at " << kModel;
  TempDir d("e2e_kvdtype");
  auto exact = run("eval " + kModel.string() + " --tasks sciq --limit 2 --quiet --out " + (d.p / "f32").string());
  auto half = run("eval " + kModel.string() + " --tasks sciq --limit 2 --kv-cache-dtype bf16 --quiet --out " +
                  (d.p / "bf").string());
  ASSERT_EQ(exact.rc, 0) << exact.out;
  ASSERT_EQ(half.rc, 0) << half.out;
  EXPECT_NE(half.out.find("KV cache: bf16"), std::string::npos) << half.out;
  json je = read_json(find_file(d.p / "f32", "results_", ".json"));
  json jb = read_json(find_file(d.p / "bf", "results_", ".json"));
  EXPECT_EQ(je["config"]["model_args"].get<std::string>().find("kv_cache_dtype"), std::string::npos);
  EXPECT_NE(jb["config"]["model_args"].get<std::string>().find("kv_cache_dtype=bf16"), std::string::npos);
  const double maxdiff = sciq_loglik_max_diff(d.p / "f32", d.p / "bf");
  EXPECT_GT(maxdiff, 0.0);  // the bf16 cache really was used
  auto remote = run("eval --backend openai --base-url http://127.0.0.1:9/v1 --tasks sciq --kv-cache-dtype bf16");
  EXPECT_NE(remote.rc, 0);
  EXPECT_NE(remote.out.find("a server sets its own"), std::string::npos) << remote.out;
}

TEST(EvalCli, RescoreAndCompareLmEvalSamplesFiles) {
  // lm-eval v0.4.9.2's own samples files (tests/data/eval/lm_eval/README.md): re-scored by rvec to
  // the metrics lm-eval recorded (HumanEval executed in rvec's sandbox), then compared with them.
  TempDir d("lmeval_files");
  const std::string dir = std::string(RVEC_TESTDATA_DIR) + "/eval/lm_eval/samples_v0.4.9.2";
  auto r = run("rescore " + dir + "/samples_humaneval_2026-12-04T15-00-00.123456.jsonl " + dir +
               "/samples_sciq_2026-12-04T15-00-00.123456.jsonl --out " + (d.p / "out").string());
  ASSERT_EQ(r.rc, 0) << r.out;
  json j = read_json(find_file(d.p / "out", "results_", ".json"));
  EXPECT_DOUBLE_EQ(j["results"]["humaneval"]["pass@1,create_test"].get<double>(), 0.5) << r.out;
  EXPECT_NEAR(j["results"]["sciq"]["acc_norm,none"].get<double>(), 2.0 / 3, 1e-12);
  EXPECT_EQ(j["config"]["lm_eval_reference"], "v0.4.9.2");
  auto c = run("compare " + dir + " " + (d.p / "out").string() + " --json " + (d.p / "cmp.json").string());
  ASSERT_EQ(c.rc, 0) << c.out;
  json cmp = read_json(d.p / "cmp.json");
  ASSERT_EQ(cmp.size(), 3u) << c.out;  // humaneval pass@1, sciq acc and acc_norm
  for (auto& e : cmp) EXPECT_TRUE(e["differing"].empty()) << e.dump();
  auto bad = run("rescore " + dir + "/../bbh_v0.4.9.2.json");
  EXPECT_NE(bad.rc, 0);
  EXPECT_NE(bad.out.find("bbh_v0.4.9.2.json:1"), std::string::npos) << bad.out;
}
