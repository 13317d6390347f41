// End-to-end: Qwen3 / OLMo2 test models through testmodel, arithmetic and logits; hub names
// resolved through an HF cache made by hand (offline, no network); GGUF export.
#include <gtest/gtest.h>

#include <filesystem>
#include <algorithm>
#include <fstream>

#include "test_util.h"

namespace fs = std::filesystem;
using rvec::test_util::run_shell;
using rvec::test_util::shell_quote;
using rvec::test_util::TempDir;

namespace {
std::string run_rvec(const std::string& args) { return std::string(RVEC_BIN) + " " + args + " 2>&1"; }
std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}
}  // namespace

TEST(FormatsCli, Qwen3AndOlmo2TestModelsArithmeticAndFamilies) {
  TempDir t("formats_cli_arch");
  const std::string q3 = (t.p / "q3").string(), q3b = (t.p / "q3b").string(), o2 = (t.p / "o2").string();
  auto r = run_shell(run_rvec("testmodel --preset tiny --arch qwen3 --head-dim 32 --dtype f32 -q -o " + q3));
  ASSERT_EQ(r.rc, 0) << r.out;
  auto cfg = nlohmann::json::parse(std::ifstream(t.p / "q3" / "config.json"));
  EXPECT_EQ(cfg["architectures"][0], "Qwen3ForCausalLM");
  EXPECT_EQ(cfg["head_dim"], 32);
  ASSERT_EQ(run_shell(run_rvec("testmodel --like " + q3 + " --perturb 0.01 --seed 5 -q -o " + q3b)).rc, 0);
  ASSERT_EQ(run_shell(run_rvec("testmodel --preset tiny --arch olmo2 --dtype f32 -q -o " + o2)).rc, 0);
  // Same family: extract + apply reproduces the tuned model's logits.
  r = run_shell(run_rvec("extract --base " + q3 + " --tuned " + q3b + " -q -o " + (t.p / "v").string()));
  ASSERT_EQ(r.rc, 0) << r.out;
  r = run_shell(run_rvec("apply " + q3 + " --vector " + (t.p / "v").string() + " -q -o " + (t.p / "q3v").string()));
  ASSERT_EQ(r.rc, 0) << r.out;
  auto a = run_shell(run_rvec("logits " + q3b + " --tokens 1,2,3 --out " + (t.p / "a.npy").string()));
  auto b = run_shell(run_rvec("logits " + (t.p / "q3v").string() + " --tokens 1,2,3 --out " + (t.p / "b.npy").string()));
  ASSERT_EQ(a.rc, 0) << a.out;
  ASSERT_EQ(b.rc, 0) << b.out;
  EXPECT_EQ(slurp(t.p / "a.npy"), slurp(t.p / "b.npy"));
  // Different families are refused before anything is written.
  r = run_shell(run_rvec("extract --base " + q3 + " --tuned " + o2 + " -q -o " + (t.p / "bad").string()));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("architecture mismatch"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("olmo2"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(t.p / "bad"));
  // OLMo2 runs end to end.
  r = run_shell(run_rvec("logits " + o2 + " --tokens 5,6,7 --out " + (t.p / "o.npy").string()));
  EXPECT_EQ(r.rc, 0) << r.out;
  // An unsupported architecture lists the supported ones.
  cfg["architectures"] = {"Gemma2ForCausalLM"};
  std::ofstream(t.p / "q3" / "config.json") << cfg.dump();
  r = run_shell(run_rvec("logits " + q3 + " --tokens 1 --out " + (t.p / "x.npy").string()));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("Gemma2ForCausalLM"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Olmo2ForCausalLM"), std::string::npos) << r.out;
}

TEST(FormatsCli, HubNamesResolveThroughTheCacheOffline) {
  TempDir t("formats_cli_hub");
  const fs::path root = t.p / "cache" / "models--org--tiny";
  const std::string commit = "aaaabbbbccccddddeeeeffff0000111122223333";
  ASSERT_EQ(run_shell(run_rvec("testmodel --preset tiny --dtype f32 -q -o " + (t.p / "src").string())).rc, 0);
  // The HF layout: blobs/<etag>, snapshots/<commit>/<file> -> ../../blobs/<etag>, refs/main.
  fs::create_directories(root / "blobs");
  fs::create_directories(root / "snapshots" / commit);
  fs::create_directories(root / "refs");
  std::ofstream(root / "refs" / "main") << commit;
  int i = 0;
  for (auto& e : fs::directory_iterator(t.p / "src")) {
    const std::string etag = "etag" + std::to_string(i++);
    fs::copy_file(e.path(), root / "blobs" / etag);
    fs::create_symlink("../../blobs/" + etag, root / "snapshots" / commit / e.path().filename());
  }
  const std::string env = "HF_HUB_CACHE=" + shell_quote((t.p / "cache").string()) + " HF_HUB_OFFLINE=1 ";
  auto r = run_shell(env + run_rvec("logits org/tiny --tokens 1,2 --out " + (t.p / "a.npy").string()));
  EXPECT_EQ(r.rc, 0) << r.out;
  auto d = run_shell(run_rvec("logits " + (t.p / "src").string() + " --tokens 1,2 --out " + (t.p / "b.npy").string()));
  EXPECT_EQ(d.rc, 0) << d.out;
  EXPECT_EQ(slurp(t.p / "a.npy"), slurp(t.p / "b.npy"));
  r = run_shell(env + run_rvec("inspect org/tiny@" + commit));
  EXPECT_EQ(r.rc, 0) << r.out;
  // Arithmetic reads the snapshot in place and writes elsewhere.
  r = run_shell(env + run_rvec("extract --base org/tiny --tuned org/tiny@main -q -o " + (t.p / "v").string()));
  EXPECT_EQ(r.rc, 0) << r.out;
  r = run_shell(env + run_rvec("logits org/missing --tokens 1 --out " + (t.p / "m.npy").string() + " --download"));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("HF_HUB_OFFLINE"), std::string::npos) << r.out;
  r = run_shell("HF_HUB_CACHE=" + shell_quote((t.p / "cache").string()) + " " +
                run_rvec("logits org/missing@dev --tokens 1 --out " + (t.p / "m.npy").string()));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("rvec download org/missing --revision dev"), std::string::npos) << r.out;
  r = run_shell(env + run_rvec("download org/tiny"));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("HF_HUB_OFFLINE"), std::string::npos) << r.out;
}

