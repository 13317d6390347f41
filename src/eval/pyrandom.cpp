#include "eval/pyrandom.h"

#include <cmath>
#include <unordered_set>

#include "core/error.h"

namespace rvec::eval {

namespace {
constexpr int N = 624, M = 397;
constexpr uint32_t MATRIX_A = 0x9908b0dfu, UPPER = 0x80000000u, LOWER = 0x7fffffffu;
}  // namespace

void PyRandom::init_genrand(uint32_t s) {
  mt_[0] = s;
  for (int i = 1; i < N; i++) mt_[i] = 1812433253u * (mt_[i - 1] ^ (mt_[i - 1] >> 30)) + uint32_t(i);
  mti_ = N;
}

void PyRandom::init_by_array(const std::vector<uint32_t>& key) {
  init_genrand(19650218u);
  size_t i = 1, j = 0, len = key.size();
  for (size_t k = (N > len ? N : len); k; k--) {
    mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1664525u)) + key[j] + uint32_t(j);
    i++, j++;
    if (i >= N) mt_[0] = mt_[N - 1], i = 1;
    if (j >= len) j = 0;
  }
  for (size_t k = N - 1; k; k--) {
    mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1566083941u)) - uint32_t(i);
    i++;
    if (i >= N) mt_[0] = mt_[N - 1], i = 1;
  }
  mt_[0] = 0x80000000u;
}

PyRandom::PyRandom(uint64_t seed) {
  std::vector<uint32_t> key{uint32_t(seed)};
  if (seed >> 32) key.push_back(uint32_t(seed >> 32));
  init_by_array(key);
}

PyRandom::PyRandom(const std::vector<uint32_t>& key_words) {
  std::vector<uint32_t> key = key_words;
  while (key.size() > 1 && key.back() == 0) key.pop_back();
  if (key.empty()) key.push_back(0);
  init_by_array(key);
}

PyRandom PyRandom::from_decimal(const std::string& seed) {
  // Decimal string -> little-endian 32-bit words (schoolbook, base 10 -> 2^32).
  std::vector<uint32_t> words;
  size_t start = (!seed.empty() && (seed[0] == '-' || seed[0] == '+')) ? 1 : 0;
  if (start >= seed.size()) fail("python seed '{}': not an integer", seed);
  for (size_t p = start; p < seed.size(); p++) {
    char c = seed[p];
    if (c < '0' || c > '9') fail("python seed '{}': not an integer", seed);
    uint64_t carry = uint64_t(c - '0');
    for (auto& w : words) {
      uint64_t v = uint64_t(w) * 10 + carry;
      w = uint32_t(v);
      carry = v >> 32;
    }
    if (carry) words.push_back(uint32_t(carry));
  }
  return PyRandom(words);
}

uint32_t PyRandom::genrand_uint32() {
  static constexpr uint32_t mag01[2] = {0u, MATRIX_A};
  uint32_t y;
  if (mti_ >= N) {
    int kk;
    for (kk = 0; kk < N - M; kk++) {
      y = (mt_[kk] & UPPER) | (mt_[kk + 1] & LOWER);
      mt_[kk] = mt_[kk + M] ^ (y >> 1) ^ mag01[y & 1u];
    }
    for (; kk < N - 1; kk++) {
      y = (mt_[kk] & UPPER) | (mt_[kk + 1] & LOWER);
      mt_[kk] = mt_[kk + (M - N)] ^ (y >> 1) ^ mag01[y & 1u];
    }
    y = (mt_[N - 1] & UPPER) | (mt_[0] & LOWER);
    mt_[N - 1] = mt_[M - 1] ^ (y >> 1) ^ mag01[y & 1u];
    mti_ = 0;
  }
  y = mt_[mti_++];
  y ^= (y >> 11);
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= (y >> 18);
  return y;
}

std::vector<uint32_t> PyRandom::getrandbits_words(int k) {
  if (k < 0) fail("getrandbits: negative bit count {}", k);
  std::vector<uint32_t> words;
  if (k == 0) return words;
  if (k <= 32) {
    words.push_back(genrand_uint32() >> (32 - k));
    return words;
  }
  // CPython fills the words least significant first.
  for (; k > 0; k -= 32) {
    uint32_t r = genrand_uint32();
    if (k < 32) r >>= (32 - k);
    words.push_back(r);
  }
  return words;
}

uint64_t PyRandom::getrandbits(int k) {
  if (k > 64) fail("getrandbits: {} bits do not fit in 64", k);
  auto w = getrandbits_words(k);
  uint64_t v = 0;
  for (size_t i = 0; i < w.size(); i++) v |= uint64_t(w[i]) << (32 * i);
  return v;
}

double PyRandom::random() {
  uint32_t a = genrand_uint32() >> 5, b = genrand_uint32() >> 6;
  return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

uint64_t PyRandom::randbelow(uint64_t n) {
  if (n == 0) fail("randbelow: empty range");
  int k = 64 - __builtin_clzll(n);  // n.bit_length()
  uint64_t r = getrandbits(k);
  while (r >= n) r = getrandbits(k);
  return r;
}

std::vector<size_t> PyRandom::sample_indices(size_t n, size_t k) {
  if (k > n) fail("sample larger than population ({} > {})", k, n);
  std::vector<size_t> result(k);
  size_t setsize = 21;
  if (k > 5) setsize += size_t(std::pow(4.0, std::ceil(std::log(double(k * 3)) / std::log(4.0))));
  if (n <= setsize) {
    std::vector<size_t> pool(n);
    for (size_t i = 0; i < n; i++) pool[i] = i;
    for (size_t i = 0; i < k; i++) {
      size_t j = size_t(randbelow(n - i));
      result[i] = pool[j];
      pool[j] = pool[n - i - 1];
    }
  } else {
    std::unordered_set<size_t> selected;
    for (size_t i = 0; i < k; i++) {
      size_t j = size_t(randbelow(n));
      while (selected.count(j)) j = size_t(randbelow(n));
      selected.insert(j);
      result[i] = j;
    }
  }
  return result;
}

}  // namespace rvec::eval
