#include "eval/runner.h"

#include <fcntl.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <set>
#include <sstream>

#include "core/atomic_output.h"
#include "core/checked_int.h"
#include "core/error.h"
#include "core/progress.h"
#include "eval/math_scoring.h"
#include "eval/lm_eval_io.h"
#include "eval/passk.h"
#include "eval/perturb.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace rvec::eval {

std::string cut_at_stop(const std::string& text, const std::vector<std::string>& until) {
  size_t cut = text.size();
  for (auto& u : until) {
    if (u.empty()) continue;
    size_t p = text.find(u);
    if (p != std::string::npos) cut = std::min(cut, p);
  }
  return text.substr(0, cut);
}

std::string now_stamp() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H-%M-%S", &tm);
  return buf;
}

json Sample::to_json() const {
  json m = json::object();
  for (auto& [k, v] : metrics) m[k] = v;
  json j{{"task", task},     {"doc_id", doc_id}, {"doc", doc},           {"prompt", prompt},
         {"output", output}, {"target", target}, {"filtered", filtered}, {"metrics", m}};
  if (!result.is_null()) j["result"] = result;
  return j;
}

Task load_task_for(const std::string& name, const EvalOptions& opts) {
  auto [base, pert] = split_perturbed_name(name);
  fs::path shipped = opts.shipped_data_dir.empty() ? default_data_root() : fs::path(opts.shipped_data_dir);
  std::optional<fs::path> user;
  if (opts.data_dir) user = fs::path(*opts.data_dir);
  DataSource ds(shipped, user);
  Task t = load_task(base, ds);
  if (!pert.empty()) apply_perturbation(pert, t, opts.fewshot_seed);
  if (opts.until && t.type == OutputType::Generate) t.until = *opts.until;
  return t;
}

std::vector<int> pass_k_values(int n) {
  std::vector<int> ks;
  for (int k : {1, 10, 100})
    if (k <= n) ks.push_back(k);
  return ks;
}

namespace {
bool is_code_task(const Task& t) { return t.metric == "pass@k"; }
bool is_math_task(const Task& t) { return !t.math_metrics.empty(); }

size_t codepoints(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) n++;
  return n;
}

json task_config(const Task& t, const EvalOptions& o, int n_shot) {
  json filters = json::array();
  for (auto& f : t.filters) filters.push_back(f.name);
  json metrics = json::array();
  if (t.metric == "acc") {
    metrics.push_back({{"metric", "acc"}, {"aggregation", "mean"}, {"higher_is_better", true}});
    metrics.push_back({{"metric", "acc_norm"}, {"aggregation", "mean"}, {"higher_is_better", true}});
  } else if (is_math_task(t)) {
    for (auto& m : math_metric_names(t, o.samples))
      metrics.push_back({{"metric", m}, {"aggregation", "mean"}, {"higher_is_better", true}});
  } else if (is_code_task(t)) {
    for (int k : pass_k_values(o.samples))
      metrics.push_back({{"metric", fmt::format("pass@{}", k)}, {"aggregation", "mean"}, {"higher_is_better", true}});
  } else {
    metrics.push_back({{"metric", "exact_match"},
                       {"aggregation", "mean"},
                       {"higher_is_better", true},
                       {"ignore_case", t.em.ignore_case},
                       {"ignore_punctuation", t.em.ignore_punctuation},
                       {"regexes_to_ignore", t.em.regexes_to_ignore}});
  }
  json c = {{"task", t.name},
            {"group", t.group},
            {"data_files", t.data_files},
            {"test_split", t.test_split},
            {"fewshot_split", t.fewshot_split},
            {"output_type", t.type == OutputType::Generate ? "generate_until" : "multiple_choice"},
            {"description", t.description},
            {"target_delimiter", t.target_delimiter},
            {"fewshot_delimiter", t.fewshot_delimiter},
            {"num_fewshot", n_shot},
            {"fewshot_config",
             {{"sampler", t.sampler == SamplerKind::FirstN ? "first_n" : "default"}, {"fewshot_seed", o.fewshot_seed}}},
            {"filter_list", filters},
            {"metric_list", metrics},
            {"apply_chat_template", o.chat},
            {"fewshot_as_multiturn", o.chat && o.fewshot_as_multiturn},
            {"chat_template_kwargs", o.chat && !o.chat_template_kwargs.empty() ? json::parse(o.chat_template_kwargs.dump())
                                                                               : json(nullptr)},
            {"system_instruction", o.system_instruction ? json(*o.system_instruction) : json(nullptr)},
            {"think_instruction", o.think ? json(kThinkInstruction) : json(nullptr)},
            {"perturbation", split_perturbed_name(t.name).second},
            {"metadata", {{"version", t.version}}}};
  if (t.type == OutputType::Generate) {
    c["generation_kwargs"] = {{"until", t.until},
                              {"max_gen_toks", o.max_gen_tokens ? *o.max_gen_tokens : t.max_gen_toks},
                              {"do_sample", o.temperature > 0},
                              {"temperature", o.temperature}};
    if (o.top_p != 1) c["generation_kwargs"]["top_p"] = o.top_p;
    if (o.top_k != 0) c["generation_kwargs"]["top_k"] = o.top_k;
    if (o.min_p != 0) c["generation_kwargs"]["min_p"] = o.min_p;
  }
  if (o.samples > 1) c["repeats"] = o.samples;
  if (is_code_task(t)) c["sandbox"] = o.sandbox_mode;
  return c;
}

