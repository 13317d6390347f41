// Validation of untrusted safetensors files, and the streaming writer.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/atomic_output.h"
#include "core/error.h"
#include "core/sha256.h"
#include "io/model_dir.h"
#include "io/model_output.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"

using namespace rvec;
namespace fs = std::filesystem;

namespace {

std::string image(const std::string& header, size_t data_bytes, uint64_t len_override = 0) {
  std::string out(8, '\0');
  uint64_t n = len_override ? len_override : header.size();
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return out + header + std::string(data_bytes, '\x01');
}

// The error message parse_safetensors gives, or "" if it accepts the bytes.
std::string parse_error(const std::string& img) {
  try {
    io::parse_safetensors(reinterpret_cast<const uint8_t*>(img.data()), img.size(), "f.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

struct Tmp {
  fs::path p = fs::temp_directory_path() / ("rvec-io-test-" + std::to_string(getpid()));
  Tmp() { fs::create_directories(p); }
  ~Tmp() { fs::remove_all(p); }
};

}  // namespace

TEST(Safetensors, AcceptsValidFile) {
  std::string h = R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                  R"("b":{"dtype":"BF16","shape":[1,3],"data_offsets":[8,14]}})";
  auto img = image(h, 14);
  auto p = io::parse_safetensors(reinterpret_cast<const uint8_t*>(img.data()), img.size(), "x");
  ASSERT_EQ(p.tensors.size(), 2u);
  EXPECT_EQ(p.tensors[1].name, "b");
  EXPECT_EQ(p.tensors[1].shape_str(), "[1, 3]");
  EXPECT_EQ(p.metadata.at("format"), "pt");
  EXPECT_EQ(p.data_start, 8 + h.size());
}

TEST(Safetensors, RejectsMalformedHeadersWithClearMessages) {
  const std::string ok_a = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  struct Case {
    std::string img, expect;
  } cases[] = {
      {"abc", "shorter than the 8-byte"},
      {image("{}", 0, 200ull << 20), "exceeds the"},
      {image("{" + ok_a + "}", 0, 5000), "runs past the end"},
      {image("{" + ok_a, 8), "not valid JSON"},
      {image("[1,2]", 0), "does not start with '{'"},
      {image(R"({"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", 8), "tensor 'a': unknown dtype \"F33\""},
      {image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4), "tensor 'a': data_offsets [0, 8] lie outside"},
      {image(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "tensor 'a': shape [3] x F32 needs 12 bytes"},
      {image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
       "tensor 'b' overlaps"},
      {image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12), "tensor 'a' leaves a 4-byte hole"},
      {image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 16),
       "duplicate tensor name 'a'"},
      {image(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), "tensor 'a': shape entries must be non-negative"},
      {image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), "data_offsets"},
      {image(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}})", 8), "overflows"},
      {image(R"({"__metadata__":{"k":1}})", 0), "__metadata__ value"},
      {image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 12), "data section has 12 bytes"},
      {image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", 8), "unexpected key"},
  };
  for (const auto& c : cases) {
    std::string e = parse_error(c.img);
    EXPECT_NE(e.find(c.expect), std::string::npos) << "expected '" << c.expect << "', got '" << e << "'";
    EXPECT_EQ(e.rfind("f.safetensors", 0), 0u) << e;  // names the file
  }
}

TEST(Safetensors, TruncatedFilesAtEveryLength) {
  // Every prefix of a valid file is rejected (and never crashes).
  std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  auto img = image(h, 8);
  for (size_t n = 0; n < img.size(); ++n) EXPECT_FALSE(parse_error(img.substr(0, n)).empty()) << n;
  EXPECT_TRUE(parse_error(img).empty());
}

