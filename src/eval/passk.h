// pass@k: the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained on Code",
// HumanEval paper): with n samples per problem of which c pass, pass@k = 1 - C(n-c, k) / C(n, k),
// computed in the numerically stable product form 1 - prod_{i=n-c+1}^{n} (1 - k/i).
#pragma once
#include <utility>
#include <vector>

namespace rvec::eval {

// Requires 0 <= c <= n and 1 <= k <= n (rvec::Error otherwise).
double pass_at_k(int n, int c, int k);

// Mean of pass_at_k over problems given as (n, c) pairs (0 for an empty list).
double mean_pass_at_k(const std::vector<std::pair<int, int>>& n_c, int k);

}  // namespace rvec::eval