// Append-only cache of finished samples: one JSON line each, fsync'd.
class SampleCache {
 public:
  SampleCache(const fs::path& path, bool keep) : path_(path) {
    fs::create_directories(path.parent_path());
    int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (keep ? 0 : O_TRUNC);
    fd_ = ::open(path.c_str(), flags, 0644);
    if (fd_ < 0) fail("{}: cannot open the resume cache", path.string());
  }
  ~SampleCache() {
    if (fd_ >= 0) ::close(fd_);
  }
  void append(const json& j) {
    std::string line = j.dump() + "\n";
    const char* p = line.data();
    size_t left = line.size();
    while (left) {
      ssize_t w = ::write(fd_, p, left);
      if (w < 0) fail("{}: write failed", path_.string());
      p += w, left -= size_t(w);
    }
    ::fsync(fd_);
  }

 private:
  fs::path path_;
  int fd_ = -1;
};

std::string cache_file_name(const std::string& task) {
  std::string s = task;
  for (auto& c : s)
    if (c == '/' || c == '@') c = '_';
  return s + ".jsonl";
}

// The generations of a code sample: `output` as a string, or a non-empty list of strings.
std::vector<std::string> code_outputs(const Task& t, const Sample& s) {
  if (s.output.is_string()) return {s.output.get<std::string>()};
  std::vector<std::string> outs;
  if (s.output.is_array())
    for (auto& o : s.output) {
      if (!o.is_string()) break;
      outs.push_back(o.get<std::string>());
    }
  if (outs.empty() || outs.size() != s.output.size())
    fail("{} doc {}: output must be a string or a non-empty list of strings", t.name, s.doc_id);
  return outs;
}

// Sets target and filtered of a code sample and returns its programs, filter-major (one per filter
// and generation). filtered[f] is a string for one generation, a list for several.
std::vector<std::string> code_programs(const Task& t, Sample& s) {
  auto outs = code_outputs(t, s);
  s.target = t.doc_to_target(s.doc);
  s.filtered = json::object();
  std::vector<std::string> programs;
  for (auto& f : t.filters) {
    json preds = json::array();
    for (auto& o : outs) {
      std::string v = f.apply(o, s.doc);
      programs.push_back(v + "\n" + s.target);
      preds.push_back(std::move(v));
    }
    s.filtered[f.name] = outs.size() == 1 && s.output.is_string() ? preds[0] : preds;
  }
  return programs;
}

// pass@k per filter from the results of code_programs(t, s), in the same order.
void code_metrics(const Task& t, Sample& s, const std::vector<ProgramResult>& results) {
  s.metrics.clear();
  std::vector<char> passed;
  s.result = json::array();
  for (const auto& r : results) {
    passed.push_back(r.passed ? 1 : 0);
    s.result.push_back(r.result);
  }
  if (s.result.size() == 1) s.result = s.result[0];
  size_t n = passed.size() / t.filters.size();
  for (size_t fi = 0; fi < t.filters.size(); fi++) {
    int c = int(std::count(passed.begin() + long(fi * n), passed.begin() + long((fi + 1) * n), char(1)));
    for (int k : pass_k_values(int(n)))
      s.metrics[fmt::format("pass@{},{}", k, t.filters[fi].name)] = pass_at_k(int(n), c, k);
  }
}
}  // namespace

void score_sample(const Task& t, Sample& s, const EvalOptions& opts) {
  s.filtered = json::object();
  s.metrics.clear();
  if (t.type == OutputType::MultipleChoice) {
    auto choices = t.doc_to_choice(s.doc);
    int gold = t.doc_to_gold(s.doc);
    s.target = choices.at(size_t(gold));
    if (!s.output.is_array() || s.output.size() != choices.size())
      fail("{} doc {}: output must hold {} [logprob, is_greedy] pairs", t.name, s.doc_id, choices.size());
    size_t best = 0, best_norm = 0;
    double bl = -INFINITY, bn = -INFINITY;
    for (size_t i = 0; i < choices.size(); i++) {
      double ll = s.output[i].is_array() ? s.output[i][0].get<double>() : s.output[i].get<double>();
      double norm = ll / double(codepoints(choices[i]));
      if (ll > bl) bl = ll, best = i;  // np.argmax: first maximum
      if (norm > bn) bn = norm, best_norm = i;
    }
    std::string delim = opts.chat ? "" : t.target_delimiter;
    s.continuations.clear();
    for (auto& c : choices) s.continuations.push_back(delim + c);
    if (t.lm_eval_target) s.lm_eval_target = t.lm_eval_target(s.doc);
    s.filtered["none"] = best;
    s.metrics["acc,none"] = int(best) == gold ? 1.0 : 0.0;
    s.metrics["acc_norm,none"] = int(best_norm) == gold ? 1.0 : 0.0;
    return;
  }
  if (is_code_task(t)) {
    if (!opts.run_program) fail("{}: no code sandbox given to run HumanEval programs", t.name);
    auto programs = code_programs(t, s);
    std::vector<ProgramResult> results;
    for (auto& p : programs) results.push_back(opts.run_program(p));
    code_metrics(t, s, results);
    return;
  }
  if (is_math_task(t)) {
    score_math_sample(t, s);
    return;
  }
  if (!s.output.is_string()) fail("{} doc {}: output must be a string", t.name, s.doc_id);
  const std::string text = s.output.get<std::string>();
  s.target = t.doc_to_target(s.doc);
  for (auto& f : t.filters) {
    std::string v = f.apply(text, s.doc);
    s.filtered[f.name] = v;
    s.metrics["exact_match," + f.name] = exact_match(v, s.target, t.em);
  }
}

