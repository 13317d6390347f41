// The experiment runner with scripted evaluation and fake arithmetic: caching, resume
// after an injected failure, incremental alphas, and the consistency of report.md and
// alpha_sweep.svg with results.json.
#include "exp/runner.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "core/atomic_output.h"
#include "core/error.h"
#include "exp/stats.h"
#include "xml_check.h"

namespace fs = std::filesystem;
using namespace rvec::experiment;
using nlohmann::json;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("rvec-exp-test-" + std::to_string(getpid()) + "-" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

void write(const fs::path& p, const std::string& s) {
  std::ofstream f(p);
  f << s;
}

// Fake arithmetic: directories with a text file saying what they are.
struct FakeOps : VectorOps {
  int extracts = 0, applies = 0, randoms = 0;
  void extract(const fs::path& base, const fs::path& tuned, const fs::path& out) override {
    ++extracts;
    fs::create_directories(out);
    write(out / "what", "vector " + tuned.filename().string() + "-" + base.filename().string());
  }
  void apply(const fs::path& target, const fs::path& vector, double alpha, const fs::path& out) override {
    ++applies;
    fs::create_directories(out);
    bool random = rvec::read_file(vector / "what").rfind("random", 0) == 0;
    write(out / "what", (random ? "random " : "model ") + std::to_string(alpha) + " " + target.filename().string());
  }
  void random_like(const fs::path& vector, uint64_t seed, const fs::path& out) override {
    ++randoms;
    fs::create_directories(out);
    write(out / "what", "random " + std::to_string(seed) + " of " + vector.filename().string());
  }
};

// Scripted evaluation: each document is correct with a probability that rises with alpha
// for the real vector and is flat for the random one (deterministic hash per document).
struct ScriptedEval : CellEvaluator {
  int calls = 0;
  std::vector<std::string> models_seen;
  CellResult evaluate(const fs::path& model, const ConditionConfig& cond, const TaskConfig& task) override {
    ++calls;
    double alpha = 0;
    bool random = false;
    if (fs::exists(model / "what")) {
      std::istringstream in(rvec::read_file(model / "what"));
      std::string kind;
      in >> kind >> alpha;
      random = kind == "random";
      models_seen.push_back(kind + std::to_string(alpha));
    } else {
      models_seen.push_back("target");
    }
    double p = random ? 0.5 : 0.5 + 0.2 * alpha;
    if (cond.think) p += 0.05;
    CellResult r;
    r.metric = "exact_match,strict-match";
    r.n = task.limit > 0 ? task.limit : 40;
    for (int64_t i = 0; i < r.n; ++i) {
      uint64_t h = std::hash<std::string>{}(task.name + "#" + std::to_string(i)) % 1000;
      r.per_doc.push_back(double(h) / 1000.0 < p ? 1.0 : 0.0);
    }
    r.value = mean(r.per_doc);
    r.std_err = stderr_of_mean(r.per_doc);
    return r;
  }
};

ExperimentConfig make_config(const fs::path& root, const std::string& extra = "") {
  for (auto m : {"sft", "grpo", "instruct"}) fs::create_directories(root / "models" / m);
  return parse_config(R"(
name: scripted
models: {sft: models/sft, grpo: models/grpo, instruct: models/instruct}
alphas: [-1, 0, 0.5, 1]
conditions: [plain, think]
tasks:
  - {name: taskA, limit: 60}
  - {name: taskB, limit: 30}
random_control: {seed: 9, alphas: [1, -1]}
)" + extra,
                      root, "scripted.yaml");
}

json rows_without_timing(const fs::path& out) { return json::parse(rvec::read_file(out / "results.json"))["rows"]; }

}  // namespace

TEST(Runner, PlanVariants) {
  auto root = temp_dir("plan");
  auto cfg = make_config(root);
  auto v = plan_variants(cfg);
  std::vector<std::string> ids;
  for (auto& x : v) ids.push_back(x.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"instruct", "instruct-1*v", "instruct+0.5*v", "instruct+1*v",
                                           "instruct+1*rand(v)", "instruct-1*rand(v)"}));
  EXPECT_TRUE(v[4].control);
  fs::remove_all(root);
}

