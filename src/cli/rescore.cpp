// `rvec rescore SAMPLES.jsonl [--out DIR]`: recomputes filtered answers, metrics and aggregates
// from a samples file (task, doc_id and output per line; targets come from the dataset).
#include <fmt/format.h>

#include <filesystem>
#include <sstream>
#include <memory>

#include "cli/command.h"
#include "core/input_file.h"
#include "eval/runner.h"
#include "eval/sandbox.h"

namespace {

struct Args {
  std::string samples, out, data_dir;
  long long seed = -1;
  double exec_timeout = 3.0;
  int num_fewshot = -1;
};

rvec::cli::Command cmd("rescore", "Re-score a samples_<task>.jsonl file (saved or foreign generations)",
                       [](CLI::App& app) {
  auto a = std::make_shared<Args>();
  app.add_option("samples", a->samples, "samples JSONL (lines with task, doc_id, output)")->required();
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
    std::filesystem::path sp(a->samples);
    o.out_dir = a->out.empty() ? (sp.has_parent_path() ? sp.parent_path().string() : std::string(".")) : a->out;
    // The sandbox is set up only if the file holds HumanEval samples.
    bool needs_sandbox = false;
    {
      std::istringstream in(rvec::read_file(a->samples));
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
      o.sandbox_mode = sandbox->mode_name();
      fmt::print(stderr, "rvec rescore: HumanEval programs run in sandbox mode '{}'\n", o.sandbox_mode);
      o.run_program = [sandbox](const std::string& program) { return sandbox->run_python(program).passed; };
    }
    EvalResults r = rescore_samples_file(a->samples, o);
    fmt::print("{}", r.markdown());
    fmt::print("results: {}/results_{}.json\n", o.out_dir, r.datetime);
    return 0;
  };
});

}  // namespace
