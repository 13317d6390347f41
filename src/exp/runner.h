// The reasoning-vector experiment: extract v = tuned - base, apply target + alpha*v for each
// alpha (merged models are transient: built in a scratch dir and deleted after evaluation
// unless keep_models), a norm-matched random-vector control, evaluate every
// (model, condition, task) cell, cache each finished cell as DIR/cells/<cell>.json (written
// atomically), and write DIR/results.json, DIR/report.md and DIR/alpha_sweep.svg (with
// `compress:`, also the compressed vectors at α = 1 and DIR/gain_vs_size.svg).
//
// A cell's identity (its fingerprint) covers the model paths, vector, alpha, control seed,
// condition and every task option, so `resume` reuses exactly the cells a changed config
// still contains: a re-run with one more alpha computes only the new cells.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "exp/config.h"

namespace rvec::experiment {

// One evaluated cell.
struct CellResult {
  std::string metric;              // e.g. "exact_match,strict-match"
  double value = 0, std_err = 0;   // aggregate and its standard error
  int64_t n = 0;                   // documents
  std::vector<double> per_doc;     // per-document score in document order (0/1 for accuracy)
  nlohmann::json extra = nlohmann::json::object();  // other metrics, sandbox mode, ...
};

// Evaluates cells on model directories (the engine-backed implementation is
// make_engine_evaluator(); tests script one).
class CellEvaluator {
 public:
  virtual ~CellEvaluator() = default;
  virtual CellResult evaluate(const std::filesystem::path& model, const ConditionConfig& cond,
                              const TaskConfig& task) = 0;
  // Drop anything held for the last model (called before its directory is deleted).
  virtual void release() {}
  // Called before each evaluate(): a folder where the cell's finished samples may be cached so
  // that a resumed run redoes only the unfinished ones (deleted once the cell is written).
  virtual void begin_cell(const std::filesystem::path& cache_dir) { (void)cache_dir; }
};

struct EvaluatorOptions {
  int threads = 0, batch = 16;
  double kv_cache_gb = 0;  // in-process engine's KV cache cap (backend::EngineOptions)
  std::string kv_cache_dtype = "f32";  // its KV cache element type (ExperimentConfig::kv_cache_dtype)
  uint64_t seed = 1234;  // lm-eval's fewshot_random_seed
  bool quiet = false;    // no per-task progress bars
  std::string data_dir;  // shipped data root override ("" : eval::default_data_root())
  BackendConfig backend;            // engine (default) or OpenAI-compatible servers
  std::filesystem::path log_dir;    // managed servers' logs (the run directory's servers/)
};
// Cells evaluated by the evaluation harness (eval::evaluate_task) on the configured backend:
// rvec's engine in-process, servers launched per model (backend::ServerGroup: started on the
// first cell of a model, stopped at release() or when the next model starts), or a running
// server. A condition's `think` and perturbation (at most one per condition)
// are passed on; group tasks (bbh) are evaluated member by member and pooled per document.
// The primary metric is the task's first filter's metric (exact_match,strict-match,
// acc,none, pass@1,create_test, exact_match,get-answer ...). HumanEval programs run in the sandbox.
std::unique_ptr<CellEvaluator> make_engine_evaluator(const EvaluatorOptions& opts);

// The arithmetic the experiment needs (the real one wraps rvec::arith; tests may fake it).
class VectorOps {
 public:
  virtual ~VectorOps() = default;
  virtual void extract(const std::filesystem::path& base, const std::filesystem::path& tuned,
                       const std::filesystem::path& out) = 0;
  virtual void apply(const std::filesystem::path& target, const std::filesystem::path& vector, double alpha,
                     const std::filesystem::path& out) = 0;
  virtual void random_like(const std::filesystem::path& vector, uint64_t seed, const std::filesystem::path& out) = 0;
  // The compressed form of `vector` (config `compress:`); the default refuses.
  virtual void compress(const std::filesystem::path& vector, const CompressConfig& c, const std::filesystem::path& out);
};
std::unique_ptr<VectorOps> make_arith_ops();

// A model the experiment evaluates: a target plus alpha times a vector (or its random
// control); alpha == 0 is the target itself (the baseline).
struct Variant {
  std::string id;      // "instruct", "instruct+0.5*v", "instruct-1*rand(v)"
  std::string target, vector;
  double alpha = 0;
  bool control = false;
  std::string compress;  // CompressConfig::key() of a compressed vector ("" : the lossless one)
};
std::vector<Variant> plan_variants(const ExperimentConfig& cfg);

struct RunOptions {
  std::filesystem::path out;   // overrides cfg.out when non-empty
  bool resume = false;         // reuse finished cells (else an existing cells/ dir is an error unless fresh)
  bool fresh = false;          // delete previous cells first
  bool keep_models = false;    // or cfg.keep_models
  bool quiet = false;          // no progress on stderr
  int fail_after_cells = -1;   // testing: throw rvec::Error after computing this many new cells
};

struct RunSummary {
  std::filesystem::path out;
  size_t cells_total = 0, cells_computed = 0, cells_cached = 0;
  double seconds = 0;
  nlohmann::json results;  // what results.json holds
  std::string report_md;   // what report.md holds
  std::string terminal_table;
};

RunSummary run_experiment(const ExperimentConfig& cfg, const RunOptions& opts, CellEvaluator& evaluator,
                          VectorOps& ops);

// What `rvec experiment` and `rvec demo` run: the experiment with rvec's engine and
// arithmetic (`data_dir` "" = the shipped data), then the terminal table and a one-line
// summary on stdout.
RunSummary run_with_engine_and_print(const ExperimentConfig& cfg, const RunOptions& opts, const std::string& data_dir);

// Pieces exposed for tests and the CLI.
std::string cell_fingerprint(const ExperimentConfig& cfg, const Variant& v, const ConditionConfig& c,
                             const TaskConfig& t);
nlohmann::json build_results(const ExperimentConfig& cfg, const std::vector<nlohmann::json>& cells);
std::string render_report(const nlohmann::json& results);
std::string render_terminal_table(const nlohmann::json& results);
std::string render_alpha_svg(const nlohmann::json& results);
// With `compress:` configured: results["gain_retained"] rows, one per (target, vector,
// condition, task) and storage form (the lossless vector first): stored bytes, its
// fraction of the lossless size, and retained = (score at α = 1 − baseline) ÷ (the
// lossless vector's gain), null when that gain is 0. Plotted against the size fraction.
std::string render_gain_svg(const nlohmann::json& results);

}  // namespace rvec::experiment