TaskResult aggregate(const Task& t, std::vector<Sample> samples, const EvalOptions& opts) {
  TaskResult r;
  r.name = t.name;
  r.alias = t.alias;
  r.group = t.group;
  r.version = t.version;
  PromptOptions po;
  po.num_fewshot = opts.num_fewshot;
  r.n_shot = opts.num_fewshot ? *opts.num_fewshot : t.num_fewshot;
  r.n_docs_total = t.docs.size();
  r.config = task_config(t, opts, r.n_shot);
  r.doc_keys = t.doc_keys;
  std::sort(samples.begin(), samples.end(), [](auto& a, auto& b) { return a.doc_id < b.doc_id; });
  for (auto& s : samples)
    for (auto& [k, v] : s.metrics) r.per_doc[k].push_back(v);
  for (auto& [k, v] : r.per_doc) r.metrics[k] = {mean(v), mean_stderr(v)};
  if (!t.breakdown_field.empty()) {
    std::vector<std::string> values;
    for (auto& s : samples) {
      std::string v = s.doc.value(t.breakdown_field, std::string("?"));
      if (std::find(values.begin(), values.end(), v) == values.end()) values.push_back(v);
    }
    for (auto& v : values) {
      TaskResult b;
      std::string key = v;
      for (auto& c : key)
        if (c == ' ' || c == '-') c = '_';
      b.name = t.name + "_" + key;
      b.alias = " - " + v;
      b.group = t.name;
      b.version = t.version;
      b.n_shot = r.n_shot;
      for (auto& s : samples)
        if (s.doc.value(t.breakdown_field, std::string("?")) == v)
          for (auto& [k, x] : s.metrics) b.per_doc[k].push_back(x);
      for (auto& [k, x] : b.per_doc) b.metrics[k] = {mean(x), mean_stderr(x)};
      b.n_docs_total = b.per_doc.empty() ? 0 : b.per_doc.begin()->second.size();
      r.breakdown.push_back(std::move(b));
    }
  }
  r.samples = std::move(samples);
  return r;
}

std::vector<GroupResult> aggregate_groups(const std::vector<TaskResult>& tasks) {
  std::vector<GroupResult> out;
  std::vector<std::string> keys;
  for (auto& t : tasks) {
    if (t.group.empty() || group_members(t.group).empty()) continue;
    std::string key = t.group;
    auto pert = split_perturbed_name(t.name).second;
    if (!pert.empty()) key += "@" + pert;
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(key);
  }
  for (auto& key : keys) {
    GroupResult g;
    g.name = key;
    std::vector<const TaskResult*> members;
    for (auto& t : tasks) {
      std::string k = t.group;
      auto pert = split_perturbed_name(t.name).second;
      if (!pert.empty()) k += "@" + pert;
      if (k == key) members.push_back(&t), g.members.push_back(t.name);
    }
    std::set<std::string> metric_names;
    for (auto& [m, v] : members[0]->metrics) metric_names.insert(m);
    for (auto& m : metric_names) {
      double num = 0;
      size_t total = 0;
      std::vector<double> ses;
      std::vector<size_t> sizes;
      bool ok = true;
      for (auto* t : members) {
        auto it = t->metrics.find(m);
        if (it == t->metrics.end()) {
          ok = false;
          break;
        }
        size_t n = t->per_doc.at(m).size();
        num += it->second.value * double(n);
        total += n;
        ses.push_back(it->second.stderr_.value_or(0.0));
        sizes.push_back(n);
      }
      if (!ok || total == 0) continue;
      g.metrics[m] = {num / double(total), pooled_stderr(ses, sizes)};
      g.n = total;
    }
    out.push_back(std::move(g));
  }
  return out;
}

