// mergekit's sparsifying merges: the deterministic methods against committed numpy
// expectations (tests/data/sparsify/make_expectations.py), the random ones by the
// statistics of their masks and rescale.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "arith/arith.h"
#include "arith/arith_helpers.h"
#include "arith/sparsify.h"
#include "core/error.h"
#include "io/model_dir.h"

using namespace rvec;
using namespace rvec::testing;
using nlohmann::json;

namespace {

const fs::path kData = fs::path(RVEC_TESTDATA_DIR) / "sparsify";
const std::string kW = "model.layers.0.mlp.down_proj.weight";

arith::Options opts(const fs::path& out, uint64_t seed = 0) {
  arith::Options o;
  o.out = out;
  o.quiet = true;
  o.hash_inputs = false;
  o.seed = seed;
  return o;
}

// A zero target and a vector with `vals` in one [rows, cols] f32 tensor: apply's output
// is then the sparsified vector itself.
struct VecPair {
  TmpDir d{"sp"};
  fs::path target = d / "target", vec = d / "vec";
  VecPair(int64_t rows, int64_t cols, const std::vector<float>& vals) {
    write_model(target, {{kW, DType::F32, {rows, cols}, std::vector<float>(vals.size(), 0.0f)}}, qwen_config());
    write_model(vec, {{kW, DType::F32, {rows, cols}, vals}}, qwen_config());
  }
};

double l1(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += std::fabs(double(x));
  return s;
}

arith::Report sparse_apply(const VecPair& p, const std::string& out, arith::SparsifyOptions sp, uint64_t seed = 0,
                           double alpha = 1.0) {
  return arith::apply_sparse(p.target, {{p.vec, alpha}}, sp, opts(p.d / out, seed));
}

}  // namespace

TEST(Sparsify, WindowsFollowMergekitCounts) {
  // magnitude: top int(density * n).
  EXPECT_EQ(arith::sparse::magnitude_window(100, 0.37).hi, 37u);
  EXPECT_EQ(arith::sparse::magnitude_window(100, 1.0).hi, 100u);
  // magnitude_outliers: drop int(gamma n) of the top, keep int(density n) below them.
  auto w = arith::sparse::outliers_window(100, 0.4, 0.05);
  EXPECT_EQ(w.lo, 5u);
  EXPECT_EQ(w.hi, 45u);
  // density + gamma > 1: fewer of the top are dropped (n_top += n_bot).
  w = arith::sparse::outliers_window(100, 0.97, 0.05);
  EXPECT_EQ(w.lo, 3u);
  EXPECT_EQ(w.hi, 100u);
}

TEST(Sparsify, DellaProbabilitiesRiseWithMagnitudeRank) {
  // |v| ascending: 0.1 (i0), 0.2 (i3), then 0.3 twice where the later index ranks lower.
  const float row[4] = {0.1f, -0.3f, 0.3f, 0.2f};
  std::vector<uint64_t> order;
  double p[4];
  arith::sparse::della_probs(row, 4, 0.5, 0.1, order, p);
  EXPECT_NEAR(p[0], 0.4, 1e-12);
  EXPECT_NEAR(p[3], 0.4 + 0.2 / 3, 1e-12);
  EXPECT_NEAR(p[2], 0.4 + 0.4 / 3, 1e-12);
  EXPECT_NEAR(p[1], 0.6, 1e-12);
}

TEST(Sparsify, UniformIsInUnitIntervalAndUnbiased) {
  double s = 0;
  for (uint64_t i = 0; i < 100000; ++i) {
    const double u = arith::sparse::uniform(7, 3, i);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    s += u;
  }
  EXPECT_NEAR(s / 100000, 0.5, 0.005);  // sd of the mean: 0.29/sqrt(1e5) = 0.0009
  EXPECT_NE(arith::sparse::uniform(7, 3, 5), arith::sparse::uniform(8, 3, 5));
}

