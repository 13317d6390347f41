// Hostile config.json numbers (issue 10 §3): each bad value is refused with the key
// named and the value as written, instead of a model that computes NaN.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "model/config.h"

using rvec::model::ModelConfig;
using nlohmann::json;

namespace {

json base() {
  return json::parse(R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":128,
    "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"rms_norm_eps":1e-5,
    "rope_theta":10000.0,"vocab_size":1000,"bos_token_id":1,"eos_token_id":[2,3]})");
}

std::string error_with(const std::string& key, const json& value) {
  json j = base();
  if (key.find('.') != std::string::npos) {
    j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
    j["rope_scaling"][key.substr(key.find('.') + 1)] = value;
  } else {
    j[key] = value;
  }
  try {
    ModelConfig::from_json(j, "m/config.json");
  } catch (const rvec::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(ConfigValidation, BaseIsAccepted) {
  auto c = ModelConfig::from_json(base(), "m/config.json");
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(c.head_dim, 16);
}

TEST(ConfigValidation, BadNumbersNameTheKeyAndValue) {
  struct Case {
    std::string key;
    json value;
    std::string expect;  // substring after "m/config.json: config key '<key>' "
  } cases[] = {
      {"rope_theta", 0, "must be a finite number > 0"},
      {"rope_theta", -10000.0, "got -10000.0"},
      {"rms_norm_eps", -1e-6, "must be a finite number >= 0"},
      {"num_hidden_layers", 2.5, "must be an integer in [1, 4096], got 2.5"},
      {"num_hidden_layers", 24.0, "got 24.0"},
      {"num_hidden_layers", 100000000, "got 100000000"},
      {"hidden_size", 0, "got 0"},
      {"hidden_size", "64", "got \"64\""},
      {"num_attention_heads", -4, "got -4"},
      {"vocab_size", 4294967296ull, "got 4294967296"},
      {"intermediate_size", true, "got true"},
      {"head_dim", 15, "must be even"},
      {"max_position_embeddings", 0, "got 0"},
      {"bos_token_id", 1000, "must be an integer in [0, 999], got 1000"},
      {"bos_token_id", -1, "got -1"},
      {"eos_token_id", 2147483648ull, "got 2147483648"},
      {"eos_token_id", json::array({2, 1099511627776ull}), "'eos_token_id'[1] must be an integer in [0, 999], got 1099511627776"},
      {"eos_token_id", json::array({2, "x"}), "got \"x\""},
      {"sliding_window", -1, "got -1"},
      {"partial_rotary_factor", 0.0, "must be a finite number > 0"},
      {"rope_scaling.factor", 0.0, "'rope_scaling.factor' must be a finite number > 0"},
      {"rope_scaling.original_max_position_embeddings", 0.5, "got 0.5"},
      // Strings of another type (a libFuzzer find: nlohmann's type_error escaped as a crash).
      {"hidden_act", 7, "must be a string, got 7"},
      {"rope_scaling.rope_type", 5, "must be a string, got 5"},
      {"rope_scaling.type", json::array({1}), "must be a string, got [1]"},
  };
  for (const auto& c : cases) {
    std::string msg = error_with(c.key, c.value);
    std::string key = c.key;
    EXPECT_NE(msg.find("m/config.json: config key '" + key + "'"), std::string::npos) << c.key << " -> " << msg;
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.key << " = " << c.value.dump() << " -> " << msg;
  }
}

TEST(ConfigValidation, HeadDivisibility) {
  json j = base();
  j["num_key_value_heads"] = 3;
  EXPECT_THROW(ModelConfig::from_json(j, "m"), rvec::Error);
  j = base();
  j["hidden_size"] = 66;
  EXPECT_THROW(ModelConfig::from_json(j, "m"), rvec::Error);
}

TEST(ConfigValidation, TokenIdListsAreRangeCheckedBeforeNarrowing) {
  // generation_config.json's eos_token_id: 2^32 + 1 must not become id 1.
  EXPECT_EQ(rvec::model::parse_token_id_list(json::array({5, 7}), "g", 10), (std::vector<int32_t>{5, 7}));
  EXPECT_TRUE(rvec::model::parse_token_id_list(json(), "g", 10).empty());
  try {
    rvec::model::parse_token_id_list(json(4294967297ull), "g: key 'eos_token_id'");
    FAIL();
  } catch (const rvec::Error& e) {
    EXPECT_NE(std::string(e.what()).find("got 4294967297"), std::string::npos) << e.what();
  }
}