namespace {
// Runs fn(0..n-1) on up to hardware_concurrency threads; the first exception stops the rest and is
// rethrown. Calls of on_done(k) (after fn(k)) are serialised.
void parallel_for(size_t n, const std::function<void(size_t)>& fn, const std::function<void(size_t)>& on_done = {}) {
  size_t n_threads = std::max<size_t>(1, std::min<size_t>(std::thread::hardware_concurrency(), n));
  std::atomic<size_t> next{0};
  std::mutex mu;
  std::exception_ptr error;
  auto work = [&] {
    for (size_t k; (k = next++) < n;) {
      try {
        fn(k);
        if (on_done) {
          std::lock_guard<std::mutex> lk(mu);
          on_done(k);
        }
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu);
        if (!error) error = std::current_exception();
        next = n;
      }
    }
  };
  std::vector<std::thread> pool;
  for (size_t i = 1; i < n_threads; i++) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

// Scores samples[ids] on several threads. Code tasks: every program of every sample (one per
// generation) is a unit of work, so --samples N keeps all cores busy; on_program(passed) follows
// each program run.
void score_parallel(const Task& t, std::vector<Sample>& samples, const std::vector<size_t>& ids,
                    const EvalOptions& opts, const std::function<void(bool)>& on_program = {}) {
  if (!is_code_task(t)) {
    parallel_for(ids.size(), [&](size_t k) { score_sample(t, samples[ids[k]], opts); });
    return;
  }
  if (ids.empty()) return;
  if (!opts.run_program) fail("{}: no code sandbox given to run HumanEval programs", t.name);
  std::vector<std::vector<std::string>> programs(ids.size());
  std::vector<std::vector<ProgramResult>> passed(ids.size());
  std::vector<std::pair<size_t, size_t>> units;  // (index in ids, program)
  for (size_t k = 0; k < ids.size(); k++) {
    programs[k] = code_programs(t, samples[ids[k]]);
    passed[k].assign(programs[k].size(), ProgramResult(false));
    for (size_t j = 0; j < programs[k].size(); j++) units.emplace_back(k, j);
  }
  parallel_for(
      units.size(),
      [&](size_t u) {
        auto [k, j] = units[u];
        passed[k][j] = opts.run_program(programs[k][j]);
      },
      [&](size_t u) {
        if (on_program) on_program(passed[units[u].first][units[u].second].passed);
      });
  for (size_t k = 0; k < ids.size(); k++) code_metrics(t, samples[ids[k]], passed[k]);
}

// The template variables a chat prompt is rendered with (null: none, or not a chat run).
json chat_template_kwargs_or_null(const EvalOptions& opts) {
  return opts.chat && !opts.chat_template_kwargs.empty() ? json(opts.chat_template_kwargs) : json(nullptr);
}

}  // namespace

void check_sampling_options(const EvalOptions& o, const std::vector<std::string>& tasks) {
  if (o.samples < 1) fail("--samples must be at least 1 (got {})", o.samples);
  if (!(o.top_p > 0 && o.top_p <= 1)) fail("--top-p must be in (0, 1] (got {})", o.top_p);
  if (o.top_k < 0) fail("--top-k must be >= 0 (got {})", o.top_k);
  if (o.top_k > 0 && o.temperature <= 0)
    fail("--top-k {} has no effect with greedy decoding: pass --temperature T > 0", o.top_k);
  if (o.top_p < 1 && o.temperature <= 0)
    fail("--top-p {} has no effect with greedy decoding: pass --temperature T > 0", o.top_p);
  if (!(o.min_p >= 0 && o.min_p <= 1)) fail("--min-p must be in [0, 1] (got {})", o.min_p);
  if (o.min_p > 0 && o.temperature <= 0)
    fail("--min-p {} has no effect with greedy decoding: pass --temperature T > 0", o.min_p);
  if (o.samples == 1) return;
  if (o.temperature <= 0)
    fail("--samples {} with temperature 0: greedy decoding would give {} identical samples per document; "
         "pass --temperature T > 0 (e.g. 0.8)",
         o.samples, o.samples);
  for (auto& n : tasks)
    for (auto& e : expand_tasks({split_perturbed_name(n).first}))
      if (Task t = load_task_for(e, o); !is_code_task(t) && !is_math_task(t))
        fail("--samples {}: only pass@k tasks (humaneval, humaneval_instruct) and the math tasks take several "
             "samples per document; '{}' is scored on one generation",
             o.samples, e);
}

