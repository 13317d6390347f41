// CPython's `random.Random` reproduced bit for bit (Mersenne Twister MT19937 seeded with
// init_by_array from an integer as `random.seed(int)` does, getrandbits, the rejection
// method of _randbelow, random(), sample() and shuffle()). lm-evaluation-harness draws its
// few-shot examples with `random.Random(1234).sample(docs, n)`; this makes rvec draw the same.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace rvec::eval {

class PyRandom {
 public:
  explicit PyRandom(uint64_t seed);  // random.Random(seed) for seed >= 0
  // Seed from the little-endian 32-bit words of |seed| (arbitrary size; empty = 0).
  explicit PyRandom(const std::vector<uint32_t>& key_words);
  static PyRandom from_decimal(const std::string& seed);  // any-size integer, sign ignored (abs)

  uint32_t genrand_uint32();
  // getrandbits(k) for k <= 64.
  uint64_t getrandbits(int k);
  // getrandbits(k) for any k as little-endian 32-bit words.
  std::vector<uint32_t> getrandbits_words(int k);
  double random();
  uint64_t randbelow(uint64_t n);  // n > 0
  // random.sample(range(n), k): the indices selected, in selection order.
  std::vector<size_t> sample_indices(size_t n, size_t k);
  template <typename T>
  std::vector<T> sample(const std::vector<T>& population, size_t k) {
    std::vector<T> out;
    for (size_t i : sample_indices(population.size(), k)) out.push_back(population[i]);
    return out;
  }
  template <typename T>
  void shuffle(std::vector<T>& x) {
    for (size_t i = x.size(); i-- > 1;) {
      size_t j = size_t(randbelow(i + 1));
      std::swap(x[i], x[j]);
    }
  }

 private:
  void init_genrand(uint32_t s);
  void init_by_array(const std::vector<uint32_t>& key);
  std::array<uint32_t, 624> mt_{};
  int mti_ = 625;
};

}  // namespace rvec::eval
