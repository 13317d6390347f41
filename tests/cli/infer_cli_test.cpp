// End-to-end tests of `rvec generate|score|logits|bench` on the tiny fixture models.
#include <gtest/gtest.h>

#include "test_util.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "core/atomic_output.h"
#include "infer/kernels.h"
#include "infer/npy.h"

namespace fs = std::filesystem;

namespace {

const std::string kBin = RVEC_BIN;
const fs::path kFix = fs::path(RVEC_TESTDATA_DIR) / "fixtures";

// Runs a shell command, capturing stdout.
using rvec::test_util::run_shell;
auto run(const std::string& cmd) { return run_shell(cmd); }

std::string q(const fs::path& p) {
  std::string s(1, '\'');
  s.append(p.string());
  s.push_back('\'');
  return s;
}

}  // namespace

TEST(InferCli, LogitsWritesNpyMatchingReference) {
  const fs::path model = kFix / "qwen2_tiny_tied_gqa14x2" / "model";
  const fs::path out = fs::temp_directory_path() / ("rvec_cli_logits_" + std::to_string(::getpid()) + ".npy");
  auto r = run(kBin + " logits " + q(model) + " --tokens 925,627,839,16,520,192,785,878,184,78 --out " + q(out) +
               " 2>/dev/null");
  ASSERT_EQ(r.rc, 0);
  auto got = rvec::infer::read_npy(out);
  auto ref = rvec::infer::read_npy(kFix / "qwen2_tiny_tied_gqa14x2" / "logits_ref_s0.npy");
  ASSERT_EQ(got.shape, ref.shape);
  double md = 0, mx = 0;
  for (size_t i = 0; i < ref.data.size(); ++i) {
    md = std::max(md, double(std::abs(got.data[i] - ref.data[i])));
    mx = std::max(mx, double(std::abs(ref.data[i])));
  }
  EXPECT_LE(md / mx, 1e-4);
  fs::remove(out);
  // Bad ids are reported.
  EXPECT_NE(run(kBin + " logits " + q(model) + " --tokens 1,x --out " + q(out) + " 2>/dev/null").rc, 0);
  EXPECT_NE(run(kBin + " logits " + q(model) + " --tokens 1,5000 --out " + q(out) + " 2>/dev/null").rc, 0);
  EXPECT_FALSE(fs::exists(out));
}

TEST(InferCli, GenerateGreedyIsDeterministicAndStopsOnString) {
  const fs::path model = kFix / "qwen2_tiny_untied_mha4x4" / "model";
  auto a = run(kBin + " generate " + q(model) + " --prompt 'Hello, world' --max-tokens 8 2>/dev/null");
  auto b = run(kBin + " generate " + q(model) + " --prompt 'Hello, world' --max-tokens 8 2>/dev/null");
  ASSERT_EQ(a.rc, 0);
  EXPECT_EQ(a.out, b.out);
  ASSERT_FALSE(a.out.empty());
  // Timing goes to stderr.
  auto t = run(kBin + " generate " + q(model) + " --prompt 'Hello' --max-tokens 4 2>&1 >/dev/null");
  EXPECT_NE(t.out.find("tok/s"), std::string::npos) << t.out;
  // Cutting at a stop string taken from the greedy output gives the text before it.
  std::string text = a.out.substr(0, a.out.size() - 1);  // trailing newline
  if (text.size() >= 4) {
    std::string stop = text.substr(text.size() / 2, 2);
    size_t cut = text.find(stop);
    std::string quoted = stop;
    if (stop.find('\'') == std::string::npos) {
      auto s = run(kBin + " generate " + q(model) + " --prompt 'Hello, world' --max-tokens 8 --stop '" + quoted +
                   "' 2>/dev/null");
      EXPECT_EQ(s.out, text.substr(0, cut) + "\n");
    }
  }
  // Sampling with a seed is reproducible.
  auto s1 = run(kBin + " generate " + q(model) + " --prompt Hi --max-tokens 6 --temperature 1 --seed 5 2>/dev/null");
  auto s2 = run(kBin + " generate " + q(model) + " --prompt Hi --max-tokens 6 --temperature 1 --seed 5 2>/dev/null");
  EXPECT_EQ(s1.out, s2.out);
}

