#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "io/model_dir.h"
#include "model/config.h"
#include "model/weights.h"

using rvec::model::Arch;
using rvec::model::ModelConfig;
using nlohmann::json;

namespace {
json qwen_small() {
  return json::parse(R"({"architectures":["Qwen2ForCausalLM"],"hidden_size":896,"intermediate_size":4864,
    "num_hidden_layers":24,"num_attention_heads":14,"num_key_value_heads":2,"rms_norm_eps":1e-6,
    "rope_theta":1000000.0,"vocab_size":151936,"tie_word_embeddings":true,"max_position_embeddings":32768,
    "bos_token_id":151643,"eos_token_id":151645,"hidden_act":"silu","sliding_window":32768,"use_sliding_window":false})");
}
}  // namespace

TEST(ModelConfig, Qwen2Defaults) {
  auto c = ModelConfig::from_json(qwen_small(), "x/config.json");
  EXPECT_EQ(c.arch, Arch::Qwen2);
  EXPECT_EQ(c.head_dim, 64);  // hidden / heads
  EXPECT_EQ(c.q_dim(), 896);
  EXPECT_EQ(c.kv_dim(), 128);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.sliding_window.has_value());  // use_sliding_window false
  ASSERT_EQ(c.eos_token_ids.size(), 1u);
  EXPECT_EQ(c.eos_token_ids[0], 151645);
  auto inv = c.rope_inv_freq();
  ASSERT_EQ(inv.size(), 32u);
  EXPECT_DOUBLE_EQ(inv[0], 1.0);
  EXPECT_NEAR(inv[1], 1.0 / std::pow(1e6, 2.0 / 64), 1e-15);
}

TEST(ModelConfig, LlamaWithLlama3RopeAndEosList) {
  json j = json::parse(R"({"architectures":["LlamaForCausalLM"],"hidden_size":2048,"intermediate_size":8192,
    "num_hidden_layers":16,"num_attention_heads":32,"num_key_value_heads":8,"head_dim":64,"rms_norm_eps":1e-5,
    "rope_theta":500000.0,"vocab_size":128256,"eos_token_id":[128001,128008,128009],
    "rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
    "original_max_position_embeddings":8192,"rope_type":"llama3"}})");
  auto c = ModelConfig::from_json(j, "cfg");
  EXPECT_EQ(c.arch, Arch::Llama);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.tie_word_embeddings);  // LlamaConfig default
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{128001, 128008, 128009}));
  auto inv = c.rope_inv_freq();
  ASSERT_EQ(inv.size(), 32u);
  // Expected values from transformers' _compute_llama3_parameters evaluated by hand
  // (python, float64): high-frequency kept, low-frequency /8, medium smoothly blended.
  EXPECT_NEAR(inv[0], 1.0, 1e-15);
  EXPECT_NEAR(inv[10], 0.016560440080994446, 1e-15);
  EXPECT_NEAR(inv[15], 0.0013718935677611381, 1e-15);
  EXPECT_NEAR(inv[16], 0.0005248461609929547, 1e-15);
  EXPECT_NEAR(inv[20], 3.428102195952591e-05, 1e-18);
  EXPECT_NEAR(inv[31], 3.7673226901739635e-07, 1e-20);
}

TEST(ModelConfig, LlamaAttentionBiasAndMistral) {
  json j = qwen_small();
  j["architectures"] = {"LlamaForCausalLM"};
  j["attention_bias"] = true;
  auto c = ModelConfig::from_json(j, "cfg");
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_TRUE(c.o_bias);
  j["architectures"] = {"MistralForCausalLM"};
  j.erase("attention_bias");
  c = ModelConfig::from_json(j, "cfg");
  EXPECT_EQ(c.arch, Arch::Mistral);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.sliding_window.value_or(0), 32768);  // parsed, ignored by the engine
}

TEST(ModelConfig, RejectsUnsupported) {
  auto expect_fail = [](json j, const std::string& needle) {
    try {
      ModelConfig::from_json(j, "dir/config.json");
      ADD_FAILURE() << "accepted: " << j.dump();
    } catch (const rvec::Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("dir/config.json"), std::string::npos) << e.what();
    }
  };
  json j = qwen_small();
  j["architectures"] = {"GPT2LMHeadModel"};
  expect_fail(j, "GPT2LMHeadModel");
  j = qwen_small();
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}};
  expect_fail(j, "yarn");
  j = qwen_small();
  j["hidden_act"] = "gelu";
  expect_fail(j, "gelu");
  j = qwen_small();
  j["num_key_value_heads"] = 3;
  expect_fail(j, "num_key_value_heads");
  j = qwen_small();
  j.erase("hidden_size");
  expect_fail(j, "hidden_size");
}

