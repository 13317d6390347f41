#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>

#include "arith/arith.h"
#include "arith/arith_helpers.h"
#include "arith/testmodel.h"
#include "core/error.h"
#include "io/model_dir.h"

using namespace rvec;
using namespace rvec::testing;
using nlohmann::json;

namespace {

arith::Options opts(const fs::path& out) {
  arith::Options o;
  o.out = out;
  o.quiet = true;
  return o;
}

// A base/tuned pair of tiny models: tuned = base + noise.
struct Family {
  TmpDir d{"fam"};
  fs::path base = d / "sft", tuned = d / "grpo", instruct = d / "instruct";
  explicit Family(DType dt = DType::BF16, bool tied = true) {
    tiny_model(base, 1, dt, tied);
    arith::write_perturbed(base, 0.01, 7, tuned, false, true);
    arith::write_perturbed(base, 0.02, 9, instruct, false, true);
  }
};

}  // namespace

TEST(Arith, ExtractApplyRoundTripBf16IsBitExact) {
  Family f(DType::BF16);
  auto r = arith::extract(f.base, f.tuned, opts(f.d / "vec"));
  EXPECT_EQ(r.nonfinite, 0u);
  for (auto& t : r.tensors) EXPECT_TRUE(t.lossless) << t.name;
  auto r2 = arith::apply(f.base, {{f.d / "vec", 1.0}}, opts(f.d / "back"));
  EXPECT_TRUE(same_tensors(f.d / "back", f.tuned));
  // The vector keeps the model's tensor names and records its inputs.
  auto v = io::ModelDir::open(f.d / "vec");
  EXPECT_NE(v->find("model.layers.1.mlp.down_proj.weight"), nullptr);
  json rec = json::parse(read_file(f.d / "vec" / "rvec.json"));
  EXPECT_EQ(rec["operation"], "extract");
  EXPECT_EQ(rec["inputs"]["base"]["sha256"]["model.safetensors"].get<std::string>().size(), 64u);
  EXPECT_EQ(rec["inputs"]["base"]["sha256"]["model.safetensors"], io::sha256_file(f.base / "model.safetensors"));
  // Copied config/tokenizer from the tuned model.
  EXPECT_TRUE(fs::exists(f.d / "vec" / "tokenizer.json"));
}

TEST(Arith, ExtractApplyRoundTripF32IsBitExact) {
  Family f(DType::F32);
  arith::extract(f.base, f.tuned, opts(f.d / "vec"));
  arith::apply(f.base, {{f.d / "vec", 1.0}}, opts(f.d / "back"));
  EXPECT_TRUE(same_tensors(f.d / "back", f.tuned));
}

TEST(Arith, LosslessStorageChoosesBf16OnlyWhenExact) {
  TmpDir d;
  // base 1.0, tuned 1.0 + 2^-20 (f32): the difference is a power of two (bf16-exact) and
  // 1 + 2^-20 round trips -> BF16. tuned 1.0 + 3*2^-22 + 2^-23*... chosen so the difference
  // needs more than 8 mantissa bits -> F32.
  const float a = 1.0f, b = 1.0f + std::ldexp(1.0f, -20), c = 1.0f + std::ldexp(1.0f, -10) + std::ldexp(1.0f, -22);
  write_model(d / "base", {{"x", DType::F32, {2}, {a, a}}, {"y", DType::F32, {1}, {a}}}, qwen_config());
  write_model(d / "tuned", {{"x", DType::F32, {2}, {b, a}}, {"y", DType::F32, {1}, {c}}}, qwen_config());
  auto r = arith::extract(d / "base", d / "tuned", opts(d / "v"));
  auto v = io::ModelDir::open(d / "v");
  EXPECT_EQ(v->get("x").dtype, DType::BF16);
  EXPECT_EQ(v->get("y").dtype, DType::F32);
  EXPECT_EQ(r.dtype_counts["BF16"], 1u);
  EXPECT_EQ(r.dtype_counts["F32"], 1u);
  EXPECT_FLOAT_EQ(values(*v, "y")[0], c - a);
  // Forced bf16 storage: the rounding error of y's difference is reported.
  auto o = opts(d / "vb");
  o.out_dtype = DType::BF16;
  auto rb = arith::extract(d / "base", d / "tuned", o);
  const float dy = c - a;
  const float dyb = bf16_to_f32(f32_to_bf16(dy));
  ASSERT_EQ(rb.tensors.size(), 2u);
  for (auto& t : rb.tensors) {
    if (t.name == "y") {
      EXPECT_NEAR(t.max_round_err, std::fabs(double(dyb) - double(dy)), 1e-12);
    }
  }
}

