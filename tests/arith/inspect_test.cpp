#include <gtest/gtest.h>

#include <cmath>

#include "arith/arith_helpers.h"
#include "arith/inspect.h"

using namespace rvec;
using namespace rvec::testing;

TEST(Inspect, HandComputedNormsRelativeAndCosine) {
  TmpDir d;
  auto cfg = qwen_config();
  // v: layer 0 tensor [3, 4, 0, 0] (norm 5, max 4, half zeros); layer 1 tensor [0, -12] (bf16);
  // embeddings 2x2 [1, 0, 0, 0].
  write_model(d / "v",
              {{"model.embed_tokens.weight", DType::F32, {2, 2}, {1, 0, 0, 0}},
               {"model.layers.0.a", DType::F32, {4}, {3, 4, 0, 0}},
               {"model.layers.1.b", DType::BF16, {2}, {0, -12}}},
              cfg);
  write_model(d / "theta",
              {{"model.embed_tokens.weight", DType::F32, {2, 2}, {0, 0, 0, 2}},
               {"model.layers.0.a", DType::F32, {4}, {0, 0, 0, 10}},
               {"model.layers.1.b", DType::BF16, {2}, {5, 0}}},
              cfg);
  // w: layer 0 = -v (cos -1), layer 1 orthogonal-ish [1, -1] (cos = 12/(12*sqrt2)).
  write_model(d / "w",
              {{"model.embed_tokens.weight", DType::F32, {2, 2}, {2, 0, 0, 0}},
               {"model.layers.0.a", DType::F32, {4}, {-3, -4, 0, 0}},
               {"model.layers.1.b", DType::BF16, {2}, {1, -1}}},
              cfg);
  auto r = arith::inspect(d / "v", std::nullopt, "");
  ASSERT_EQ(r.tensors.size(), 3u);
  const auto& a = r.tensors[1];
  EXPECT_EQ(a.name, "model.layers.0.a");
  EXPECT_DOUBLE_EQ(a.norm(), 5.0);
  EXPECT_DOUBLE_EQ(a.max_abs, 4.0);
  EXPECT_DOUBLE_EQ(a.zero_fraction(), 0.5);
  EXPECT_EQ(r.tensors[2].dtype, "BF16");
  EXPECT_DOUBLE_EQ(r.tensors[2].max_abs, 12.0);
  ASSERT_EQ(r.groups.size(), 3u);
  EXPECT_EQ(r.groups[0].name, "embed");
  EXPECT_EQ(r.groups[1].name, "layer 0");
  EXPECT_DOUBLE_EQ(r.total.norm(), std::sqrt(1.0 + 25 + 144));
  EXPECT_DOUBLE_EQ(r.total.zero_fraction(), 6.0 / 10.0);

  auto m = arith::inspect(d / "v", d / "theta", "model");
  EXPECT_DOUBLE_EQ(m.tensors[1].relative(), 0.5);
  EXPECT_DOUBLE_EQ(m.tensors[2].relative(), 12.0 / 5.0);
  EXPECT_DOUBLE_EQ(m.total.relative(), std::sqrt(170.0) / std::sqrt(4.0 + 100 + 25));

  auto c = arith::inspect(d / "v", d / "w", "vector");
  EXPECT_DOUBLE_EQ(c.tensors[0].cosine(), 1.0);
  EXPECT_DOUBLE_EQ(c.tensors[1].cosine(), -1.0);
  EXPECT_NEAR(c.tensors[2].cosine(), 1.0 / std::sqrt(2.0), 1e-15);
  // overall: <v,w> = 2 - 25 + 12 = -11; |w| = sqrt(4 + 25 + 2)
  EXPECT_NEAR(c.total.cosine(), -11.0 / (std::sqrt(170.0) * std::sqrt(31.0)), 1e-15);
  auto j = arith::to_json(c);
  EXPECT_NEAR(j["total"]["cosine"].get<double>(), -11.0 / (std::sqrt(170.0) * std::sqrt(31.0)), 1e-15);
  EXPECT_EQ(j["layers"][1]["name"], "layer 0");
  EXPECT_NE(arith::to_table(c).find("cosine"), std::string::npos);
}
