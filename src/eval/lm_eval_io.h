// lm-evaluation-harness's per-sample file format (v0.4.9.2 evaluator.py + EvaluationTracker):
// writing rvec's samples as lm-eval writes them (one line per filter and document, with its
// doc/prompt/target sha256 hashes and task_hashes), and reading samples files that lm-eval wrote
// (any backend: the format does not depend on it) so rvec can re-score them.
#pragma once
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "eval/runner.h"

namespace rvec::eval {

// json.dumps(doc, indent=2, ensure_ascii=False) with the top-level keys in `key_order` (the
// dataset's field order; keys not listed follow in sorted order), as lm-eval hashes documents.
std::string lm_eval_doc_dump(const Doc& doc, const std::vector<std::string>& key_order);
// The field order of the first record of a data file (.jsonl line, .json array element or
// {"examples": [...]} element); empty if the file has no object record.
std::vector<std::string> first_record_key_order(const std::string& content, const std::string& rel);

// The lm-eval lines of one task's samples, filter-major as evaluator.py logs them.
std::vector<nlohmann::json> lm_eval_sample_lines(const TaskResult& t);
// sha256 over doc_hash + prompt_hash + target_hash of every line (EvaluationTracker.task_hashes).
std::string lm_eval_task_hash(const std::vector<nlohmann::json>& lines);

// True for a line in lm-eval's format (has resps and filter, no rvec "output").
bool is_lm_eval_sample_line(const nlohmann::json& line);
// rvec's output for a lm-eval line of `task`: the generation (a list with repeats), or
// [[logprob, is_greedy], ...] per choice; rvec::Error naming `where` on a malformed line.
nlohmann::json output_from_lm_eval_line(const Task& task, const nlohmann::json& line, const std::string& where);
// "gsm8k" from ".../samples_gsm8k_2026-12-04T15-00-00.123456.jsonl"; nullopt if not that shape.
std::optional<std::string> task_from_lm_eval_samples_name(const std::string& path);

// Calls fn(line, "path:lineno") for each non-blank line of a JSON-lines samples file; rvec::Error
// naming the file (and line) when it cannot be opened or a line is not JSON.
void for_each_samples_line(const std::string& path, const std::function<void(nlohmann::json&, const std::string&)>& fn);

// One run's per-document records, from its samples files (rvec's or lm-eval's format), as
// recorded (nothing is re-scored): task -> doc_id -> record.
struct DocRecord {
  std::string prompt_hash;                  // sha256 of the prompt ("" if the file has none)
  std::map<std::string, double> metrics;    // "exact_match,strict-match" -> value
  std::map<std::string, std::string> answers;  // filter -> filtered answer (JSON text if not a string)
};
using RunSamples = std::map<std::string, std::map<size_t, DocRecord>>;
// `path`: a samples file or a folder holding samples_<task>_<date>.jsonl files (rvec's --out
// folder, or lm-eval's output folder for one model). rvec::Error naming the path when none is found
// or a line is malformed.
RunSamples load_run_samples(const std::string& path);

}  // namespace rvec::eval