TEST(Arith, AlphaZeroGivesTargetBack) {
  Family f;
  arith::extract(f.base, f.tuned, opts(f.d / "vec"));
  arith::apply(f.instruct, {{f.d / "vec", 0.0}}, opts(f.d / "same"));
  EXPECT_TRUE(same_tensors(f.d / "same", f.instruct));
}

TEST(Arith, MinusOneAfterPlusOneReturnsTargetViaF32) {
  Family f;
  arith::extract(f.base, f.tuned, opts(f.d / "vec"));
  auto o = opts(f.d / "plus");
  o.out_dtype = DType::F32;
  arith::apply(f.instruct, {{f.d / "vec", 1.0}}, o);
  auto o2 = opts(f.d / "minus");
  o2.out_dtype = DType::BF16;
  arith::apply(f.d / "plus", {{f.d / "vec", -1.0}}, o2);
  EXPECT_TRUE(same_tensors(f.d / "minus", f.instruct));
}

TEST(Arith, ApplyMatchesHandComputation) {
  Family f;
  arith::extract(f.base, f.tuned, opts(f.d / "vec"));
  arith::apply(f.instruct, {{f.d / "vec", 0.5}}, opts(f.d / "out"));
  auto out = io::ModelDir::open(f.d / "out"), in = io::ModelDir::open(f.instruct),
       g = io::ModelDir::open(f.tuned), s = io::ModelDir::open(f.base);
  for (const char* n : {"model.layers.0.self_attn.q_proj.weight", "model.norm.weight"}) {
    auto o = values(*out, n), i = values(*in, n), gv = values(*g, n), sv = values(*s, n);
    for (size_t k = 0; k < o.size(); ++k) {
      float expect = bf16_to_f32(f32_to_bf16(std::fma(0.5f, gv[k] - sv[k], i[k])));
      ASSERT_EQ(o[k], expect) << n << "[" << k << "]";
    }
  }
}

