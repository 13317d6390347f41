// `rvec rescore SAMPLES.jsonl... [--out DIR] [--task NAME]`: recomputes filtered answers, metrics and
// aggregates from samples files: rvec's (task, doc_id and output per line; targets from the dataset)
// or lm-eval's own samples_<task>_<date>.jsonl (any backend; HumanEval runs in rvec's sandbox).
#include <fmt/format.h>

#include <filesystem>
#include <sstream>
#include <memory>

#include "cli/command.h"
#include "eval/lm_eval_io.h"
#include "core/input_file.h"
#include "eval/runner.h"
#include "eval/humaneval_exec.h"
#include "eval/sandbox.h"

namespace {

struct Args {
  std::vector<std::string> samples;
  std::string out, data_dir, task;
  long long seed = -1;
  double exec_timeout = 3.0;
  int num_fewshot = -1;
};

rvec::cli::Command cmd("rescore", "Re-score a samples_<task>.jsonl file (saved or foreign generations)",
                       [](CLI::App& app) {
  auto a = std::make_shared<Args>();
  app.add_option("samples", a->samples, "samples JSONL files: rvec's (task, doc_id, output) or lm-eval's")->required();
  app.add_option("--task", a->task, "Task of every line (lm-eval files not named samples_<task>_<date>.jsonl)");
  app.add_option("--out", a->out, "Output directory (default: the samples file's directory)");
  app.add_option("--data-dir", a->data_dir, "Read task files from DIR when present there");
  app.add_option("--seed", a->seed, "Seed the perturbations were made with (default 1234)");
  app.add_option("--num-fewshot", a->num_fewshot, "Recorded n-shot (default: each task's)");
  app.add_option("--exec-timeout", a->exec_timeout, "HumanEval: seconds per program (default 3)");
  return [a]() -> int {
    using namespace rvec::eval;
    EvalOptions o;
    o.quiet = true;
    if (a->seed >= 0) o.fewshot_seed = uint64_t(a->seed);
    if (a->num_fewshot >= 0) o.num_fewshot = a->num_fewshot;
    if (!a->data_dir.empty()) o.data_dir = a->data_dir;
    std::filesystem::path sp(a->samples.front());
    o.out_dir = a->out.empty() ? (sp.has_parent_path() ? sp.parent_path().string() : std::string(".")) : a->out;
    // The sandbox is set up only if the file holds HumanEval samples.
    bool needs_sandbox = a->task.starts_with("humaneval");
    for (auto& f : a->samples) {
      auto lm_task = task_from_lm_eval_samples_name(f);
      if (lm_task && lm_task->starts_with("humaneval")) needs_sandbox = true;
      std::istringstream in(rvec::read_file(f));
      std::string line;
      while (!needs_sandbox && std::getline(in, line)) {
        auto p = line.find("\"task\"");
        needs_sandbox = p != std::string::npos && line.find("\"humaneval", p) != std::string::npos;
      }
    }
    std::shared_ptr<Sandbox> sandbox;
    if (needs_sandbox) {
      SandboxLimits lim;
      lim.timeout_s = a->exec_timeout;
      sandbox = std::make_shared<Sandbox>(lim);
      rvec::eval::use_sandbox(*sandbox, o);
      fmt::print(stderr, "rvec rescore: HumanEval programs run in sandbox mode '{}'\n", o.sandbox_mode);
    }
    EvalResults r = rescore_samples_files(a->samples, o, a->task);
    fmt::print("{}", r.markdown());
    fmt::print("results: {}/results_{}.json\n", o.out_dir, r.datetime);
    return 0;
  };
});

}  // namespace
