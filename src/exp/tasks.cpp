#include "exp/tasks.h"

#include <memory>

#include "eval/pyregex.h"
#include "eval/scoring.h"
#include "eval/tasks.h"

namespace rvec::experiment {

void register_toy_arith() {
  eval::register_task("toy_arith", [](const eval::DataSource& d) {
    eval::Task t;
    const std::string name = "toy_arith";
    t.name = name;
    t.alias = name;
    t.version = 1.0;
    t.type = eval::OutputType::Generate;
    t.doc_to_text = [](const eval::Doc& x) { return x.at("question").get<std::string>(); };
    t.doc_to_target = [](const eval::Doc& x) { return x.at("answer").get<std::string>(); };
    t.until = {"<|im_end|>", "<|endoftext|>"};
    t.max_gen_toks = 96;
    t.num_fewshot = 0;
    auto re = std::make_shared<eval::PyRegex>("#### (\\-?[0-9\\.\\,]+)");
    t.filters = {{"strict-match", [re](const std::string& resp, const eval::Doc&) {
                    return eval::regex_filter(resp, *re, 0);
                  }}};
    t.metric = "exact_match";
    t.em.regexes_to_ignore = {",", "\\$", "(?s).*#### ", "\\.$"};
    t.em.ignore_case = true;
    t.word_problem = true;
    t.docs = d.load_jsonl("toy/toy_arith_test.jsonl");
    t.data_files = {"toy/toy_arith_test.jsonl"};
    if (d.root_for("toy/toy_arith_train.jsonl").exists("toy/toy_arith_train.jsonl")) {
      t.fewshot_docs = d.load_jsonl("toy/toy_arith_train.jsonl");
      t.data_files.push_back("toy/toy_arith_train.jsonl");
    }
    return t;
  });
  // The same problems through the math pipeline: a \boxed{} instruction, the Qwen toolkit's
  // extraction (a box, else its fallbacks: the toy models' "#### N" gives the last number) and
  // math_equal, so --samples K reports avg@K / pass@K / maj@K.
  eval::register_task("toy_arith_boxed", [](const eval::DataSource& d) {
    eval::Task t = eval::load_task("toy_arith", d);
    t.name = t.alias = "toy_arith_boxed";
    t.doc_to_text = [](const eval::Doc& x) {
      return x.at("question").get<std::string>() + "\nPut your final answer within \\boxed{}.";
    };
    t.filters.clear();
    t.metric = "math";
    t.math_metrics = {{"acc", eval::math::Scheme::Qwen, "gsm8k", [](const eval::Doc& x) {
                         std::string a = x.at("answer").get<std::string>();
                         auto p = a.rfind("####");
                         return eval::py_strip(p == std::string::npos ? a : a.substr(p + 4));
                       }}};
    return t;
  });
}

}  // namespace rvec::experiment
