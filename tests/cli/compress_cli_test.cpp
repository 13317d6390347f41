// End to end through the rvec binary: `rvec compress` (sparse, int8, lora, --decompress) and
// apply of the result, and the sparsifying `apply --sparsify ties|dare` against expectations
// computed here from the vector (top-k by |v| with position tie-break; DARE's keep rate and
// L1 rescale).
// GCC 12 at -O3 reports a bogus -Wrestrict inside std::string operator+ (GCC bug 105329).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wrestrict"
#endif
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "cli_helpers.h"
#include "core/dtype.h"
#include "io/model_dir.h"

namespace fs = std::filesystem;
using nlohmann::json;
using rvec::test_util::CliRun;
using rvec::test_util::nothing_written;
using rvec::test_util::q;
using rvec::test_util::run_rvec_cli;
using rvec::test_util::slurp;

namespace {

fs::path root() {
  static fs::path p = fs::temp_directory_path() / ("rvec-cli-compress-" + std::to_string(getpid()));
  return p;
}

CliRun rvec_cli(const std::string& args) { return run_rvec_cli(args, root()); }

std::vector<float> f32(const rvec::io::ModelDir& m, const std::string& n) {
  const auto& t = m.get(n);
  std::vector<float> v(t.numel());
  rvec::to_f32(t.dtype, t.data, v.data(), v.size());
  return v;
}

class CompressCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fs::remove_all(root());
    fs::create_directories(root());
    ASSERT_EQ(rvec_cli("testmodel --preset tiny --seed 1 -q -o " + q(root() / "sft")).rc, 0);
    ASSERT_EQ(rvec_cli("testmodel --like " + q(root() / "sft") + " --perturb 0.01 --seed 2 -q -o " + q(root() / "grpo")).rc, 0);
    ASSERT_EQ(rvec_cli("extract --base " + q(root() / "sft") + " --tuned " + q(root() / "grpo") + " -q -o " + q(root() / "v")).rc, 0);
    // A zero target: apply's output is then the (sparsified) vector itself.
    ASSERT_EQ(rvec_cli("extract --base " + q(root() / "sft") + " --tuned " + q(root() / "sft") + " -q -o " + q(root() / "zero")).rc, 0);
  }
  static void TearDownTestSuite() { fs::remove_all(root()); }
};

}  // namespace