TEST(InferCli, GenerateChatUsesTemplate) {
  const fs::path model = kFix / "qwen2_tiny_tied_gqa14x2" / "model";
  // The fixture has no chat template: a clear error, unless one is given.
  auto e = run(kBin + " generate " + q(model) + " --prompt Hi --chat 2>&1");
  EXPECT_NE(e.rc, 0);
  EXPECT_NE(e.out.find("chat template"), std::string::npos) << e.out;
  const fs::path tpl = fs::path(RVEC_TESTDATA_DIR) / "tokenizers" / "qwen2.5" / "chat_template.jinja";
  if (fs::exists(tpl)) {
    auto r = run(kBin + " generate " + q(model) + " --prompt Hi --chat --chat-template " + q(tpl) +
                 " --max-tokens 3 2>&1");
    EXPECT_EQ(r.rc, 0) << r.out;
  }
}

// HF's tokenizer(prompt) prepends BOS when tokenizer_config.json says add_bos_token (Llama,
// Mistral); a chat template writes bos_token itself, so --chat adds none.
TEST(InferCli, GenerateAddsBosLikeHfTokenizer) {
  rvec::test_util::TempDir dir("cli_bos");
  const fs::path src = kFix / "qwen2_tiny_untied_mha4x4" / "model", m = dir.p / "m";
  fs::copy(src, m);
  nlohmann::json cfg;
  {
    std::ifstream in(m / "tokenizer_config.json");
    cfg = nlohmann::json::parse(in);
  }
  cfg["add_bos_token"] = true;
  cfg["bos_token"] = "<|im_start|>";
  cfg["chat_template"] = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}";
  std::ofstream(m / "tokenizer_config.json") << cfg.dump();
  auto prompt_tokens = [](const std::string& out) {
    const size_t p = out.find("prompt ");
    return p == std::string::npos ? -1 : std::stoi(out.substr(p + 7));
  };
  auto plain = run(kBin + " generate " + q(src) + " --prompt 'Hello, world' --max-tokens 1 2>&1 >/dev/null");
  auto bos = run(kBin + " generate " + q(m) + " --prompt 'Hello, world' --max-tokens 1 2>&1 >/dev/null");
  auto chat = run(kBin + " generate " + q(m) + " --chat --prompt 'Hello, world' --max-tokens 1 2>&1 >/dev/null");
  ASSERT_EQ(plain.rc, 0) << plain.out;
  ASSERT_EQ(bos.rc, 0) << bos.out;
  ASSERT_EQ(chat.rc, 0) << chat.out;
  ASSERT_GT(prompt_tokens(plain.out), 0) << plain.out;
  EXPECT_EQ(prompt_tokens(bos.out), prompt_tokens(plain.out) + 1) << bos.out;
  EXPECT_EQ(prompt_tokens(chat.out), prompt_tokens(plain.out) + 1) << chat.out;  // the template's BOS only
}

// RVEC_ISA=avx512-nobf16 runs as a CPU without AVX512-BF16 (Skylake-SP to Ice Lake): --bf16-dot
// then says on stderr that the products stay exact, and the bench's JSON reports the exact path.
// Without the variable, a --bf16-dot run says so only where the CPU lacks a bf16 dot product.
TEST(InferCli, Bf16DotOnACpuWithoutAvx512Bf16StaysExactAndSaysSo) {
  const fs::path model = kFix / "qwen2_tiny_untied_mha4x4" / "model";
  const std::string args = " bench " + q(model) + " --prompt-tokens 4 --gen-tokens 2 --no-bandwidth --json --bf16-dot";
  auto capped = run("RVEC_ISA=avx512-nobf16 " + kBin + args + " 2>&1");
  ASSERT_EQ(capped.rc, 0) << capped.out;
  EXPECT_NE(capped.out.find("note: --bf16-dot needs a bf16 dot product"), std::string::npos) << capped.out;
  const std::string json = capped.out.substr(capped.out.find('{'));
  auto j = nlohmann::json::parse(json.substr(0, json.find('\n')));
  EXPECT_EQ(j["matmul"], "f32");
  EXPECT_EQ(j["isa"].get<std::string>().find("bf16"), std::string::npos) << j["isa"];

  auto native = run(kBin + args + " 2>&1");
  ASSERT_EQ(native.rc, 0) << native.out;
  const bool has_bf16 = rvec::infer::bf16_dot_supported();
  EXPECT_EQ(native.out.find("note: --bf16-dot needs") == std::string::npos, has_bf16) << native.out;
}