TEST(Weights, BindsFixtureInPlace) {
  auto dir = rvec::io::ModelDir::open(RVEC_TESTDATA_DIR "/fixtures/qwen2_tiny_untied_mha4x4/model");
  auto c = ModelConfig::from_json(dir->config(), "cfg");
  auto w = rvec::model::Weights::bind(*dir, c);
  ASSERT_EQ(w.layers.size(), 3u);
  EXPECT_EQ(w.layers[0].q.w.rows, 256);
  EXPECT_EQ(w.layers[0].q.bias.size(), 256u);
  EXPECT_TRUE(w.layers[0].o.bias.empty());
  // In place: the matrix points into the mapped file.
  EXPECT_EQ(w.embed.data, dir->get("model.embed_tokens.weight").data);
  EXPECT_EQ(w.lm_head.w.data, dir->get("lm_head.weight").data);  // untied

  auto tied = rvec::io::ModelDir::open(RVEC_TESTDATA_DIR "/fixtures/qwen2_tiny_tied_gqa14x2/model");
  auto ct = ModelConfig::from_json(tied->config(), "cfg");
  auto wt = rvec::model::Weights::bind(*tied, ct);
  EXPECT_EQ(wt.lm_head.w.data, wt.embed.data);
  // A wrong shape is reported with the tensor name.
  ct.intermediate_size = 100;
  try {
    rvec::model::Weights::bind(*tied, ct);
    ADD_FAILURE();
  } catch (const rvec::Error& e) {
    EXPECT_NE(std::string(e.what()).find("mlp.gate_proj.weight"), std::string::npos) << e.what();
  }
}

TEST(ModelConfig, Qwen3HeadDimNormsAndRopeParameters) {
  json j = json::parse(R"({"architectures":["Qwen3ForCausalLM"],"hidden_size":1024,"intermediate_size":3072,
    "num_hidden_layers":28,"num_attention_heads":16,"num_key_value_heads":8,"rms_norm_eps":1e-6,
    "rope_theta":1000000,"vocab_size":151936,"tie_word_embeddings":true,"hidden_act":"silu",
    "use_sliding_window":false,"sliding_window":null})");
  auto c = ModelConfig::from_json(j, "q3");
  EXPECT_EQ(c.arch, Arch::Qwen3);
  EXPECT_EQ(c.head_dim, 128);  // Qwen3Config's default, not 1024 / 16
  EXPECT_EQ(c.q_dim(), 2048);
  EXPECT_EQ(c.qk_norm, rvec::model::QkNorm::PerHead);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.post_block_norms);
  EXPECT_TRUE(c.tie_word_embeddings);
  // transformers >= 4.56 writes rope_parameters instead of rope_theta.
  j.erase("rope_theta");
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 5e5}};
  EXPECT_DOUBLE_EQ(ModelConfig::from_json(j, "q3").rope_theta, 5e5);
  j["attention_bias"] = true;
  EXPECT_TRUE(ModelConfig::from_json(j, "q3").qkv_bias);
}

TEST(ModelConfig, Olmo2Defaults) {
  json j = json::parse(R"({"architectures":["Olmo2ForCausalLM"],"hidden_size":4096,"intermediate_size":11008,
    "num_hidden_layers":32,"num_attention_heads":32,"vocab_size":100352,"rope_theta":500000,
    "eos_token_id":100257,"pad_token_id":100277})");
  auto c = ModelConfig::from_json(j, "o2");
  EXPECT_EQ(c.arch, Arch::Olmo2);
  EXPECT_EQ(c.num_kv_heads, 32);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);  // Olmo2Config default
  EXPECT_EQ(c.qk_norm, rvec::model::QkNorm::Full);
  EXPECT_TRUE(c.post_block_norms);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.qkv_bias);
}

TEST(ModelConfig, UnsupportedArchitecturesListTheSupportedOnes) {
  json j = qwen_small();
  for (const char* a : {"Qwen2MoeForCausalLM", "Gemma2ForCausalLM", "Qwen3MoeForCausalLM"}) {
    j["architectures"] = {a};
    try {
      ModelConfig::from_json(j, "x/config.json");
      ADD_FAILURE() << a;
    } catch (const rvec::Error& e) {
      std::string m = e.what();
      EXPECT_NE(m.find(a), std::string::npos) << m;
      for (const char* s : {"Qwen2ForCausalLM", "Qwen3ForCausalLM", "LlamaForCausalLM", "MistralForCausalLM",
                            "Olmo2ForCausalLM"})
        EXPECT_NE(m.find(s), std::string::npos) << m;
    }
  }
  j["architectures"] = {"Qwen3ForCausalLM"};
  j["num_experts"] = 128;
  EXPECT_THROW(ModelConfig::from_json(j, "moe"), rvec::Error);
}