TEST(Arith, PaperYamlExprAndExtractApplyAgree) {
  Family f;
  TmpDir d;
  {
    std::ofstream y(d / "paper.yaml");
    y << "merge_method: linear\ndtype: bfloat16\nparameters:\n  normalize: false\nmodels:\n"
      << "  - model: " << f.instruct.string() << "\n    parameters: {weight: 1.0}\n"
      << "  - model: " << f.tuned.string() << "\n    parameters: {weight: 1.0}     # +GRPO\n"
      << "  - model: " << f.base.string() << "\n    parameters: {weight: -1.0}    # -SFT\n";
  }
  arith::merge_yaml(d / "paper.yaml", opts(d / "yaml"));
  arith::merge_expr("instruct + (grpo - sft)", {{"instruct", f.instruct}, {"grpo", f.tuned}, {"sft", f.base}},
                    opts(d / "expr"));
  arith::extract(f.base, f.tuned, opts(d / "vec"));
  arith::apply(f.instruct, {{d / "vec", 1.0}}, opts(d / "apply"));
  EXPECT_TRUE(same_tensors(d / "yaml", d / "expr"));
  EXPECT_TRUE(same_tensors(d / "expr", d / "apply"));
  // The task_arithmetic form of the same merge, and half strength.
  {
    std::ofstream y(d / "ta.yaml");
    y << "merge_method: task_arithmetic\nbase_model: " << f.base.string() << "\nmodels:\n"
      << "  - model: " << f.instruct.string() << "\n    parameters: {weight: 1.0}\n"
      << "  - model: " << f.tuned.string() << "\n    parameters: {weight: 0.5}\n";
  }
  arith::merge_expr("instruct + 0.5*(grpo - sft)", {{"instruct", f.instruct}, {"grpo", f.tuned}, {"sft", f.base}},
                    opts(d / "expr05"));
  arith::apply(f.instruct, {{d / "vec", 0.5}}, opts(d / "apply05"));
  EXPECT_TRUE(same_tensors(d / "expr05", d / "apply05"));
  arith::merge_yaml(d / "ta.yaml", opts(d / "ta"));
  // task_arithmetic's target is the base (SFT): sft + (instruct - sft) + 0.5 (grpo - sft); equal up to
  // f32 rounding before the final bf16 rounding, so compare values with a bf16-ulp tolerance.
  auto ta = io::ModelDir::open(d / "ta"), ex = io::ModelDir::open(d / "expr05");
  for (auto* t : ta->tensors()) {
    auto a = values(*ta, t->name), b = values(*ex, t->name);
    for (size_t k = 0; k < a.size(); ++k) ASSERT_NEAR(a[k], b[k], std::fabs(b[k]) * 0x1p-7 + 1e-6) << t->name;
  }
}

TEST(Arith, MergekitCompatRoundsEveryStep) {
  TmpDir d;
  // 1 + 2^-8 is not a bf16 value; with inputs x = 1, g = 2^-8 + 2^-9 (exact bf16), s = 2^-9:
  // f32: 1 + (g - s) = 1 + 2^-8 -> bf16 RNE -> 1 (tie to even). compat: same here; use values where
  // per-step rounding differs: x = 1, g = 2^-8, s = -2^-9 : f32 1 + 3*2^-9 -> bf16 1 + 2^-7 (nearest);
  // compat: (g - s) = 3*2^-9 exact; x + that = 1.005859 -> bf16 1 + 2^-7. Products first: round each term.
  const float x = 1.0f, g = std::ldexp(1.0f, -8), s = -std::ldexp(1.0f, -9);
  write_model(d / "x", {{"w", DType::BF16, {1}, {x}}}, qwen_config());
  write_model(d / "g", {{"w", DType::BF16, {1}, {g}}}, qwen_config());
  write_model(d / "s", {{"w", DType::BF16, {1}, {s}}}, qwen_config());
  // order: non-target terms first. f32: (g - s) + x = 1 + 3*2^-9 -> bf16 rounds to 1 + 2^-7.
  arith::merge_expr("x + g - s", {{"x", d / "x"}, {"g", d / "g"}, {"s", d / "s"}}, opts(d / "f32"));
  EXPECT_EQ(values(*io::ModelDir::open(d / "f32"), "w")[0], 1.0f + std::ldexp(1.0f, -7));
  // compat, order g, s, x: g - s exact, + x = 1 + 3*2^-9 -> 1 + 2^-7: same; x + g first would give 1 (tie even)
  // then - s -> 1 + 2^-9 -> 1. Check that rounding happens at every step with a three-term case
  // where the partial sum itself needs rounding: x2 = 2^-9, g2 = 1, s2 = -2^-9 (order g2, s2 then x2).
  write_model(d / "x2", {{"w", DType::BF16, {1}, {std::ldexp(1.0f, -9)}}}, qwen_config());
  write_model(d / "g2", {{"w", DType::BF16, {1}, {1.0f}}}, qwen_config());
  write_model(d / "s2", {{"w", DType::BF16, {1}, {-std::ldexp(1.0f, -9)}}}, qwen_config());
  auto o = opts(d / "c2");
  o.mergekit_compat = true;
  arith::merge_expr("x2 + g2 - s2", {{"x2", d / "x2"}, {"g2", d / "g2"}, {"s2", d / "s2"}}, o);
  // compat: g2 - s2 = 1 + 2^-9 -> bf16 1 (tie to even); + x2 = 1 + 2^-9 -> 1.
  EXPECT_EQ(values(*io::ModelDir::open(d / "c2"), "w")[0], 1.0f);
  arith::merge_expr("x2 + g2 - s2", {{"x2", d / "x2"}, {"g2", d / "g2"}, {"s2", d / "s2"}}, opts(d / "f2"));
  // f32: 1 + 2^-9 + 2^-9 = 1 + 2^-8 -> bf16 tie -> 1 (even)... 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even is 1.
  // Use the exact value instead: stored f32.
  auto of = opts(d / "f2f");
  of.out_dtype = DType::F32;
  arith::merge_expr("x2 + g2 - s2", {{"x2", d / "x2"}, {"g2", d / "g2"}, {"s2", d / "s2"}}, of);
  EXPECT_EQ(values(*io::ModelDir::open(d / "f2f"), "w")[0], 1.0f + std::ldexp(1.0f, -8));
  auto oc = opts(d / "c2f");
  oc.out_dtype = DType::F32;
  oc.mergekit_compat = true;
  arith::merge_expr("x2 + g2 - s2", {{"x2", d / "x2"}, {"g2", d / "g2"}, {"s2", d / "s2"}}, oc);
  EXPECT_EQ(values(*io::ModelDir::open(d / "c2f"), "w")[0], 1.0f);
}