TaskResult evaluate_task(LanguageModel& model, const std::string& name, const EvalOptions& opts) {
  Task t = load_task_for(name, opts);
  check_sampling_options(opts, {name});
  PromptOptions po;
  po.chat = opts.chat;
  po.think = opts.think;
  po.num_fewshot = opts.num_fewshot;
  po.lm_eval = opts.lm_eval;
  po.fewshot_as_multiturn = opts.fewshot_as_multiturn;
  po.system_instruction = opts.system_instruction;
  po.chat_template_kwargs = opts.chat_template_kwargs;
  int n_shot = effective_fewshot(t, po);
  size_t N = opts.limit ? std::min(*opts.limit, t.docs.size()) : t.docs.size();
  PyRandom rng(opts.fewshot_seed);
  std::vector<Sample> samples(N);
  for (size_t i = 0; i < N; i++) {
    Sample& s = samples[i];
    s.task = t.name;
    s.doc_id = i;
    s.doc = t.docs[i];
    auto shots = draw_fewshot(t, s.doc, n_shot, rng);
    s.prompt = build_prompt(t, s.doc, shots, po, &model);
  }
  // --samples R > 1: R generations per document (sample j of doc i: seed gen_seed + i*R + j), each
  // cached on its own, so an interruption loses only the generations in flight.
  const size_t R = size_t(std::max(1, opts.samples));
  const bool multi = R > 1;
  auto seed_of = [&](size_t id, size_t j) { return opts.gen_seed + id * R + j; };
  std::vector<std::vector<std::optional<std::string>>> gens(multi ? N : 0, std::vector<std::optional<std::string>>(R));
  std::vector<bool> done(N, false);
  std::unique_ptr<SampleCache> cache;
  // Template variables are part of a cached sample's identity: through a chat endpoint the
  // prompt is the messages only, and the server renders them with these variables.
  const json kwargs = chat_template_kwargs_or_null(opts);
  auto cache_line = [&](json line) {
    if (!kwargs.is_null()) line["chat_template_kwargs"] = kwargs;
    cache->append(line);
  };
  if (!opts.out_dir.empty()) {
    fs::path cpath = fs::path(opts.out_dir) / "cache" / cache_file_name(t.name);
    if (opts.resume && fs::exists(cpath)) {
      std::istringstream in(read_file(cpath));
      std::string line;
      while (std::getline(in, line)) {
        json j;
        try {
          j = json::parse(line);
        } catch (const std::exception&) {
          continue;  // a line cut by a kill: that sample is redone
        }
        if (!j.contains("doc_id") || !j.contains("prompt") || !j.contains("output")) continue;
        if (!j["doc_id"].is_number_unsigned() || (j.contains("sample") && !j["sample"].is_number_unsigned()))
          continue;  // not a line this cache wrote
        size_t id = j["doc_id"].get<size_t>();
        if (id >= N || done[id] || j["prompt"] != samples[id].prompt) continue;
        if (j.value("chat_template_kwargs", json()) != kwargs) continue;  // other template variables
        if (j.contains("sample") != multi) continue;  // written with another --samples
        if (!multi) {
          samples[id].output = j["output"];
          done[id] = true;
          continue;
        }
        size_t k = j["sample"].get<size_t>();
        // Compared as JSON values: a field of another type is a mismatch, not a type_error.
        // (Caches older than min_p lack it: absent means 0.)
        if (k >= R || !j["output"].is_string() || j.value("seed", json(0)) != json(seed_of(id, k)) ||
            j.value("temperature", json(-1.0)) != json(opts.temperature) ||
            j.value("top_p", json(-1.0)) != json(opts.top_p) || j.value("top_k", json(0)) != json(opts.top_k) ||
            j.value("min_p", json(0.0)) != json(opts.min_p))
          continue;
        gens[id][k] = j["output"].get<std::string>();
      }
    }
    cache = std::make_unique<SampleCache>(cpath, opts.resume);
  }
  size_t gens_cached = 0;
  for (size_t id = 0; id < gens.size(); id++) {
    size_t have = size_t(std::count_if(gens[id].begin(), gens[id].end(), [](auto& g) { return g.has_value(); }));
    gens_cached += have;
    if (have < R) continue;
    samples[id].output = json::array();
    for (auto& g : gens[id]) samples[id].output.push_back(*g);
    done[id] = true;
  }
  // HumanEval programs are run after generation, in parallel, so the engine is never stalled.
  const bool deferred = is_code_task(t);
  std::vector<size_t> cached_ids, pending;
  for (size_t i = 0; i < N; i++) (done[i] ? cached_ids : pending).push_back(i);
  score_parallel(t, samples, cached_ids, opts);
  size_t n_done = N - pending.size();
  std::string key0;  // running accuracy shown in the progress line
  double running_sum = 0;
  auto first_metric = [&](const Sample& s) {
    if (s.metrics.empty()) return 0.0;
    if (key0.empty()) key0 = s.metrics.begin()->first;
    auto it = s.metrics.find(key0);
    return it == s.metrics.end() ? 0.0 : it->second;
  };
  for (size_t i = 0; i < N; i++)
    if (done[i]) running_sum += first_metric(samples[i]);
  Progress prog(t.name, N * R, multi ? "samples" : "docs", opts.quiet);
  auto status = [&] {
    std::string s = n_done ? fmt::format("{} {:.3f}", key0.substr(0, key0.find(',')), running_sum / double(n_done)) : "";
    std::string tp = model.throughput();
    return tp.empty() ? s : s.empty() ? tp : s + " | " + tp;
  };
  prog.set(multi ? gens_cached : n_done, status());
  std::mutex mu;
  auto finish = [&](size_t id) {
    Sample& s = samples[id];
    if (!deferred) score_sample(t, s, opts);
    if (cache && !multi) cache_line(json{{"doc_id", s.doc_id}, {"prompt", s.prompt}, {"output", s.output}});
    if (!deferred) running_sum += first_metric(s);
    n_done++;
    if (!multi) prog.add(1, deferred ? "generated" : status());
  };
  if (!pending.empty()) {
    if (t.type == OutputType::Generate) {
      std::vector<GenRequest> reqs;
      std::vector<std::pair<size_t, size_t>> slot;  // request -> (doc id, sample)
      int max_new = opts.max_gen_tokens ? *opts.max_gen_tokens : t.max_gen_toks;
      for (size_t id : pending)
        for (size_t k = 0; k < R; k++)
          if (!multi || !gens[id][k]) {
            reqs.push_back(GenRequest{samples[id].prompt, t.until, max_new, opts.temperature, opts.top_p, seed_of(id, k),
                                      opts.top_k, opts.min_p});
            slot.emplace_back(id, k);
          }
      model.generate(reqs, [&](size_t i, const std::string& text) {
        std::lock_guard<std::mutex> lk(mu);
        if (i >= slot.size()) fail("{}: model returned request index {} of {}", t.name, i, slot.size());
        auto [id, k] = slot[i];
        if (!multi) {
          samples[id].output = cut_at_stop(text, t.until);
          finish(id);
          return;
        }
        gens[id][k] = cut_at_stop(text, t.until);
        if (cache)
          cache_line(json{{"doc_id", id},
                             {"prompt", samples[id].prompt},
                             {"sample", k},
                             {"seed", seed_of(id, k)},
                             {"temperature", opts.temperature},
                             {"top_p", opts.top_p},
                             {"top_k", opts.top_k},
                             {"min_p", opts.min_p},
                             {"output", *gens[id][k]}});
        prog.add(1, model.throughput().empty() ? "generated" : "generated | " + model.throughput());
        if (std::all_of(gens[id].begin(), gens[id].end(), [](auto& g) { return g.has_value(); })) {
          samples[id].output = json::array();
          for (auto& g : gens[id]) samples[id].output.push_back(*g);
          finish(id);
        }
      });
    } else {
      std::vector<LoglikRequest> reqs;
      std::vector<std::pair<size_t, size_t>> owner;  // request -> (doc id, choice)
      std::vector<size_t> remaining(N, 0);
      std::string delim = opts.chat ? "" : t.target_delimiter;  // lm-eval: no delimiter with a chat template
      for (size_t id : pending) {
        auto choices = t.doc_to_choice(samples[id].doc);
        samples[id].output = json::array();
        for (size_t c = 0; c < choices.size(); c++) {
          reqs.push_back({samples[id].prompt, delim + choices[c]});
          owner.emplace_back(id, c);
          samples[id].output.push_back(nullptr);
        }
        remaining[id] = choices.size();
      }
      model.loglikelihood(reqs, [&](size_t i, const LoglikResult& r) {
        std::lock_guard<std::mutex> lk(mu);
        if (i >= owner.size()) fail("{}: model returned request index {} of {}", t.name, i, owner.size());
        auto [id, c] = owner[i];
        samples[id].output[c] = json::array({r.logprob, r.is_greedy});
        if (--remaining[id] == 0) finish(id);
      });
    }
  }
  if (deferred && !pending.empty()) {
    Progress exec(t.name + " (exec)", pending.size() * R, "programs", opts.quiet);
    size_t run = 0, passed = 0;
    score_parallel(t, samples, pending, opts, [&](bool ok) {
      run++, passed += ok;
      exec.add(1, fmt::format("passed {:.3f}", double(passed) / double(run)));
    });
    exec.finish();
  }
  prog.finish(status());
  for (size_t i = 0; i < N; i++)
    if (samples[i].metrics.empty()) fail("{}: model returned no result for doc {}", t.name, i);
  return aggregate(t, std::move(samples), opts);
}

