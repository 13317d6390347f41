#include "eval/tasks.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <set>

#include "core/error.h"
#include "eval/math_tasks.h"
#include "eval/lm_eval_io.h"
#include "eval/word2number.h"

namespace rvec::eval {

// ---------------------------------------------------------------- data source
DataSource::DataSource(std::filesystem::path shipped_root, std::optional<std::filesystem::path> user_root)
    : shipped(std::move(shipped_root)) {
  if (user_root) {
    if (!std::filesystem::is_directory(*user_root)) fail("{}: --data-dir is not a directory", user_root->string());
    user.emplace(*user_root);
  }
}

const DataRoot& DataSource::root_for(const std::string& rel) const {
  if (user && user->exists(rel)) return *user;
  return shipped;
}

// ---------------------------------------------------------------- registry
namespace {
struct Registry {
  std::map<std::string, TaskFactory> tasks;
  std::map<std::string, std::vector<std::string>> groups;
};
Registry& registry();

std::string str_field(const Doc& d, const char* key) {
  auto it = d.find(key);
  if (it == d.end() || !it->is_string()) fail("document has no string field '{}': {}", key, d.dump().substr(0, 200));
  return it->get<std::string>();
}

ExactMatchOptions gsm8k_em() {
  ExactMatchOptions o;
  o.ignore_case = true;
  o.ignore_punctuation = false;
  o.regexes_to_ignore = {",", "\\$", "(?s).*#### ", "\\.$"};
  return o;
}

Filter regex_filter_step(const std::string& name, const std::string& pattern, int group_select) {
  auto re = std::make_shared<PyRegex>(pattern);
  return {name, [re, group_select](const std::string& r, const Doc&) { return regex_filter(r, *re, group_select); }};
}

std::vector<Filter> gsm8k_filters(const std::string& strict_pattern) {
  return {regex_filter_step("strict-match", strict_pattern, 0),
          regex_filter_step("flexible-extract", "(-?[$0-9.,]{2,})|(-?[0-9]+)", -1)};
}

Task gsm8k_base(const std::string& name) {
  Task t;
  t.name = t.alias = name;
  t.version = 3.0;
  t.doc_to_text = [](const Doc& d) { return "Question: " + str_field(d, "question") + "\nAnswer:"; };
  t.doc_to_target = [](const Doc& d) { return str_field(d, "answer"); };
  t.until = {"Question:", "</s>", "<|im_end|>"};
  t.num_fewshot = 5;
  t.filters = gsm8k_filters("#### (\\-?[0-9\\.\\,]+)");
  t.em = gsm8k_em();
  t.word_problem = true;
  return t;
}

// "A: Let's think step by step." exemplars of a BBH cot-prompts file: description + 3 (input, target).
struct BbhPrompt {
  std::string description;
  std::vector<Doc> exemplars;
};
BbhPrompt parse_bbh_cot_prompt(const std::string& text, const std::string& path) {
  BbhPrompt p;
  auto sep = text.find("\n-----\n");
  if (sep == std::string::npos) fail("{}: no '-----' line after the canary", path);
  size_t pos = sep + 7;
  // The description is every line up to the first exemplar: snarks' runs over two paragraphs
  // ("Determine which ...\n\nAccording to Cambridge University Dictionary, ..."), as in lm-eval's YAML.
  size_t q = text.compare(pos, 3, "Q: ") == 0 ? pos - 1 : text.find("\nQ: ", pos);
  if (q == std::string::npos) fail("{}: no 'Q: ' exemplar after the task description", path);
  p.description = text.substr(pos, q - pos);
  while (!p.description.empty() && p.description.back() == '\n') p.description.pop_back();
  if (p.description.empty()) fail("{}: empty task description", path);
  const std::string marker = "\nA: Let's think step by step.";
  while (q != std::string::npos) {
    size_t in_start = text.find("Q: ", q) + 3;
    size_t a = text.find(marker, in_start);
    if (a == std::string::npos) fail("{}: exemplar without '{}'", path, marker.substr(1));
    size_t tgt = a + marker.size();
    if (tgt < text.size() && (text[tgt] == '\n' || text[tgt] == ' ')) tgt++;
    size_t next = text.find("\n\nQ: ", tgt);
    size_t end = next == std::string::npos ? text.size() : next;
    std::string target = text.substr(tgt, end - tgt);
    while (!target.empty() && target.back() == '\n') target.pop_back();
    p.exemplars.push_back(Doc{{"input", text.substr(in_start, a - in_start)}, {"target", target}});
    q = next;
  }
  if (p.exemplars.size() != 3) fail("{}: expected 3 exemplars, found {}", path, p.exemplars.size());
  return p;
}

const std::vector<std::string>& bbh_subtasks() {
  static const std::vector<std::string> s = {
      "boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa", "dyck_languages",
      "formal_fallacies", "geometric_shapes", "hyperbaton", "logical_deduction_five_objects",
      "logical_deduction_seven_objects", "logical_deduction_three_objects", "movie_recommendation",
      "multistep_arithmetic_two", "navigate", "object_counting", "penguins_in_a_table",
      "reasoning_about_colored_objects", "ruin_names", "salient_translation_error_detection", "snarks",
      "sports_understanding", "temporal_sequences", "tracking_shuffled_objects_five_objects",
      "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects", "web_of_lies",
      "word_sorting"};
  return s;
}

std::vector<Doc> load_bbh_examples(const DataSource& data, const std::string& sub) {
  std::string rel = "bbh/tasks/" + sub + ".json";
  Doc j = data.load_json(rel);
  if (!j.contains("examples") || !j["examples"].is_array()) fail("{}: no 'examples' array", rel);
  return j["examples"].get<std::vector<Doc>>();
}

Task bbh_cot_fewshot(const DataSource& data, const std::string& sub) {
  Task t;
  t.name = t.alias = "bbh_cot_fewshot_" + sub;
  t.group = "bbh";
  t.version = 4.0;  // lm-eval v0.4.9.2 bbh/cot_fewshot/_cot_fewshot_template_yaml metadata.version
  std::string prel = "bbh/cot-prompts/" + sub + ".txt";
  BbhPrompt p = parse_bbh_cot_prompt(data.read(prel), prel);
  t.description = p.description + "\n\n";
  t.doc_to_text = [](const Doc& d) { return "Q: " + str_field(d, "input") + "\nA: Let's think step by step.\n"; };
  t.doc_to_target = [](const Doc& d) { return str_field(d, "target"); };
  t.target_delimiter = "";
  t.until = {"</s>", "Q", "\n\n"};
  t.max_gen_toks = 1024;
  t.sampler = SamplerKind::FirstN;
  t.num_fewshot = 3;
  t.fewshot_split = "cot-prompts";
  t.filters = {regex_filter_step("get-answer", "(?<=the answer is )(.*)(?=.)", 0)};
  t.docs = load_bbh_examples(data, sub);
  t.fewshot_docs = p.exemplars;
  t.data_files = {"bbh/tasks/" + sub + ".json", prel};
  return t;
}

// lm-eval bbh/zeroshot/utils.py ExtendedRegexFilter.filter_ignores (no regexes_to_ignore in any
// BBH YAML): str.lower, then Unicode P* punctuation removed.
struct BbhIgnores {
  bool ignore_case = false, ignore_punctuation = false;
  std::string operator()(std::string s) const {
    if (ignore_case) s = py_lower(s);
    if (ignore_punctuation) s = remove_unicode_punctuation(s);
    return s;
  }
};

// ExtendedRegexFilter.find_match with group_select 0: the first match (its first non-empty group),
// stripped, then looked up in `conv`; "" when nothing matched.
std::string bbh_find_match(const PyRegex& re, const std::string& s, const std::map<std::string, std::string>& conv = {}) {
  auto m = re.findall(s);
  if (m.empty()) return {};
  std::string x;
  for (auto& g : m[0])
    if (!g.empty()) {
      x = g;
      break;
    }
  x = py_strip(x);
  if (!x.empty()) {
    auto it = conv.find(x);
    if (it != conv.end()) x = it->second;
  }
  return x;
}

// MultiChoiceRegexFilter: "(X)" in the response, else the text of an option (both after
// filter_ignores) mapped to its letter, else ": X".
std::string bbh_mc_extract(const std::string& resp, const Doc& doc, const BbhIgnores& ign) {
  static const PyRegex primary("(\\([A-Z]\\))");
  std::string match = bbh_find_match(primary, resp);
  if (!match.empty()) return match;
  static const PyRegex options("\\([A-Z]\\)([^\\n^(]*)");
  std::vector<std::string> alts, letters;
  std::map<std::string, std::string> choice_to_alpha, letter_to_target;
  char next = 'A';
  for (auto& m : options.findall(str_field(doc, "input"))) {
    std::string c = ign(py_strip(m[0]));
    alts.push_back(PyRegex::escape(c));
    choice_to_alpha[c] = std::string("(") + next + ")";
    letters.push_back(std::string(1, next));
    letter_to_target[std::string(1, next)] = std::string("(") + next + ")";
    next++;
  }
  if (!alts.empty()) {
    std::string alt;
    for (size_t i = 0; i < alts.size(); i++) alt += (i ? "|" : "") + alts[i];
    match = bbh_find_match(PyRegex(alt), ign(resp), choice_to_alpha);
    if (!match.empty()) return match;
    std::string lp;
    for (size_t i = 0; i < letters.size(); i++) lp += (i ? "|" : "") + letters[i];
    match = bbh_find_match(PyRegex(":[\\s]*(" + lp + ")"), resp, letter_to_target);
    if (!match.empty()) return match;
  }
  return kInvalid;
}

// MapRegexFilter: the first match of all patterns joined by "|" (on the ignore-normalised
// response), then the value of the first pattern (in YAML order) that matches that text.
Filter bbh_map_regex_filter(const std::string& name, std::vector<std::pair<std::string, std::string>> to_value) {
  struct State {
    PyRegex whole;
    std::vector<std::pair<PyRegex, std::string>> each;
  };
  std::string joined;
  for (size_t i = 0; i < to_value.size(); i++) joined += (i ? "|" : "") + to_value[i].first;
  auto st = std::make_shared<State>(State{PyRegex(joined), {}});
  for (auto& [pat, v] : to_value) st->each.emplace_back(PyRegex(pat), v);
  BbhIgnores ign{true, false};
  return {name, [st, ign](const std::string& r, const Doc&) {
            std::string whole = bbh_find_match(st->whole, ign(r));
            if (whole.empty()) return kInvalid;
            for (auto& [re, v] : st->each)
              if (!bbh_find_match(re, ign(whole)).empty()) return v;
            return kInvalid;
          }};
}

Task bbh_zeroshot(const DataSource& data, const std::string& sub) {
  Task t;
  t.name = t.alias = "bbh_zeroshot_" + sub;
  t.group = "bbh_zeroshot";
  t.version = 3.0;
  std::string prel = "bbh/cot-prompts/" + sub + ".txt";
  t.description = parse_bbh_cot_prompt(data.read(prel), prel).description + "\n\n";
  t.doc_to_text = [](const Doc& d) { return "Q: " + str_field(d, "input") + "\nA:"; };
  t.doc_to_target = [](const Doc& d) { return str_field(d, "target"); };
  t.until = {"</s>", "Q:", "<|im_end|>"};
  t.num_fewshot = 0;
  t.sampler = SamplerKind::FirstN;
  t.em.ignore_case = true;
  t.em.regexes_to_ignore = {"\\.$", ",", "\n", "\\\\", "\""};
  t.docs = load_bbh_examples(data, sub);
  t.data_files = {"bbh/tasks/" + sub + ".json", prel};
  Filter strict{"strict-match", [](const std::string& r, const Doc&) { return r; }};
  Filter flex{"flexible-extract", nullptr};
  // Per bbh/zeroshot/<sub>.yaml of lm-eval v0.4.9.2 (all with group_select 0, then take_first).
  static const std::set<std::string> yes_no = {"causal_judgement", "navigate"};
  static const std::set<std::string> numbers = {"multistep_arithmetic_two", "object_counting"};
  if (sub == "boolean_expressions") {
    flex = regex_filter_step("flexible-extract", "\\b(True|False)\\b", 0);
  } else if (yes_no.count(sub)) {
    flex = regex_filter_step("flexible-extract", "\\b(Yes|No|yes|no)\\b", 0);
  } else if (sub == "web_of_lies") {
    flex = bbh_map_regex_filter("flexible-extract", {{"\\b(no|does not tell the truth|is not telling the truth)\\b", "no"},
                                                     {"\\b(yes|tells the truth|is telling the truth)\\b", "yes"}});
  } else if (sub == "sports_understanding") {
    flex = bbh_map_regex_filter("flexible-extract", {{"\\b(no|not plausible)\\b", "no"}, {"\\b(yes|plausible)\\b", "yes"}});
  } else if (sub == "formal_fallacies") {
    flex = regex_filter_step("flexible-extract", "\\b(valid|invalid)\\b", 0);
  } else if (numbers.count(sub)) {
    flex.apply = [](const std::string& r, const Doc&) { return bbh_number_extract(r); };
  } else if (sub == "word_sorting") {
    // WordSortFilter: the input's words in the order of their LAST occurrence in the response.
    flex.apply = [](const std::string& r, const Doc& d) {
      std::string in = str_field(d, "input");
      auto p = in.find("List:");
      std::vector<std::string> words;
      if (p != std::string::npos) {
        std::string rest = in.substr(p + 5);
        size_t i = 0;
        while (i < rest.size()) {
          while (i < rest.size() && isspace(static_cast<unsigned char>(rest[i]))) i++;
          size_t j = i;
          while (j < rest.size() && !isspace(static_cast<unsigned char>(rest[j]))) j++;
          if (j > i) words.push_back(rest.substr(i, j - i));
          i = j;
        }
      }
      if (words.empty()) return std::string();
      std::string alt;
      for (size_t i = 0; i < words.size(); i++) alt += (i ? "|" : "") + std::string("\\b") + words[i] + "\\b";
      auto m = PyRegex(alt).findall(r);
      std::vector<std::string> order;  // reversed, deduplicated, reversed back
      std::set<std::string> seen;
      for (size_t i = m.size(); i-- > 0;)
        if (seen.insert(m[i][0]).second) order.push_back(m[i][0]);
      std::reverse(order.begin(), order.end());
      std::string out;
      for (size_t i = 0; i < order.size(); i++) out += (i ? " " : "") + order[i];
      return out;
    };
  } else if (sub == "dyck_languages") {
    flex = regex_filter_step("flexible-extract", "(?<= )([\" \\[\\(<{}>\\)\\]]+)|([\" \\[\\(<{}>\\)\\]]+)", 0);
  } else {
    BbhIgnores ign{true, true};
    flex.apply = [ign](const std::string& r, const Doc& d) { return bbh_mc_extract(r, d, ign); };
  }
  t.filters = {strict, flex};
  return t;
}

Task humaneval_task(const DataSource& data, bool instruct) {
  Task t;
  t.name = t.alias = instruct ? "humaneval_instruct" : "humaneval";
  t.version = instruct ? 4.0 : 1.0;  // humaneval{,_instruct}.yaml metadata.version (v0.4.9.2)
  t.test_split = "test";
  t.docs = data.load_jsonl("humaneval/HumanEval.jsonl");
  t.data_files = {"humaneval/HumanEval.jsonl"};
  t.doc_to_target = [](const Doc& d) {
    return str_field(d, "test") + "\ncheck(" + str_field(d, "entry_point") + ")";
  };
  t.until = {"\nclass", "\ndef", "\n#", "\nif", "\nprint"};
  t.max_gen_toks = 1024;
  t.metric = "pass@k";
  if (!instruct) {
    t.doc_to_text = [](const Doc& d) { return str_field(d, "prompt"); };
    t.filters = {{"create_test", [](const std::string& r, const Doc& d) { return str_field(d, "prompt") + r; }}};
  } else {
    t.doc_to_text = [](const Doc& d) {
      return "Write a solution to the following problem and make sure that it passes the tests:\n```python\n" +
             str_field(d, "prompt") + "\n```\n";
    };
    t.gen_prefix = [](const Doc& d) { return "Here is the completed function:\n```python\n" + str_field(d, "prompt") + "\n"; };
    t.filters = {{"create_test", [](const std::string& r, const Doc& d) {
                    auto p = r.find("```");
                    return str_field(d, "prompt") + (p == std::string::npos ? r : r.substr(0, p));
                  }}};
  }
  return t;
}

Task sciq_task(const DataSource& data) {
  Task t;
  t.name = t.alias = "sciq";
  t.version = 1.0;
  t.type = OutputType::MultipleChoice;
  t.docs = data.load_json("sciq/test.json").get<std::vector<Doc>>();
  t.fewshot_docs = data.load_json("sciq/valid.json").get<std::vector<Doc>>();
  t.fewshot_split = "validation";
  t.data_files = {"sciq/test.json", "sciq/valid.json"};
  t.doc_to_text = [](const Doc& d) {
    return py_lstrip(str_field(d, "support")) + "\nQuestion: " + str_field(d, "question") + "\nAnswer:";
  };
  t.doc_to_choice = [](const Doc& d) {
    if (d.contains("_choices")) return d["_choices"].get<std::vector<std::string>>();
    return std::vector<std::string>{str_field(d, "distractor1"), str_field(d, "distractor2"),
                                    str_field(d, "distractor3"), str_field(d, "correct_answer")};
  };
  t.doc_to_gold = [](const Doc& d) { return d.contains("_gold") ? d["_gold"].get<int>() : 3; };
  t.lm_eval_target = [gold = t.doc_to_gold](const Doc& d) { return std::to_string(gold(d)); };  // doc_to_target: 3
  t.doc_to_target = [choice = t.doc_to_choice, gold = t.doc_to_gold](const Doc& d) {
    return choice(d)[size_t(gold(d))];
  };
  t.metric = "acc";
  t.num_fewshot = 0;
  return t;
}

Registry& registry() {
  static Registry* r = [] {
    auto* reg = new Registry;
    auto add = [reg](const std::string& name, TaskFactory f, const std::string& group = "") {
      reg->tasks[name] = std::move(f);
      if (!group.empty()) reg->groups[group].push_back(name);
    };
    add("gsm8k", [](const DataSource& d) {
      Task t = gsm8k_base("gsm8k");
      t.docs = d.load_jsonl("gsm8k/test.jsonl");
      t.fewshot_docs = d.load_jsonl("gsm8k/train.jsonl");
      t.data_files = {"gsm8k/test.jsonl", "gsm8k/train.jsonl"};
      return t;
    });
    add("gsm8k_cot", [](const DataSource& d) {
      Task t = gsm8k_base("gsm8k_cot");
      t.doc_to_text = [](const Doc& x) { return "Q: " + str_field(x, "question") + "\nA:"; };
      t.doc_to_target = [](const Doc& x) {
        if (x.contains("answer")) {
          std::string a = str_field(x, "answer");
          auto p = a.rfind("####");
          return py_strip(p == std::string::npos ? a : a.substr(p + 4));
        }
        return str_field(x, "target");
      };
      t.until = {"Q:", "</s>", "<|im_end|>"};
      t.num_fewshot = 8;
      t.sampler = SamplerKind::FirstN;
      t.fewshot_split = "cot-exemplars";
      t.filters = gsm8k_filters("The answer is (\\-?[0-9\\.\\,]+).");
      t.docs = d.load_jsonl("gsm8k/test.jsonl");
      t.fewshot_docs = d.load_json("gsm8k/gsm8k_cot_exemplars.json").get<std::vector<Doc>>();
      t.data_files = {"gsm8k/test.jsonl", "gsm8k/gsm8k_cot_exemplars.json"};
      return t;
    });
    add("gsm8k_cot_zeroshot", [](const DataSource& d) {
      Task t = gsm8k_base("gsm8k_cot_zeroshot");
      t.doc_to_text = [](const Doc& x) { return "Q: " + str_field(x, "question") + "\nA: Let's think step by step."; };
      t.until = {"Q:", "</s>", "<|im_end|>"};
      t.num_fewshot = 0;
      t.filters = gsm8k_filters("The answer is (\\-?[0-9\\.\\,]+).");
      t.docs = d.load_jsonl("gsm8k/test.jsonl");
      t.fewshot_docs = d.load_jsonl("gsm8k/train.jsonl");
      t.data_files = {"gsm8k/test.jsonl"};
      return t;
    });
    add("gsm_plus", [](const DataSource& d) {
      Task t = gsm8k_base("gsm_plus");
      t.version = 1.0;
      t.doc_to_target = [](const Doc& x) { return str_field(x, "solution"); };
      const std::string rel = "adversarial/gsmplus_testmini_sample.jsonl";
      t.docs = d.load_jsonl(rel);
      t.fewshot_docs = t.docs;
      t.fewshot_split = "test";
      t.fewshot_split_is_test = true;
      t.breakdown_field = "perturbation_type";
      t.data_files = {rel};
      return t;
    });
    add("sciq", sciq_task);
    add("humaneval", [](const DataSource& d) { return humaneval_task(d, false); });
    add("humaneval_instruct", [](const DataSource& d) { return humaneval_task(d, true); });
    add_math_tasks([&add](const std::string& name, TaskFactory f) { add(name, std::move(f)); });
    for (auto& sub : bbh_subtasks()) {
      add("bbh_cot_fewshot_" + sub, [sub](const DataSource& d) { return bbh_cot_fewshot(d, sub); }, "bbh");
      add("bbh_zeroshot_" + sub, [sub](const DataSource& d) { return bbh_zeroshot(d, sub); }, "bbh_zeroshot");
    }
    return reg;
  }();
  return *r;
}

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
}  // namespace

void register_task(const std::string& name, TaskFactory factory, const std::string& group) {
  std::lock_guard<std::mutex> lk(registry_mutex());
  auto& r = registry();
  r.tasks[name] = std::move(factory);
  if (!group.empty()) {
    auto& g = r.groups[group];
    if (std::find(g.begin(), g.end(), name) == g.end()) g.push_back(name);
  }
}

void register_gsm8k_like_task(const std::string& name, const std::string& test_path, const std::string& fewshot_path,
                              int num_fewshot, const std::string& group) {
  register_task(
      name,
      [name, test_path, fewshot_path, num_fewshot](const DataSource& d) {
        Task t = gsm8k_base(name);
        t.version = 1.0;
        t.num_fewshot = num_fewshot;
        t.docs = d.load_jsonl(test_path);
        t.fewshot_split_is_test = fewshot_path == test_path;
        t.fewshot_docs = t.fewshot_split_is_test ? t.docs : d.load_jsonl(fewshot_path);
        t.fewshot_split = t.fewshot_split_is_test ? "test" : "train";
        t.data_files = {test_path};
        if (!t.fewshot_split_is_test) t.data_files.push_back(fewshot_path);
        return t;
      },
      group);
}

std::vector<std::string> task_names() {
  std::lock_guard<std::mutex> lk(registry_mutex());
  std::vector<std::string> out;
  for (auto& [n, f] : registry().tasks) out.push_back(n);
  return out;
}

std::vector<std::string> group_names() {
  std::lock_guard<std::mutex> lk(registry_mutex());
  std::vector<std::string> out;
  for (auto& [n, m] : registry().groups) out.push_back(n);
  return out;
}

std::vector<std::string> group_members(const std::string& group) {
  std::lock_guard<std::mutex> lk(registry_mutex());
  auto& g = registry().groups;
  auto it = g.find(group);
  return it == g.end() ? std::vector<std::string>{} : it->second;
}

bool is_task(const std::string& name) {
  std::lock_guard<std::mutex> lk(registry_mutex());
  return registry().tasks.count(name) > 0;
}

std::vector<std::string> expand_tasks(const std::vector<std::string>& names) {
  std::vector<std::string> out;
  auto push = [&](const std::string& n) {
    if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
  };
  for (auto& n : names) {
    auto members = group_members(n);
    if (!members.empty()) {
      for (auto& m : members) push(m);
    } else if (is_task(n)) {
      push(n);
    } else {
      fail("unknown task '{}' (rvec eval --list-tasks lists them)", n);
    }
  }
  return out;
}

Task load_task(const std::string& name, const DataSource& data) {
  TaskFactory f;
  {
    std::lock_guard<std::mutex> lk(registry_mutex());
    auto it = registry().tasks.find(name);
    if (it == registry().tasks.end()) fail("unknown task '{}' (rvec eval --list-tasks lists them)", name);
    f = it->second;
  }
  Task t = f(data);
  if (t.doc_keys.empty() && !t.data_files.empty())
    t.doc_keys = first_record_key_order(data.read(t.data_files[0]), t.data_files[0]);
  return t;
}

double group_version(const std::string& group) {
  // lm-eval v0.4.9.2 _bbh_cot_fewshot.yaml / _bbh_zeroshot.yaml metadata.version.
  if (group == "bbh" || group == "bbh_zeroshot") return 3.0;
  return 1.0;
}

// ---------------------------------------------------------------- prompts
LmEvalVersion parse_lm_eval_version(const std::string& s) {
  std::string v = !s.empty() && s[0] == 'v' ? s.substr(1) : s;
  if (v == "0.4.9.2") return LmEvalVersion::V0_4_9_2;
  if (v == "0.4.11" || v == "0.4.12") return LmEvalVersion::V0_4_11;
  fail("--lm-eval-version '{}': rvec reproduces lm-eval 0.4.9.2 (the reference) or 0.4.11 (also 0.4.12)", s);
}

std::string lm_eval_version_name(LmEvalVersion v) { return v == LmEvalVersion::V0_4_9_2 ? "v0.4.9.2" : "v0.4.11"; }

int effective_fewshot(const Task& t, const PromptOptions& o) {
  int n = o.num_fewshot ? *o.num_fewshot : t.num_fewshot;
  if (n < 0) fail("{}: negative number of few-shot examples", t.name);
  if (n > 0 && t.fewshot_docs.empty()) fail("{}: has no few-shot examples (use --num-fewshot 0)", t.name);
  if (t.sampler == SamplerKind::FirstN && size_t(n) > t.fewshot_docs.size())
    fail("{}: {} few-shot examples requested, only {} available", t.name, n, t.fewshot_docs.size());
  return n;
}

std::vector<Doc> draw_fewshot(const Task& t, const Doc& doc, int n, PyRandom& rng) {
  if (n <= 0) return {};
  size_t k = size_t(n) + (t.fewshot_split_is_test ? 1 : 0);
  std::vector<Doc> drawn;
  if (t.sampler == SamplerKind::FirstN) {
    drawn.assign(t.fewshot_docs.begin(), t.fewshot_docs.begin() + std::min(k, t.fewshot_docs.size()));
  } else {
    if (k > t.fewshot_docs.size()) fail("{}: {} few-shot examples requested from {}", t.name, k, t.fewshot_docs.size());
    for (size_t i : rng.sample_indices(t.fewshot_docs.size(), k)) drawn.push_back(t.fewshot_docs[i]);
  }
  std::vector<Doc> out;
  for (auto& d : drawn)
    if (d != doc && out.size() < size_t(n)) out.push_back(d);
  return out;
}

namespace {
std::string doc_text(const Task& t, const Doc& doc, const PromptOptions& o) {
  std::string s = t.doc_to_text(doc);
  if (o.think) s += "\n" + kThinkInstruction;
  return s;
}

// lm-eval fewshot_context: system_instruction + fewshot_delimiter + description, or either alone.
std::string system_prompt(const Task& t, const PromptOptions& o) {
  if (o.system_instruction && !t.description.empty()) return *o.system_instruction + t.fewshot_delimiter + t.description;
  if (o.system_instruction) return *o.system_instruction;
  return t.description;
}

// ContextSampler.get_context: each example's text, delimiter, gen_prefix, target, fewshot delimiter.
std::string fewshot_text(const Task& t, const std::vector<Doc>& fewshot, const PromptOptions& o) {
  std::string ctx;
  for (auto& ex : fewshot) {
    Doc e = o.fewshot_transform ? o.fewshot_transform(ex) : ex;
    ctx += t.doc_to_text(e);
    std::string target = t.doc_to_target(e);
    if (!target.empty()) {
      ctx += t.target_delimiter;
      if (t.gen_prefix) ctx += t.gen_prefix(e) + " ";
      ctx += target;
      ctx += t.fewshot_delimiter;
    }
  }
  return ctx;
}
}  // namespace

std::vector<std::pair<std::string, std::string>> build_chat_messages(const Task& t, const Doc& doc,
                                                                     const std::vector<Doc>& fewshot,
                                                                     const PromptOptions& o) {
  std::vector<std::pair<std::string, std::string>> msgs;
  // A task with its own chat system prompt (the math tasks) uses it instead of the description.
  std::string system = !t.chat_system.empty() ? t.chat_system : system_prompt(t, o);
  if (!system.empty()) msgs.emplace_back("system", system);
  if (!o.fewshot_as_multiturn) {
    // lm-eval's get_chat_context(fewshot_as_multiturn=False): the plain few-shot text, then the
    // question appended to that same user turn.
    std::string user = fewshot_text(t, fewshot, o) + doc_text(t, doc, o);
    msgs.emplace_back("user", user);
    return msgs;
  }
  for (auto& ex : fewshot) {
    Doc e = o.fewshot_transform ? o.fewshot_transform(ex) : ex;
    std::string prefix = t.gen_prefix ? t.gen_prefix(e) + " " : "";
    msgs.emplace_back("user", t.doc_to_text(e));
    msgs.emplace_back("assistant", prefix + t.doc_to_target(e));
  }
  msgs.emplace_back("user", doc_text(t, doc, o));
  return msgs;
}

std::string build_prompt(const Task& t, const Doc& doc, const std::vector<Doc>& fewshot, const PromptOptions& o,
                         const LanguageModel* model) {
  std::string gp = t.gen_prefix ? t.gen_prefix(doc) : "";
  if (o.chat) {
    if (!model) fail("{}: --chat needs a model with a chat template", t.name);
    auto msgs = build_chat_messages(t, doc, fewshot, o);
    auto rendered = model->apply_chat_template(msgs, true, o.chat_template_kwargs);
    if (!rendered) fail("{}: --chat given but model '{}' has no chat template", t.name, model->name());
    return *rendered + gp;
  }
  std::string ctx = system_prompt(t, o) + fewshot_text(t, fewshot, o);
  std::string text = t.plain_wrap ? t.plain_wrap(doc_text(t, doc, o)) : doc_text(t, doc, o);
  ctx += text;
  if (t.gen_prefix) {
    // v0.4.9.2: always target_delimiter + gen_prefix; v0.4.11 (api/utils.py requires_delimiter):
    // the delimiter only when the text is non-empty and neither side of the join is whitespace.
    auto space = [](char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= '\x1c' && c <= '\x1f'); };
    bool delim = o.lm_eval == LmEvalVersion::V0_4_9_2 ||
                 (!text.empty() && !gp.empty() && !space(text.back()) && !space(gp.front()));
    ctx += (delim ? t.target_delimiter : std::string()) + gp;
  }
  return ctx;
}

}  // namespace rvec::eval