TEST_F(CompressCli, SparseInt8LoraAndApply) {
  const fs::path r = root();
  CliRun s = rvec_cli("compress " + q(r / "v") + " -m sparse -d 0.1 -q -o " + q(r / "s") + " --report " + q(r / "s.json"));
  ASSERT_EQ(s.rc, 0) << s.err;
  EXPECT_NE(s.out.find("total"), std::string::npos);
  auto v = rvec::io::ModelDir::open(r / "v");
  const json rep = json::parse(slurp(r / "s.json"));
  uint64_t want = 0;
  for (auto* t : v->tensors()) {
    want += uint64_t(0.1 * double(t->numel()));
    EXPECT_EQ(rep["tensors"][t->name]["kept"], uint64_t(0.1 * double(t->numel()))) << t->name;
  }
  EXPECT_EQ(rep["total"]["kept"], want);
  EXPECT_EQ(json::parse(slurp(r / "s" / "compress_report.json")), rep);
  EXPECT_GT(rep["total"]["rel_err"].get<double>(), 0);
  EXPECT_LT(rep["total"]["rel_err"].get<double>(), 1);

  for (const char* m : {"s", "q"}) {
    SCOPED_TRACE(m);
    if (std::string(m) == "q") {
      ASSERT_EQ(rvec_cli("compress " + q(r / "v") + " -m int8 -q -o " + q(r / "q")).rc, 0);
    }
    ASSERT_EQ(rvec_cli("compress " + q(r / m) + " --decompress -q -o " + q(r / (std::string(m) + "d"))).rc, 0);
    CliRun a = rvec_cli("apply " + q(r / "sft") + " -v " + q(r / m) + ":0.5 -q -o " + q(r / (std::string(m) + "a1")));
    ASSERT_EQ(a.rc, 0) << a.err;
    ASSERT_EQ(rvec_cli("apply " + q(r / "sft") + " -v " + q(r / (std::string(m) + "d")) + ":0.5 -q -o " +
                   q(r / (std::string(m) + "a2")))
                  .rc,
              0);
    EXPECT_EQ(slurp(r / (std::string(m) + "a1") / "model.safetensors"),
              slurp(r / (std::string(m) + "a2") / "model.safetensors"));
  }
  CliRun l = rvec_cli("compress " + q(r / "v") + " -m lora -r 4 -q --json -o " + q(r / "l"));
  ASSERT_EQ(l.rc, 0) << l.err;
  EXPECT_TRUE(fs::exists(r / "l" / "adapter_config.json"));
  const json lj = json::parse(l.out);
  EXPECT_EQ(lj["method"], "lora");
  EXPECT_GT(lj["total"]["rel_err"].get<double>(), 0);
  EXPECT_LE(lj["total"]["rel_err"].get<double>(), 1);
  EXPECT_EQ(lj["file_bytes"], fs::file_size(r / "l" / "adapter_model.safetensors"));
  EXPECT_EQ(rvec_cli("apply " + q(r / "sft") + " --lora " + q(r / "l") + " -q -o " + q(r / "la")).rc, 0);

  // Bad input: a damaged format tag, a bad density, a missing method.
  fs::copy(r / "s", r / "bad");
  std::string img = slurp(r / "bad" / "model.safetensors");
  const std::string tag = "\"rvec_compressed\":\"sparse\"";
  auto p = img.find(tag);
  ASSERT_NE(p, std::string::npos);
  img.replace(p, tag.size(), "\"rvec_compressed\":\"sparsX\"");
  std::ofstream(r / "bad" / "model.safetensors", std::ios::binary) << img;
  CliRun b = rvec_cli("apply " + q(r / "sft") + " -v " + q(r / "bad") + " -q -o " + q(r / "ba"));
  EXPECT_NE(b.rc, 0);
  EXPECT_NE(b.err.find("unknown compressed format 'sparsX'"), std::string::npos) << b.err;
  EXPECT_FALSE(fs::exists(r / "ba"));
  CliRun d = rvec_cli("compress " + q(r / "v") + " -m sparse -d 2 -q -o " + q(r / "d2"));
  EXPECT_NE(d.rc, 0);
  EXPECT_NE(d.err.find("--density 2"), std::string::npos) << d.err;
  EXPECT_NE(rvec_cli("compress " + q(r / "v") + " -q -o " + q(r / "nm")).rc, 0);
  EXPECT_FALSE(fs::exists(r / "d2"));
}

TEST_F(CompressCli, ApplySparsifyTiesKeepsTopKByMagnitude) {
  const fs::path r = root();
  CliRun t = rvec_cli("apply " + q(r / "zero") + " -v " + q(r / "v") + " --sparsify ties --density 0.3 -q -o " + q(r / "ties"));
  ASSERT_EQ(t.rc, 0) << t.err;
  auto v = rvec::io::ModelDir::open(r / "v");
  auto out = rvec::io::ModelDir::open(r / "ties");
  for (auto* tv : v->tensors()) {
    SCOPED_TRACE(tv->name);
    std::vector<float> x = f32(*v, tv->name), got = f32(*out, tv->name);
    std::vector<size_t> order(x.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return std::fabs(x[a]) > std::fabs(x[b]); });
    std::vector<float> want(x.size(), 0.0f);
    const size_t k = size_t(0.3 * double(x.size()));
    for (size_t i = 0; i < k; ++i) want[order[i]] = rvec::bf16_to_f32(rvec::f32_to_bf16(x[order[i]]));
    ASSERT_EQ(got, want);
  }
}

