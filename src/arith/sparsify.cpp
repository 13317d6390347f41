#include "arith/sparsify.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace rvec::arith::sparse {

const char* method_name(Method m) {
  switch (m) {
    case Method::Magnitude: return "magnitude";
    case Method::Random: return "random";
    case Method::MagnitudeOutliers: return "magnitude_outliers";
    case Method::Della: return "della_magprune";
    default: return "none";
  }
}

uint64_t stream_id(const std::string& name, uint64_t k) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  return mix64(h ^ mix64(k));
}

HiSel select_hi(const Hist& hist, uint64_t k) {
  HiSel s;
  uint64_t cum = 0;
  for (int b = 65535; b >= 0; --b) {
    if (cum + hist[size_t(b)] > k) {
      s.hi = uint32_t(b);
      s.above = cum;
      return s;
    }
    cum += hist[size_t(b)];
  }
  fail("internal: rank {} beyond the {} selected entries", k, cum);
}

Boundary select_lo(const HiSel& s, const Hist& hist, uint64_t k) {
  Boundary b;
  b.k = k;
  b.none = false;
  uint64_t cum = s.above;
  for (int l = 65535; l >= 0; --l) {
    if (cum + hist[size_t(l)] > k) {
      b.key_t = (s.hi << 16) | uint32_t(l);
      b.greater = cum;
      b.quota = k - cum;
      return b;
    }
    cum += hist[size_t(l)];
  }
  fail("internal: rank {} not found in bin {:#x}", k, s.hi);
}

Window magnitude_window(uint64_t n, double density) {
  if (density >= 1) return {0, n};
  return {0, uint64_t(density * double(n))};
}

Window outliers_window(uint64_t n, double density, double gamma) {
  if (density >= 1) return {0, n};
  const int64_t target = int64_t(density * double(n));
  int64_t top = int64_t(gamma * double(n));
  const int64_t bot = int64_t(n) - target - top;
  if (bot < 0) top += bot;
  return {uint64_t(top), uint64_t(top + target)};
}

void della_probs(const float* row, size_t cols, double density, double epsilon, std::vector<uint64_t>& order,
                 double* probs) {
  if (cols == 1) {
    probs[0] = density;
    return;
  }
  // Ascending |v|; equal magnitudes: the higher index first (it ranks lower). One packed
  // integer sort (key, then inverted index) instead of an indirect comparison sort.
  order.resize(cols);
  for (size_t i = 0; i < cols; ++i) order[i] = (uint64_t(mag_key(row[i])) << 32) | (0xffffffffu - uint32_t(i));
  std::sort(order.begin(), order.end());
  const double lo = density - epsilon, span = 2 * epsilon / double(cols - 1);
  for (size_t r = 0; r < cols; ++r) probs[0xffffffffu - uint32_t(order[r])] = lo + span * double(r);
}

double l1_rescale(double before, double after) {
  if (before < 1e-7 || after < 1e-7) return 1.0;
  return before / after;
}

}  // namespace rvec::arith::sparse