EvalResults run_eval(LanguageModel& model, const std::vector<std::string>& names, const EvalOptions& opts) {
  check_sampling_options(opts, names);
  EvalResults r;
  r.datetime = now_stamp();
  std::vector<std::string> tasks;
  for (auto& n : names) {
    auto [base, pert] = split_perturbed_name(n);
    for (auto& e : expand_tasks({base})) tasks.push_back(pert.empty() ? e : e + "@" + pert);
  }
  std::vector<std::string> all = tasks;
  for (auto& p : opts.perturb) {
    bool any = false;
    for (auto& tn : tasks) {
      if (tn.find('@') != std::string::npos) continue;
      Task probe = load_task_for(tn, opts);
      if (perturbation_applies(p, probe)) all.push_back(tn + "@" + p), any = true;
    }
    if (!any) fail("--perturb {}: applies to none of the tasks requested", p);
  }
  if (std::string why = model.loglikelihood_unsupported(); !why.empty()) {
    std::vector<std::string> need;
    for (auto& tn : all)
      if (load_task_for(tn, opts).type == OutputType::MultipleChoice) need.push_back(tn);
    if (!need.empty())
      fail("{}: these tasks are scored by log-likelihood, which this backend cannot serve: {} ({}); "
           "nothing was sent",
           model.name(), fmt::join(need, ", "), why);
  }
  for (auto& tn : all) r.tasks.push_back(evaluate_task(model, tn, opts));
  r.groups = aggregate_groups(r.tasks);
  r.run_config = {{"model", opts.model_name.empty() ? model.name() : opts.model_name},
                  {"model_args", opts.model_args},
                  {"batch_size", opts.batch},
                  {"limit", opts.limit ? json(*opts.limit) : json(nullptr)},
                  {"num_fewshot", opts.num_fewshot ? json(*opts.num_fewshot) : json(nullptr)},
                  {"gen_kwargs", {{"temperature", opts.temperature},
                                  {"max_gen_toks", opts.max_gen_tokens ? json(*opts.max_gen_tokens) : json(nullptr)}}},
                  {"random_seed", opts.gen_seed},
                  {"fewshot_seed", opts.fewshot_seed},
                  {"apply_chat_template", opts.chat},
                  {"fewshot_as_multiturn", opts.chat && opts.fewshot_as_multiturn},
                  {"chat_template_kwargs", chat_template_kwargs_or_null(opts)},
                  {"system_instruction", opts.system_instruction ? json(*opts.system_instruction) : json(nullptr)},
                  {"think_instruction", opts.think ? json(kThinkInstruction) : json(nullptr)},
                  {"perturbations", opts.perturb},
                  {"data_dir", opts.data_dir ? json(*opts.data_dir) : json(nullptr)},
                  {"sandbox", opts.sandbox_mode},
                  {"sandbox_protections", opts.sandbox_protections},
                  {"lm_eval_reference", kLmEvalReference},
                  {"lm_eval_prompt_rules", lm_eval_version_name(opts.lm_eval)}};
  if (opts.top_p != 1) r.run_config["gen_kwargs"]["top_p"] = opts.top_p;
  if (opts.top_k != 0) r.run_config["gen_kwargs"]["top_k"] = opts.top_k;
  if (opts.min_p != 0) r.run_config["gen_kwargs"]["min_p"] = opts.min_p;
  if (opts.samples > 1) r.run_config["repeats"] = opts.samples;
  if (json p = model.provenance(); !p.is_null()) r.run_config["backend"] = p;
  if (!opts.out_dir.empty()) write_outputs(r, opts.out_dir);
  return r;
}