// The deterministic methods (TIES, Breadcrumbs, with and without consensus, rescale,
// lambda, per-tensor density filters) against the numpy reference.
TEST(Sparsify, MergekitConfigsMatchNumpyReference) {
  for (const char* name : {"ties", "ties_rescale_lambda", "breadcrumbs", "breadcrumbs_ties"}) {
    SCOPED_TRACE(name);
    TmpDir d;
    arith::merge_yaml(kData / (std::string(name) + ".yaml"), opts(d / "out"));
    auto got = io::ModelDir::open(d / "out"), want = io::ModelDir::open(kData / "expected" / name);
    ASSERT_EQ(got->tensors().size(), want->tensors().size());
    for (auto* t : want->tensors()) {
      auto a = values(*got, t->name), b = values(*want, t->name);
      ASSERT_EQ(a.size(), b.size()) << t->name;
      for (size_t i = 0; i < a.size(); ++i)
        ASSERT_NEAR(a[i], b[i], 1e-6 + 1e-5 * std::fabs(b[i])) << t->name << " [" << i << "]";
    }
  }
}

TEST(Sparsify, MergekitConfigErrorsNameTheProblem) {
  TmpDir d;
  auto write = [&](const std::string& body) {
    const fs::path cfg = d / "c.yaml";
    write_file_atomic(cfg, body);
    return cfg;
  };
  const std::string models = "models:\n  - model: " + (kData / "m1").string() +
                             "\n    parameters: {weight: 1.0, density: 0.9}\nbase_model: " + (kData / "base").string() +
                             "\n";
  try {
    arith::merge_yaml(write("merge_method: della\n" + models), opts(d / "o1"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("density + epsilon < 1"), std::string::npos) << e.what();
  }
  try {
    arith::merge_yaml(write("merge_method: ties\nmodels:\n  - model: " + (kData / "m1").string() +
                            "\n    parameters: {weight: 1.0}\n"),
                      opts(d / "o2"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ties needs a base_model"), std::string::npos) << e.what();
  }
  try {
    arith::merge_yaml(write("merge_method: dare_ties\nbase_model: " + (kData / "base").string() +
                            "\nparameters: {density: 1.5}\nmodels:\n  - model: " + (kData / "m1").string() +
                            "\n    parameters: {weight: 1.0}\n"),
                      opts(d / "o3"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("density of"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("c.yaml"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(d / "o1"));
}

TEST(Sparsify, TiesKeepsTopDensityByMagnitudeAcrossBlocksWithTies) {
  // 3 x 100000 entries from {-3..3}: the threshold value is shared by tens of thousands of
  // entries spread over several 65536-entry blocks; the first ones in index order are kept.
  std::mt19937_64 g(5);
  std::vector<float> v(300000);
  for (auto& x : v) x = float(int(g() % 7) - 3);
  VecPair p(3, 100000, v);
  arith::SparsifyOptions sp;
  sp.method = "ties";
  sp.density = 0.3;
  for (int threads : {1, 3}) {
    omp_set_num_threads(threads);
    sparse_apply(p, "t" + std::to_string(threads), sp);
  }
  omp_set_num_threads(omp_get_num_procs());
  EXPECT_TRUE(same_tensors(p.d / "t1", p.d / "t3"));
  auto out = values(*io::ModelDir::open(p.d / "t1"), kW);
  const size_t k = size_t(0.3 * 300000);
  size_t nz = 0, n3 = 0, eq2_kept = 0;
  for (float x : v) n3 += std::fabs(x) == 3;
  ASSERT_LT(n3, k);
  size_t quota = k - n3, seen2 = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    nz += out[i] != 0;
    if (std::fabs(v[i]) == 3) {
      ASSERT_EQ(out[i], v[i]) << i;
    }
    if (std::fabs(v[i]) == 2) {
      const bool kept = out[i] != 0;
      ASSERT_EQ(kept, seen2 < quota) << "entry " << i << ": ties are kept in index order";
      if (kept) {
        ASSERT_EQ(out[i], v[i]);
      }
      eq2_kept += kept;
      ++seen2;
    }
    if (std::fabs(v[i]) < 2) {
      ASSERT_EQ(out[i], 0.0f) << i;
    }
  }
  EXPECT_EQ(nz, k);
  EXPECT_EQ(eq2_kept, quota);
}

TEST(Sparsify, DareMaskStatisticsAndL1Rescale) {
  const size_t rows = 256, cols = 256, n = rows * cols;
  auto v = gaussian(n, 11);
  VecPair p(rows, cols, v);
  arith::SparsifyOptions sp;
  sp.method = "dare";
  sp.density = 0.3;
  auto r = sparse_apply(p, "a", sp, 42);
  auto out = values(*io::ModelDir::open(p.d / "a"), kW);
  size_t kept = 0;
  double scale = 0;
  for (size_t i = 0; i < n; ++i) {
    if (out[i] == 0) continue;
    ++kept;
    if (scale == 0) scale = double(out[i]) / double(v[i]);
    ASSERT_NEAR(out[i], v[i] * scale, 1e-6 * std::fabs(out[i]));
  }
  // Binomial(n, 0.3): sd of the fraction sqrt(0.21 / 65536) = 0.0018.
  EXPECT_NEAR(double(kept) / double(n), 0.3, 0.009);
  // Rescale matches the L1 norm (not 1/density).
  EXPECT_NEAR(l1(out), l1(v), 1e-5 * l1(v));
  const json& d0 = r.record["tensors"][kW]["deltas"][0];
  EXPECT_EQ(d0["kept"].get<uint64_t>(), kept);
  EXPECT_NEAR(d0["rescale"].get<double>(), scale, 1e-6 * scale);
  EXPECT_GT(std::fabs(scale - 1 / 0.3), 1e-3);
  // --rescale off keeps the entries as they are.
  sp.rescale = false;
  sparse_apply(p, "b", sp, 42);
  auto raw = values(*io::ModelDir::open(p.d / "b"), kW);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(raw[i] != 0, out[i] != 0) << "same seed, same mask";
  for (size_t i = 0; i < n; ++i) {
    if (raw[i] != 0) {
      ASSERT_EQ(raw[i], v[i]);
    }
  }
}

TEST(Sparsify, RandomMasksDependOnSeedNotThreads) {
  auto v = gaussian(200000, 3);
  VecPair p(2, 100000, v);
  arith::SparsifyOptions sp;
  sp.density = 0.5;
  for (const char* m : {"dare", "della"}) {
    sp.method = m;
    omp_set_num_threads(1);
    sparse_apply(p, std::string(m) + "1", sp, 9);
    omp_set_num_threads(4);
    sparse_apply(p, std::string(m) + "4", sp, 9);
    sparse_apply(p, std::string(m) + "s", sp, 10);
    omp_set_num_threads(omp_get_num_procs());
    EXPECT_TRUE(same_tensors(p.d / (std::string(m) + "1"), p.d / (std::string(m) + "4"))) << m;
    EXPECT_FALSE(same_tensors(p.d / (std::string(m) + "1"), p.d / (std::string(m) + "s"))) << m;
  }
}

TEST(Sparsify, DellaKeepsLargerEntriesMoreOften) {
  const size_t rows = 192, cols = 512, n = rows * cols;
  auto v = gaussian(n, 17);
  VecPair p(rows, cols, v);
  arith::SparsifyOptions sp;
  sp.method = "della";
  sp.density = 0.4;
  sp.epsilon = 0.2;
  auto r = sparse_apply(p, "a", sp, 1);
  auto out = values(*io::ModelDir::open(p.d / "a"), kW);
  // Per row, the bottom third of magnitudes is kept with mean probability
  // density - 2 epsilon / 3, the top third with density + 2 epsilon / 3.
  size_t bottom_kept = 0, top_kept = 0, bottom = 0, top = 0, kept = 0;
  for (size_t rr = 0; rr < rows; ++rr) {
    std::vector<size_t> idx(cols);
    for (size_t c = 0; c < cols; ++c) idx[c] = rr * cols + c;
    std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return std::fabs(v[a]) < std::fabs(v[b]); });
    for (size_t j = 0; j < cols; ++j) {
      const bool k = out[idx[j]] != 0;
      kept += k;
      if (j < cols / 3) bottom_kept += k, ++bottom;
      if (j >= cols - cols / 3) top_kept += k, ++top;
    }
  }
  EXPECT_NEAR(double(kept) / double(n), 0.4, 0.01);
  EXPECT_NEAR(double(bottom_kept) / double(bottom), 0.4 - 0.4 / 3, 0.015);
  EXPECT_NEAR(double(top_kept) / double(top), 0.4 + 0.4 / 3, 0.015);
  EXPECT_NEAR(l1(out), l1(v), 1e-5 * l1(v));  // della rescales by default
  EXPECT_EQ(r.record["tensors"][kW]["deltas"][0]["kept"].get<uint64_t>(), kept);
}

TEST(Sparsify, BreadcrumbsDropsOutliersAndSmallest) {
  auto v = gaussian(4000, 23);
  VecPair p(40, 100, v);
  arith::SparsifyOptions sp;
  sp.method = "breadcrumbs";
  sp.density = 0.5;
  sp.gamma = 0.1;
  sparse_apply(p, "a", sp, 0, 2.0);
  auto out = values(*io::ModelDir::open(p.d / "a"), kW);
  std::vector<float> mag(v.size());
  for (size_t i = 0; i < v.size(); ++i) mag[i] = std::fabs(v[i]);
  std::vector<float> sorted = mag;
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  const float top_cut = sorted[400 - 1], low_cut = sorted[400 + 2000 - 1];  // ranks [400, 2400) kept
  size_t kept = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    const bool in = mag[i] < top_cut && mag[i] >= low_cut;
    ASSERT_EQ(out[i], in ? 2.0f * v[i] : 0.0f) << i;  // alpha 2, no rescale by default
    kept += in;
  }
  EXPECT_EQ(kept, 2000u);
}

TEST(Sparsify, TiesConsensusAcrossVectors) {
  // Two vectors: where signs disagree, the larger weighted magnitude wins and the other is
  // dropped; --normalize divides by the agreeing alphas only.
  TmpDir d;
  write_model(d / "t", {{kW, DType::F32, {4}, {0, 0, 0, 0}}}, qwen_config());
  write_model(d / "a", {{kW, DType::F32, {4}, {1, -1, 2, 0}}}, qwen_config());
  write_model(d / "b", {{kW, DType::F32, {4}, {-3, -1, 1, 4}}}, qwen_config());
  arith::SparsifyOptions sp;
  sp.method = "ties";
  sp.density = 1;  // consensus only
  arith::apply_sparse(d / "t", {{d / "a", 1.0}, {d / "b", 0.5}}, sp, opts(d / "o"));
  // weighted: a = (1, -1, 2, 0), b = (-1.5, -0.5, 0.5, 2); sums (-0.5, -1.5, 2.5, 2)
  EXPECT_EQ(values(*io::ModelDir::open(d / "o"), kW), (std::vector<float>{-1.5f, -1.5f, 2.5f, 2.0f}));
  sp.normalize = true;
  arith::apply_sparse(d / "t", {{d / "a", 1.0}, {d / "b", 0.5}}, sp, opts(d / "n"));
  EXPECT_EQ(values(*io::ModelDir::open(d / "n"), kW), (std::vector<float>{-3.0f, -1.0f, 2.5f / 1.5f, 4.0f}));
}
