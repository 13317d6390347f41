// lm-eval's (context, continuation) tokenization and the empty-context prefix token.
#include "backend/encode.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

using namespace rvec;

TEST(LmEvalEncodePair, TrailingSpaceMovesToContinuation) {
  auto tok = text::Tokenizer::from_file(std::string(RVEC_TESTDATA_DIR) + "/tokenizers/tiny1024/tokenizer.json");
  auto [ctx, cont] = backend::lm_eval_encode_pair(tok, "Answer: ", "yes", 7);
  EXPECT_EQ(ctx, tok.encode("Answer:"));
  std::vector<int32_t> joined = ctx;
  joined.insert(joined.end(), cont.begin(), cont.end());
  EXPECT_EQ(joined, tok.encode("Answer: yes"));  // whole-string encoding, split after the context
  EXPECT_EQ(cont, tok.encode(" yes"));             // (true for this BPE: ' yes' is its own word)
  // Empty context: the prefix token stands in for it.
  auto [c2, k2] = backend::lm_eval_encode_pair(tok, "", "hello", 7);
  EXPECT_EQ(c2, std::vector<int32_t>{7});
  EXPECT_EQ(k2, tok.encode("hello"));
  // A context of only whitespace moves entirely to the continuation.
  auto [c3, k3] = backend::lm_eval_encode_pair(tok, "  ", "x", 9);
  EXPECT_EQ(c3, std::vector<int32_t>{9});
  EXPECT_EQ(k3, tok.encode("  x"));
}

namespace {
std::filesystem::path model_dir_with(const std::string& name, const std::string& config, const std::string& gen) {
  auto d = std::filesystem::temp_directory_path() / ("rvec_encode_test_" + name);
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  std::ofstream(d / "config.json") << config;
  if (!gen.empty()) std::ofstream(d / "generation_config.json") << gen;
  return d;
}
}  // namespace

TEST(PrefixToken, BosThenGenerationEosThenConfigEos) {
  // The engine's choice (infer::load_model): BOS when config.json has one ...
  EXPECT_EQ(backend::prefix_token_of_model_dir(model_dir_with("bos", R"({"bos_token_id": 1, "eos_token_id": 2})", "")),
            1);
  // ... else generation_config.json's EOS (the first of a list) over config.json's ...
  EXPECT_EQ(backend::prefix_token_of_model_dir(
                model_dir_with("gen", R"({"bos_token_id": null, "eos_token_id": 2})", R"({"eos_token_id": [5, 6]})")),
            5);
  // ... else config.json's EOS; neither: nullopt.
  EXPECT_EQ(backend::prefix_token_of_model_dir(model_dir_with("cfg", R"({"eos_token_id": 7})", "")), 7);
  EXPECT_EQ(backend::prefix_token_of_model_dir(model_dir_with("none", R"({})", "")), std::nullopt);
}