const TaskResult* EvalResults::find(const std::string& task) const {
  for (auto& t : tasks)
    if (t.name == task) return &t;
  return nullptr;
}

namespace {
void put_metrics(json& e, const std::map<std::string, MetricValue>& ms) {
  for (auto& [k, v] : ms) {
    e[k] = v.value;
    auto comma = k.find(',');
    std::string sk = k.substr(0, comma) + "_stderr" + (comma == std::string::npos ? "" : k.substr(comma));
    e[sk] = v.stderr_ ? json(*v.stderr_) : json("N/A");
  }
}
}  // namespace

json EvalResults::to_json() const {
  json results = json::object(), groups_j = json::object(), configs = json::object(), versions = json::object(),
       nshot = json::object(), hib = json::object(), nsamples = json::object(), group_subtasks = json::object(),
       task_hashes = json::object();
  for (auto& g : groups) {
    json e = {{"alias", g.name}};
    put_metrics(e, g.metrics);
    results[g.name] = e;
    groups_j[g.name] = e;
    group_subtasks[g.name] = g.members;
    versions[g.name] = group_version(g.name.substr(0, g.name.find('@')));
  }
  for (auto& t : tasks) {
    json e = {{"alias", t.group.empty() || group_members(t.group).empty() ? t.alias : " - " + t.alias}};
    put_metrics(e, t.metrics);
    results[t.name] = e;
    json h = json::object();
    for (auto& [k, v] : t.metrics) h[k.substr(0, k.find(','))] = true;
    for (auto& b : t.breakdown) {
      json be = {{"alias", b.alias}};
      put_metrics(be, b.metrics);
      results[b.name] = be;
      nsamples[b.name] = {{"original", b.n_docs_total}, {"effective", b.n_docs_total}};
    }
    if (!t.breakdown.empty()) {
      group_subtasks[t.name] = json::array();
      for (auto& b : t.breakdown) group_subtasks[t.name].push_back(b.name);
    }
    configs[t.name] = t.config;
    versions[t.name] = t.version;
    task_hashes[t.name] = lm_eval_task_hash(lm_eval_sample_lines(t));
    nshot[t.name] = t.n_shot;
    hib[t.name] = h;
    nsamples[t.name] = {{"original", t.n_docs_total}, {"effective", t.samples.size()}};
  }
  return {{"results", results},       {"groups", groups_j},   {"group_subtasks", group_subtasks},
          {"configs", configs},       {"versions", versions}, {"n-shot", nshot},
          {"higher_is_better", hib},  {"n-samples", nsamples}, {"config", run_config},
          {"date", double(std::time(nullptr))}, {"task_hashes", task_hashes}, {"rvec_version", RVEC_VERSION}};
}

std::string EvalResults::markdown() const {
  std::string md = "|Tasks|Version|Filter|n-shot|Metric| |Value| |Stderr|\n|---|---:|---|---:|---|---|---:|---|---:|\n";
  auto rows = [&](const std::string& name, const std::string& version, const std::string& nshot,
                  const std::map<std::string, MetricValue>& ms) {
    bool first = true;
    for (auto& [k, v] : ms) {
      auto comma = k.find(',');
      std::string metric = k.substr(0, comma), filter = comma == std::string::npos ? "none" : k.substr(comma + 1);
      md += fmt::format("|{}|{}|{}|{}|{}|↑|{:.4f}|±|{}|\n", first ? name : "", first ? version : "", filter,
                        first ? nshot : "", metric, v.value, v.stderr_ ? fmt::format("{:.4f}", *v.stderr_) : "N/A");
      first = false;
    }
  };
  for (auto& g : groups) rows(g.name, "", "", g.metrics);
  for (auto& t : tasks) {
    rows(t.name, fmt::format("{}", t.version), std::to_string(t.n_shot), t.metrics);
    for (auto& b : t.breakdown) rows(b.alias, "", "", b.metrics);
  }
  return md;
}

