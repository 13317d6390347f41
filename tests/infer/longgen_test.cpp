// Long generations: min_p sampling against hand-derived distributions (vLLM's order: temperature,
// min_p, then top-k / top-p on the survivors), the prompt truncation rule, and the KV cache cap
// (sequences that do not fit wait; one that never fits is an error naming the cap).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/atomic_output.h"
#include "core/error.h"
#include "infer/engine.h"
#include "infer/generator.h"

using namespace rvec;
using namespace rvec::infer;
namespace fs = std::filesystem;

namespace {
const fs::path kModel = fs::path(RVEC_TESTDATA_DIR) / "fixtures" / "qwen2_tiny_untied_mha4x4" / "model";

SamplingParams sp(float temperature, float top_p, int top_k, float min_p) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_p = top_p;
  p.top_k = top_k;
  p.min_p = min_p;
  return p;
}
}  // namespace

// Logits {0, 2, 1, 2} at T = 1: probabilities 1, e^2, e, e^2 over Z, the top one e^2 / Z.
TEST(MinP, DropsTokensBelowMinPTimesTheTopProbability) {
  const std::vector<float> l{0.f, 2.f, 1.f, 2.f};
  // min_p 0.3: token 0 (ratio e^-2 = 0.135) is dropped, token 2 (e^-1 = 0.368) kept; survivors 1, 2, 3
  // in id order with weights e^2, e, e^2 over Z' = 2e^2 + e.
  const double e = std::exp(1.0), e2 = std::exp(2.0), Z = 2 * e2 + e;
  for (double u : {0.0, 0.2, e2 / Z * 0.99}) EXPECT_EQ(sample_token(l.data(), 4, sp(1, 1, 0, 0.3f), u), 1) << u;
  EXPECT_EQ(sample_token(l.data(), 4, sp(1, 1, 0, 0.3f), (e2 + e / 2) / Z), 2);
  EXPECT_EQ(sample_token(l.data(), 4, sp(1, 1, 0, 0.3f), (e2 + e) / Z * 1.01), 3);
  // min_p 0.5 also drops token 2 (0.368 < 0.5): 1 and 3, one half each.
  EXPECT_EQ(sample_token(l.data(), 4, sp(1, 1, 0, 0.5f), 0.49), 1);
  EXPECT_EQ(sample_token(l.data(), 4, sp(1, 1, 0, 0.5f), 0.51), 3);
  // Temperature first: at T = 0.5 token 2's ratio is e^-2 = 0.135 < 0.3, so min_p 0.3 drops it.
  EXPECT_EQ(sample_token(l.data(), 4, sp(0.5f, 1, 0, 0.3f), 0.51), 3);
  // min_p 1 keeps only the tokens tied with the maximum.
  EXPECT_EQ(sample_token(l.data(), 4, sp(1, 1, 0, 1.f), 0.2), 1);
  EXPECT_EQ(sample_token(l.data(), 4, sp(1, 1, 0, 1.f), 0.8), 3);
  // Greedy ignores min_p.
  EXPECT_EQ(sample_token(l.data(), 4, sp(0, 1, 0, 0.9f), 0.9), 1);
}

// top_p 0.8 alone: sorted 1, 3, 2, 0 with p1 + p3 = 2e^2 / (1 + 2e^2 + e) = 0.79898 < 0.8, so token 2
// is needed too and u = 0.999 lands on it. After min_p 0.3 the survivors are renormalised first
// (vLLM applies top-p to what min_p left): p1 + p3 = 2e^2 / (2e^2 + e) = 0.8446 >= 0.8, so only
// 1 and 3 remain.
TEST(MinP, TopPIsTakenOverTheMinPSurvivors) {
  const std::vector<float> l{0.f, 2.f, 1.f, 2.f};
  EXPECT_EQ(sample_token(l.data(), 4, sp(1, 0.8f, 0, 0), 0.999), 2);
  EXPECT_EQ(sample_token(l.data(), 4, sp(1, 0.8f, 0, 0.3f), 0.999), 3);
  // top_k 3 after min_p 0.5 (two survivors) changes nothing; top_k 1 keeps the first maximum.
  EXPECT_EQ(sample_token(l.data(), 4, sp(1, 1, 3, 0.5f), 0.51), 3);
  EXPECT_EQ(sample_token(l.data(), 4, sp(1, 1, 1, 0.3f), 0.99), 1);
}

// lm-eval's rule: the prompt keeps its last (context - max_new_tokens) tokens; the KV cache a
// sequence reserves is the kept prompt plus the budget, at most the context.
TEST(LongGen, PromptTruncationRule) {
  GenerationRequest r;
  r.prompt.assign(10, 7);
  r.max_new_tokens = 3;
  EXPECT_EQ(Generator::prompt_start(r, 100), 0u);
  EXPECT_EQ(Generator::kv_tokens(r, 100), 13u);
  EXPECT_EQ(Generator::prompt_start(r, 8), 5u);  // keeps 8 - 3 = 5 tokens
  EXPECT_EQ(Generator::kv_tokens(r, 8), 8u);
  r.max_new_tokens = 8;  // a budget filling the context keeps one prompt token
  EXPECT_EQ(Generator::prompt_start(r, 8), 9u);
  EXPECT_EQ(Generator::kv_tokens(r, 8), 8u);
}