TEST_F(CompressCli, ApplySparsifyDareKeepRateAndL1Rescale) {
  const fs::path r = root();
  CliRun t = rvec_cli("apply " + q(r / "zero") + " -v " + q(r / "v") + " --sparsify dare --density 0.5 --seed 3 -q -o " +
               q(r / "dare"));
  ASSERT_EQ(t.rc, 0) << t.err;
  auto v = rvec::io::ModelDir::open(r / "v");
  auto out = rvec::io::ModelDir::open(r / "dare");
  const std::string big = "model.embed_tokens.weight";
  std::vector<float> x = f32(*v, big), got = f32(*out, big);
  double l1x = 0, l1g = 0;
  size_t nz = 0, kept = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    l1x += std::fabs(x[i]);
    l1g += std::fabs(got[i]);
    if (x[i] != 0) {
      ++nz;
      kept += got[i] != 0;
      // A kept entry is x / density' (rescaled), never a different sign.
      if (got[i] != 0) {
        EXPECT_GT(double(got[i]) * x[i], 0) << i;
      }
    } else {
      EXPECT_EQ(got[i], 0) << i;
    }
  }
  ASSERT_GT(nz, 20000u);
  EXPECT_NEAR(double(kept) / double(nz), 0.5, 0.02);
  EXPECT_NEAR(l1g / l1x, 1.0, 0.01);  // mergekit's rescale: the L1 norm is kept (bf16 rounding aside)
  // Another seed, another mask.
  ASSERT_EQ(rvec_cli("apply " + q(r / "zero") + " -v " + q(r / "v") + " --sparsify dare --density 0.5 --seed 4 -q -o " +
                 q(r / "dare4"))
                .rc,
            0);
  EXPECT_NE(f32(*rvec::io::ModelDir::open(r / "dare4"), big), got);
}

TEST_F(CompressCli, OptionsOfAnotherMethodAreRefused) {
  // Each option only means something for one method: given with another, it is an error that
  // names the option and the method, and nothing is written.
  const fs::path r = root();
  struct Case {
    std::string args, want;
  };
  const std::vector<Case> cases = {
      {"-m int8 --density 0.05", "--density: options of --method sparse only, not of --method int8"},
      {"-m lora -r 4 -d 0.05", "--density: options of --method sparse only, not of --method lora"},
      {"-m int8 --scope global", "--scope: options of --method sparse only, not of --method int8"},
      {"-m lora --energy 0.9 --scope tensor", "--scope: options of --method sparse only, not of --method lora"},
      {"-m sparse -d 0.1 --rank 4", "--rank: options of --method lora only, not of --method sparse"},
      {"-m sparse --energy 0.9", "--energy: options of --method lora only, not of --method sparse"},
      {"-m int8 -r 4 --energy 0.5", "--rank, --energy: options of --method lora only, not of --method int8"},
      // --rank 0 is refused, not taken as "no rank".
      {"-m lora --rank 0", "--rank 0: must be at least 1"},
      {"-m lora --rank 4 --energy 0.9", "give --rank or --energy, not both"},
      {"-m dense", "--method dense: expected sparse, int8 or lora"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.args);
    const CliRun x = rvec_cli("compress " + q(r / "v") + " " + c.args + " -q -o " + q(r / "refused"));
    EXPECT_NE(x.rc, 0);
    EXPECT_NE(x.err.find(c.want), std::string::npos) << x.err;
    EXPECT_TRUE(nothing_written(r / "refused"));
  }
  // --decompress takes its settings from the compressed vector.
  ASSERT_EQ(rvec_cli("compress " + q(r / "v") + " -m int8 -q -o " + q(r / "q8")).rc, 0);
  const CliRun d = rvec_cli("compress " + q(r / "q8") + " --decompress -d 0.5 -q -o " + q(r / "refused"));
  EXPECT_NE(d.rc, 0);
  EXPECT_NE(d.err.find("--decompress takes no --density"), std::string::npos) << d.err;
  EXPECT_TRUE(nothing_written(r / "refused"));
  // The option of the chosen method still works.
  EXPECT_EQ(rvec_cli("compress " + q(r / "v") + " -m sparse -d 0.05 --scope global -q -o " + q(r / "sg")).rc, 0);
}
