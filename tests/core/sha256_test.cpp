#include "core/sha256.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"

using namespace rvec;

// FIPS 180-2 appendix B test vectors.
TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha256, FileMatchesBufferAndMissingFileNamesPath) {
  auto p = std::filesystem::temp_directory_path() / ("rvec-sha-" + std::to_string(getpid()));
  std::string content(9 << 20, 'x');  // larger than one read buffer
  content[12345] = 'y';
  std::ofstream(p, std::ios::binary) << content;
  EXPECT_EQ(sha256_file(p), sha256_hex(content));
  std::filesystem::remove(p);
  try {
    sha256_file(p);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos);
  }
}