// A cap that holds one sequence's reservation but not two: the second waits until the first is
// done (never two running), both finish with the tokens they get alone, and a sequence larger than
// the cap is refused with an error naming --kv-cache-gb.
TEST(LongGen, KvCacheCapMakesSequencesWait) {
  auto model = load_model(kModel);
  const int64_t per = kv_bytes_per_token(model->config());
  ASSERT_EQ(per, model->config().num_layers * 2 * model->config().kv_dim() * 4);
  GenerationRequest a, b;
  a.prompt = {1, 2, 3, 4, 5};
  b.prompt = {9, 8, 7};
  a.max_new_tokens = b.max_new_tokens = 6;
  std::vector<std::vector<int32_t>> alone(2);
  {
    Engine eng(*model, {.threads = 1, .max_batch = 4, .max_context = 64});
    eng.generate({a, b}, [&](size_t i, GenerationResult r) { alone[i] = r.tokens; });
  }
  Engine eng(*model, {.threads = 1, .max_batch = 4, .max_context = 64, .kv_cache_bytes = size_t(per) * 12});
  std::vector<uint64_t> order;
  std::vector<std::vector<int32_t>> got(2);
  Generator::Callbacks cb;
  cb.on_done = [&](uint64_t id, GenerationResult r) {
    order.push_back(id);
    got[id] = r.tokens;
  };
  Generator gen(eng, cb);
  gen.add(0, a);  // 11 tokens reserved
  gen.add(1, b);  // 9 more would exceed 12
  size_t most = 0;
  while (!gen.idle()) {
    gen.step();
    most = std::max(most, gen.running());
    EXPECT_LE(gen.reserved_kv_bytes(), size_t(per) * 12);
    if (order.empty() && gen.running() == 1) {
      EXPECT_EQ(gen.queued(), 1u);
    }
  }
  EXPECT_EQ(most, 1u);
  EXPECT_EQ(order, (std::vector<uint64_t>{0, 1}));
  EXPECT_EQ(got, alone);
  GenerationRequest big;
  big.prompt.assign(10, 3);
  big.max_new_tokens = 5;  // 15 tokens > 12
  try {
    gen.add(2, big);
    ADD_FAILURE() << "a sequence larger than the cap was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--kv-cache-gb"), std::string::npos) << e.what();
  }
  // A bf16 cache (--kv-cache-dtype) takes half the bytes: the same cap holds both reservations.
  Engine half(*model, {.threads = 1, .max_batch = 4, .max_context = 64, .kv_cache_bytes = size_t(per) * 12,
                       .kv_dtype = DType::BF16});
  Generator::Callbacks cb2;
  cb2.on_done = [](uint64_t, GenerationResult) {};
  Generator gen2(half, cb2);
  gen2.add(0, a);
  gen2.add(1, b);
  most = 0;
  while (!gen2.idle()) {
    gen2.step();
    most = std::max(most, gen2.running());
    EXPECT_LE(gen2.reserved_kv_bytes(), size_t(per) * 12);
  }
  EXPECT_EQ(most, 2u);
}

TEST(LongGen, KvCacheReport) {
  auto model = load_model(kModel);
  const auto& c = model->config();
  EngineOptions o{.max_batch = 2, .max_context = 100, .kv_cache_bytes = size_t(1) << 30};
  const std::string s = kv_cache_report(c, o);
  EXPECT_NE(s.find(std::to_string(c.num_layers * 2 * c.kv_dim() * 4) + " bytes/token"), std::string::npos) << s;
  EXPECT_NE(s.find("2 sequences x 100 tokens"), std::string::npos) << s;
  EXPECT_NE(s.find("cap 1.00 GiB (1073741824 bytes)"), std::string::npos) << s;
  EXPECT_NE(s.find("KV cache: f32, "), std::string::npos) << s;
  o.kv_dtype = DType::BF16;
  const std::string h = kv_cache_report(c, o);
  EXPECT_NE(h.find("KV cache: bf16, " + std::to_string(c.num_layers * 2 * c.kv_dim() * 2) + " bytes/token"),
            std::string::npos)
      << h;
  EXPECT_EQ(kv_bytes_per_token(c, DType::F16), c.num_layers * 2 * c.kv_dim() * 2);
  EXPECT_EQ(parse_kv_cache_dtype("f16"), DType::F16);
  EXPECT_EQ(kv_cache_dtype_name(parse_kv_cache_dtype("bf16")), "bf16");
  EXPECT_THROW(parse_kv_cache_dtype("q8_0"), Error);
  EXPECT_EQ(kv_cache_cap_bytes(2.0), size_t(2) << 30);
  EXPECT_THROW(kv_cache_cap_bytes(-1), Error);
}
