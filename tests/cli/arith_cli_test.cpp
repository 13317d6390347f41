// End-to-end tests of the arithmetic subcommands through the rvec binary.
// GCC 12 at -O3 reports a bogus -Wrestrict inside std::string operator+ (GCC bug 105329).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wrestrict"
#endif
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "cli_helpers.h"

namespace fs = std::filesystem;
using nlohmann::json;
using rvec::test_util::CliRun;
using rvec::test_util::nothing_written;
using rvec::test_util::q;
using rvec::test_util::run_rvec_cli;
using rvec::test_util::slurp;

namespace {

fs::path tmp_root() {
  static fs::path p = fs::temp_directory_path() / ("rvec-cli-arith-" + std::to_string(getpid()));
  return p;
}

CliRun rvec_cli(const std::string& args) { return run_rvec_cli(args, tmp_root()); }

class ArithCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fs::remove_all(tmp_root());
    fs::create_directories(tmp_root());
    ASSERT_EQ(rvec_cli("testmodel --preset tiny --seed 1 -q -o " + q(dir() / "sft")).rc, 0);
    ASSERT_EQ(rvec_cli("testmodel --like " + q(dir() / "sft") + " --perturb 0.01 --seed 2 -q -o " + q(dir() / "grpo")).rc, 0);
    ASSERT_EQ(rvec_cli("testmodel --like " + q(dir() / "sft") + " --perturb 0.02 --seed 3 -q -o " + q(dir() / "instruct")).rc, 0);
  }
  static void TearDownTestSuite() { fs::remove_all(tmp_root()); }
  static fs::path dir() { return tmp_root() / "m"; }

  // A model dir whose model.safetensors has the given bytes.
  static fs::path bad_model(const std::string& name, const std::string& bytes) {
    fs::path d = tmp_root() / "bad" / name;
    fs::create_directories(d);
    fs::copy_file(dir() / "sft" / "config.json", d / "config.json", fs::copy_options::overwrite_existing);
    std::ofstream(d / "model.safetensors", std::ios::binary) << bytes;
    return d;
  }
  static std::string header_image(const std::string& h, size_t data, uint64_t len = 0) {
    std::string out(8, '\0');
    uint64_t n = len ? len : h.size();
    for (int i = 0; i < 8; ++i) out[size_t(i)] = char((n >> (8 * i)) & 0xff);
    return out + h + std::string(data, '\0');
  }
};

}  // namespace

TEST_F(ArithCli, ExtractApplyMergeRoundTrips) {
  fs::path t = tmp_root() / "ok";
  auto r = rvec_cli("extract --base " + q(dir() / "sft") + " --tuned " + q(dir() / "grpo") + " -q -o " + q(t / "vec"));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("lossless"), std::string::npos);
  r = rvec_cli("apply " + q(dir() / "sft") + " --vector " + q(t / "vec") + " -q -o " + q(t / "back"));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(slurp(t / "back" / "model.safetensors"), slurp(dir() / "grpo" / "model.safetensors"));
  // The paper's YAML (as in examples/, with real paths), --expr and extract+apply agree byte for byte.
  {
    std::ofstream y(t / "paper.yaml");
    y << "merge_method: linear\ndtype: bfloat16\nparameters:\n  normalize: false\nmodels:\n"
      << "  - model: " << (dir() / "instruct").string() << "\n    parameters: {weight: 1.0}\n"
      << "  - model: " << (dir() / "grpo").string() << "\n    parameters: {weight: 1.0}     # +GRPO\n"
      << "  - model: " << (dir() / "sft").string() << "\n    parameters: {weight: -1.0}    # -SFT\n";
  }
  ASSERT_EQ(rvec_cli("merge " + q(t / "paper.yaml") + " -q -o " + q(t / "yaml")).rc, 0);
  r = rvec_cli("merge --expr 'instruct + (grpo - sft)' --model instruct=" + q(dir() / "instruct") + " --model grpo=" +
           q(dir() / "grpo") + " --model sft=" + q(dir() / "sft") + " -q -o " + q(t / "expr"));
  ASSERT_EQ(r.rc, 0) << r.err;
  ASSERT_EQ(rvec_cli("apply " + q(dir() / "instruct") + " -v " + q(t / "vec") + ":1.0 -q -o " + q(t / "applied")).rc, 0);
  EXPECT_EQ(slurp(t / "yaml" / "model.safetensors"), slurp(t / "expr" / "model.safetensors"));
  EXPECT_EQ(slurp(t / "expr" / "model.safetensors"), slurp(t / "applied" / "model.safetensors"));
  // Output dir content: config with torch_dtype, tokenizer from the donor, rvec.json.
  auto cfg = json::parse(slurp(t / "applied" / "config.json"));
  EXPECT_EQ(cfg["torch_dtype"], "bfloat16");
  EXPECT_EQ(slurp(t / "applied" / "tokenizer.json"), slurp(dir() / "instruct" / "tokenizer.json"));
  auto rec = json::parse(slurp(t / "expr" / "rvec.json"));
  EXPECT_EQ(rec["operation"], "merge");
  EXPECT_EQ(rec["expression"], "instruct + (grpo - sft)");
  EXPECT_EQ(rec["coefficients"]["sft"], -1.0);
  // Refuses to overwrite without --force.
  r = rvec_cli("apply " + q(dir() / "sft") + " --vector " + q(t / "vec") + " -q -o " + q(t / "back"));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("already exists"), std::string::npos);
  // inspect --json: relative norm against the base, cosine with itself is 1.
  r = rvec_cli("inspect " + q(t / "vec") + " --against " + q(t / "vec") + " --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  auto j = json::parse(r.out);
  EXPECT_NEAR(j["total"]["cosine"].get<double>(), 1.0, 1e-12);
  EXPECT_EQ(j["against"]["kind"], "vector");
  r = rvec_cli("random-vector " + q(t / "vec") + " --seed 4 -q -o " + q(t / "rand"));
  ASSERT_EQ(r.rc, 0) << r.err;
  r = rvec_cli("inspect " + q(t / "rand") + " --against " + q(t / "vec") + " --json");
  j = json::parse(r.out);
  EXPECT_NEAR(j["total"]["l2_norm"].get<double>(), j["total"]["other_norm"].get<double>(),
              1e-2 * j["total"]["other_norm"].get<double>());
  EXPECT_LT(std::fabs(j["total"]["cosine"].get<double>()), 0.1);
}