TEST(Arith, ShardedInputsAndOutputs) {
  Family f;
  TmpDir d;
  tiny_model(d / "sharded", 1, DType::BF16, true, 40000);  // same weights as f.base, many shards
  auto m = io::ModelDir::open(d / "sharded");
  EXPECT_TRUE(m->sharded());
  EXPECT_GT(m->files().size(), 3u);
  EXPECT_TRUE(same_tensors(d / "sharded", f.base));
  auto o = opts(d / "vec_sharded");
  o.shard_size = 30000;
  arith::extract(d / "sharded", f.tuned, o);
  auto v = io::ModelDir::open(d / "vec_sharded");
  EXPECT_TRUE(v->sharded());
  json idx = json::parse(read_file(d / "vec_sharded" / "model.safetensors.index.json"));
  EXPECT_EQ(idx["metadata"]["total_size"].get<uint64_t>(), v->total_bytes());
  EXPECT_EQ(idx["weight_map"].size(), v->tensors().size());
  arith::extract(f.base, f.tuned, opts(d / "vec"));
  EXPECT_TRUE(same_tensors(d / "vec", d / "vec_sharded"));
}

TEST(Arith, TiedAndUntiedEmbeddings) {
  TmpDir d;
  Family tied(DType::BF16, true);
  tiny_model(d / "untied", 3, DType::BF16, false);
  arith::extract(tied.base, tied.tuned, opts(d / "vec"));
  // Untied target, vector from tied models: lm_head gets the embedding's difference.
  arith::apply(d / "untied", {{d / "vec", 1.0}}, opts(d / "out"));
  auto out = io::ModelDir::open(d / "out"), u = io::ModelDir::open(d / "untied"), v = io::ModelDir::open(d / "vec");
  ASSERT_NE(out->find("lm_head.weight"), nullptr);
  auto h = values(*out, "lm_head.weight"), h0 = values(*u, "lm_head.weight"),
       dv = values(*v, "model.embed_tokens.weight");
  for (size_t k = 0; k < h.size(); k += 97) ASSERT_EQ(h[k], bf16_to_f32(f32_to_bf16(dv[k] + h0[k])));
  // Tied target, untied vector: the output stays tied, with a warning.
  arith::extract(d / "untied", d / "out", opts(d / "vec_untied"));
  auto r = arith::apply(tied.instruct, {{d / "vec_untied", 1.0}}, opts(d / "out2"));
  EXPECT_EQ(io::ModelDir::open(d / "out2")->find("lm_head.weight"), nullptr);
  ASSERT_FALSE(r.warnings.empty());
  EXPECT_NE(r.warnings[0].find("lm_head"), std::string::npos);
}

