#include "eval/humaneval_exec.h"

#include "core/error.h"

namespace rvec::eval {

HumanEvalProblem humaneval_problem(const nlohmann::json& doc) {
  auto field = [&](const char* name) -> std::string {
    if (!doc.is_object() || !doc.contains(name) || !doc[name].is_string())
      fail("HumanEval document {}: missing string field '{}'",
           doc.is_object() && doc.contains("task_id") ? doc["task_id"].dump() : std::string("?"), name);
    return doc[name].get<std::string>();
  };
  return {field("task_id"), field("prompt"), field("canonical_solution"), field("test"), field("entry_point")};
}

std::string humaneval_program(const std::string& prediction, const std::string& test, const std::string& entry_point) {
  return prediction + "\n" + test + "\n" + "check(" + entry_point + ")";
}

std::vector<ExecResult> execute_humaneval(const Sandbox& sandbox, const std::vector<HumanEvalCandidate>& candidates,
                                          int n_workers,
                                          const std::function<void(size_t, const ExecResult&)>& callback) {
  std::vector<std::string> programs;
  programs.reserve(candidates.size());
  for (const auto& c : candidates) programs.push_back(humaneval_program(c.prediction, c.test, c.entry_point));
  return sandbox.run_many(programs, n_workers, callback);
}

void use_sandbox(const Sandbox& sandbox, EvalOptions& o) {
  o.sandbox_mode = sandbox.mode_name();
  o.sandbox_protections = Sandbox::protections(sandbox.mode());
  o.run_program = [sb = &sandbox](const std::string& program) {
    ExecResult r = sb->run_python(program);
    return ProgramResult(r.passed, r.status());
  };
}

}  // namespace rvec::eval
