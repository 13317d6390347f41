// Building blocks of mergekit's sparsifying task-vector merges (TIES, DARE, DELLA,
// Breadcrumbs), shaped for streaming: nothing here holds a whole tensor.
//
// Magnitude ranks use one total order: |v| descending, ties by element index ascending
// (torch's argsort leaves ties unspecified). "Rank < k" is decided per element from a
// threshold found by radix selection over the float bits of |v| (two 65536-bin histogram
// passes, integer counts, so the result does not depend on the thread count), plus the
// number of elements equal to the threshold that precede each block.
// Random masks (DARE, DELLA) draw u = hash(seed, stream, element index) in [0, 1): a
// counter-based generator, so a mask depends on the seed and the element only.
#pragma once
#include <array>
#include <cstring>
#include <cstdint>
#include <string>
#include <vector>

namespace rvec::arith::sparse {

enum class Method { None, Magnitude, Random, MagnitudeOutliers, Della };

// "magnitude" | "random" | "magnitude_outliers" | "della_magprune" (mergekit's names).
const char* method_name(Method m);

// SplitMix64's finaliser: a bijection with full avalanche.
inline uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
// The key of random stream `stream` under `seed`; uniform_keyed(key, i) is element i's draw.
inline uint64_t stream_key(uint64_t seed, uint64_t stream) { return mix64(seed ^ mix64(stream)); }
inline double uniform_keyed(uint64_t key, uint64_t index) { return double(mix64(key + index) >> 11) * 0x1.0p-53; }
// Uniform double in [0, 1) for element `index` of random stream `stream` (53 random bits).
inline double uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  return uniform_keyed(stream_key(seed, stream), index);
}
// A stream id from a name (FNV-1a 64), e.g. the tensor name and the model index.
uint64_t stream_id(const std::string& name, uint64_t k);

// Order-preserving key of |x| (the bits of |x| as a non-negative float).
inline uint32_t mag_key(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u & 0x7fffffffu;
}

// Histograms of radix selection: first the high 16 bits of the key, then the low 16 bits
// within the bin that holds the wanted rank.
using Hist = std::array<uint64_t, 65536>;

// Where rank k (0-based, |v| descending) falls after the first pass: bin `hi` and the
// number of elements in higher bins. Requires k < total count.
struct HiSel {
  uint32_t hi = 0;
  uint64_t above = 0;
};
HiSel select_hi(const Hist& hist_hi, uint64_t k);

// The threshold of "rank < k": elements with key > key_t are below rank k, and of those
// equal to key_t the first `quota` (in index order) are too. all = every element (k >= n),
// none = no element (k == 0).
struct Boundary {
  uint64_t k = 0;
  bool all = false, none = true;
  uint32_t key_t = 0;
  uint64_t greater = 0, quota = 0;
  float value() const {
    float f;
    std::memcpy(&f, &key_t, 4);
    return f;
  }
};
Boundary select_lo(const HiSel& s, const Hist& hist_lo, uint64_t k);

// Rank window [lo, hi) of the entries kept by a magnitude method for n entries: mergekit's
// magnitude (top int(density·n)) and magnitude_outliers (drop the top int(gamma·n), then keep
// int(density·n), dropping fewer of the top when density + gamma > 1).
struct Window {
  uint64_t lo = 0, hi = 0;
};
Window magnitude_window(uint64_t n, double density);
Window outliers_window(uint64_t n, double density, double gamma);

// DELLA (mergekit's della_magprune) keep probabilities of one row: ranks by |v| ascending
// (ties: the later index ranks lower, consistent with the descending order above), then
// p = density - epsilon + 2·epsilon·(rank - 1)/(cols - 1) (p = density for a single column).
void della_probs(const float* row, size_t cols, double density, double epsilon, std::vector<uint64_t>& order,
                 double* probs);

// L1 rescale factor: ‖before‖₁ / ‖after‖₁, or 1 when either is below 1e-7 (mergekit's eps).
double l1_rescale(double before, double after);

}  // namespace rvec::arith::sparse
