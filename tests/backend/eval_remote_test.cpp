// `rvec eval --backend openai` end to end: kill -9 in the middle of a run against a mock server,
// then --resume sends only the requests whose samples were not cached; and against `rvec serve`
// it writes the same metrics and per-sample outputs as the in-process engine (generations
// byte for byte; log-likelihoods to ~1e-7 relative, with identical choices and metrics).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <functional>
#include <memory>
#include <cmath>
#include <fstream>
#include <thread>

#include "backend/launcher.h"
#include "mock_openai.h"
#include "test_util.h"
#include "text/tokenizer.h"

using namespace rvec;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const std::string kToy = std::string(RVEC_DATA_DIR) + "/toy/instruct";

std::string rvec_cmd(const std::string& args) { return std::string(RVEC_BIN) + " " + args; }

fs::path only_file(const fs::path& dir, const std::string& prefix, const std::string& ext) {
  fs::path found;
  for (auto& e : fs::directory_iterator(dir)) {
    std::string n = e.path().filename().string();
    if (n.rfind(prefix, 0) == 0 && e.path().extension() == ext) {
      EXPECT_TRUE(found.empty()) << "two files " << prefix << "*" << ext;
      found = e.path();
    }
  }
  EXPECT_FALSE(found.empty()) << "no " << prefix << "*" << ext << " in " << dir;
  return found;
}

// The questions of the first n toy_arith test documents and their "#### n" answers.
std::vector<std::pair<std::string, std::string>> toy_docs(size_t n) {
  std::vector<std::pair<std::string, std::string>> v;
  std::ifstream in(std::string(RVEC_DATA_DIR) + "/toy/toy_arith_test.jsonl");
  for (std::string line; v.size() < n && std::getline(in, line);) {
    json j = json::parse(line);
    std::string a = j["answer"];
    v.emplace_back(j["question"], a.substr(a.rfind("#### ")));
  }
  return v;
}

// A mock server's completion text for toy_arith prompts (bare questions, as token ids): the
// right "#### n" (then the stop string the client must cut), or a wrong answer for questions of
// odd length when `odd_wrong`.
std::function<std::string(const json&)> toy_answerer(const std::vector<std::pair<std::string, std::string>>& docs,
                                                     bool odd_wrong) {
  auto tok = std::make_shared<text::Tokenizer>(text::Tokenizer::from_model_dir(kToy));
  return [docs, tok, odd_wrong](const json& body) {
    std::string q = tok->decode(body["prompt"].get<std::vector<int32_t>>());
    for (auto& [question, ans] : docs)
      if (question == q) return odd_wrong && q.size() % 2 ? std::string("#### -1") : ans + "<|im_end|>";
    return std::string("unknown prompt");
  };
}

}  // namespace

