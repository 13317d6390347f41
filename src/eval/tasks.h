// Evaluation tasks as lm-evaluation-harness defines them (names, prompts, few-shot rules,
// stop sequences, filters, metrics; see ../shared/spec/eval-protocol.md), and prompt
// construction (plain text and chat with few-shot examples as alternating turns).
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "eval/dataset.h"
#include "eval/language_model.h"
#include "eval/math/grade.h"
#include "eval/pyrandom.h"
#include "eval/scoring.h"

namespace rvec::eval {

enum class OutputType { Generate, MultipleChoice };
enum class SamplerKind { Default, FirstN };

// A named filter pipeline: response (+ doc) -> extracted answer (lm-eval's filter_list entry).
struct Filter {
  std::string name;
  std::function<std::string(const std::string& response, const Doc& doc)> apply;
};

// A metric scored by one of eval/math's answer checkers (lm-eval process_results style): the
// response and the doc's gold text (gold(doc), as grade() takes it) give 0/1 and the extracted answer.
struct MathMetric {
  std::string name;  // "acc", "exact_match", "math_verify"
  math::Scheme scheme = math::Scheme::Qwen;
  std::string data_name = "math";  // qwen: the toolkit's data name
  std::function<std::string(const Doc&)> gold;
};

struct Task {
  std::string name, alias, group;
  double version = 1.0;
  OutputType type = OutputType::Generate;
  std::string description;
  std::function<std::string(const Doc&)> doc_to_text, doc_to_target;
  std::function<std::vector<std::string>(const Doc&)> doc_to_choice;  // multiple choice only
  std::function<int(const Doc&)> doc_to_gold;                          // multiple choice only
  std::function<std::string(const Doc&)> gen_prefix;                  // optional
  std::function<std::string(const Doc&)> lm_eval_target;  // optional: str(doc_to_target) where lm-eval's differs
  std::string target_delimiter = " ", fewshot_delimiter = "\n\n";
  std::vector<std::string> until;
  int max_gen_toks = 256;
  SamplerKind sampler = SamplerKind::Default;
  int num_fewshot = 0;
  bool fewshot_split_is_test = false;  // lm-eval draws n+1 and drops the doc only then
  std::string fewshot_split = "train", test_split = "test";
  std::vector<Filter> filters;
  std::string metric = "exact_match";  // exact_match | acc (+acc_norm) | pass@k (code, run in the sandbox)
  ExactMatchOptions em;
  std::vector<MathMetric> math_metrics;  // non-empty: scored by these instead of filters + exact_match
  std::string chat_system;               // --chat: system turn (instead of the description)
  // Without --chat: wraps the evaluated doc's user text into the prompt (the Qwen toolkit's
  // qwen25-math-cot template); empty: the text is the prompt.
  std::function<std::string(const std::string&)> plain_wrap;
  std::string breakdown_field;  // gsm_plus: report per value of this field too
  bool word_problem = false;    // the `distractor` perturbation applies
  std::vector<std::string> data_files;
  std::vector<Doc> docs, fewshot_docs;
  std::vector<std::string> doc_keys;  // field order of data_files[0]'s records (lm-eval's doc_hash)
};

// Where task data comes from: the shipped data/ root, or a --data-dir override that is used for
// any file it contains.
struct DataSource {
  DataRoot shipped;
  std::optional<DataRoot> user;
  explicit DataSource(std::filesystem::path shipped_root, std::optional<std::filesystem::path> user_root = {});
  const DataRoot& root_for(const std::string& rel) const;
  std::vector<Doc> load_jsonl(const std::string& rel) const { return root_for(rel).load_jsonl(rel); }
  Doc load_json(const std::string& rel) const { return root_for(rel).load_json(rel); }
  std::string read(const std::string& rel) const { return root_for(rel).read_verified(rel); }
};

using TaskFactory = std::function<Task(const DataSource&)>;
// Registers a task (or replaces one with the same name). `group` lists it under a group name.
void register_task(const std::string& name, TaskFactory factory, const std::string& group = "");
// A GSM8K-format task (fields question/answer, answer ends "#### N"): prompt, stops, filters and
// metric exactly as lm-eval's gsm8k; few-shot drawn with the default sampler from fewshot_path
// (which may equal test_path: then the evaluated doc is excluded).
void register_gsm8k_like_task(const std::string& name, const std::string& test_path, const std::string& fewshot_path,
                              int num_fewshot, const std::string& group = "");

std::vector<std::string> task_names();                 // every registered task, sorted
std::vector<std::string> group_names();                // bbh, bbh_zeroshot, ...
std::vector<std::string> group_members(const std::string& group);  // empty if not a group
bool is_task(const std::string& name);
// Expands groups into their tasks, keeps order, removes duplicates; rvec::Error on unknown names.
std::vector<std::string> expand_tasks(const std::vector<std::string>& names);
Task load_task(const std::string& name, const DataSource& data);
double group_version(const std::string& group);  // the pinned lm-eval group YAML's metadata.version

inline const std::string kThinkInstruction = "Think step by step.";

// The lm-evaluation-harness release whose prompt rules are reproduced. v0.4.9.2 is the reference
// (task versions, filters and prompts are pinned to it); v0.4.11 changed one prompt rule: in plain
// text, the target delimiter before a gen_prefix is inserted only when neither side of the join is
// whitespace (humaneval_instruct's "...```\n" + "Here is ..." then gets no space).
enum class LmEvalVersion { V0_4_9_2, V0_4_11 };
inline const std::string kLmEvalReference = "v0.4.9.2";
// "0.4.9.2" / "v0.4.9.2" / "0.4.11" / "v0.4.11" (later releases keep the v0.4.11 rule: "0.4.12" too).
LmEvalVersion parse_lm_eval_version(const std::string& s);
std::string lm_eval_version_name(LmEvalVersion v);  // "v0.4.9.2" | "v0.4.11"

struct PromptOptions {
  bool chat = false;
  bool think = false;                  // append "\n" + kThinkInstruction to the evaluated doc's text
  std::optional<int> num_fewshot;      // overrides the task's default
  std::function<Doc(const Doc&)> fewshot_transform;  // perturbation of the few-shot exemplars
  LmEvalVersion lm_eval = LmEvalVersion::V0_4_9_2;
  // Chat: false puts the few-shot examples and the question into one user turn, as plain text
  // (lm-eval's default when --apply_chat_template is given without --fewshot_as_multiturn).
  bool fewshot_as_multiturn = true;
  // lm-eval --system_instruction: before the description (joined by the fewshot delimiter), as
  // the system turn with a chat template, at the start of the context without.
  std::optional<std::string> system_instruction;
  // Chat: extra chat-template variables (--chat-template-kwargs, e.g. {"enable_thinking": false}).
  nlohmann::ordered_json chat_template_kwargs = nlohmann::ordered_json::object();
};

int effective_fewshot(const Task& t, const PromptOptions& o);
// Draws this doc's few-shot exemplars (advancing rng exactly as lm-eval's sampler does).
std::vector<Doc> draw_fewshot(const Task& t, const Doc& doc, int n, PyRandom& rng);
// The context given to the model for `doc` (chat template applied via `model` when o.chat).
std::string build_prompt(const Task& t, const Doc& doc, const std::vector<Doc>& fewshot, const PromptOptions& o,
                         const LanguageModel* model);
// Messages of the chat rendering (for tests and the samples file).
std::vector<std::pair<std::string, std::string>> build_chat_messages(const Task& t, const Doc& doc,
                                                                     const std::vector<Doc>& fewshot,
                                                                     const PromptOptions& o);

}  // namespace rvec::eval
