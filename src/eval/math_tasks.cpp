#include "eval/math_tasks.h"

#include "core/error.h"
#include "eval/math/boxed.h"
#include "eval/math/minerva.h"
#include "eval/math/qwen_extract.h"

namespace rvec::eval {

namespace {
std::string field(const Doc& d, const char* key) {
  auto it = d.find(key);
  if (it == d.end() || !it->is_string()) fail("document has no string field '{}': {}", key, d.dump().substr(0, 200));
  return it->get<std::string>();
}

// lm-eval: remove_boxed(last_boxed_only_string(solution)).
std::string boxed_gold(const Doc& d) {
  std::string sol = field(d, "solution");
  auto b = math::last_boxed_only_string(sol);
  auto g = b ? math::remove_boxed(*b) : std::nullopt;
  if (!g) fail("solution has no \\boxed{{}} answer: {}", sol.substr(0, 200));
  return *g;
}

Task qwen_task(const DataSource& d, const std::string& name, const std::string& data_name, int max_gen_toks) {
  Task t;
  t.name = t.alias = name;
  t.version = 1.0;
  std::string rel = "math/" + name + ".jsonl";
  t.docs = d.load_jsonl(rel);
  t.data_files = {rel};
  t.doc_to_text = [data_name](const Doc& doc) { return math::qwen_question(doc, data_name); };
  t.doc_to_target = [](const Doc& doc) { return field(doc, "answer"); };
  t.chat_system = kQwenCotInstruction;
  t.plain_wrap = [](const std::string& q) {
    return "<|im_start|>system\n" + kQwenCotInstruction + "<|im_end|>\n<|im_start|>user\n" + q +
           "<|im_end|>\n<|im_start|>assistant\n";
  };
  t.until = {"</s>", "<|im_end|>", "<|endoftext|>"};
  t.max_gen_toks = max_gen_toks;
  t.num_fewshot = 0;
  t.metric = "math";
  t.math_metrics = {{"acc", math::Scheme::Qwen, data_name, [](const Doc& doc) { return field(doc, "answer"); }}};
  return t;
}

Task minerva_math500(const DataSource& d) {
  Task t;
  t.name = t.alias = "minerva_math500";
  t.version = 3.0;
  t.docs = d.load_jsonl("math/math500.jsonl");
  for (auto& doc : d.load_json("math/minerva_fewshot.json")) {
    Doc f = doc;
    f["few_shot"] = "1";
    t.fewshot_docs.push_back(f);
  }
  t.data_files = {"math/math500.jsonl", "math/minerva_fewshot.json"};
  t.fewshot_split = "fewshot_samples";
  t.doc_to_text = [](const Doc& doc) { return "Problem:\n" + field(doc, "problem") + "\n\nSolution:"; };
  t.doc_to_target = [](const Doc& doc) {
    return doc.contains("few_shot") ? field(doc, "solution") : math::minerva_normalize_final_answer(boxed_gold(doc));
  };
  t.until = {"Problem:"};
  t.max_gen_toks = 256;
  t.sampler = SamplerKind::FirstN;
  t.num_fewshot = 4;
  t.metric = "math";
  t.math_metrics = {{"exact_match", math::Scheme::Minerva, "", boxed_gold},
                    {"math_verify", math::Scheme::MathVerify, "", [](const Doc& doc) { return field(doc, "solution"); }}};
  return t;
}

Task hendrycks_math500(const DataSource& d) {
  Task t;
  t.name = t.alias = "hendrycks_math500";
  t.version = 1.0;
  t.docs = d.load_jsonl("math/math500.jsonl");
  t.data_files = {"math/math500.jsonl"};
  t.doc_to_text = [](const Doc& doc) { return "Problem: " + field(doc, "problem") + "\nAnswer:"; };
  t.doc_to_target = boxed_gold;
  t.until = {"Problem:"};
  t.max_gen_toks = 256;
  t.num_fewshot = 0;
  t.metric = "math";
  t.math_metrics = {{"exact_match", math::Scheme::Hendrycks, "", boxed_gold}};
  return t;
}
}  // namespace

void add_math_tasks(const std::function<void(const std::string&, TaskFactory)>& add) {
  // Generation budgets: RV's eval_reasoning_vllm.sh default (3072) for the greedy sets; 8192 (its
  // RESULTS_LOG max_tokens_per_call) for the sampled AIME/AMC sets.
  struct Q {
    const char* name;
    const char* data_name;
    int max_gen;
  };
  for (Q q : {Q{"math500", "math500", 3072}, Q{"minerva_math", "minerva_math", 3072},
              Q{"olympiadbench", "olympiadbench", 3072}, Q{"aime24", "aime24", 8192}, Q{"aime25", "aime25", 8192},
              Q{"amc23", "amc23", 8192}}) {
    std::string name = q.name, dn = q.data_name;
    int mg = q.max_gen;
    add(name, [name, dn, mg](const DataSource& d) { return qwen_task(d, name, dn, mg); });
  }
  add("minerva_math500", minerva_math500);
  add("hendrycks_math500", hendrycks_math500);
}

}  // namespace rvec::eval