TEST(Arith, VocabRowMismatch) {
  TmpDir d;
  auto cfg = qwen_config();
  std::vector<float> e_t(6 * 2), e_v(4 * 2, 0.5f);
  for (size_t i = 0; i < e_t.size(); ++i) e_t[i] = float(i);
  write_model(d / "target", {{"model.embed_tokens.weight", DType::F32, {6, 2}, e_t}, {"w", DType::F32, {1}, {2}}}, cfg);
  write_model(d / "vec", {{"model.embed_tokens.weight", DType::F32, {4, 2}, e_v}, {"w", DType::F32, {1}, {1}}}, cfg);
  auto r = arith::apply(d / "target", {{d / "vec", 1.0}}, opts(d / "out"));
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("4 common rows"), std::string::npos);
  auto e = values(*io::ModelDir::open(d / "out"), "model.embed_tokens.weight");
  ASSERT_EQ(e.size(), 12u);
  for (size_t i = 0; i < 8; ++i) EXPECT_EQ(e[i], float(i) + 0.5f);
  for (size_t i = 8; i < 12; ++i) EXPECT_EQ(e[i], float(i));  // the target's extra rows, unchanged
  // Extract crops the vector to the common rows.
  arith::extract(d / "vec", d / "target", opts(d / "x"));
  EXPECT_EQ(io::ModelDir::open(d / "x")->get("model.embed_tokens.weight").shape[0], 4);
  // --strict-vocab: error, nothing written.
  auto o = opts(d / "strict");
  o.strict_vocab = true;
  try {
    arith::apply(d / "target", {{d / "vec", 1.0}}, o);
    FAIL() << "expected an error";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("model.embed_tokens.weight"), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(d / "strict"));
}

TEST(Arith, IncludeExcludeScale) {
  Family f;
  TmpDir d;
  arith::extract(f.base, f.tuned, opts(d / "vec"));
  auto o = opts(d / "out");
  o.exclude = "norm";
  o.scales = {{"mlp\\.", 0.5}, {"embed", 0.0}};
  arith::apply(f.instruct, {{d / "vec", 2.0}}, o);
  auto out = io::ModelDir::open(d / "out"), in = io::ModelDir::open(f.instruct), v = io::ModelDir::open(d / "vec");
  EXPECT_EQ(bytes(*out, "model.norm.weight"), bytes(*in, "model.norm.weight"));
  EXPECT_EQ(bytes(*out, "model.layers.0.input_layernorm.weight"), bytes(*in, "model.layers.0.input_layernorm.weight"));
  EXPECT_EQ(bytes(*out, "model.embed_tokens.weight"), bytes(*in, "model.embed_tokens.weight"));
  auto check = [&](const std::string& n, float alpha) {
    auto a = values(*out, n), b = values(*in, n), c = values(*v, n);
    for (size_t k = 0; k < a.size(); ++k) ASSERT_EQ(a[k], bf16_to_f32(f32_to_bf16(std::fma(alpha, c[k], b[k])))) << n;
  };
  check("model.layers.1.mlp.up_proj.weight", 1.0f);       // 2.0 * 0.5
  check("model.layers.1.self_attn.k_proj.weight", 2.0f);  // unscaled
  // --include: only attention tensors change.
  auto o2 = opts(d / "out2");
  o2.include = "self_attn";
  arith::apply(f.instruct, {{d / "vec", 1.0}}, o2);
  auto out2 = io::ModelDir::open(d / "out2");
  EXPECT_EQ(bytes(*out2, "model.layers.0.mlp.up_proj.weight"), bytes(*in, "model.layers.0.mlp.up_proj.weight"));
  EXPECT_NE(bytes(*out2, "model.layers.0.self_attn.q_proj.weight"), bytes(*in, "model.layers.0.self_attn.q_proj.weight"));
}