TEST(SafetensorsWriter, ShardsIndexAndHeaderLayout) {
  Tmp t;
  std::vector<io::TensorSpec> specs = {{"a", DType::F32, {3}}, {"big", DType::BF16, {100}}, {"c", DType::F32, {2}}, {"d", DType::I64, {1}}};
  io::SafetensorsWriter w(t.p, specs, 100);  // "big" (200 B) gets its own shard
  EXPECT_EQ(w.files().size(), 3u);
  std::vector<float> a = {1, 2, 3};
  w.append(a.data(), 8);
  w.append(a.data() + 2, 4);  // chunks
  std::vector<uint16_t> big(100, 0x3f80);
  w.append(big.data(), 200);
  std::vector<float> c = {4, 5};
  w.append(c.data(), 8);
  int64_t dv = -7;
  EXPECT_THROW(w.append(&dv, 16), Error);  // more than the tensor holds
  w.append(&dv, 8);
  w.finish();
  EXPECT_EQ(w.files()[0], "model-00001-of-00003.safetensors");
  auto m = io::ModelDir::open(t.p, false);
  EXPECT_TRUE(m->sharded());
  auto idx = nlohmann::json::parse(read_file(t.p / "model.safetensors.index.json"));
  EXPECT_EQ(idx["metadata"]["total_size"], 12 + 200 + 8 + 8);
  EXPECT_EQ(idx["weight_map"]["big"], "model-00002-of-00003.safetensors");
  EXPECT_EQ(idx["weight_map"]["d"], "model-00003-of-00003.safetensors");
  const auto& f = m->file_of("a");
  EXPECT_EQ(f.data_start() % 8, 0u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  float x;
  std::memcpy(&x, m->get("a").data + 8, 4);
  EXPECT_EQ(x, 3.0f);
  int64_t y;
  std::memcpy(&y, m->get("d").data, 8);
  EXPECT_EQ(y, -7);
  // Incomplete data: finish() refuses.
  io::SafetensorsWriter w2(t.p / ".." / fs::path(t.p.filename().string()), {{"z", DType::F32, {2}}}, 1000);
  EXPECT_THROW(w2.finish(), Error);
}

TEST(ModelDir, ShardProblemsAreNamed) {
  Tmp t;
  io::SafetensorsWriter w(t.p, {{"a", DType::F32, {1}}, {"b", DType::F32, {1}}}, 4);
  float v = 1;
  w.append(&v, 4);
  w.append(&v, 4);
  w.finish();
  write_file_atomic(t.p / "config.json", "{}");
  EXPECT_NO_THROW(io::ModelDir::open(t.p));
  fs::path second = t.p / "model-00002-of-00002.safetensors";
  fs::rename(second, t.p / "moved");
  try {
    io::ModelDir::open(t.p);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model-00002-of-00002.safetensors listed in the index is missing"), std::string::npos)
        << e.what();
  }
  fs::rename(t.p / "moved", second);
  auto idx = nlohmann::json::parse(read_file(t.p / "model.safetensors.index.json"));
  idx["weight_map"]["ghost"] = "model-00001-of-00002.safetensors";
  write_file_atomic(t.p / "model.safetensors.index.json", idx.dump());
  try {
    io::ModelDir::open(t.p);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'ghost'"), std::string::npos) << e.what();
  }
}

// Synchronous mode (large appends written straight from the caller's memory, small ones
// gathered) writes the same bytes as the background mode, shards and index included.
TEST(SafetensorsWriter, SynchronousModeWritesTheSameFiles) {
  Tmp t;
  std::vector<io::TensorSpec> specs = {{"small", DType::F32, {3}},
                                       {"big", DType::BF16, {400000}},  // 800 KB: direct writes
                                       {"tail", DType::F32, {70000}},   // 280 KB in uneven chunks
                                       {"i", DType::I64, {1}}};
  std::vector<uint8_t> data(800000 + 280000 + 64);
  for (size_t i = 0; i < data.size(); ++i) data[i] = uint8_t(i * 2654435761u >> 13);
  for (auto mode : {io::SafetensorsWriter::Mode::Background, io::SafetensorsWriter::Mode::Synchronous}) {
    const fs::path dir = t.p / (mode == io::SafetensorsWriter::Mode::Background ? "bg" : "sync");
    fs::create_directories(dir);
    io::SafetensorsWriter w(dir, specs, 1000000, mode);  // "tail" and "i" in a second shard
    const uint8_t* p = data.data();
    for (size_t n : {size_t(4), size_t(8), size_t(300000), size_t(500000), size_t(10), size_t(279990), size_t(8)}) {
      w.append(p, n);
      p += n;
    }
    w.finish();
    EXPECT_EQ(w.files().size(), 2u);
  }
  for (const char* f : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                        "model.safetensors.index.json"})
    EXPECT_EQ(read_file(t.p / "bg" / f), read_file(t.p / "sync" / f)) << f;
  auto m = io::ModelDir::open(t.p / "sync", false);
  EXPECT_EQ(std::memcmp(m->get("big").data, data.data() + 12, 800000), 0);
  EXPECT_EQ(std::memcmp(m->get("tail").data, data.data() + 800012, 280000), 0);
}

