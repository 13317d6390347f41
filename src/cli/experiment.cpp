// `rvec experiment CONFIG.yaml`: the reasoning-vector experiment (extract, apply per alpha,
// random control, evaluate, report).

#include <cstdlib>

#include "cli/command.h"
#include "cli/infer_common.h"
#include "exp/config.h"
#include "exp/runner.h"

namespace {

struct Args {
  std::string config, out;
  bool resume = false, fresh = false, keep = false, quiet = false;
  int threads = -1, batch = -1;
  double kv_cache_gb = 0;
};

rvec::cli::Command cmd("experiment", "Run the reasoning-vector experiment described by a YAML config", [](CLI::App& app) {
  auto a = std::make_shared<Args>();
  app.add_option("config", a->config, "experiment config (see examples/paper.yaml, examples/toy.yaml)")->required();
  app.add_option("--out,-o", a->out, "output directory (default: the config's `out`)");
  app.add_flag("--resume", a->resume, "reuse the finished cells of an earlier (interrupted or smaller) run");
  app.add_flag("--fresh", a->fresh, "discard the cached cells of an earlier run");
  app.add_flag("--keep-models", a->keep, "keep the merged models (DIR/models) instead of deleting them");
  app.add_option("--threads", a->threads, "threads for inference (default: config eval.threads, 0 = all cores)");
  app.add_option("--batch", a->batch, "concurrent sequences (default: config eval.batch)");
  app.add_flag("--quiet,-q", a->quiet, "no progress on stderr");
  rvec::cli::add_kv_cache_option(app, a->kv_cache_gb);
  return [a] {
    using namespace rvec::experiment;
    ExperimentConfig cfg = load_config(a->config);
    if (a->threads >= 0) cfg.threads = a->threads;
    if (a->batch > 0) cfg.batch = a->batch;
    cfg.kv_cache_gb = a->kv_cache_gb;
    RunOptions ro;
    ro.out = a->out;
    ro.resume = a->resume;
    ro.fresh = a->fresh;
    ro.keep_models = a->keep;
    ro.quiet = a->quiet;
    if (const char* f = std::getenv("RVEC_TEST_FAIL_AFTER_CELLS")) ro.fail_after_cells = std::atoi(f);  // tests only
    run_with_engine_and_print(cfg, ro, "");
    return 0;
  };
});

}  // namespace