TEST(InferCli, ScoreMatchesLogitsAndBenchPrintsJson) {
  const fs::path model = kFix / "qwen2_tiny_untied_mha4x4" / "model";
  auto r = run(kBin + " score " + q(model) + " --context 'Hello,' --continuation ' world' 2>/dev/null");
  ASSERT_EQ(r.rc, 0);
  auto j = nlohmann::json::parse(r.out);
  EXPECT_LT(j["logprob"].get<double>(), 0.0);
  EXPECT_GE(j["continuation_tokens"].size(), 1u);
  // Trailing spaces of the context move to the continuation (lm-eval _encode_pair).
  auto r2 = run(kBin + " score " + q(model) + " --context 'Hello, ' --continuation 'world' 2>/dev/null");
  ASSERT_EQ(r2.rc, 0);
  EXPECT_NEAR(nlohmann::json::parse(r2.out)["logprob"].get<double>(), j["logprob"].get<double>(), 1e-9);

  auto b = run(kBin + " bench " + q(model) + " --prompt-tokens 8 --gen-tokens 3 --batch 2 --json 2>/dev/null");
  ASSERT_EQ(b.rc, 0);
  auto bj = nlohmann::json::parse(b.out);
  EXPECT_GT(bj["prefill_tokens_per_s"].get<double>(), 0);
  EXPECT_GT(bj["decode_tokens_per_s"].get<double>(), 0);
  EXPECT_EQ(bj["batch"], 2);
  EXPECT_EQ(bj["decode_paired_bound_tokens_per_s"].get<double>(), 0.0);  // not asked for
  EXPECT_EQ(bj["prefill_tokens_per_s_reps"].size(), 1u);
  EXPECT_EQ(bj["decode_tokens_per_s_reps"].size(), 1u);

  // --reps: the best of the repetitions, each listed; the text gives the median and slowest.
  const std::string bench = kBin + " bench " + q(model) + " --no-bandwidth";
  auto reps = run(bench + " --prompt-tokens 8 --gen-tokens 2 --reps 3 --json 2>/dev/null");
  ASSERT_EQ(reps.rc, 0);
  auto rj = nlohmann::json::parse(reps.out);
  for (const char* f : {"prefill_tokens_per_s", "decode_tokens_per_s"}) {
    const auto each = rj[std::string(f) + "_reps"].get<std::vector<double>>();
    ASSERT_EQ(each.size(), 3u) << f;
    EXPECT_EQ(*std::max_element(each.begin(), each.end()), rj[f].get<double>()) << f;
    for (double x : each) EXPECT_GT(x, 0) << f;
  }
  auto rt = run(bench + " --prompt-tokens 8 --gen-tokens 2 --reps 3 2>/dev/null");
  ASSERT_EQ(rt.rc, 0);
  EXPECT_NE(rt.out.find("tok/s (best of 3: median "), std::string::npos) << rt.out;
  EXPECT_NE(rt.out.find("tok/s (aggregate; best of 3: median "), std::string::npos) << rt.out;
  // Nothing measured, nothing listed: no prefill with --context, no decode with --gen-tokens 0.
  auto ctx = run(bench + " --context 8 --gen-tokens 2 --reps 2 --json 2>/dev/null");
  ASSERT_EQ(ctx.rc, 0);
  auto cj = nlohmann::json::parse(ctx.out);
  EXPECT_EQ(cj["prefill_tokens_per_s_reps"].size(), 0u);
  EXPECT_EQ(cj["decode_tokens_per_s_reps"].size(), 2u);
  auto pp = run(bench + " --prompt-tokens 8 --gen-tokens 0 --reps 2 --json 2>/dev/null");
  ASSERT_EQ(pp.rc, 0);
  EXPECT_EQ(nlohmann::json::parse(pp.out)["decode_tokens_per_s_reps"].size(), 0u);

  // --paired-bound: a read of the weights after every step; the step reads every matrix once
  // (the fixture's config.json: 3 layers, hidden 256 = 4 heads x 64 = 4 KV heads x 64,
  // intermediate 256, vocab 512 untied, f32: 3 layers x 7 matrices x 256 x 256 x 4 + 512 x 256 x 4).
  auto p = run(kBin + " bench " + q(model) + " --prompt-tokens 4 --gen-tokens 3 --paired-bound --no-bandwidth --json 2>/dev/null");
  ASSERT_EQ(p.rc, 0);
  auto pj = nlohmann::json::parse(p.out);
  EXPECT_GT(pj["decode_paired_bound_tokens_per_s"].get<double>(), 0);
  EXPECT_NEAR(pj["decode_fraction_of_paired_bound"].get<double>(),
              pj["decode_tokens_per_s"].get<double>() / pj["decode_paired_bound_tokens_per_s"].get<double>(), 1e-9);
  EXPECT_EQ(pj["weight_bytes_per_decode_step"].get<uint64_t>(), uint64_t(3 * 7 * 256 * 256 * 4 + 512 * 256 * 4));
  EXPECT_EQ(pj["column_block_bytes"].get<uint64_t>(), 0u);  // no row over 4096 columns

  // Rows over 128 columns in blocks of 64: every layer matrix (256 columns) and the untied lm_head.
  auto cb = run("RVEC_COLUMN_BLOCKS=64,128 " + kBin + " bench " + q(model) +
                " --prompt-tokens 4 --gen-tokens 2 --no-bandwidth --json 2>/dev/null");
  ASSERT_EQ(cb.rc, 0);
  EXPECT_EQ(nlohmann::json::parse(cb.out)["column_block_bytes"].get<uint64_t>(),
            uint64_t(3 * 7 * 256 * 256 * 4 + 512 * 256 * 4));
}