TEST(Arith, MergekitGradientsAndFilters) {
  Family f;
  TmpDir d;
  {
    std::ofstream y(d / "g.yaml");
    y << "merge_method: linear\nparameters:\n  normalize: false\nmodels:\n"
      << "  - model: " << f.instruct.string() << "\n    parameters:\n      weight: 1.0\n"
      << "  - model: " << f.tuned.string() << "\n    parameters:\n      weight:\n"
      << "        - filter: mlp\n          value: [0.0, 1.0]\n        - value: 0.25\n"
      << "  - model: " << f.base.string() << "\n    parameters:\n      weight:\n"
      << "        - filter: mlp\n          value: [0.0, -1.0]\n        - value: -0.25\n";
  }
  arith::merge_yaml(d / "g.yaml", opts(d / "out"));
  auto out = io::ModelDir::open(d / "out"), in = io::ModelDir::open(f.instruct), g = io::ModelDir::open(f.tuned),
       s = io::ModelDir::open(f.base);
  auto check = [&](const std::string& n, float w) {
    auto a = values(*out, n), i = values(*in, n), gv = values(*g, n), sv = values(*s, n);
    for (size_t k = 0; k < a.size(); ++k) {
      float acc = w * gv[k];
      acc = std::fma(-w, sv[k], acc);
      acc = acc + i[k];
      ASSERT_EQ(a[k], bf16_to_f32(f32_to_bf16(acc))) << n << " " << k;
    }
  };
  check("model.layers.0.mlp.gate_proj.weight", 0.0f);  // t = 0
  check("model.layers.1.mlp.gate_proj.weight", 1.0f);  // t = 1 (2 layers)
  check("model.layers.0.self_attn.q_proj.weight", 0.25f);
}

TEST(Arith, ValidationBeforeWriting) {
  TmpDir d;
  auto cfg = qwen_config();
  write_model(d / "a", {{"w", DType::F32, {2, 2}, {1, 2, 3, 4}}, {"x", DType::F32, {1}, {1}}}, cfg);
  write_model(d / "b", {{"w", DType::F32, {4}, {1, 2, 3, 4}}, {"y", DType::F32, {1}, {1}}}, cfg);
  try {
    arith::apply(d / "a", {{d / "b", 1.0}}, opts(d / "out"));
    FAIL();
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("tensor 'w': shape [2, 2]"), std::string::npos) << m;
    EXPECT_NE(m.find("has no tensor 'x'"), std::string::npos) << m;
    EXPECT_NE(m.find("has tensor 'y'"), std::string::npos) << m;
  }
  EXPECT_FALSE(fs::exists(d / "out"));
  auto llama = cfg;
  llama["architectures"] = {"LlamaForCausalLM"};
  write_model(d / "c", {{"w", DType::F32, {2, 2}, {1, 2, 3, 4}}, {"x", DType::F32, {1}, {1}}}, llama);
  EXPECT_THROW(arith::apply(d / "a", {{d / "c", 1.0}}, opts(d / "out")), Error);
  EXPECT_FALSE(fs::exists(d / "out"));
  // Existing output: refused without force.
  fs::create_directories(d / "exists");
  EXPECT_THROW(arith::apply(d / "a", {{d / "a", 1.0}}, opts(d / "exists")), Error);
  auto o = opts(d / "exists");
  o.force = true;
  arith::apply(d / "a", {{d / "a", 1.0}}, o);
  EXPECT_EQ(values(*io::ModelDir::open(d / "exists"), "w")[3], 8.0f);
}

