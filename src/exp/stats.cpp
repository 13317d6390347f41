#include "exp/stats.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"

namespace rvec::experiment {

double mean(std::span<const double> x) {
  if (x.empty()) return 0;
  double s = 0;
  for (double v : x) s += v;
  return s / double(x.size());
}

double stderr_of_mean(std::span<const double> x) {
  size_t n = x.size();
  if (n < 2) return 0;
  double m = mean(x), ss = 0;
  for (double v : x) ss += (v - m) * (v - m);
  double var = ss / double(n - 1);
  return std::sqrt(var / double(n));
}

double mcnemar_exact_p(int64_t b, int64_t c) {
  if (b < 0 || c < 0) fail("mcnemar: negative counts b={} c={}", b, c);
  int64_t n = b + c;
  if (n == 0) return 1.0;
  int64_t k = std::min(b, c);
  // sum_{i<=k} C(n,i) / 2^n, in log space to stay finite for large n.
  double log2n = double(n) * std::log(2.0);
  double lgn1 = std::lgamma(double(n) + 1);
  double sum = 0;
  for (int64_t i = 0; i <= k; ++i) {
    double lc = lgn1 - std::lgamma(double(i) + 1) - std::lgamma(double(n - i) + 1);
    sum += std::exp(lc - log2n);
  }
  return std::min(1.0, 2.0 * sum);
}

double chi2_sf_1dof(double x) {
  if (x <= 0) return 1.0;
  return std::erfc(std::sqrt(x / 2.0));
}

double mcnemar_chi2_p(int64_t b, int64_t c) {
  if (b + c == 0) return 1.0;
  double d = std::max(0.0, std::fabs(double(b - c)) - 1.0);
  return chi2_sf_1dof(d * d / double(b + c));
}

McNemarResult mcnemar(std::span<const double> baseline, std::span<const double> other) {
  if (baseline.size() != other.size())
    fail("mcnemar: paired outcomes differ in length ({} vs {})", baseline.size(), other.size());
  McNemarResult r;
  for (size_t i = 0; i < baseline.size(); ++i) {
    bool a = baseline[i] >= 0.5, o = other[i] >= 0.5;
    if (a && !o) ++r.b;
    if (!a && o) ++r.c;
  }
  r.p_exact = mcnemar_exact_p(r.b, r.c);
  if (r.b + r.c > 0) {
    double d = std::max(0.0, std::fabs(double(r.b - r.c)) - 1.0);
    r.chi2 = d * d / double(r.b + r.c);
  }
  r.p_chi2 = chi2_sf_1dof(r.chi2);
  return r;
}

BootstrapResult paired_bootstrap(std::span<const double> baseline, std::span<const double> other,
                                 int iterations, uint64_t seed) {
  if (baseline.size() != other.size())
    fail("paired bootstrap: paired scores differ in length ({} vs {})", baseline.size(), other.size());
  if (iterations < 1) fail("paired bootstrap: iterations must be >= 1 (got {})", iterations);
  BootstrapResult r;
  size_t n = baseline.size();
  if (n == 0) return r;
  std::vector<double> d(n);
  for (size_t i = 0; i < n; ++i) d[i] = other[i] - baseline[i];
  r.delta = mean(d);
  std::mt19937_64 rng(seed);
  std::vector<double> deltas(static_cast<size_t>(iterations));
  int64_t le = 0, ge = 0;
  for (int it = 0; it < iterations; ++it) {
    double s = 0;
    for (size_t j = 0; j < n; ++j) s += d[size_t(rng() % n)];
    double m = s / double(n);
    deltas[size_t(it)] = m;
    if (m <= 0) ++le;
    if (m >= 0) ++ge;
  }
  std::sort(deltas.begin(), deltas.end());
  auto q = [&](double p) {
    double pos = p * double(iterations - 1);
    size_t lo = size_t(std::floor(pos)), hi = std::min(lo + 1, size_t(iterations - 1));
    double f = pos - double(lo);
    return deltas[lo] * (1 - f) + deltas[hi] * f;
  };
  r.ci_low = q(0.025);
  r.ci_high = q(0.975);
  r.p = std::min(1.0, 2.0 * double(std::min(le, ge)) / double(iterations));
  return r;
}

}  // namespace rvec::experiment
