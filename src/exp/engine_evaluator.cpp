// CellEvaluator on top of a backend (rvec's engine, or OpenAI-compatible servers) and the
// evaluation harness.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "backend/factory.h"
#include "backend/launcher.h"
#include "core/error.h"
#include "core/progress.h"
#include "eval/runner.h"
#include "eval/humaneval_exec.h"
#include "eval/sandbox.h"
#include "eval/tasks.h"
#include "exp/runner.h"
#include "exp/stats.h"
#include "exp/tasks.h"
#include "infer/engine.h"

namespace fs = std::filesystem;

namespace rvec::experiment {

namespace {

std::string primary_metric(const eval::TaskResult& r) {
  // Several generations per problem (--samples K): the per-problem mean accuracy (avg@K).
  for (auto& [k, v] : r.per_doc)
    if (k.rfind("avg@", 0) == 0) return k;
  for (const char* k : {"exact_match,strict-match", "acc,none", "pass@1,create_test", "exact_match,get-answer",
                        "exact_match,flexible-extract", "math_verify,none"})
    if (r.per_doc.count(k)) return k;
  if (r.per_doc.empty()) fail("task {}: the evaluation produced no per-document metric", r.name);
  return r.per_doc.begin()->first;
}

class EngineEvaluator : public CellEvaluator {
 public:
  explicit EngineEvaluator(const EvaluatorOptions& o) : o_(o) { register_toy_arith(); }

  CellResult evaluate(const fs::path& model, const ConditionConfig& cond, const TaskConfig& task) override {
    if (!lm_ || path_ != model) {
      release();
      lm_ = open(model);
      path_ = model;
    }
    if (cond.perturb.size() > 1)
      fail("condition '{}': one perturbation per condition (got {})", cond.name, cond.perturb.size());
    eval::EvalOptions eo;
    if (task.limit > 0) eo.limit = size_t(task.limit);
    if (task.num_fewshot >= 0) eo.num_fewshot = task.num_fewshot;
    if (task.max_gen_tokens > 0) eo.max_gen_tokens = task.max_gen_tokens;
    eo.samples = task.samples;
    eo.temperature = task.temperature;
    eo.top_p = task.top_p;
    eo.min_p = task.min_p;
    eo.gen_seed = o_.seed;
    eo.chat = task.chat;
    eo.chat_template_kwargs = task.chat_template_kwargs;
    eo.think = cond.think;
    eo.fewshot_seed = o_.seed;
    eo.batch = o_.batch;
    eo.quiet = o_.quiet;
    eo.model_name = model.string();
    if (o_.backend.kind != "engine" && !cell_cache_.empty()) {
      eo.out_dir = cell_cache_.string();  // the runner's per-sample resume cache (cache/<task>.jsonl)
      eo.resume = true;
    }
    if (!task.data_dir.empty()) eo.data_dir = task.data_dir;
    if (!o_.data_dir.empty()) eo.shipped_data_dir = o_.data_dir;
    std::vector<std::string> names = eval::expand_tasks({task.name});
    bool code = std::any_of(names.begin(), names.end(), [](auto& n) { return n.rfind("humaneval", 0) == 0; });
    if (code) {
      if (!sandbox_) sandbox_ = std::make_unique<eval::Sandbox>();
      eval::use_sandbox(*sandbox_, eo);
    }
    CellResult out;
    for (auto& n : names) {
      std::string full = cond.perturb.empty() ? n : n + "@" + cond.perturb[0];
      eval::TaskResult r = eval::evaluate_task(*lm_, full, eo);
      std::string m = primary_metric(r);
      if (out.metric.empty()) out.metric = m;
      else if (out.metric != m) fail("group {}: members report different metrics ({} vs {})", task.name, out.metric, m);
      const auto& pd = r.per_doc.at(m);
      out.per_doc.insert(out.per_doc.end(), pd.begin(), pd.end());
      if (names.size() > 1) out.extra["members"][n] = {{"value", mean(pd)}, {"n", pd.size()}};
      for (auto& [k, v] : r.metrics)
        if (names.size() == 1) out.extra["metrics"][k] = v.value;
    }
    out.n = int64_t(out.per_doc.size());
    out.value = mean(out.per_doc);
    out.std_err = stderr_of_mean(out.per_doc);
    if (code) out.extra["sandbox"] = sandbox_->mode_name();
    if (nlohmann::json p = lm_->provenance(); !p.is_null()) out.extra["backend"] = p;
    return out;
  }