TEST_F(ArithCli, MalformedInputsFailCleanly) {
  const std::string okh = R"({"model.embed_tokens.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  struct Case {
    std::string name, bytes, expect;
  } cases[] = {
      {"truncated", header_image(okh, 4), "lie outside"},
      {"tiny", "abc", "shorter than the 8-byte"},
      {"huge_header", header_image("{}", 0, 1ull << 40), "exceeds"},
      {"bad_json", header_image("{\"a\": [", 0), "not valid JSON"},
      {"unknown_dtype", header_image(R"({"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}})", 1), "unknown dtype"},
      {"out_of_range", header_image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[100,104]}})", 4), "outside"},
      {"overlap",
       header_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
       "overlaps"},
      {"duplicate",
       header_image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
       "duplicate tensor name 'a'"},
  };
  for (const auto& c : cases) {
    fs::path m = bad_model(c.name, c.bytes);
    fs::path out = tmp_root() / "bad" / (c.name + "-out");
    auto r = rvec_cli("apply " + q(m) + " --vector " + q(dir() / "sft") + " -q -o " + q(out));
    EXPECT_EQ(r.rc, 1) << c.name;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.name << ": " << r.err;
    EXPECT_NE(r.err.find((m / "model.safetensors").string()), std::string::npos) << c.name << ": " << r.err;
    EXPECT_TRUE(nothing_written(out)) << c.name;
    // The same file as the vector side, and in extract / inspect.
    r = rvec_cli("extract --base " + q(dir() / "sft") + " --tuned " + q(m) + " -q -o " + q(out));
    EXPECT_EQ(r.rc, 1) << c.name;
    EXPECT_TRUE(nothing_written(out)) << c.name;
    r = rvec_cli("inspect " + q(m));
    EXPECT_EQ(r.rc, 1) << c.name;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.name << ": " << r.err;
  }
}

TEST_F(ArithCli, MissingShardAndShapeMismatch) {
  fs::path t = tmp_root() / "shard";
  ASSERT_EQ(rvec_cli("testmodel --preset tiny --seed 1 --shard-size 50000 -q -o " + q(t / "sharded")).rc, 0);
  ASSERT_TRUE(fs::exists(t / "sharded" / "model.safetensors.index.json"));
  // Sharded input gives the same result as the unsharded one.
  ASSERT_EQ(rvec_cli("extract --base " + q(t / "sharded") + " --tuned " + q(dir() / "grpo") + " -q -o " + q(t / "v1")).rc, 0);
  ASSERT_EQ(rvec_cli("extract --base " + q(dir() / "sft") + " --tuned " + q(dir() / "grpo") + " -q -o " + q(t / "v2")).rc, 0);
  EXPECT_EQ(slurp(t / "v1" / "model.safetensors"), slurp(t / "v2" / "model.safetensors"));
  auto idx = json::parse(slurp(t / "sharded" / "model.safetensors.index.json"));
  const std::string second = idx["weight_map"]["model.layers.1.mlp.down_proj.weight"];
  ASSERT_NE(second, "model-00001-of-00001.safetensors");
  fs::remove(t / "sharded" / second);
  auto r = rvec_cli("apply " + q(t / "sharded") + " -v " + q(t / "v1") + " -q -o " + q(t / "out"));
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find(second + " listed in the index is missing"), std::string::npos) << r.err;
  EXPECT_TRUE(nothing_written(t / "out"));
  // Different hidden size: shape mismatches are listed, nothing written.
  ASSERT_EQ(rvec_cli("testmodel --preset tiny --hidden 32 --heads 2 --kv-heads 1 -q -o " + q(t / "small")).rc, 0);
  r = rvec_cli("apply " + q(dir() / "sft") + " -v " + q(t / "small") + " -q -o " + q(t / "out"));
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("tensor 'model.layers.0.self_attn.q_proj.weight': shape [64, 64]"), std::string::npos) << r.err;
  EXPECT_TRUE(nothing_written(t / "out"));
  // Non-linear expression.
  r = rvec_cli("merge --expr 'a*b' --model a=" + q(dir() / "sft") + " --model b=" + q(dir() / "sft") + " -q -o " + q(t / "out"));
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("not a linear expression"), std::string::npos) << r.err;
  EXPECT_TRUE(nothing_written(t / "out"));
}
