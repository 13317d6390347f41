// End-to-end tests of `rvec experiment` and `rvec demo` on a tiny random model family built
// with `rvec testmodel` (results are meaningless; the pipeline is what is tested): resume after
// an injected failure gives identical results, the random control has v's per-tensor norms,
// and the demo writes its three outputs.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/atomic_output.h"
#include "core/dtype.h"
#include "io/model_dir.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

int sh(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

const char* kChatTemplate =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// A tiny family sft / grpo / instruct (+ chat template) and a toy_arith data root.
class ExpCli : public ::testing::Test {
 protected:
  static fs::path root;
  static void SetUpTestSuite() {
    root = fs::temp_directory_path() / ("rvec-exp-cli-" + std::to_string(getpid()));
    fs::remove_all(root);
    fs::create_directories(root / "data" / "toy");
    std::string bin = RVEC_BIN;
    fs::path toy = root / "data" / "toy";
    ASSERT_EQ(sh(bin + " testmodel --arch qwen2 --shape tiny --seed 3 -q -o " + (toy / "instruct").string()), 0);
    ASSERT_EQ(sh(bin + " testmodel --like " + (toy / "instruct").string() + " --perturb 0.02 --seed 1 -q -o " +
                 (toy / "sft").string()),
              0);
    ASSERT_EQ(sh(bin + " testmodel --like " + (toy / "sft").string() + " --perturb 0.01 --seed 2 -q -o " +
                 (toy / "grpo").string()),
              0);
    for (auto m : {"sft", "grpo", "instruct"}) {
      fs::path p = toy / m / "tokenizer_config.json";
      json j = json::parse(rvec::read_file(p));
      j["chat_template"] = kChatTemplate;
      fs::permissions(p, fs::perms::owner_write, fs::perm_options::add);
      std::ofstream(p) << j.dump(2);
    }
    fs::copy_file(fs::path(RVEC_TESTDATA_DIR) / "exp" / "toy" / "toy_arith_test.jsonl", toy / "toy_arith_test.jsonl");
    std::ofstream(root / "exp.yaml") << R"(name: tiny
models: {sft: data/toy/sft, grpo: data/toy/grpo, instruct: data/toy/instruct}
alphas: [-1, 0, 0.5, 1]
conditions: [plain, think]
tasks:
  - {name: toy_arith, limit: 4, chat: true, max_gen_tokens: 10, data_dir: data}
random_control: {seed: 5, alphas: [1, -1]}
eval: {threads: 1, batch: 4}
)";
  }
  static void TearDownTestSuite() { fs::remove_all(root); }
  std::string exp(const std::string& args) {
    return std::string(RVEC_BIN) + " experiment " + (root / "exp.yaml").string() + " " + args + " >" +
           (root / "log.txt").string() + " 2>&1";
  }
};
fs::path ExpCli::root;

std::map<std::string, double> tensor_norms(const fs::path& dir) {
  auto m = rvec::io::ModelDir::open(dir, false);
  std::map<std::string, double> out;
  for (const auto* t : m->tensors()) {
    std::vector<float> f(t->numel());
    rvec::to_f32(t->dtype, t->data, f.data(), f.size());
    double s = 0;
    for (float x : f) s += double(x) * x;
    out[t->name] = std::sqrt(s);
  }
  return out;
}

}  // namespace