TEST(Arith, NonFiniteCountedAndStrict) {
  TmpDir d;
  auto cfg = qwen_config();
  write_model(d / "a", {{"w", DType::BF16, {3}, {3e38f, 1, 2}}}, cfg);
  auto r = arith::apply(d / "a", {{d / "a", 1.0}}, opts(d / "out"));
  EXPECT_EQ(r.nonfinite, 1u);
  auto o = opts(d / "out2");
  o.strict = true;
  EXPECT_THROW(arith::apply(d / "a", {{d / "a", 1.0}}, o), Error);
  EXPECT_FALSE(fs::exists(d / "out2"));
}

TEST(Arith, ExpressionParser) {
  auto c = arith::parse_linear_expr("instruct + 0.5*(grpo - sft)");
  EXPECT_DOUBLE_EQ(c["instruct"], 1.0);
  EXPECT_DOUBLE_EQ(c["grpo"], 0.5);
  EXPECT_DOUBLE_EQ(c["sft"], -0.5);
  c = arith::parse_linear_expr("-(a - 2*b)/4 + a*3");
  EXPECT_DOUBLE_EQ(c["a"], 2.75);
  EXPECT_DOUBLE_EQ(c["b"], 0.5);
  EXPECT_THROW(arith::parse_linear_expr("a * b"), Error);
  EXPECT_THROW(arith::parse_linear_expr("a + 1"), Error);
  EXPECT_THROW(arith::parse_linear_expr("a / b"), Error);
  EXPECT_THROW(arith::parse_linear_expr("(a + b"), Error);
  EXPECT_THROW(arith::parse_linear_expr("a + "), Error);
  try {
    arith::parse_linear_expr("x*(y-z)");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a linear expression"), std::string::npos);
  }
}

TEST(Arith, RandomVectorHasSameNormsAndIsDeterministic) {
  Family f;
  TmpDir d;
  auto o = opts(d / "vec");
  o.out_dtype = DType::F32;
  arith::extract(f.base, f.tuned, o);
  arith::random_like(d / "vec", 5, opts(d / "r1"));
  arith::random_like(d / "vec", 5, opts(d / "r2"));
  arith::random_like(d / "vec", 6, opts(d / "r3"));
  EXPECT_TRUE(same_tensors(d / "r1", d / "r2"));
  auto v = io::ModelDir::open(d / "vec"), r = io::ModelDir::open(d / "r1"), r3 = io::ModelDir::open(d / "r3");
  for (auto* t : v->tensors()) {
    auto a = values(*v, t->name), b = values(*r, t->name), c = values(*r3, t->name);
    double na = 0, nb = 0, dot = 0;
    for (size_t k = 0; k < a.size(); ++k) na += double(a[k]) * a[k], nb += double(b[k]) * b[k], dot += double(b[k]) * c[k];
    EXPECT_NEAR(std::sqrt(nb), std::sqrt(na), 1e-5 * std::sqrt(na)) << t->name;
    if (a.size() > 1000) {
      EXPECT_LT(std::fabs(dot) / nb, 0.1) << t->name;  // seeds give different directions
    }
  }
}

TEST(Arith, LayerIndex) {
  EXPECT_EQ(arith::layer_index("model.layers.12.mlp.up_proj.weight"), 12);
  EXPECT_EQ(arith::layer_index("model.embed_tokens.weight"), -1);
  EXPECT_EQ(arith::layer_index("model.layers.x.mlp"), -1);
}

