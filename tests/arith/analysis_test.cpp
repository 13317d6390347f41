// Vector analysis: sparsity spectrum, effective rank (randomised SVD) and sign agreement
// against hand-derived values.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "arith/analysis.h"
#include "arith/arith_helpers.h"
#include "arith/inspect.h"

using namespace rvec;
using namespace rvec::testing;

namespace {
// Fraction of Σ x² in the ceil(f·n) largest |x|, by sorting.
double top_mass(std::vector<float> v, double f) {
  std::sort(v.begin(), v.end(), [](float a, float b) { return std::fabs(a) > std::fabs(b); });
  const size_t k = std::max<size_t>(1, size_t(std::ceil(f * double(v.size()))));
  double top = 0, all = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    all += double(v[i]) * v[i];
    if (i < k) top += double(v[i]) * v[i];
  }
  return top / all;
}

// m x n matrix Σ s_i u_i v_iᵀ with orthonormal discrete cosines u_i and sines v_i
// (frequencies 1, 2, 3): its singular values are exactly s.
std::vector<float> low_rank(int64_t m, int64_t n, const std::vector<double>& s) {
  std::vector<float> a(size_t(m * n), 0.0f);
  for (size_t k = 0; k < s.size(); ++k)
    for (int64_t r = 0; r < m; ++r)
      for (int64_t c = 0; c < n; ++c) {
        const double u = std::sqrt(2.0 / double(m)) * std::cos(2 * M_PI * double(k + 1) * double(r) / double(m));
        const double v = std::sqrt(2.0 / double(n)) * std::sin(2 * M_PI * double(k + 1) * double(c) / double(n));
        a[size_t(r * n + c)] += float(s[k] * u * v);
      }
  return a;
}
}  // namespace

TEST(Analysis, RandomisedSvdFindsTheSingularValuesOfALowRankMatrix) {
  const std::vector<double> s = {10, 5, 2};
  auto a = low_rank(200, 150, s);
  bool exact = true;
  auto sv = arith::top_singular_values(a.data(), 200, 150, 8, 2, 1, &exact);
  EXPECT_FALSE(exact);
  ASSERT_EQ(sv.size(), 8u);
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(sv[i], s[i], 1e-3 * s[i]);
  EXPECT_LT(sv[3], 1e-3);
  auto full = arith::top_singular_values(a.data(), 200, 150, 200, 0, 1, &exact);
  EXPECT_TRUE(exact);
  ASSERT_EQ(full.size(), 150u);
  EXPECT_NEAR(full[1], 5.0, 1e-4);
  // Energy 129: 50 % (64.5) needs 1 value, 90 % (116.1) 2, 99 % (127.7) 3.
  EXPECT_EQ(arith::energy_rank(sv, 129, 0.5), 1);
  EXPECT_EQ(arith::energy_rank(sv, 129, 0.9), 2);
  EXPECT_EQ(arith::energy_rank(sv, 129, 0.99), 3);
  EXPECT_EQ(arith::energy_rank({10.0}, 129, 0.9), std::nullopt);  // beyond what was computed
}

TEST(Analysis, SpectrumAndRankOfAVector) {
  TmpDir d;
  std::vector<float> a(100), b(64 * 48);
  for (size_t i = 0; i < a.size(); ++i) a[i] = float(i % 2 ? int(i) : -int(i)) / 16.0f;
  b = low_rank(64, 48, {3, 0.5});
  std::vector<float> eq(40, 0.5f);  // all equal: the top f holds ceil(f n)/n of the mass
  write_model(d / "v",
              {{"model.layers.0.mlp.down_proj.weight", DType::F32, {64, 48}, b},
               {"model.layers.0.input_layernorm.weight", DType::F32, {100}, a},
               {"model.layers.1.mlp.up_proj.weight", DType::F32, {4, 10}, eq}},
              qwen_config());
  arith::AnalysisOptions o;
  o.probe = 16;
  auto r = arith::analyse(d / "v", o);
  ASSERT_EQ(r.tensors.size(), 3u);
  auto row = [&](const std::string& n) -> const arith::SpectrumRow& {
    for (auto& t : r.tensors)
      if (t.name == n) return t;
    throw std::runtime_error("no row " + n);
  };
  for (size_t f = 0; f < 4; ++f) {
    const double fr = arith::kSpectrumFractions[f];
    EXPECT_NEAR(row("model.layers.0.mlp.down_proj.weight").top_mass[f], top_mass(b, fr), 1e-9);
    EXPECT_NEAR(row("model.layers.0.input_layernorm.weight").top_mass[f], top_mass(a, fr), 1e-9);
    EXPECT_NEAR(row("model.layers.1.mlp.up_proj.weight").top_mass[f], std::ceil(fr * 40) / 40, 1e-9);
  }
  // Layer 0 pools both of its tensors.
  std::vector<float> l0 = b;
  l0.insert(l0.end(), a.begin(), a.end());
  ASSERT_EQ(r.groups[0].name, "layer 0");
  for (size_t f = 0; f < 4; ++f) EXPECT_NEAR(r.groups[0].top_mass[f], top_mass(l0, arith::kSpectrumFractions[f]), 1e-9);
  // Effective ranks of the two linear layers (the norm is 1-D and skipped).
  ASSERT_EQ(r.ranks.size(), 2u);
  ASSERT_EQ(r.ranks[0].name, "model.layers.0.mlp.down_proj.weight");
  EXPECT_FALSE(r.ranks[0].exact);
  EXPECT_EQ(r.ranks[0].rank[0], 1);  // σ² = 9 and 0.25 of 9.25
  EXPECT_EQ(r.ranks[0].rank[1], 1);
  EXPECT_EQ(r.ranks[0].rank[2], 2);
  EXPECT_TRUE(r.ranks[1].exact);
  EXPECT_EQ(r.ranks[1].rank[2], 1);  // a constant matrix has rank 1
  auto j = arith::to_json(r);
  EXPECT_EQ(j["effective_rank"][0]["rank_99"], 2);
  EXPECT_NEAR(j["spectrum"]["total"]["top_50pct"].get<double>(), r.total.top_mass[3], 1e-15);
  const std::string svg = arith::to_svg(r);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("<polyline"), std::string::npos);
}

TEST(Analysis, SignAgreementBetweenVectors) {
  TmpDir d;
  auto cfg = qwen_config();
  write_model(d / "v", {{"model.layers.0.a", DType::F32, {5}, {1, -1, 2, 0, 3}}}, cfg);
  write_model(d / "w", {{"model.layers.0.a", DType::F32, {5}, {3, 1, -1, 5, 2}}}, cfg);
  auto r = arith::inspect(d / "v", d / "w", "vector");
  // Nonzero in both: entries 0, 1, 2, 4; same sign: 0 and 4.
  EXPECT_EQ(r.tensors[0].both_nonzero, 4u);
  EXPECT_DOUBLE_EQ(r.total.sign_agreement(), 0.5);
  EXPECT_DOUBLE_EQ(arith::to_json(r)["total"]["sign_agreement"].get<double>(), 0.5);
}
