// Hostile inputs and outputs through the rvec binary (issue 10 §3/§4): special files at
// every kind of input path, invalid config.json numbers, out-of-range token ids, oversized
// size flags, --force on things rvec did not write, stale temporary directories.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "test_util.h"

namespace fs = std::filesystem;
using rvec::test_util::CommandResult;
using rvec::test_util::shell_quote;
using rvec::test_util::TempDir;

namespace {

const fs::path kModel = fs::path(RVEC_TESTDATA_DIR) / "fixtures/qwen2_tiny_untied_mha4x4/model";

struct Timed {
  CommandResult r;
  double seconds;
};

// `timeout` keeps a regression (a blocking open) from hanging the suite.
Timed run_rvec(const std::string& args) {
  auto t0 = std::chrono::steady_clock::now();
  auto r = rvec::test_util::run_shell("timeout 20 " + std::string(RVEC_BIN) + " " + args + " 2>&1");
  return {r, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()};
}

std::string q(const fs::path& p) { return shell_quote(p.string()); }

// A copy of the tiny model with `file` replaced by a FIFO nobody writes to.
fs::path model_with_fifo(const TempDir& d, const std::string& file) {
  fs::path m = d.p / ("m_" + file);
  fs::copy(kModel, m, fs::copy_options::recursive);
  fs::remove(m / file);
  EXPECT_EQ(::mkfifo((m / file).c_str(), 0600), 0);
  return m;
}

}  // namespace

TEST(HostileInputCli, FifoAtAnyModelInputPathFailsFastNamingIt) {
  TempDir d("hostile_fifo");
  for (const std::string file : {"model.safetensors", "config.json", "tokenizer.json"}) {
    fs::path m = model_with_fifo(d, file);
    Timed t = file == "tokenizer.json" ? run_rvec("tokenize --tokenizer " + q(m) + " --text hi")
                                       : run_rvec("inspect " + q(m));
    EXPECT_NE(t.r.rc, 0) << file << ": " << t.r.out;
    EXPECT_NE(t.r.out.find((m / file).string() + ": is a FIFO, not a regular file"), std::string::npos)
        << file << ": " << t.r.out;
    EXPECT_LT(t.seconds, 5.0) << file;  // the process itself; the open is checked to 1 s in core tests
  }
}

TEST(HostileInputCli, FifoDatasetAndConfigFilesFailFast) {
  TempDir d("hostile_fifo2");
  fs::path f = d.p / "in.jsonl";
  ASSERT_EQ(::mkfifo(f.c_str(), 0600), 0);
  Timed t = run_rvec("tokenize --tokenizer " + q(kModel) + " --jsonl " + q(f));
  EXPECT_NE(t.r.rc, 0);
  EXPECT_NE(t.r.out.find(f.string() + ": is a FIFO"), std::string::npos) << t.r.out;
  t = run_rvec("generate " + q(kModel) + " --prompt hi --max-tokens 1 --chat --chat-template " + q(f));
  EXPECT_NE(t.r.rc, 0);
  EXPECT_NE(t.r.out.find(f.string() + ": is a FIFO"), std::string::npos) << t.r.out;
}

TEST(HostileInputCli, BadConfigNumbersAreRefusedNamingTheKey) {
  TempDir d("hostile_cfg");
  struct Case {
    const char* key;
    nlohmann::json value;
    const char* expect;
  } cases[] = {{"rope_theta", -1.0, "config key 'rope_theta' must be a finite number > 0"},
               {"rms_norm_eps", -0.5, "config key 'rms_norm_eps' must be a finite number >= 0"},
               {"num_hidden_layers", 1.5, "config key 'num_hidden_layers' must be an integer in [1, 4096], got 1.5"},
               {"eos_token_id", 512, "config key 'eos_token_id' must be an integer in [0, 511], got 512"}};
  for (const auto& c : cases) {
    fs::path m = d.p / c.key;
    fs::copy(kModel, m, fs::copy_options::recursive);
    std::ifstream in(m / "config.json");
    auto j = nlohmann::json::parse(in);
    in.close();
    j[c.key] = c.value;
    fs::remove(m / "config.json");
    std::ofstream(m / "config.json") << j.dump();
    fs::path out = d.p / (std::string(c.key) + ".npy");
    auto t = run_rvec("logits " + q(m) + " --tokens 1,2 --out " + q(out));
    EXPECT_NE(t.r.rc, 0) << c.key;
    EXPECT_NE(t.r.out.find((m / "config.json").string()), std::string::npos) << t.r.out;
    EXPECT_NE(t.r.out.find(c.expect), std::string::npos) << t.r.out;
    EXPECT_FALSE(fs::exists(out));
  }
}