// Tensors spanning many pipeline items (128K elements each) and a vocabulary-row boundary
// inside an item: values against a hand computation, non-finite counts summed over items,
// and the extract/apply round trip.
TEST(Arith, LargeTensorsAcrossPipelineItems) {
  TmpDir d;
  auto cfg = qwen_config();
  const int64_t cols = 1000, rows_t = 700, rows_v = 613;  // 700K / 613K elements
  std::vector<float> e_t(size_t(rows_t * cols)), e_v(size_t(rows_v * cols)), w_t(300001), w_v(300001);
  for (size_t i = 0; i < e_t.size(); ++i) e_t[i] = float(i % 256);  // exact in bf16
  for (size_t i = 0; i < e_v.size(); ++i) e_v[i] = float(int(i % 7) - 3);
  for (size_t i = 0; i < w_t.size(); ++i) w_t[i] = float(i % 100);
  for (size_t i = 0; i < w_v.size(); ++i) w_v[i] = 0.5f + float(i % 13) * 1e-3f;
  w_v[3] = std::numeric_limits<float>::infinity();  // non-finite results in two different items
  w_v[300000] = std::nanf("");
  write_model(d / "target", {{"model.embed_tokens.weight", DType::BF16, {rows_t, cols}, e_t},
                             {"w", DType::F32, {300001}, w_t}}, cfg);
  write_model(d / "vec", {{"model.embed_tokens.weight", DType::BF16, {rows_v, cols}, e_v},
                          {"w", DType::F32, {300001}, w_v}}, cfg);
  auto r = arith::apply(d / "target", {{d / "vec", 2.0}}, opts(d / "out"));
  EXPECT_EQ(r.nonfinite, 2u);
  auto m = io::ModelDir::open(d / "out");
  auto e = values(*m, "model.embed_tokens.weight");
  ASSERT_EQ(e.size(), e_t.size());
  for (size_t i = 0; i < e.size(); ++i) {
    const float want = i < e_v.size() ? bf16_to_f32(f32_to_bf16(e_t[i] + 2.0f * e_v[i])) : e_t[i];
    ASSERT_EQ(e[i], want) << i;
  }
  auto w = values(*m, "w");
  for (size_t i = 0; i < w.size(); ++i) {
    if (i == 3 || i == 300000) continue;
    ASSERT_EQ(w[i], w_t[i] + 2.0f * w_v[i]) << i;
  }
  EXPECT_TRUE(std::isinf(w[3]));
  EXPECT_TRUE(std::isnan(w[300000]));
  // Round trip through a lossless vector; then a forced bf16 vector reports its rounding error.
  arith::extract(d / "target", d / "out", opts(d / "v"));
  arith::apply(d / "target", {{d / "v", 1.0}}, opts(d / "back"));
  auto back = io::ModelDir::open(d / "back");
  EXPECT_EQ(bytes(*back, "model.embed_tokens.weight"), bytes(*m, "model.embed_tokens.weight"));
  auto o = opts(d / "v16");
  o.out_dtype = DType::BF16;
  auto rv = arith::extract(d / "target", d / "out", o);
  double sq = 0, mx = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    const float v = w[i] - w_t[i];
    const double err = std::fabs(double(bf16_to_f32(f32_to_bf16(v))) - double(v));
    if (std::isfinite(err)) mx = std::max(mx, err), sq += err * err;
  }
  for (auto& t : rv.tensors)
    if (t.name == "w") {
      EXPECT_EQ(t.max_round_err, mx);
      EXPECT_NEAR(t.rms_round_err, std::sqrt(sq / double(w.size())), 1e-12);
    }
}

// A directory given twice (target and vector) is hashed once but recorded for both inputs,
// each with its own spelling of the path.
TEST(Arith, InputGivenTwiceRecordsBothHashes) {
  TmpDir d;
  write_model(d / "a", {{"w", DType::F32, {3}, {1, 2, 3}}}, qwen_config());
  arith::apply(d / "a", {{d.path / "." / "a", 0.5}}, opts(d / "out"));
  json rec = json::parse(read_file(d / "out" / "rvec.json"));
  const std::string want = io::sha256_file(d / "a" / "model.safetensors");
  ASSERT_EQ(rec["inputs"].size(), 2u);
  for (auto& [name, in] : rec["inputs"].items()) {
    EXPECT_EQ(in["sha256"]["model.safetensors"], want) << name;
    EXPECT_EQ(in["path"], fs::absolute(d / "a").lexically_normal().string()) << name;
  }
}