TEST(FormatsCli, ExportGguf) {
  TempDir t("formats_cli_gguf");
  const std::string m = (fs::path(RVEC_TESTDATA_DIR) / "fixtures/qwen3_tiny_tied_hd32/model").string();
  const std::string out = (t.p / "m.gguf").string();
  auto r = run_shell(run_rvec("export gguf " + m + " -o " + out + " --type q8_0 -q"));
  ASSERT_EQ(r.rc, 0) << r.out;
  std::ifstream f(out, std::ios::binary);
  char magic[8];
  f.read(magic, 8);
  EXPECT_EQ(std::string(magic, 4), "GGUF");
  EXPECT_EQ(magic[4], 3);
  r = run_shell(run_rvec("export gguf " + m + " -o " + out + " -q"));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("--force"), std::string::npos) << r.out;
  r = run_shell(run_rvec("export gguf " + m + " -o " + out + " --type q4_k -q"));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("q8_0"), std::string::npos) << r.out;
}

// Qwen3's template as transformers renders it: apply_chat_template(add_generation_prompt=True)
// ends with "<|im_start|>assistant\n", and enable_thinking=False appends an empty
// "<think>\n\n</think>\n\n" block. generate's prompt length is that text's token count.
TEST(FormatsCli, Qwen3ChatTemplateThinkingSwitch) {
  const std::string m = (fs::path(RVEC_TESTDATA_DIR) / "fixtures/qwen3_tiny_tied_hd32/model").string();
  auto count = [&](const std::string& text) {
    auto r = run_shell(std::string(RVEC_BIN) + " tokenize --tokenizer " + m + " --text " + shell_quote(text));
    EXPECT_EQ(r.rc, 0) << r.out;
    return std::count(r.out.begin(), r.out.end(), ',') + 1;
  };
  auto prompt_tokens = [&](const std::string& flags) {
    auto r = run_shell(std::string(RVEC_BIN) + " generate " + m + " --chat --prompt hi --max-tokens 1 " + flags +
                       " 2>&1 >/dev/null");
    EXPECT_EQ(r.rc, 0) << r.out;
    auto p = r.out.find("prompt ");
    return p == std::string::npos ? -1L : std::stol(r.out.substr(p + 7));
  };
  const std::string base = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n";
  EXPECT_EQ(prompt_tokens(""), count(base));
  EXPECT_EQ(prompt_tokens("--no-thinking"), count(base + "<think>\n\n</think>\n\n"));
  EXPECT_EQ(prompt_tokens("--chat-template-kwargs '{\"enable_thinking\": false}'"),
            count(base + "<think>\n\n</think>\n\n"));
  auto r = run_shell(std::string(RVEC_BIN) + " generate " + m + " --no-thinking --prompt hi 2>&1");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("need --chat"), std::string::npos) << r.out;
}

