// Scoring a sample of a math task (Task::math_metrics): each generation is graded by the metric's
// scheme. One generation: "<metric>,none" = 0/1. K > 1 generations (--samples K): "<metric>,none"
// is the first generation's score (the Qwen toolkit's `acc`), and for the task's first metric
// "avg@K" (mean over the K), "pass@K" (unbiased estimator, eval/passk.h; with n = k it is "any
// correct") and "maj@K" (the answer of the largest class of equivalent extracted answers, ties to the
// earliest; empty answers do not vote); later metrics get the same with a "<metric>_" prefix.
#pragma once
#include <string>
#include <vector>

#include "eval/runner.h"

namespace rvec::eval {

void score_math_sample(const Task& t, Sample& s);
// The metric names a math task reports for K generations per document.
std::vector<std::string> math_metric_names(const Task& t, int samples);

}  // namespace rvec::eval