TEST(ModelOutput, MappedSha256MatchesStreamedSha256) {
  Tmp t;
  for (size_t n : {size_t(0), size_t(1), size_t(2) << 20, (size_t(5) << 20) + 3}) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; ++i) s[i] = char(i * 7 + (i >> 11));
    write_file_atomic(t.p / "f", s);
    EXPECT_EQ(io::sha256_mapped(t.p / "f"), sha256_hex(s)) << n;
  }
}

// Duplicates anywhere in the header are refused (nlohmann would keep only the last),
// including inside a tensor entry, where a second "data_offsets" could hide the first.
TEST(Safetensors, RefusesDuplicateKeysAtAnyDepth) {
  EXPECT_NE(parse_error(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"data_offsets":[0,8]}})", 8))
                .find("duplicate key \"data_offsets\""),
            std::string::npos);
  EXPECT_NE(parse_error(image(R"({"__metadata__":{"k":"1","k":"2"}})", 0)).find("duplicate key \"k\""),
            std::string::npos);
  // The first of several duplicates is the one named, even far into a large header.
  std::string h = "{";
  for (int i = 0; i < 5000; ++i)
    h += "\"t" + std::to_string(i) + "\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[" + std::to_string(i) +
         "," + std::to_string(i + 1) + "]},";
  h += R"("t4999":{"dtype":"U8","shape":[1],"data_offsets":[5000,5001]}})";
  EXPECT_NE(parse_error(image(h, 5001)).find("duplicate tensor name 't4999'"), std::string::npos);
}

// Backing::HugePages reads the file into 2 MB-aligned anonymous memory: the same bytes as
// the page-cache mapping, for sizes below, at and above a huge page (and an empty file).
TEST(MappedFile, HugePagesBackingHoldsTheFilesBytes) {
  Tmp t;
  for (size_t n : {size_t(0), size_t(1), size_t(4097), size_t(2) << 20, (size_t(5) << 20) + 3}) {
    std::string bytes(n, '\0');
    for (size_t i = 0; i < n; ++i) bytes[i] = char((i * 2654435761u) >> 13);
    const fs::path f = t.p / ("f" + std::to_string(n));
    std::ofstream(f, std::ios::binary).write(bytes.data(), std::streamsize(n));
    io::MappedFile plain(f), huge(f, io::Backing::HugePages);
    ASSERT_EQ(plain.size(), n);
    ASSERT_EQ(huge.size(), n);
    EXPECT_EQ(plain.backing(), io::Backing::PageCache);
    if (n == 0) continue;
    EXPECT_EQ(huge.backing(), io::Backing::HugePages);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(huge.data()) % (size_t(2) << 20), 0u) << n;
    EXPECT_EQ(std::memcmp(huge.data(), bytes.data(), n), 0) << n;
    EXPECT_EQ(std::memcmp(plain.data(), bytes.data(), n), 0) << n;
    // Dropping pages is a page-cache hint; on the anonymous copy it would zero them.
    huge.advise_dontneed(0, n);
    plain.advise_dontneed(0, n);
    EXPECT_EQ(std::memcmp(huge.data(), bytes.data(), n), 0) << n;
    EXPECT_EQ(std::memcmp(plain.data(), bytes.data(), n), 0) << n;
  }
}
