#include "exp/stats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"

using namespace rvec::experiment;

TEST(Stats, MeanAndStderr) {
  std::vector<double> x{1, 0, 1, 1};
  EXPECT_DOUBLE_EQ(mean(x), 0.75);
  // sample variance = (3 * 0.25^2 + 0.75^2) / 3 = 0.25; se = sqrt(0.25 / 4) = 0.25
  EXPECT_DOUBLE_EQ(stderr_of_mean(x), 0.25);
  std::vector<double> one{1};
  EXPECT_EQ(stderr_of_mean(one), 0.0);
  EXPECT_EQ(mean(std::vector<double>{}), 0.0);
}

TEST(Stats, McNemarExactHandComputed) {
  // b=10, c=2: 2 * (C(12,0) + C(12,1) + C(12,2)) / 2^12 = 2 * 79 / 4096
  EXPECT_NEAR(mcnemar_exact_p(10, 2), 158.0 / 4096.0, 1e-12);
  EXPECT_NEAR(mcnemar_exact_p(2, 10), 158.0 / 4096.0, 1e-12);
  EXPECT_NEAR(mcnemar_exact_p(0, 5), 2.0 / 32.0, 1e-12);
  EXPECT_EQ(mcnemar_exact_p(3, 3), 1.0);  // 2 * 42/64 > 1, capped
  EXPECT_EQ(mcnemar_exact_p(0, 0), 1.0);
  // Large counts stay finite: b=600, c=400 is extremely significant but > 0.
  double p = mcnemar_exact_p(600, 400);
  EXPECT_GT(p, 0.0);
  EXPECT_LT(p, 1e-8);
  EXPECT_THROW(mcnemar_exact_p(-1, 2), rvec::Error);
}

TEST(Stats, Chi2Tail) {
  // Table values of the chi-square distribution with 1 degree of freedom.
  EXPECT_NEAR(chi2_sf_1dof(3.841458820694124), 0.05, 1e-9);
  EXPECT_NEAR(chi2_sf_1dof(6.634896601021214), 0.01, 1e-9);
  EXPECT_EQ(chi2_sf_1dof(0), 1.0);
  // b=10, c=2: chi2 = (8 - 1)^2 / 12
  EXPECT_NEAR(mcnemar_chi2_p(10, 2), chi2_sf_1dof(49.0 / 12.0), 1e-15);
}

TEST(Stats, McNemarFromPairedOutcomes) {
  std::vector<double> base, other;
  for (int i = 0; i < 10; ++i) base.push_back(1), other.push_back(0);  // b
  for (int i = 0; i < 2; ++i) base.push_back(0), other.push_back(1);   // c
  for (int i = 0; i < 30; ++i) base.push_back(1), other.push_back(1);  // concordant
  for (int i = 0; i < 7; ++i) base.push_back(0), other.push_back(0);
  auto r = mcnemar(base, other);
  EXPECT_EQ(r.b, 10);
  EXPECT_EQ(r.c, 2);
  EXPECT_NEAR(r.p_exact, 158.0 / 4096.0, 1e-12);
  EXPECT_NEAR(r.chi2, 49.0 / 12.0, 1e-12);
  std::vector<double> shorter(3, 1.0);
  EXPECT_THROW(mcnemar(base, shorter), rvec::Error);
}

TEST(Stats, PairedBootstrap) {
  std::vector<double> base(50, 0.0), better(50, 1.0);
  auto r = paired_bootstrap(base, better, 2000, 7);
  EXPECT_DOUBLE_EQ(r.delta, 1.0);
  EXPECT_EQ(r.p, 0.0);
  EXPECT_DOUBLE_EQ(r.ci_low, 1.0);

  // Identical scores: no difference at all.
  auto same = paired_bootstrap(better, better, 500, 7);
  EXPECT_EQ(same.delta, 0.0);
  EXPECT_EQ(same.p, 1.0);

  // A small mixed difference: deterministic for a fixed seed, CI brackets the delta,
  // and the p-value is in the same ballpark as McNemar's.
  std::vector<double> a, b;
  for (int i = 0; i < 200; ++i) {
    a.push_back(i % 3 == 0 ? 1 : 0);
    b.push_back(i % 3 == 0 || i % 7 == 0 ? 1 : 0);
  }
  auto r1 = paired_bootstrap(a, b, 3000, 42), r2 = paired_bootstrap(a, b, 3000, 42);
  EXPECT_EQ(r1.p, r2.p);
  EXPECT_EQ(r1.ci_low, r2.ci_low);
  EXPECT_LE(r1.ci_low, r1.delta);
  EXPECT_GE(r1.ci_high, r1.delta);
  EXPECT_GT(r1.delta, 0);
  EXPECT_LT(r1.p, 0.01);  // 19 discordant pairs all in one direction
  EXPECT_LT(mcnemar(a, b).p_exact, 0.01);
  EXPECT_THROW(paired_bootstrap(a, base), rvec::Error);
}
