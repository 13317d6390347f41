// Statistics for the experiment report: means and standard errors of per-document
// scores, and paired significance tests of a model against the baseline on the same
// documents (McNemar for 0/1 outcomes, a seeded paired bootstrap for any scores).
#pragma once
#include <cstdint>
#include <span>

namespace rvec::experiment {

double mean(std::span<const double> x);  // 0 for an empty span
// Standard error of the mean with the sample standard deviation (ddof = 1), as
// lm-evaluation-harness reports it: sqrt(var / n). 0 when n < 2.
double stderr_of_mean(std::span<const double> x);

struct McNemarResult {
  int64_t b = 0;       // baseline correct, other wrong
  int64_t c = 0;       // baseline wrong, other correct
  double p_exact = 1;  // two-sided exact binomial test on the discordant pairs
  double chi2 = 0;     // (|b - c| - 1)^2 / (b + c) (continuity-corrected), 0 when b + c == 0
  double p_chi2 = 1;   // its p-value (1 degree of freedom)
};
// Two-sided exact McNemar p-value: min(1, 2 * sum_{i <= min(b,c)} C(b+c, i) / 2^(b+c)).
double mcnemar_exact_p(int64_t b, int64_t c);
double mcnemar_chi2_p(int64_t b, int64_t c);
// Paired 0/1 outcomes (a value counts as correct when >= 0.5). Throws rvec::Error if the
// spans differ in length.
McNemarResult mcnemar(std::span<const double> baseline, std::span<const double> other);

struct BootstrapResult {
  double delta = 0;             // mean(other) - mean(baseline)
  double ci_low = 0, ci_high = 0;  // 95% percentile interval of the resampled delta
  double p = 1;                 // two-sided: 2 * min(P(delta* <= 0), P(delta* >= 0)), capped at 1
};
// Paired bootstrap over documents with a fixed seed (std::mt19937_64; indices drawn as
// rng() % n so results do not depend on the standard library). Deterministic.
BootstrapResult paired_bootstrap(std::span<const double> baseline, std::span<const double> other,
                                 int iterations = 10000, uint64_t seed = 1234);

// Upper tail of the chi-square distribution with 1 degree of freedom.
double chi2_sf_1dof(double x);

}  // namespace rvec::experiment