TEST(HostileInputCli, TokenIdsAreCheckedBeforeNarrowingAndPrintedAsGiven) {
  auto t = run_rvec("tokenize --tokenizer " + q(kModel) + " --decode --text '[1, 4294967297]'");
  EXPECT_NE(t.r.rc, 0);
  EXPECT_NE(t.r.out.find("token id [1] must be an integer in [0, 2147483647], got 4294967297"), std::string::npos)
      << t.r.out;
  t = run_rvec("tokenize --tokenizer " + q(kModel) + " --decode --text '[2147483648]'");
  EXPECT_NE(t.r.out.find("got 2147483648"), std::string::npos) << t.r.out;
  t = run_rvec("tokenize --tokenizer " + q(kModel) + " --decode --text '[-1]'");
  EXPECT_NE(t.r.out.find("got -1"), std::string::npos) << t.r.out;
  TempDir d("hostile_ids");
  t = run_rvec("logits " + q(kModel) + " --tokens 1,4294967297 --out " + q(d.p / "x.npy"));
  EXPECT_NE(t.r.rc, 0);
  EXPECT_NE(t.r.out.find("got \"4294967297\""), std::string::npos) << t.r.out;
  // An added token with id 2^40 in tokenizer.json is an error, not id 0.
  fs::path m = d.p / "m";
  fs::copy(kModel, m, fs::copy_options::recursive);
  std::ifstream in(m / "tokenizer.json");
  auto tok = nlohmann::json::parse(in);
  in.close();
  ASSERT_TRUE(tok["added_tokens"].is_array() && !tok["added_tokens"].empty());
  tok["added_tokens"][0]["id"] = 1099511627776ull;
  fs::remove(m / "tokenizer.json");
  std::ofstream(m / "tokenizer.json") << tok.dump();
  t = run_rvec("tokenize --tokenizer " + q(m) + " --text hi");
  EXPECT_NE(t.r.rc, 0);
  EXPECT_NE(t.r.out.find("must be an integer in [0, 2147483647], got 1099511627776"), std::string::npos) << t.r.out;
}

TEST(HostileInputCli, SizeFlagsAreBoundedBeforeAllocating) {
  auto t = run_rvec("bench " + q(kModel) + " --batch 100000000 --no-bandwidth");
  EXPECT_NE(t.r.rc, 0);
  EXPECT_NE(t.r.out.find("--batch 100000000 is over the limit of 65536"), std::string::npos) << t.r.out;
  t = run_rvec("bench " + q(kModel) + " --prompt-tokens 1000000000 --no-bandwidth");
  EXPECT_NE(t.r.out.find("--prompt-tokens 1000000000 is over the limit"), std::string::npos) << t.r.out;
  // Within the bounds but more than any machine has: the estimate is given.
  t = run_rvec("bench " + q(kModel) + " --batch 60000 --prompt-tokens 16000000 --gen-tokens 0 --no-bandwidth");
  EXPECT_NE(t.r.rc, 0);
  EXPECT_NE(t.r.out.find("GiB of memory, but only"), std::string::npos) << t.r.out;
  TempDir d("hostile_size");
  t = run_rvec("testmodel --preset tiny --layers 100000000 -q -o " + q(d.p / "big"));
  EXPECT_NE(t.r.rc, 0);
  EXPECT_NE(t.r.out.find("config key 'num_hidden_layers' must be an integer in [1, 4096], got 100000000"),
            std::string::npos) << t.r.out;
  EXPECT_FALSE(fs::exists(d.p / "big"));
  t = run_rvec("testmodel --preset tiny --hidden 1048576 --intermediate 1048576 --heads 1024 --kv-heads 1024 -q -o " +
           q(d.p / "big"));
  EXPECT_NE(t.r.rc, 0);
  EXPECT_NE(t.r.out.find("GiB of disk space, but only"), std::string::npos) << t.r.out;
  EXPECT_FALSE(fs::exists(d.p / "big"));
}

TEST(HostileOutputCli, ForceReplacesOnlyWhatRvecWrote) {
  auto t = run_rvec("testmodel --preset tiny -q -o /dev/null --force");
  EXPECT_NE(t.r.rc, 0);
  EXPECT_NE(t.r.out.find("/dev/null exists and --force will not replace it: it is a character device"),
            std::string::npos) << t.r.out;
  EXPECT_TRUE(fs::is_character_file("/dev/null"));
  TempDir d("hostile_force");
  fs::path fifo = d.p / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  t = run_rvec("testmodel --preset tiny -q -o " + q(fifo) + " --force");
  EXPECT_NE(t.r.out.find("it is a FIFO"), std::string::npos) << t.r.out;
  EXPECT_TRUE(fs::is_fifo(fifo));
  fs::create_directories(d.p / "mine");
  std::ofstream(d.p / "mine" / "thesis.tex") << "x";
  t = run_rvec("testmodel --preset tiny -q -o " + q(d.p / "mine") + " --force");
  EXPECT_NE(t.r.out.find("no rvec.json"), std::string::npos) << t.r.out;
  EXPECT_TRUE(fs::exists(d.p / "mine" / "thesis.tex"));
  // An rvec output is replaced.
  t = run_rvec("testmodel --preset tiny -q -o " + q(d.p / "out"));
  ASSERT_EQ(t.r.rc, 0) << t.r.out;
  t = run_rvec("testmodel --preset tiny -q --seed 1 -o " + q(d.p / "out") + " --force");
  EXPECT_EQ(t.r.rc, 0) << t.r.out;
}

TEST(HostileOutputCli, StaleTemporaryDirectoriesAreRemovedWithAMessage) {
  TempDir d("hostile_stale");
  // A pid that no longer runs: a finished child of the shell.
  auto r = rvec::test_util::run_shell("sh -c 'true & wait; echo $!'");
  std::string pid = r.out.substr(0, r.out.find('\n'));
  fs::path stale = d.p / ("out.rvec-tmp-" + pid);
  fs::create_directories(stale);
  std::ofstream(stale / "model-00001-of-00002.safetensors") << std::string(4096, 'x');
  auto t = run_rvec("testmodel --preset tiny -q -o " + q(d.p / "out"));
  EXPECT_EQ(t.r.rc, 0) << t.r.out;
  EXPECT_NE(t.r.out.find("removed " + stale.string() + ", left by an interrupted run"), std::string::npos) << t.r.out;
  EXPECT_FALSE(fs::exists(stale));
}