void write_outputs(const EvalResults& r, const std::string& dir) {
  fs::create_directories(dir);
  fs::path d(dir);
  write_file_atomic(d / ("results_" + r.datetime + ".json"), r.to_json().dump(2) + "\n");
  write_file_atomic(d / ("results_" + r.datetime + ".md"), r.markdown());
  for (auto& t : r.tasks) {
    std::string lines;
    for (auto& s : t.samples) lines += s.to_json().dump() + "\n";
    std::string fname = t.name;
    for (auto& c : fname)
      if (c == '/') c = '_';
    write_file_atomic(d / ("samples_" + fname + "_" + r.datetime + ".jsonl"), lines);
  }
  // lm-eval's layout: its tools (and `rvec rescore`) read these as lm-eval's own output.
  fs::path ld = d / "lm_eval";
  fs::create_directories(ld);
  write_file_atomic(ld / ("results_" + r.datetime + ".json"), r.to_json().dump(2) + "\n");
  for (auto& t : r.tasks) {
    std::string lines;
    for (auto& l : lm_eval_sample_lines(t)) lines += l.dump() + "\n";
    std::string fname = t.name;
    for (auto& c : fname)
      if (c == '/') c = '_';
    write_file_atomic(ld / ("samples_" + fname + "_" + r.datetime + ".jsonl"), lines);
  }
}

EvalResults rescore_samples_file(const std::string& path, const EvalOptions& opts) {
  return rescore_samples_files({path}, opts);
}

EvalResults rescore_samples_files(const std::vector<std::string>& paths, const EvalOptions& opts,
                                  const std::string& task_override) {
  if (paths.empty()) fail("rescore: no samples file given");
  std::vector<std::string> order;
  std::map<std::string, std::vector<json>> by_task;
  std::map<std::string, std::string> where_of;  // task -> file (messages)
  for (auto& path : paths) {
    for_each_samples_line(path, [&](json& j, const std::string& where) {
      if (is_lm_eval_sample_line(j)) {
        // lm-eval's own file: no task field (it is in the file name), one line per filter.
        if (!j.contains("doc_id")) fail("{}: missing 'doc_id'", where);
        std::string task = task_override;
        if (task.empty()) {
          auto from_name = task_from_lm_eval_samples_name(path);
          if (!from_name)
            fail("{}: an lm-eval samples file not named samples_<task>_<date>.jsonl: pass --task", path);
          task = *from_name;
        }
        j["task"] = task;
        j["_where"] = where;
      } else {
        for (auto* k : {"task", "doc_id", "output"})
          if (!j.contains(k)) fail("{}: missing '{}'", where, k);
        if (!task_override.empty()) j["task"] = task_override;
      }
      std::string task = j["task"].get<std::string>();
      if (!by_task.count(task)) order.push_back(task), where_of[task] = path;
      by_task[task].push_back(std::move(j));
    });
  }
  const std::string path = paths.size() == 1 ? paths[0] : fmt::format("{} files", paths.size());
  EvalResults r;
  r.datetime = now_stamp();
  for (auto& tn : order) {
    Task t = load_task_for(tn, opts);
    std::vector<Sample> samples;
    std::set<size_t> seen;
    for (auto& j : by_task[tn]) {
      Sample s;
      s.task = t.name;
      const bool lm = j.contains("_where");
      const std::string where = lm ? j["_where"].get<std::string>() : where_of[tn];
      // Checked as written: doc_id -1 must not read as 18446744073709551615. An lm-eval line carries its
      // own document, so only rvec's lines are bounded by the task's documents.
      const int64_t max_id = lm ? std::numeric_limits<int64_t>::max() : int64_t(t.docs.size()) - 1;
      s.doc_id = size_t(json_int_in_range(j["doc_id"], 0, max_id, fmt::format("{}: task {} doc_id", where, tn)));
      if (!seen.insert(s.doc_id).second) {
        if (lm) continue;  // lm-eval logs a document once per filter
        fail("{}: task {} doc_id {} appears twice", where, tn, s.doc_id);
      }
      if (lm && j.contains("doc") && j["doc"].is_object()) {
        s.doc = j["doc"];  // the document lm-eval evaluated
      } else {
        if (s.doc_id >= t.docs.size()) fail("{}: task {} has no doc_id {}", where, tn, s.doc_id);
        s.doc = t.docs[s.doc_id];
      }
      if (lm) {
        s.output = output_from_lm_eval_line(t, j, where);
        const json* a0 = nullptr;
        if (j.contains("arguments") && j["arguments"].contains("gen_args_0")) a0 = &j["arguments"]["gen_args_0"];
        if (a0 && a0->contains("arg_0") && (*a0)["arg_0"].is_string()) s.prompt = (*a0)["arg_0"];
      } else {
        if (j.contains("prompt") && j["prompt"].is_string()) s.prompt = j["prompt"];
        s.output = j["output"];
      }
      samples.push_back(std::move(s));
    }
    std::vector<size_t> ids(samples.size());
    for (size_t i = 0; i < ids.size(); i++) ids[i] = i;
    score_parallel(t, samples, ids, opts);
    r.tasks.push_back(aggregate(t, std::move(samples), opts));
  }
  r.groups = aggregate_groups(r.tasks);
  r.run_config = {{"rescored_from", path},
                  {"lm_eval_reference", kLmEvalReference},
                  {"fewshot_seed", opts.fewshot_seed},
                  {"data_dir", opts.data_dir ? json(*opts.data_dir) : json(nullptr)},
                  {"sandbox", opts.sandbox_mode},
                  {"sandbox_protections", opts.sandbox_protections}};
  if (!opts.out_dir.empty()) write_outputs(r, opts.out_dir);
  return r;
}

}  // namespace rvec::eval