TEST(EvalRemote, KillNineThenResumeRedoesOnlyUncachedRequests) {
  const size_t N = 40;
  auto docs = toy_docs(N);
  // Answers right for questions of even length, wrong otherwise; the expectation is counted here.
  auto answer = toy_answerer(docs, true);
  double expected = 0;
  for (auto& [q, a] : docs) expected += q.size() % 2 == 0;
  expected /= double(N);

  test_util::TempDir dir("eval_remote_resume");
  std::string args = fmt::format(
      "eval --backend openai --base-url {}/v1 --tokenizer {} --tasks toy_arith --limit {} --concurrency 2 "
      "--out {} --quiet",
      "{}", test_util::shell_quote(kToy), N, test_util::shell_quote(dir.p.string()));
  size_t cached = 0;
  {
    backend_test::MockOpenAI srv;
    srv.text = answer;
    srv.delay_s = 0.05;
    auto r = test_util::run_shell(rvec_cmd(fmt::format(fmt::runtime(args), srv.url())) + " > " +
                                  test_util::shell_quote((dir.p / "log1").string()) + " 2>&1 & echo $!");
    pid_t pid = std::stoi(r.out);
    for (int k = 0; k < 400 && srv.answered().size() < 10; k++) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    for (int k = 0; k < 200 && ::kill(pid, 0) == 0; k++) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    size_t answered = srv.answered().size();
    cached = test_util::read_jsonl(dir.p / "cache" / "toy_arith.jsonl").size();
    EXPECT_GE(cached + 2, answered) << "at most the 2 in-flight answers are lost";
    EXPECT_LT(cached, N);
  }
  backend_test::MockOpenAI srv2;
  srv2.text = answer;
  auto r2 = test_util::run_shell(rvec_cmd(fmt::format(fmt::runtime(args), srv2.url())) + " --resume 2>&1");
  ASSERT_EQ(r2.rc, 0) << r2.out;
  EXPECT_EQ(srv2.requests(), N - cached);
  json res = json::parse(std::ifstream(only_file(dir.p, "results_", ".json")));
  EXPECT_DOUBLE_EQ(res["results"]["toy_arith"]["exact_match,strict-match"].get<double>(), expected);
  auto samples = test_util::read_jsonl(only_file(dir.p, "samples_toy_arith_", ".jsonl"));
  ASSERT_EQ(samples.size(), N);
  // Provenance: the backend, the URL, the served model and the server's version.
  EXPECT_EQ(res["config"]["backend"]["kind"], "openai");
  EXPECT_EQ(res["config"]["backend"]["base_urls"], json::array({srv2.url()}));
  EXPECT_EQ(res["config"]["backend"]["served_model"], "mock-model");
  EXPECT_EQ(res["config"]["backend"]["servers"][0]["version"], "0.0.mock");
  EXPECT_EQ(res["config"]["model"], "mock-model");
}

// Served through `rvec serve` (two instances, launched like an experiment's managed servers) vs
// the in-process engine: identical results blocks and per-sample prompts, outputs and metrics.
// (--max-model-len: SciQ prompts are longer than the toy model's 512 positions in its tiny
// vocabulary; the in-process engine does not cap them either.)
TEST(EvalRemote, ThroughRvecServeEqualsInProcess) {
  test_util::TempDir dir("eval_remote_serve");
  backend::LaunchOptions lo;
  lo.command = test_util::shell_quote(RVEC_BIN) + " serve {model} --port {port} --threads 1 --batch 16 --max-model-len 4096";
  lo.instances = 2;
  lo.ready_timeout_s = 60;
  lo.log_dir = dir.p / "logs";
  lo.quiet = true;
  backend::ServerGroup servers(lo, kToy);
  auto urls = servers.urls();
  const std::string tasks = "--tasks toy_arith,sciq --limit 12 --chat";
  auto local = test_util::run_shell(rvec_cmd(fmt::format("eval {} {} --threads 1 --out {} --quiet 2>&1", kToy, tasks,
                                                         (dir.p / "local").string())));
  ASSERT_EQ(local.rc, 0) << local.out;
  auto remote = test_util::run_shell(rvec_cmd(
      fmt::format("eval {} --backend openai --base-url {} --base-url {}/v1 {} --out {} --quiet 2>&1", kToy, urls[0],
                  urls[1], tasks, (dir.p / "remote").string())));
  ASSERT_EQ(remote.rc, 0) << remote.out;
  json a = json::parse(std::ifstream(only_file(dir.p / "local", "results_", ".json")));
  json b = json::parse(std::ifstream(only_file(dir.p / "remote", "results_", ".json")));
  EXPECT_EQ(a["results"], b["results"]);
  EXPECT_EQ(b["config"]["backend"]["servers"][0]["owned_by"], "rvec");
  for (const char* task : {"toy_arith", "sciq"}) {
    auto sa = test_util::read_jsonl(only_file(dir.p / "local", std::string("samples_") + task + "_", ".jsonl"));
    auto sb = test_util::read_jsonl(only_file(dir.p / "remote", std::string("samples_") + task + "_", ".jsonl"));
    ASSERT_EQ(sa.size(), sb.size());
    for (size_t i = 0; i < sa.size(); i++) {
      for (const char* k : {"doc_id", "prompt", "filtered", "metrics"})
        EXPECT_EQ(sa[i][k], sb[i][k]) << task << " doc " << i << " " << k;
      if (sa[i]["output"].is_string()) {
        EXPECT_EQ(sa[i]["output"], sb[i]["output"]) << task << " doc " << i;  // generations: byte for byte
        continue;
      }
      // Log-likelihoods: rvec serve's echo pass runs the lm_head over every prompt position, a
      // different matmul shape than the engine's scoring pass (summation order, ~1e-7 relative;
      // see tests/serve); greedy flags and the argmax (the metrics above) are identical.
      ASSERT_EQ(sa[i]["output"].size(), sb[i]["output"].size());
      for (size_t c = 0; c < sa[i]["output"].size(); c++) {
        double x = sa[i]["output"][c][0], y = sb[i]["output"][c][0];
        EXPECT_NEAR(x, y, 1e-6 * std::abs(x)) << task << " doc " << i << " choice " << c;
        EXPECT_EQ(sa[i]["output"][c][1], sb[i]["output"][c][1]);
      }
    }
  }
}