TEST(Runner, FullRunWritesConsistentOutputs) {
  auto root = temp_dir("full");
  auto cfg = make_config(root);
  FakeOps ops;
  ScriptedEval ev;
  RunOptions o;
  o.out = root / "out";
  o.quiet = true;
  auto s = run_experiment(cfg, o, ev, ops);
  const size_t ncells = 6 * 2 * 2;
  EXPECT_EQ(s.cells_total, ncells);
  EXPECT_EQ(s.cells_computed, ncells);
  EXPECT_EQ(ev.calls, int(ncells));
  EXPECT_EQ(ops.extracts, 1);
  EXPECT_EQ(ops.randoms, 1);
  EXPECT_EQ(ops.applies, 5);  // one merged model per non-zero alpha, shared by its 4 cells
  EXPECT_FALSE(fs::exists(o.out / "scratch"));  // transient models deleted
  size_t cell_files = 0;
  for (auto& e : fs::directory_iterator(o.out / "cells")) cell_files += e.path().extension() == ".json";
  EXPECT_EQ(cell_files, ncells);

  json res = json::parse(rvec::read_file(o.out / "results.json"));
  ASSERT_EQ(res["rows"].size(), ncells);
  for (auto& r : res["rows"])
    for (const char* k : {"model", "alpha", "condition", "task", "metric", "value", "stderr", "n", "per_doc"})
      EXPECT_TRUE(r.contains(k)) << k;
  // Deltas and p-values recomputed independently from the per-document scores.
  for (auto& r : res["rows"]) {
    if (r["alpha"].get<double>() == 0) {
      EXPECT_TRUE(r["delta"].is_null());
      continue;
    }
    const json* b = nullptr;
    for (auto& q : res["rows"])
      if (q["alpha"].get<double>() == 0 && q["condition"] == r["condition"] && q["task"] == r["task"]) b = &q;
    ASSERT_NE(b, nullptr);
    auto bd = (*b)["per_doc"].get<std::vector<double>>(), md = r["per_doc"].get<std::vector<double>>();
    EXPECT_NEAR(r["delta"].get<double>(), mean(md) - mean(bd), 1e-12);
    EXPECT_EQ(r["test"], "mcnemar_exact");
    EXPECT_NEAR(r["p_value"].get<double>(), mcnemar(bd, md).p_exact, 1e-12);
  }

  // report.md: every number of the "All cells" table equals results.json's.
  std::string md = rvec::read_file(o.out / "report.md");
  EXPECT_EQ(md, s.report_md);
  auto pos = md.find("## All cells");
  ASSERT_NE(pos, std::string::npos);
  std::istringstream in(md.substr(pos));
  std::string line;
  std::vector<std::vector<std::string>> table;
  while (std::getline(in, line)) {
    if (line.size() < 2 || line[0] != '|' || line.find("---") != std::string::npos) continue;
    std::vector<std::string> cols;
    std::string cur;
    for (size_t i = 1; i < line.size(); ++i) {
      if (line[i] == '|') {
        cols.push_back(cur.substr(1, cur.size() - 2));
        cur.clear();
      } else {
        cur += line[i];
      }
    }
    table.push_back(cols);
  }
  ASSERT_EQ(table.size(), ncells + 1);  // header + one line per row
  for (size_t i = 0; i < ncells; ++i) {
    const auto& c = table[i + 1];
    const json& r = res["rows"][i];
    EXPECT_EQ(c[0], r["model"].get<std::string>());
    EXPECT_EQ(c[2], r["condition"].get<std::string>());
    EXPECT_EQ(c[3], r["task"].get<std::string>());
    EXPECT_NEAR(std::stod(c[5]), r["value"].get<double>() * 100, 0.005 + 1e-9);
    EXPECT_NEAR(std::stod(c[6]), r["stderr"].get<double>() * 100, 0.005 + 1e-9);
    EXPECT_EQ(std::stoll(c[7]), r["n"].get<int64_t>());
    if (r["delta"].is_null()) {
      EXPECT_EQ(c[8], "–");
    } else {
      EXPECT_NEAR(std::stod(c[8]), r["delta"].get<double>() * 100, 0.005 + 1e-9);
      double p = r["p_value"].get<double>();
      EXPECT_NEAR(std::stod(c[9]), p, std::max(0.0005, p * 0.051));
    }
  }
  // The summary line of taskA / plain carries the same baseline and +v numbers.
  json base, plus;
  for (auto& r : res["rows"]) {
    if (r["task"] != "taskA" || r["condition"] != "plain") continue;
    if (r["alpha"].get<double>() == 0) base = r;
    if (r["alpha"].get<double>() == 1 && !r["control"].get<bool>()) plus = r;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "| instruct | plain | taskA | %.2f | %.2f (%+.2f", base["value"].get<double>() * 100,
                plus["value"].get<double>() * 100, plus["delta"].get<double>() * 100);
  EXPECT_NE(md.find(buf), std::string::npos) << buf << "\n" << md;

  // alpha_sweep.svg: valid XML, one line series per (task, condition) and one control series each.
  auto svg = xmlcheck::parse(rvec::read_file(o.out / "alpha_sweep.svg"));
  int lines = 0, controls = 0;
  xmlcheck::visit(*svg, [&](const xmlcheck::Node& n) {
    if (n.name != "g" || !n.attrs.count("class")) return;
    if (n.attrs.at("class") == "series") ++lines;
    if (n.attrs.at("class") == "series control") ++controls;
  });
  EXPECT_EQ(lines, 4);
  EXPECT_EQ(controls, 4);
  fs::remove_all(root);
}

