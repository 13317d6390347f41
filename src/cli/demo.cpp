// `rvec demo`: the reasoning-vector experiment on the toy family shipped in data/toy.
#include <fmt/format.h>
#include <unistd.h>

#include <climits>

#include "backend/launcher.h"
#include "cli/command.h"
#include "core/error.h"
#include "eval/dataset.h"
#include "exp/demo.h"
#include "exp/runner.h"

namespace {

struct Args {
  std::string out = "rvec-demo", data_dir;
  int64_t limit = rvec::experiment::kDemoDefaultLimit;
  bool resume = false, keep = false, quiet = false;
  int threads = 1, batch = 64, instances = 2;
  std::string backend = "engine";
};

// This executable's path, for launching `rvec serve` servers.
std::string self_exe() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) rvec::fail("cannot find the rvec executable (/proc/self/exe)");
  return std::string(buf, size_t(n));
}

rvec::cli::Command cmd("demo", "Run the reasoning-vector experiment on the shipped toy model family", [](CLI::App& app) {
  auto a = std::make_shared<Args>();
  app.add_option("--out,-o", a->out, "output directory (default: ./rvec-demo)");
  app.add_option("--limit", a->limit, "toy_arith test problems to evaluate (default 1000)");
  app.add_option("--data-dir", a->data_dir, "rvec's data folder holding toy/ (default: the repository's data/)");
  app.add_flag("--resume", a->resume, "reuse the finished cells of an earlier run in --out");
  app.add_flag("--keep-models", a->keep, "keep the merged models");
  app.add_option("--threads", a->threads, "inference threads (default 1: the toy models are too small to gain from more; 0 = all cores)");
  app.add_option("--batch", a->batch, "concurrent sequences (default 64)");
  app.add_flag("--quiet,-q", a->quiet, "no progress on stderr");
  app.add_option("--backend", a->backend,
                 "engine (in-process, default) or serve: every model through `rvec serve` servers launched by the "
                 "experiment's backend mechanism (same table)")
      ->check(CLI::IsMember({"engine", "serve"}));
  app.add_option("--instances", a->instances, "with --backend serve: servers per model (default 2)")
      ->check(CLI::PositiveNumber);
  return [a] {
    using namespace rvec::experiment;
    std::filesystem::path root = a->data_dir.empty() ? rvec::eval::default_data_root() : std::filesystem::path(a->data_dir);
    ExperimentConfig cfg = demo_config(root, a->limit);
    cfg.threads = a->threads;
    cfg.batch = a->batch;
    if (a->backend == "serve") {
      // The managed-server path of `backend: {kind: openai, launch: ...}`, with rvec serve as the server.
      cfg.backend.kind = "openai";
      cfg.backend.launch = fmt::format("{} serve {{model}} --port {{port}} --threads {} --batch {} --max-queue 100000",
                                       rvec::backend::shell_quote(self_exe()), a->threads, a->batch);
      cfg.backend.instances = a->instances;
      cfg.backend.ready_timeout = 120;
      cfg.backend.concurrency = std::max(1, a->batch / a->instances);
    }
    RunOptions ro;
    ro.out = a->out;
    ro.resume = a->resume;
    ro.fresh = !a->resume;
    ro.keep_models = a->keep;
    ro.quiet = a->quiet;
    if (!a->quiet)
      fmt::print(stderr, "rvec demo: v = grpo - sft (toy family in {}), instruct + alpha*v, toy_arith (n={})\n",
                 (root / "toy").string(), a->limit);
    run_with_engine_and_print(cfg, ro, a->data_dir);
    return 0;
  };
});

}  // namespace