TEST(EvalRemote, ClearErrorsBeforeAnythingRuns) {
  auto r = test_util::run_shell(rvec_cmd("eval --backend openai --tasks toy_arith 2>&1"));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("--base-url URL is required"), std::string::npos) << r.out;
  r = test_util::run_shell(rvec_cmd("eval " + kToy + " --base-url http://127.0.0.1:9 --tasks toy_arith 2>&1"));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("--base-url needs --backend openai"), std::string::npos) << r.out;
  // Nothing listens on port 9 (discard): named, not retried for minutes.
  r = test_util::run_shell(
      rvec_cmd("eval --backend openai --base-url http://user:pw@127.0.0.1:9/v1 --tasks toy_arith --quiet 2>&1"));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("no server answers at http://127.0.0.1:9"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("pw"), std::string::npos) << "credentials are never printed";
}

// An experiment on a running server (one-model grid) killed mid-cell resumes at request
// granularity: the cell's finished samples are kept in DIR/partial/ until the cell is written.
TEST(EvalRemote, ExperimentKilledMidCellResumesFinishedRequests) {
  const size_t N = 30;
  auto docs = toy_docs(N);
  auto answer = toy_answerer(docs, false);
  test_util::TempDir dir("exp_remote_resume");
  auto write_cfg = [&](const std::string& url) {
    std::ofstream(dir.p / "exp.yaml") << fmt::format(R"(name: remote
models: {{sft: {0}/toy/sft, grpo: {0}/toy/grpo, instruct: {0}/toy/instruct}}
alphas: [0]
random_control: false
tasks: [{{name: toy_arith, limit: {1}}}]
backend: {{kind: openai, base_url: {2}, concurrency: 2}}
)",
                                                     RVEC_DATA_DIR, N, url);
  };
  std::string run = rvec_cmd("experiment " + (dir.p / "exp.yaml").string() + " --out " + (dir.p / "out").string() + " --quiet");
  size_t cached = 0;
  {
    backend_test::MockOpenAI srv;
    srv.text = answer;
    srv.delay_s = 0.05;
    write_cfg(srv.url());
    auto r = test_util::run_shell(run + " > /dev/null 2>&1 & echo $!");
    pid_t pid = std::stoi(r.out);
    for (int k = 0; k < 400 && srv.answered().size() < 10; k++) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    for (int k = 0; k < 200 && ::kill(pid, 0) == 0; k++) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    for (auto& e : fs::recursive_directory_iterator(dir.p / "out" / "partial"))
      if (e.path().filename() == "toy_arith.jsonl") cached = test_util::read_jsonl(e.path()).size();
    EXPECT_GE(cached, 8u);
    EXPECT_LT(cached, N);
  }
  backend_test::MockOpenAI srv2;  // the "restarted server", on another port: the URL is not part of a cell's identity
  srv2.text = answer;
  write_cfg(srv2.url());
  auto r2 = test_util::run_shell(run + " --resume 2>&1");
  ASSERT_EQ(r2.rc, 0) << r2.out;
  EXPECT_EQ(srv2.requests(), N - cached);
  json res = json::parse(std::ifstream(dir.p / "out" / "results.json"));
  EXPECT_DOUBLE_EQ(res["rows"][0]["value"].get<double>(), 1.0);
  EXPECT_FALSE(fs::exists(dir.p / "out" / "partial"));
}
