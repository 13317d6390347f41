// `rvec merge CONFIG.yaml -o OUT` (mergekit linear / task_arithmetic) and
// `rvec merge --expr 'instruct + 0.5*(grpo - sft)' --model instruct=DIR ... -o OUT`.
#include <fmt/format.h>

#include "cli/arith_common.h"
#include "cli/command.h"

namespace {
rvec::cli::Command cmd("merge", "Merge models: a mergekit YAML config or a linear --expr", [](CLI::App& app) {
  auto a = std::make_shared<rvec::cli::ArithArgs>();
  auto config = std::make_shared<std::string>(), expr = std::make_shared<std::string>(),
       target = std::make_shared<std::string>();
  auto models = std::make_shared<std::vector<std::string>>();
  app.add_option("config", *config,
                 "mergekit YAML config (linear, task_arithmetic, ties, dare_ties, dare_linear, breadcrumbs, "
                 "breadcrumbs_ties, della, della_linear)");
  app.add_option("--expr,-e", *expr, "Linear expression of named models, e.g. 'instruct + 0.5*(grpo - sft)'");
  app.add_option("--model,-m", *models, "NAME=DIR for each name in --expr (repeatable)");
  app.add_option("--target", *target, "Name whose tensors/config the output inherits (default: first in --expr)");
  auto seed = std::make_shared<uint64_t>(0);
  app.add_option("--seed", *seed, "Seed of the random masks of dare_* / della* merges (default 0)");
  a->add(app);
  return [a, config, expr, target, models, seed] {
    rvec::arith::Options o = a->finish();
    o.seed = *seed;
    rvec::arith::Report r;
    if (!expr->empty()) {
      if (!config->empty()) rvec::fail("give either a CONFIG.yaml or --expr, not both");
      std::map<std::string, std::filesystem::path> m;
      for (const auto& s : *models) {
        auto eq = s.find('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == s.size()) rvec::fail("--model {}: expected NAME=DIR", s);
        if (!m.emplace(s.substr(0, eq), s.substr(eq + 1)).second)
          rvec::fail("--model {}: name '{}' given twice", s, s.substr(0, eq));
      }
      r = rvec::arith::merge_expr(*expr, m, o, *target);
    } else {
      if (config->empty()) rvec::fail("merge needs a CONFIG.yaml or --expr");
      if (!models->empty()) rvec::fail("--model is only used with --expr");
      r = rvec::arith::merge_yaml(*config, o);
    }
    rvec::arith::print_report(r, "merge");
    return 0;
  };
});
}  // namespace
