#include "eval/passk.h"

#include "core/error.h"

namespace rvec::eval {

double pass_at_k(int n, int c, int k) {
  if (n < 1 || c < 0 || c > n || k < 1 || k > n)
    fail("pass@k: need 0 <= c <= n and 1 <= k <= n (got n={}, c={}, k={})", n, c, k);
  if (n - c < k) return 1.0;  // every k-subset contains a correct sample
  double prod = 1.0;
  for (int i = n - c + 1; i <= n; ++i) prod *= 1.0 - static_cast<double>(k) / i;
  return 1.0 - prod;
}

double mean_pass_at_k(const std::vector<std::pair<int, int>>& n_c, int k) {
  if (n_c.empty()) return 0.0;
  double s = 0;
  for (auto [n, c] : n_c) s += pass_at_k(n, c, k);
  return s / static_cast<double>(n_c.size());
}

}  // namespace rvec::eval
