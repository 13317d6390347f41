// End-to-end tests of `rvec tokenize` (ids from HF tokenizers, tests/data/text/qwen2.5_expected.json).
#include <gtest/gtest.h>

#include "test_util.h"

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;
const fs::path kTok = fs::path(RVEC_TESTDATA_DIR) / "tokenizers/qwen2.5";
// The Qwen2.5 vocab cut to 1024 ids (golden fixture tokenizer): loads fast.
const fs::path kTiny = fs::path(RVEC_TESTDATA_DIR) / "tokenizers/tiny1024/tokenizer.json";

using Result = rvec::test_util::CommandResult;

std::string quote(const std::string& s) { return rvec::test_util::shell_quote(s); }

Result run(const std::string& args) {
  return rvec::test_util::run_shell(std::string(RVEC_BIN) + " tokenize " + args + " 2>&1");
}

}  // namespace

TEST(TokenizeCli, EncodeTextWithModelDirAndFile) {
  auto r = run("--tokenizer " + quote(kTok.string()) + " --text " + quote("Hello, world!"));
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(r.out, "[9707,11,1879,0]\n");
  r = run("--tokenizer " + quote((kTok / "tokenizer.json").string()) + " --text " + quote("<|im_start|>user\nhi<|im_end|>"));
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(r.out, "[151644,872,198,6023,151645]\n");
}

TEST(TokenizeCli, DecodeText) {
  auto r = run("--tokenizer " + quote(kTiny.string()) + " --decode --text '[1022,872,198,71,72,1023]'");
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(r.out, "<|im_start|>user\nhi<|im_end|>\n");
  r = run("--tokenizer " + quote(kTiny.string()) + " --decode --skip-special --text '[1022,872,198,71,72,1023]'");
  EXPECT_EQ(r.out, "user\nhi\n");
}

TEST(TokenizeCli, Jsonl) {
  fs::path dir = fs::temp_directory_path() / ("rvec-tokenize-test-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  {
    std::ofstream f(dir / "in.jsonl");
    f << "{\"text\": \"Hello, world!\"}\n\n{\"text\": \"don't\", \"other\": 1}\n{\"text\": \"\"}\n";
    std::ofstream g(dir / "ids.jsonl");
    g << "{\"ids\": [39, 301, 385, 11, 289, 269, 507, 0]}\n{\"ids\": [67, 263, 944]}\n";
    std::ofstream b(dir / "bad.jsonl");
    b << "{\"text\": \"ok\"}\n{\"txt\": \"no\"}\n";
  }
  auto r = run("--tokenizer " + quote(kTiny.string()) + " --jsonl " + quote((dir / "in.jsonl").string()));
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(r.out, "[39,301,385,11,289,269,507,0]\n[67,263,944]\n[]\n");
  r = run("--tokenizer " + quote(kTiny.string()) + " --decode --jsonl " + quote((dir / "ids.jsonl").string()));
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(r.out, "\"Hello, world!\"\n\"don't\"\n");
  r = run("--tokenizer " + quote(kTiny.string()) + " --jsonl " + quote((dir / "bad.jsonl").string()));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("bad.jsonl:2"), std::string::npos) << r.out;
  fs::remove_all(dir);
}

TEST(TokenizeCli, Errors) {
  auto r = run("--tokenizer /nonexistent/tok.json --text hi");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("/nonexistent/tok.json"), std::string::npos) << r.out;
  r = run("--tokenizer " + quote(kTiny.string()));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("--text or --jsonl"), std::string::npos) << r.out;
  r = run("--tokenizer " + quote(kTiny.string()) + " --decode --text 'not json'");
  EXPECT_NE(r.rc, 0);
}
