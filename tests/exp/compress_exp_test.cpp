// The experiment's `compress:` option with fake arithmetic and scripted scores: compressed
// variants at α = 1, their cells' storage figures, the gain-retained rows of results.json
// (checked against the cells' own scores), report.md's table, gain_vs_size.svg, resume,
// and config errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "core/atomic_output.h"
#include "core/error.h"
#include "exp/runner.h"
#include "exp/stats.h"
#include "xml_check.h"

namespace fs = std::filesystem;
using namespace rvec::experiment;
using nlohmann::json;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("rvec-cexp-test-" + std::to_string(getpid()) + "-" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// A vector is a directory holding its "strength" (what) and a safetensors file of a given size.
void fake_vector(const fs::path& out, double strength, size_t bytes) {
  fs::create_directories(out);
  rvec::write_file_atomic(out / "what", std::to_string(strength));
  rvec::write_file_atomic(out / "model.safetensors", std::string(bytes, 'x'));
}

struct CompressOps : VectorOps {
  int compresses = 0;
  void extract(const fs::path&, const fs::path&, const fs::path& out) override { fake_vector(out, 1.0, 1000); }
  void apply(const fs::path&, const fs::path& vector, double alpha, const fs::path& out) override {
    fs::create_directories(out);
    rvec::write_file_atomic(out / "what", std::to_string(alpha * std::stod(rvec::read_file(vector / "what"))));
  }
  void random_like(const fs::path&, uint64_t, const fs::path&) override { FAIL() << "no random control configured"; }
  void compress(const fs::path&, const CompressConfig& c, const fs::path& out) override {
    ++compresses;
    // sparse d: strength 0.5, 100 bytes; int8: strength 0.9, 250 bytes.
    const bool sp = c.method == "sparse";
    fake_vector(out, sp ? 0.5 : 0.9, sp ? 100 : 250);
    rvec::write_file_atomic(out / "compress_report.json", json{{"total", {{"rel_err", sp ? 0.6 : 0.01}}}}.dump());
  }
};

// Documents correct with probability 0.3 + 0.4·strength (deterministic per document).
struct StrengthEval : CellEvaluator {
  CellResult evaluate(const fs::path& model, const ConditionConfig&, const TaskConfig& task) override {
    const double s = fs::exists(model / "what") ? std::stod(rvec::read_file(model / "what")) : 0.0;
    CellResult r;
    r.metric = "exact_match,strict-match";
    r.n = task.limit;
    for (int64_t i = 0; i < r.n; ++i)
      r.per_doc.push_back(double(std::hash<std::string>{}(task.name + std::to_string(i)) % 1000) / 1000.0 <
                                  0.3 + 0.4 * s
                              ? 1.0
                              : 0.0);
    r.value = mean(r.per_doc);
    r.std_err = stderr_of_mean(r.per_doc);
    return r;
  }
};

ExperimentConfig config(const fs::path& root, const std::string& compress, const std::string& alphas = "[0, 1]") {
  for (auto m : {"sft", "grpo", "instruct"}) fs::create_directories(root / "models" / m);
  return parse_config(R"(
name: cexp
models: {sft: models/sft, grpo: models/grpo, instruct: models/instruct}
alphas: )" + alphas + R"(
tasks: [{name: taskA, limit: 400}]
random_control: false
compress: )" + compress + "\n",
                      root, "cexp.yaml");
}

}  // namespace