TEST(Runner, ResumeAfterInjectedFailureGivesIdenticalResults) {
  auto root = temp_dir("resume");
  auto cfg = make_config(root);
  RunOptions o;
  o.quiet = true;
  // Uninterrupted reference run.
  {
    FakeOps ops;
    ScriptedEval ev;
    o.out = root / "ref";
    run_experiment(cfg, o, ev, ops);
  }
  // Interrupted run: fails after 7 computed cells (in the middle of a merged model's cells).
  o.out = root / "run";
  {
    FakeOps ops;
    ScriptedEval ev;
    o.fail_after_cells = 7;
    EXPECT_THROW(run_experiment(cfg, o, ev, ops), rvec::Error);
    EXPECT_FALSE(fs::exists(o.out / "results.json"));
  }
  // Without --resume the cached cells are not silently reused.
  {
    FakeOps ops;
    ScriptedEval ev;
    o.fail_after_cells = -1;
    EXPECT_THROW(run_experiment(cfg, o, ev, ops), rvec::Error);
  }
  {
    FakeOps ops;
    ScriptedEval ev;
    o.resume = true;
    auto s = run_experiment(cfg, o, ev, ops);
    EXPECT_EQ(s.cells_cached, 7u);
    EXPECT_EQ(s.cells_computed, 24u - 7u);
    EXPECT_EQ(ev.calls, 17);
  }
  EXPECT_EQ(rows_without_timing(root / "ref"), rows_without_timing(root / "run"));
  EXPECT_EQ(rvec::read_file(root / "ref" / "report.md"), rvec::read_file(root / "run" / "report.md"));
  EXPECT_EQ(rvec::read_file(root / "ref" / "alpha_sweep.svg"), rvec::read_file(root / "run" / "alpha_sweep.svg"));

  // A re-run with one more alpha computes only the new cells (2 conditions x 2 tasks).
  auto cfg2 = make_config(root, "");
  cfg2.alphas.push_back(1.5);
  {
    FakeOps ops;
    ScriptedEval ev;
    auto s = run_experiment(cfg2, o, ev, ops);
    EXPECT_EQ(s.cells_computed, 4u);
    EXPECT_EQ(ops.applies, 1);
    EXPECT_EQ(ops.extracts, 0);  // the vector was kept from the first run
    EXPECT_EQ(s.results["rows"].size(), 28u);
  }
  // Changing a task option invalidates exactly that task's cells.
  auto cfg3 = cfg2;
  cfg3.tasks[1].limit = 20;
  {
    FakeOps ops;
    ScriptedEval ev;
    auto s = run_experiment(cfg3, o, ev, ops);
    EXPECT_EQ(s.cells_computed, 14u);  // 7 models x 2 conditions of taskB
  }
  fs::remove_all(root);
}

TEST(Runner, KeepModels) {
  auto root = temp_dir("keep");
  auto cfg = make_config(root);
  FakeOps ops;
  ScriptedEval ev;
  RunOptions o;
  o.out = root / "out";
  o.quiet = true;
  o.keep_models = true;
  run_experiment(cfg, o, ev, ops);
  size_t kept = 0;
  for (auto& e : fs::directory_iterator(o.out / "models")) kept += fs::is_directory(e.path());
  EXPECT_EQ(kept, 5u);
  fs::remove_all(root);
}

TEST(Runner, MissingModelIsAnError) {
  auto root = temp_dir("missing");
  auto cfg = make_config(root);
  fs::remove_all(root / "models" / "grpo");
  FakeOps ops;
  ScriptedEval ev;
  RunOptions o;
  o.out = root / "out";
  o.quiet = true;
  EXPECT_THROW(run_experiment(cfg, o, ev, ops), rvec::Error);
  EXPECT_EQ(ev.calls, 0);
  fs::remove_all(root);
}

TEST(Runner, RunningServerNeedsAOneModelGrid) {
  auto root = temp_dir("base_url");
  FakeOps ops;
  ScriptedEval ev;
  RunOptions o;
  o.out = root / "out";
  o.quiet = true;
  // alphas -1, 0, 0.5, 1 and the control at 1, -1: six models.
  auto cfg = make_config(root, "backend: {kind: openai, base_url: http://127.0.0.1:9}\n");
  try {
    run_experiment(cfg, o, ev, ops);
    FAIL() << "expected an error";
  } catch (const rvec::Error& e) {
    EXPECT_NE(std::string(e.what()).find("evaluates 6 models"), std::string::npos) << e.what();
  }
  EXPECT_EQ(ev.calls, 0);
  // One model (the target at alpha 0, no control): accepted.
  auto one = make_config(root, "backend: {kind: openai, base_url: http://127.0.0.1:9}\n");
  one.alphas = {0};
  one.control.enabled = false;
  o.fresh = true;
  run_experiment(one, o, ev, ops);
  EXPECT_EQ(ev.calls, 4);  // 2 conditions x 2 tasks
  fs::remove_all(root);
}
