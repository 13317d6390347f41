// The tensor shapes `rvec testmodel` writes for a config.json: keys that ModelConfig does
// not validate for every architecture are type-checked here too (a mistyped one was
// nlohmann's type_error, which escaped the model_config fuzzer as a crash).
#include <gtest/gtest.h>

#include <string>

#include "arith/testmodel.h"
#include "core/error.h"

using nlohmann::json;

namespace {

std::string shapes_error(const json& c) {
  try {
    rvec::arith::decoder_tensors(c, rvec::DType::F32);
  } catch (const rvec::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(TestModelShapes, Qwen2LayoutFromAMinimalConfig) {
  json c = json::parse(R"({"hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,
    "num_attention_heads":2,"vocab_size":32,"num_key_value_heads":1})");
  auto t = rvec::arith::decoder_tensors(c, rvec::DType::F32);
  // embed, per layer: input norm, q/k/v with biases, o, post norm, gate/up/down; final norm.
  // tie_word_embeddings defaults to true here: no lm_head.
  ASSERT_EQ(t.size(), 1u + 12u + 1u);
  EXPECT_EQ(t[0].name, "model.embed_tokens.weight");
  EXPECT_EQ(t[0].shape, (std::vector<int64_t>{32, 8}));
  EXPECT_EQ(t[4].name, "model.layers.0.self_attn.k_proj.weight");
  EXPECT_EQ(t[4].shape, (std::vector<int64_t>{4, 8}));  // one KV head of 8 / 2 = 4
}

TEST(TestModelShapes, MistypedKeysNameTheKey) {
  json c = json::parse(R"({"hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,
    "num_attention_heads":2,"vocab_size":32})");
  c["model_type"] = 3;
  EXPECT_EQ(shapes_error(c), "config.json: key 'model_type' must be a string, got 3");
  c["model_type"] = "llama";
  c["attention_bias"] = "no";
  EXPECT_EQ(shapes_error(c), "config.json: key 'attention_bias' must be true or false, got \"no\"");
  c["attention_bias"] = false;
  c["tie_word_embeddings"] = 1;
  EXPECT_EQ(shapes_error(c), "config.json: key 'tie_word_embeddings' must be true or false, got 1");
}
