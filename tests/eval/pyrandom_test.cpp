// CPython random reproduced bit for bit: expected values generated once with
// tools/gen_python_random.py (CPython 3.11) into tests/data/eval/python_random.json.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/atomic_output.h"
#include "eval/pyrandom.h"

using rvec::eval::PyRandom;

namespace {
std::string words_to_decimal(std::vector<uint32_t> w) {
  std::string out;
  while (!w.empty()) {
    uint64_t rem = 0;
    for (size_t i = w.size(); i-- > 0;) {
      uint64_t cur = (rem << 32) | w[i];
      w[i] = uint32_t(cur / 10);
      rem = cur % 10;
    }
    out.insert(out.begin(), char('0' + rem));
    while (!w.empty() && w.back() == 0) w.pop_back();
  }
  return out.empty() ? "0" : out;
}
}  // namespace

TEST(PyRandom, MatchesCPython) {
  auto j = nlohmann::json::parse(rvec::read_file(RVEC_TESTDATA_DIR "/eval/python_random.json"));
  ASSERT_GE(j["cases"].size(), 5u);
  for (auto& c : j["cases"]) {
    std::string seed = c["seed"];
    SCOPED_TRACE("seed " + seed);
    PyRandom r = PyRandom::from_decimal(seed);
    for (auto& v : c["getrandbits32"]) EXPECT_EQ(r.getrandbits(32), v.get<uint64_t>());
    for (auto& v : c["getrandbits64"]) EXPECT_EQ(r.getrandbits(64), v.get<uint64_t>());
    for (auto& v : c["getrandbits100"]) EXPECT_EQ(words_to_decimal(r.getrandbits_words(100)), v.get<std::string>());
    for (auto& v : c["random"]) EXPECT_EQ(r.random(), v.get<double>());
    for (auto& v : c["randrange"]) EXPECT_EQ(r.randbelow(v[0].get<uint64_t>()), v[1].get<uint64_t>());
    for (auto& s : c["sample_7473_5"]) EXPECT_EQ(r.sample_indices(7473, 5), s.get<std::vector<size_t>>());
    for (auto& s : c["sample_7473_6"]) EXPECT_EQ(r.sample_indices(7473, 6), s.get<std::vector<size_t>>());
    for (auto& s : c["sample_40_6"]) EXPECT_EQ(r.sample_indices(40, 6), s.get<std::vector<size_t>>());
    EXPECT_EQ(r.sample_indices(10, 10), c["sample_10_10"].get<std::vector<size_t>>());
    EXPECT_EQ(r.sample_indices(1319, 3), c["sample_1319_3"].get<std::vector<size_t>>());
    EXPECT_EQ(r.sample_indices(5, 0), c["sample_5_0"].get<std::vector<size_t>>());
    std::vector<int> l(12);
    for (int i = 0; i < 12; i++) l[i] = i;
    r.shuffle(l);
    EXPECT_EQ(l, c["shuffle_12"].get<std::vector<int>>());
    std::vector<int> l4{0, 1, 2, 3};
    r.shuffle(l4);
    EXPECT_EQ(l4, c["shuffle_4"].get<std::vector<int>>());
  }
}

TEST(PyRandom, Uint64SeedEqualsDecimalSeed) {
  PyRandom a(1234), b = PyRandom::from_decimal("1234");
  for (int i = 0; i < 10; i++) EXPECT_EQ(a.genrand_uint32(), b.genrand_uint32());
  PyRandom c((uint64_t(1) << 32) + 5), d = PyRandom::from_decimal("4294967301");
  for (int i = 0; i < 10; i++) EXPECT_EQ(c.genrand_uint32(), d.genrand_uint32());
}

TEST(PyRandom, RejectsBadInput) {
  EXPECT_THROW(PyRandom::from_decimal("12a"), std::exception);
  PyRandom r(1);
  EXPECT_THROW(r.sample_indices(3, 4), std::exception);
  EXPECT_THROW(r.randbelow(0), std::exception);
}
