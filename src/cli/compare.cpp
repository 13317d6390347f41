// `rvec compare RUN_A RUN_B [--json FILE] [--list N]`: two evaluation runs (rvec's --out folders,
// lm-eval output folders or single samples files, as recorded) compared document by document.
#include <fmt/format.h>

#include <memory>

#include "cli/command.h"
#include "core/atomic_output.h"
#include "core/error.h"
#include "exp/compare.h"

namespace {

struct Args {
  std::string a, b, json_out;
  size_t list = 20;
};

rvec::cli::Command cmd("compare", "Compare two runs document by document (rvec or lm-eval samples): paired tests, differing docs",
                       [](CLI::App& app) {
  auto a = std::make_shared<Args>();
  app.add_option("run_a", a->a, "Run A: a folder with samples_<task>_<date>.jsonl files, or one samples file")->required();
  app.add_option("run_b", a->b, "Run B (same forms; rvec's and lm-eval's formats may be mixed)")->required();
  app.add_option("--json", a->json_out, "Also write the comparison as JSON to FILE");
  app.add_option("--list", a->list, "Differing documents listed per metric (default 20)");
  return [a]() -> int {
    using namespace rvec;
    auto ra = eval::load_run_samples(a->a), rb = eval::load_run_samples(a->b);
    auto cs = experiment::compare_runs(ra, rb);
    if (cs.empty()) fail("{} and {}: no task and metric in common", a->a, a->b);
    fmt::print("A: {}\nB: {}\n\n{}", a->a, a->b, experiment::compare_markdown(cs, ra, rb, a->list));
    if (!a->json_out.empty()) write_file_atomic(a->json_out, experiment::compare_json(cs).dump(2) + "\n");
    return 0;
  };
});

}  // namespace