// --kv-cache-dtype bf16|f16 on the commands that run the engine: logits move by the cache's
// rounding only (within bf16 error of the reference, not the f32 cache's bits), generate's
// start line names the type and its bytes per token (the fixture: 2 layers x K,V x 2 KV heads x
// 16 values x 2 bytes), bench reports it, and a type rvec does not have is refused naming the option.
TEST(InferCli, KvCacheDtypeOption) {
  const fs::path model = kFix / "qwen2_tiny_tied_gqa14x2" / "model";
  const std::string pid = std::to_string(::getpid());
  const fs::path f32 = fs::temp_directory_path() / ("rvec_cli_kv_f32_" + pid + ".npy");
  const fs::path bf16 = fs::temp_directory_path() / ("rvec_cli_kv_bf16_" + pid + ".npy");
  const std::string toks = " --tokens 925,627,839,16,520,192,785,878,184,78";
  ASSERT_EQ(run(kBin + " logits " + q(model) + toks + " --out " + q(f32) + " 2>/dev/null").rc, 0);
  ASSERT_EQ(run(kBin + " logits " + q(model) + toks + " --kv-cache-dtype bf16 --out " + q(bf16) + " 2>/dev/null").rc,
            0);
  const auto ref = rvec::infer::read_npy(kFix / "qwen2_tiny_tied_gqa14x2" / "logits_ref_s0.npy").data;
  const auto a = rvec::infer::read_npy(f32).data, b = rvec::infer::read_npy(bf16).data;
  ASSERT_EQ(b.size(), ref.size());
  double to_ref = 0, to_f32 = 0, mx = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    to_ref = std::max(to_ref, double(std::abs(b[i] - ref[i])));
    to_f32 = std::max(to_f32, double(std::abs(b[i] - a[i])));
    mx = std::max(mx, double(std::abs(ref[i])));
  }
  EXPECT_LE(to_ref / mx, 1e-2);
  EXPECT_GT(to_f32 / mx, 1e-6);
  fs::remove(f32);
  fs::remove(bf16);

  auto g = run(kBin + " generate " + q(model) + " --prompt 'Hello' --max-tokens 3 --kv-cache-dtype f16 2>&1");
  ASSERT_EQ(g.rc, 0) << g.out;
  EXPECT_NE(g.out.find("KV cache: f16, 256 bytes/token"), std::string::npos) << g.out;

  auto bj = run(kBin + " bench " + q(model) +
                " --context 600 --gen-tokens 2 --no-bandwidth --json --kv-cache-dtype bf16 2>/dev/null");
  ASSERT_EQ(bj.rc, 0) << bj.out;
  const auto j = nlohmann::json::parse(bj.out);
  EXPECT_EQ(j["kv_cache_dtype"], "bf16");
  EXPECT_EQ(j["kv_bytes_per_token"], 256);
  EXPECT_GT(j["decode_tokens_per_s"].get<double>(), 0);

  auto bad = run(kBin + " generate " + q(model) + " --prompt 'Hello' --kv-cache-dtype q8_0 2>&1");
  EXPECT_NE(bad.rc, 0);
  EXPECT_NE(bad.out.find("--kv-cache-dtype"), std::string::npos) << bad.out;
  auto untiled = run(kBin + " bench " + q(model) +
                     " --context 64 --gen-tokens 1 --no-bandwidth --attention untiled --kv-cache-dtype f16 2>&1");
  EXPECT_NE(untiled.rc, 0);
  EXPECT_NE(untiled.out.find("--kv-cache-dtype f32"), std::string::npos) << untiled.out;
}