  void release() override {
    lm_.reset();
    servers_.reset();  // stops the model's servers
    path_.clear();
  }

  void begin_cell(const fs::path& dir) override { cell_cache_ = dir; }

 private:
  std::unique_ptr<eval::LanguageModel> open(const fs::path& model) {
    const BackendConfig& bc = o_.backend;
    backend::BackendOptions bo;
    bo.kind = bc.kind;
    bo.model = model.string();
    bo.engine.threads = o_.threads;
    bo.engine.batch = o_.batch;
    bo.engine.kv_cache_gb = o_.kv_cache_gb;
    bo.engine.kv_dtype = infer::parse_kv_cache_dtype(o_.kv_cache_dtype);
    if (bc.kind == "engine") return backend::open_backend(bo);
    backend::OpenAIOptions& oo = bo.openai;
    oo.tokenizer = model.string();  // prompts, chat templates and tokens come from the model dir
    oo.served_model = bc.served_model;
    oo.api_key_env = bc.api_key_env;
    oo.concurrency = bc.concurrency;
    oo.timeout_s = bc.timeout;
    oo.max_retries = bc.max_retries;
    oo.chat_endpoint = bc.chat_endpoint;
    oo.quiet = o_.quiet;
    if (!bc.launch.empty()) {
      backend::LaunchOptions lo;
      lo.command = bc.launch;
      lo.instances = bc.instances;
      lo.gpus = bc.gpus;
      lo.first_port = bc.port;
      lo.ready_timeout_s = bc.ready_timeout;
      lo.stop_grace_s = bc.stop_grace;
      lo.log_dir = o_.log_dir.empty() ? fs::path("servers") : o_.log_dir;
      lo.log_name = model.filename().string();
      lo.quiet = o_.quiet;
      servers_ = std::make_unique<backend::ServerGroup>(lo, model);
      oo.base_urls = servers_->urls();
      // A server that dies is restarted; its requests wait (one instance) or move to the others,
      // so the retry budget covers a restart.
      oo.max_retries = std::max(bc.max_retries, 5 + int(std::ceil(bc.ready_timeout / oo.retry_max_s)));
      oo.endpoint_cooldown_s = 5;
      // Ready was seen, but the server may die before the client's first request; it is being
      // restarted then, so the client waits for it as long as for a start.
      oo.wait_for_server_s = bc.ready_timeout;
    } else {
      oo.base_urls = bc.base_urls;
      oo.wait_for_server_s = bc.wait_for_server;
    }
    return backend::open_backend(bo);
  }


  EvaluatorOptions o_;
  std::unique_ptr<backend::ServerGroup> servers_;  // declared before lm_: the client goes first
  std::unique_ptr<eval::LanguageModel> lm_;
  fs::path cell_cache_;
  fs::path path_;
  std::unique_ptr<eval::Sandbox> sandbox_;
};

}  // namespace

std::unique_ptr<CellEvaluator> make_engine_evaluator(const EvaluatorOptions& opts) {
  return std::make_unique<EngineEvaluator>(opts);
}

RunSummary run_with_engine_and_print(const ExperimentConfig& cfg, const RunOptions& opts, const std::string& data_dir) {
  EvaluatorOptions eo;
  eo.threads = cfg.threads;
  eo.batch = cfg.batch;
  eo.kv_cache_gb = cfg.kv_cache_gb;
  eo.kv_cache_dtype = cfg.kv_cache_dtype;
  eo.seed = cfg.seed;
  eo.quiet = opts.quiet;
  eo.data_dir = data_dir;
  eo.backend = cfg.backend;
  eo.log_dir = (opts.out.empty() ? cfg.out : opts.out) / "servers";
  auto evaluator = make_engine_evaluator(eo);
  auto ops = make_arith_ops();
  RunSummary s = run_experiment(cfg, opts, *evaluator, *ops);
  fmt::print("{}\n", s.terminal_table);
  fmt::print("{} cells ({} computed, {} cached) in {}\nwrote {}/results.json, report.md, alpha_sweep.svg\n",
             s.cells_total, s.cells_computed, s.cells_cached, format_duration(s.seconds), s.out.string());
  return s;
}

}  // namespace rvec::experiment