TEST_F(ExpCli, ResumeAfterInjectedFailureIsIdentical) {
  fs::path ref = root / "ref", run = root / "run";
  ASSERT_EQ(sh(exp("--quiet --out " + ref.string())), 0) << rvec::read_file(root / "log.txt");
  json a = json::parse(rvec::read_file(ref / "results.json"));
  ASSERT_EQ(a["rows"].size(), 6u * 2u);  // (baseline, -1, 0.5, 1, rand+1, rand-1) x (plain, think)
  for (auto& r : a["rows"])
    for (const char* k : {"model", "alpha", "task", "metric", "value", "stderr", "n", "per_doc"})
      ASSERT_TRUE(r.contains(k)) << k;
  EXPECT_FALSE(fs::exists(ref / "scratch"));

  // Killed (injected failure) after 5 computed cells; then resumed.
  EXPECT_NE(sh("RVEC_TEST_FAIL_AFTER_CELLS=5 " + exp("--quiet --out " + run.string())), 0);
  EXPECT_NE(rvec::read_file(root / "log.txt").find("injected failure"), std::string::npos);
  EXPECT_FALSE(fs::exists(run / "results.json"));
  EXPECT_NE(sh(exp("--quiet --out " + run.string())), 0);  // cached cells need --resume
  ASSERT_EQ(sh(exp("--resume --out " + run.string())), 0) << rvec::read_file(root / "log.txt");
  EXPECT_NE(rvec::read_file(root / "log.txt").find("12 cells (7 computed, 5 cached)"), std::string::npos)
      << rvec::read_file(root / "log.txt");
  json b = json::parse(rvec::read_file(run / "results.json"));
  EXPECT_EQ(a["rows"], b["rows"]);
  EXPECT_EQ(rvec::read_file(ref / "report.md"), rvec::read_file(run / "report.md"));
}

TEST_F(ExpCli, RandomControlHasTheVectorsPerTensorNorms) {
  fs::path out = root / "norms";
  ASSERT_EQ(sh(exp("--quiet --out " + out.string())), 0) << rvec::read_file(root / "log.txt");
  fs::path v, rnd;
  for (auto& e : fs::directory_iterator(out / "vectors")) {
    std::string n = e.path().filename().string();
    if (n.rfind("v-random-5-", 0) == 0) rnd = e.path();
    else if (n.rfind("v-", 0) == 0) v = e.path();
  }
  ASSERT_FALSE(v.empty());
  ASSERT_FALSE(rnd.empty());
  auto nv = tensor_norms(v), nr = tensor_norms(rnd);
  ASSERT_EQ(nv.size(), nr.size());
  ASSERT_GT(nv.size(), 5u);
  for (auto& [name, norm] : nv) {
    ASSERT_TRUE(nr.count(name)) << name;
    EXPECT_NEAR(nr[name], norm, 1e-2 * norm + 1e-6) << name;  // bf16/f32 storage rounding
  }
  // ... and is a different direction: v of the embedding is not reproduced.
  auto mv = rvec::io::ModelDir::open(v, false), mr = rvec::io::ModelDir::open(rnd, false);
  const auto& tv = mv->get("model.embed_tokens.weight");
  const auto& tr = mr->get("model.embed_tokens.weight");
  std::vector<float> fv(tv.numel()), fr(tr.numel());
  rvec::to_f32(tv.dtype, tv.data, fv.data(), fv.size());
  rvec::to_f32(tr.dtype, tr.data, fr.data(), fr.size());
  double dot = 0, a2 = 0, b2 = 0;
  for (size_t i = 0; i < fv.size(); ++i) dot += double(fv[i]) * fr[i], a2 += double(fv[i]) * fv[i], b2 += double(fr[i]) * fr[i];
  EXPECT_LT(std::fabs(dot / std::sqrt(a2 * b2)), 0.1);
}

TEST_F(ExpCli, DemoPipelineOnTinyFamily) {
  fs::path out = root / "demo";
  std::string cmd = std::string(RVEC_BIN) + " demo --data-dir " + (root / "data").string() +
                    " --limit 3 --threads 1 --out " + out.string() + " >" + (root / "demo.txt").string() + " 2>&1";
  ASSERT_EQ(sh(cmd), 0) << rvec::read_file(root / "demo.txt");
  for (auto f : {"results.json", "report.md", "alpha_sweep.svg"}) EXPECT_TRUE(fs::exists(out / f)) << f;
  json r = json::parse(rvec::read_file(out / "results.json"));
  EXPECT_EQ(r["rows"].size(), 9u);  // 7 alphas (incl. the baseline) + 2 random controls
  std::string txt = rvec::read_file(root / "demo.txt");
  EXPECT_NE(txt.find("α=1.5"), std::string::npos) << txt;
  EXPECT_NE(txt.find("random (α=1)"), std::string::npos) << txt;
  // A second demo run starts afresh (no --resume needed) and gives the same rows.
  ASSERT_EQ(sh(cmd), 0) << rvec::read_file(root / "demo.txt");
  EXPECT_EQ(json::parse(rvec::read_file(out / "results.json"))["rows"], r["rows"]);
}