TEST(CompressExperiment, GainRetainedAgainstTheCellsScores) {
  auto root = temp_dir("gain");
  auto cfg = config(root, "[{method: sparse, density: 0.1}, {method: int8}]");
  auto v = plan_variants(cfg);
  std::vector<std::string> ids;
  for (auto& x : v) ids.push_back(x.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"instruct", "instruct+1*v", "instruct+1*v[sparse-d0.1]", "instruct+1*v[int8]"}));
  // The lossless vector's cells keep their fingerprints when compress: is added.
  EXPECT_EQ(cell_fingerprint(cfg, v[1], cfg.conditions[0], cfg.tasks[0]),
            cell_fingerprint(config(root, "[]"), v[1], cfg.conditions[0], cfg.tasks[0]));
  EXPECT_NE(cell_fingerprint(cfg, v[2], cfg.conditions[0], cfg.tasks[0]),
            cell_fingerprint(cfg, v[3], cfg.conditions[0], cfg.tasks[0]));
  CompressOps ops;
  StrengthEval ev;
  RunOptions o;
  o.out = root / "out";
  o.quiet = true;
  auto s = run_experiment(cfg, o, ev, ops);
  EXPECT_EQ(s.cells_total, 4u);
  EXPECT_EQ(ops.compresses, 2);
  const json res = json::parse(rvec::read_file(o.out / "results.json"));
  std::map<std::string, double> val;
  for (auto& r : res["rows"]) val[r["model"]] = r["value"];
  const double base = val["instruct"], lossless = val["instruct+1*v"] - base;
  ASSERT_GT(lossless, 0.1);  // strength 1 vs 0: about 40 points
  const auto& g = res["gain_retained"];
  ASSERT_EQ(g.size(), 3u);
  EXPECT_EQ(g[0]["compress"], "");
  EXPECT_DOUBLE_EQ(g[0]["retained"].get<double>(), 1.0);
  EXPECT_EQ(g[0]["bytes"], 1000);
  EXPECT_DOUBLE_EQ(g[0]["size_fraction"].get<double>(), 1.0);
  EXPECT_EQ(g[1]["compress"], "sparse-d0.1");
  EXPECT_EQ(g[1]["bytes"], 100);
  EXPECT_DOUBLE_EQ(g[1]["size_fraction"].get<double>(), 0.1);
  EXPECT_DOUBLE_EQ(g[1]["rel_err"].get<double>(), 0.6);
  EXPECT_DOUBLE_EQ(g[1]["retained"].get<double>(), (val["instruct+1*v[sparse-d0.1]"] - base) / lossless);
  EXPECT_EQ(g[2]["compress"], "int8");
  EXPECT_DOUBLE_EQ(g[2]["retained"].get<double>(), (val["instruct+1*v[int8]"] - base) / lossless);
  EXPECT_DOUBLE_EQ(g[2]["size_fraction"].get<double>(), 0.25);
  // Strength 0.5 keeps about half the gain, 0.9 about 90% (400 documents).
  EXPECT_NEAR(g[1]["retained"].get<double>(), 0.5, 0.15);
  EXPECT_NEAR(g[2]["retained"].get<double>(), 0.9, 0.15);
  // The summary and sweep still use the lossless vector.
  const std::string md = rvec::read_file(o.out / "report.md");
  EXPECT_NE(md.find("## Gain retained vs size"), std::string::npos);
  EXPECT_NE(md.find("v [int8]"), std::string::npos);
  EXPECT_NE(md.find(fmt::format("{:.2f}%", g[1]["retained"].get<double>() * 100)), std::string::npos);
  const std::string svg = rvec::read_file(o.out / "gain_vs_size.svg");
  EXPECT_NO_THROW(xmlcheck::parse(svg));
  EXPECT_NE(svg.find("sparse"), std::string::npos);
  EXPECT_EQ(rvec::read_file(o.out / "alpha_sweep.svg").find("int8"), std::string::npos);
  // Resumed: everything cached, the same table (the storage figures live in the cells).
  CompressOps ops2;
  RunOptions o2 = o;
  o2.resume = true;
  auto s2 = run_experiment(cfg, o2, ev, ops2);
  EXPECT_EQ(s2.cells_computed, 0u);
  EXPECT_EQ(ops2.compresses, 0);
  EXPECT_EQ(json::parse(rvec::read_file(o.out / "results.json"))["gain_retained"], g);
  fs::remove_all(root);
}

TEST(CompressExperiment, ConfigErrors) {
  auto root = temp_dir("cfg");
  auto err = [&](const std::string& compress, const std::string& alphas, const std::string& piece) {
    try {
      config(root, compress, alphas);
      ADD_FAILURE() << "accepted: " << compress;
    } catch (const rvec::Error& e) {
      EXPECT_NE(std::string(e.what()).find(piece), std::string::npos) << e.what();
    }
  };
  err("[{method: int8}]", "[0, 0.5]", "add 1 to `alphas`");
  err("[{method: gzip}]", "[0, 1]", "unknown method 'gzip'");
  err("[{method: sparse, density: 0}]", "[0, 1]", "density 0");
  err("[{method: sparse, scope: layer}]", "[0, 1]", "scope 'layer'");
  err("[{method: lora}]", "[0, 1]", "exactly one of rank");
  err("[{method: int8, rank: 4}]", "[0, 1]", "rank and energy are options of method lora");
  err("[{method: int8}, {method: int8}]", "[0, 1]", "'int8' is listed twice");
  err("[{method: sparse, dens: 0.1}]", "[0, 1]", "unknown key 'dens'");
  auto cfg = config(root, "[{method: sparse, density: 0.05, scope: global}, {method: lora, rank: 16}, int8]");
  ASSERT_EQ(cfg.compress.size(), 3u);
  EXPECT_EQ(cfg.compress[0].key(), "sparse-d0.05-global");
  EXPECT_EQ(cfg.compress[1].key(), "lora-r16");
  EXPECT_EQ(cfg.compress[2].key(), "int8");
  fs::remove_all(root);
}
