#include "io/model_dir.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"

using namespace rvec;

TEST(ModelDir, OpensFixtureModel) {
  std::filesystem::path dir = std::string(RVEC_SHARED_DIR) + "/fixtures/qwen2_tiny_tied_gqa14x2/model";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << "no ../shared fixtures";
  auto m = io::ModelDir::open(dir);
  EXPECT_EQ(m->architecture(), "Qwen2ForCausalLM");
  EXPECT_TRUE(m->tie_word_embeddings());
  const auto& e = m->get("model.embed_tokens.weight");
  EXPECT_EQ(e.dtype, DType::F32);
  ASSERT_EQ(e.shape.size(), 2u);
  EXPECT_EQ(e.shape[0], 1024);
  EXPECT_EQ(e.shape[1], 224);
  EXPECT_EQ(m->find("lm_head.weight"), nullptr);
  EXPECT_THROW(m->get("nope"), Error);
}