// eval --chat --no-thinking renders the evaluated prompts with enable_thinking=false and records
// the template variables in the results' config (task and run).
TEST(FormatsCli, EvalPassesChatTemplateKwargs) {
  TempDir t("formats_cli_eval_kwargs");
  const std::string m = (fs::path(RVEC_TESTDATA_DIR) / "fixtures/qwen3_tiny_tied_hd32/model").string();
  auto r = run_shell(run_rvec("eval " + m + " --tasks gsm8k --limit 1 --chat --no-thinking --max-gen-tokens 1 --quiet --out " +
                              (t.p / "o").string()));
  ASSERT_EQ(r.rc, 0) << r.out;
  std::string samples, results;
  for (auto& e : fs::directory_iterator(t.p / "o")) {
    std::string n = e.path().filename().string();
    if (n.rfind("samples_gsm8k_", 0) == 0) samples = slurp(e.path());
    if (n.rfind("results_", 0) == 0 && e.path().extension() == ".json") results = slurp(e.path());
  }
  auto s = nlohmann::json::parse(samples.substr(0, samples.find('\n')));
  const std::string prompt = s["prompt"];
  const std::string tail = "<|im_start|>assistant\n<think>\n\n</think>\n\n";
  ASSERT_GE(prompt.size(), tail.size());
  EXPECT_EQ(prompt.substr(prompt.size() - tail.size()), tail);
  auto j = nlohmann::json::parse(results);
  EXPECT_EQ(j["config"]["chat_template_kwargs"], (nlohmann::json{{"enable_thinking", false}}));
  EXPECT_EQ(j["configs"]["gsm8k"]["chat_template_kwargs"], (nlohmann::json{{"enable_thinking", false}}));
  r = run_shell(run_rvec("eval " + m + " --tasks gsm8k --limit 1 --no-thinking --out " + (t.p / "o2").string()));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("need --chat"), std::string::npos) << r.out;
  r = run_shell(run_rvec("eval " + m + " --tasks gsm8k --limit 1 --chat --chat-template-kwargs '[1]' --out " +
                         (t.p / "o3").string()));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("expected a JSON object"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(t.p / "o3"));
}

// The Qwen3 tokenizer (../shared/data/tokenizers/qwen3): <think> and </think> are added tokens
// 151667 / 151668; "\n" is byte-level "Ċ" (198) and "x" is byte 120, id 120 - 33 = 87 in the
// byte alphabet that opens the vocabulary.
TEST(FormatsCli, Qwen3TokenizerThinkTokens) {
  const fs::path tj = fs::path(RVEC_SHARED_DIR) / "data/tokenizers/qwen3/tokenizer.json";
  if (!fs::exists(tj)) GTEST_SKIP() << tj << " not present";
  auto r = run_shell(std::string(RVEC_BIN) + " tokenize --tokenizer " + tj.string() + " --text " +
                     shell_quote("<think>\nx</think>"));
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("[151667,198,87,151668]"), std::string::npos) << r.out;
}
