// End-to-end: rvec lora extract (vector or base + tuned), apply --lora ADAPTER[:ALPHA], export
// gguf-lora, and their errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "test_util.h"

namespace fs = std::filesystem;
using rvec::test_util::run_shell;
using rvec::test_util::TempDir;

namespace {
std::string run_rvec(const std::string& args) { return std::string(RVEC_BIN) + " " + args + " 2>&1"; }
std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}
}  // namespace

TEST(LoraCli, ExtractApplyExportAndErrors) {
  TempDir t("lora_cli");
  const std::string base = (t.p / "base").string(), tuned = (t.p / "tuned").string(), vec = (t.p / "vec").string();
  ASSERT_EQ(run_shell(run_rvec("testmodel --preset tiny --dtype f32 -q -o " + base)).rc, 0);
  ASSERT_EQ(run_shell(run_rvec("testmodel --like " + base + " --perturb 0.01 --seed 3 -q -o " + tuned)).rc, 0);
  ASSERT_EQ(run_shell(run_rvec("extract --base " + base + " --tuned " + tuned + " -q -o " + vec)).rc, 0);

  // Full rank from base + tuned: apply reproduces the tuned model's logits (to float noise).
  auto r = run_shell(run_rvec("lora extract --base " + base + " --tuned " + tuned + " --rank 4096 -o " +
                              (t.p / "full").string()));
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("model.layers.1.mlp.down_proj.weight"), std::string::npos) << r.out;  // per-tensor table
  EXPECT_NE(r.out.find("relative error"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(t.p / "full" / "adapter_config.json"));
  EXPECT_TRUE(fs::exists(t.p / "full" / "adapter_model.safetensors"));
  r = run_shell(run_rvec("apply " + base + " --lora " + (t.p / "full").string() + " -q -o " + (t.p / "m").string()));
  ASSERT_EQ(r.rc, 0) << r.out;
  r = run_shell(run_rvec("logits " + tuned + " --tokens 1,2,3 --out " + (t.p / "a.npy").string()));
  ASSERT_EQ(r.rc, 0) << r.out;
  r = run_shell(run_rvec("logits " + (t.p / "m").string() + " --tokens 1,2,3 --out " + (t.p / "b.npy").string()));
  ASSERT_EQ(r.rc, 0) << r.out;
  const std::string a = slurp(t.p / "a.npy"), b = slurp(t.p / "b.npy");
  ASSERT_EQ(a.size(), b.size());
  double worst = 0;
  const size_t n = 3 * 1024;
  const float* fa = reinterpret_cast<const float*>(a.data() + a.size() - n * 4);
  const float* fb = reinterpret_cast<const float*>(b.data() + b.size() - n * 4);
  for (size_t i = 0; i < n; ++i) worst = std::max(worst, double(std::abs(fa[i] - fb[i])));
  EXPECT_LT(worst, 1e-4);

  // From the vector, low rank, dropping embeddings and norms; ALPHA after the colon.
  r = run_shell(run_rvec("lora extract " + vec + " --energy 0.5 --skip-embeddings --dtype bf16 -q -o " +
                         (t.p / "low").string()));
  ASSERT_EQ(r.rc, 0) << r.out;
  r = run_shell(run_rvec("apply " + base + " --lora " + (t.p / "low").string() + ":0.5 -q -o " + (t.p / "m2").string()));
  ASSERT_EQ(r.rc, 0) << r.out;
  auto rec = nlohmann::json::parse(slurp(t.p / "m2" / "rvec.json"));
  EXPECT_EQ(rec["loras"][0]["alpha"], 0.5);
  r = run_shell(run_rvec("export gguf-lora " + (t.p / "low").string() + " --base " + base + " -q -o " +
                         (t.p / "low.gguf").string()));
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(slurp(t.p / "low.gguf").substr(0, 4), "GGUF");
  // The full adapter's embeddings / norms / biases cannot go into a llama.cpp LoRA: a warning.
  r = run_shell(run_rvec("export gguf-lora " + (t.p / "full").string() + " -q -o " + (t.p / "full.gguf").string()));
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("left out"), std::string::npos) << r.out;

  // Errors, with nothing written.
  r = run_shell(run_rvec("lora extract " + vec + " -o " + (t.p / "x").string()));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("--rank"), std::string::npos) << r.out;
  r = run_shell(run_rvec("lora extract " + vec + " --rank 4 -o " + (t.p / "x").string()));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("--skip-embeddings"), std::string::npos) << r.out;
  r = run_shell(run_rvec("lora extract " + vec + " --tuned " + tuned + " --rank 4 -o " + (t.p / "x").string()));
  EXPECT_NE(r.rc, 0);
  r = run_shell(run_rvec("apply " + base + " -o " + (t.p / "x").string()));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("--lora"), std::string::npos) << r.out;
  r = run_shell(run_rvec("apply " + base + " --lora " + vec + " -o " + (t.p / "x").string()));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("adapter_config.json"), std::string::npos) << r.out;
  r = run_shell(run_rvec("apply " + base + " --lora " + (t.p / "low").string() + " --sparsify ties -o " +
                         (t.p / "x").string()));
  EXPECT_NE(r.rc, 0);
  EXPECT_FALSE(fs::exists(t.p / "x"));
}
