#include "eval/lm_eval_io.h"

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <regex>

#include "core/error.h"
#include "core/input_file.h"
#include "core/sha256.h"

using nlohmann::json;

namespace rvec::eval {

std::string lm_eval_doc_dump(const Doc& doc, const std::vector<std::string>& key_order) {
  if (!doc.is_object()) return doc.dump(2);
  nlohmann::ordered_json o = nlohmann::ordered_json::object();
  for (auto& k : key_order)
    if (doc.contains(k)) o[k] = doc[k];
  for (auto& [k, v] : doc.items())
    if (!o.contains(k)) o[k] = v;
  // nlohmann's dump(2) writes what json.dumps(indent=2, ensure_ascii=False) writes for the
  // values datasets hold (strings, integers, lists, nested objects).
  return o.dump(2);
}

std::vector<std::string> first_record_key_order(const std::string& content, const std::string& rel) {
  nlohmann::ordered_json first;
  try {
    if (rel.ends_with(".jsonl")) {
      size_t p = 0;
      while (p < content.size()) {
        size_t e = content.find('\n', p);
        std::string line = content.substr(p, e == std::string::npos ? std::string::npos : e - p);
        if (line.find_first_not_of(" \t\r") != std::string::npos) {
          first = nlohmann::ordered_json::parse(line);
          break;
        }
        if (e == std::string::npos) break;
        p = e + 1;
      }
    } else {
      auto j = nlohmann::ordered_json::parse(content);
      if (j.is_object() && j.contains("examples")) j = j["examples"];
      if (j.is_array() && !j.empty()) first = j[0];
    }
  } catch (const std::exception& e) {
    fail("{}: invalid JSON: {}", rel, e.what());
  }
  std::vector<std::string> keys;
  if (first.is_object())
    for (auto& [k, v] : first.items()) keys.push_back(k);
  return keys;
}

namespace {
// Python str() of a float / bool (EvaluationTracker's sanitize_list stringifies every leaf).
std::string py_str(const json& v) {
  if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
  if (v.is_number_float()) {
    std::string s = v.dump();
    if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
    return s;
  }
  return v.is_string() ? v.get<std::string>() : v.dump();
}

double number_of(const json& v, const std::string& where) {
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    try {
      size_t used = 0;
      double d = std::stod(s, &used);
      if (used == s.size()) return d;
    } catch (const std::exception&) {
    }
    if (s == "-inf") return -INFINITY;
  }
  fail("{}: expected a log-likelihood, got {}", where, v.dump());
}

bool bool_of(const json& v, const std::string& where) {
  if (v.is_boolean()) return v.get<bool>();
  if (v == "True" || v == "true" || v == 1) return true;
  if (v == "False" || v == "false" || v == 0) return false;
  fail("{}: expected is_greedy (True/False), got {}", where, v.dump());
}
}  // namespace

std::vector<json> lm_eval_sample_lines(const TaskResult& t) {
  std::vector<std::string> filters;  // the task's filter_list order, as lm-eval iterates it
  if (t.config.contains("filter_list"))
    for (auto& f : t.config["filter_list"]) filters.push_back(f.get<std::string>());
  for (auto& s : t.samples)
    for (auto& [k, v] : s.metrics) {
      auto comma = k.find(',');
      std::string f = comma == std::string::npos ? "none" : k.substr(comma + 1);
      if (std::find(filters.begin(), filters.end(), f) == filters.end()) filters.push_back(f);
    }
  const bool mc = t.config.value("output_type", "") == "multiple_choice";
  const json gen_kwargs = t.config.value("generation_kwargs", json::object());
  std::vector<json> lines;
  for (auto& f : filters)
    for (auto& s : t.samples) {
      json args = json::object(), resps = json::array(), filtered = json::array();
      if (mc) {
        for (size_t i = 0; i < s.output.size(); i++) {
          const json& o = s.output[i];
          json pair = json::array({py_str(o.is_array() ? o[0] : o), py_str(o.is_array() ? o[1] : json(false))});
          args[fmt::format("gen_args_{}", i)] = {{"arg_0", s.prompt},
                                                  {"arg_1", i < s.continuations.size() ? s.continuations[i] : ""}};
          resps.push_back(json::array({pair}));
          filtered.push_back(pair);
        }
      } else {
        args["gen_args_0"] = {{"arg_0", s.prompt}, {"arg_1", gen_kwargs}};
        resps.push_back(s.output.is_array() ? s.output : json::array({s.output}));
        json fv = s.filtered.contains(f) ? s.filtered[f] : json(kInvalid);
        // Code tasks' create_test filter keeps a list per document (no take_first).
        if (t.config.contains("sandbox") && !fv.is_array()) fv = json::array({fv});
        filtered.push_back(fv);
      }
      std::string target = s.lm_eval_target.empty() ? s.target : s.lm_eval_target;
      json line = {{"doc_id", s.doc_id},
                   {"doc", s.doc},
                   {"target", target},
                   {"arguments", args},
                   {"resps", resps},
                   {"filtered_resps", filtered},
                   {"filter", f},
                   {"metrics", json::array()},
                   {"doc_hash", sha256_hex(lm_eval_doc_dump(s.doc, t.doc_keys))},
                   {"prompt_hash", sha256_hex(s.prompt)},
                   {"target_hash", sha256_hex(target)}};
      for (auto& [k, v] : s.metrics) {
        auto comma = k.find(',');
        if ((comma == std::string::npos ? "none" : k.substr(comma + 1)) != f) continue;
        std::string name = k.substr(0, comma);
        line["metrics"].push_back(name);
        line[name] = v;
      }
      lines.push_back(std::move(line));
    }
  return lines;
}

std::string lm_eval_task_hash(const std::vector<json>& lines) {
  std::string all;
  for (auto& l : lines)
    all += l.value("doc_hash", "") + l.value("prompt_hash", "") + l.value("target_hash", "");
  return sha256_hex(all);
}

bool is_lm_eval_sample_line(const json& line) {
  return line.is_object() && line.contains("resps") && line.contains("filter") && !line.contains("output");
}

json output_from_lm_eval_line(const Task& t, const json& line, const std::string& where) {
  const json& resps = line["resps"];
  if (!resps.is_array() || resps.empty()) fail("{}: 'resps' must be a non-empty list", where);
  if (t.type == OutputType::MultipleChoice) {
    json out = json::array();
    for (auto& r : resps) {
      // [[ll, is_greedy]] per choice as lm-eval logs it ([ll, is_greedy] accepted too).
      const json& pair = r.is_array() && r.size() == 1 && r[0].is_array() ? r[0] : r;
      if (!pair.is_array() || pair.size() != 2) fail("{}: each resps entry must be [[logprob, is_greedy]]", where);
      out.push_back(json::array({number_of(pair[0], where), bool_of(pair[1], where)}));
    }
    return out;
  }
  const json& gens = resps[0];
  if (gens.is_string()) return gens;
  if (!gens.is_array() || gens.empty()) fail("{}: 'resps' must hold the list of generations", where);
  for (auto& g : gens)
    if (!g.is_string()) fail("{}: generations in 'resps' must be strings", where);
  if (t.metric == "pass@k" && gens.size() > 1) return gens;
  return gens[0];  // take_first, as every non-code lm-eval generate task does
}

std::optional<std::string> task_from_lm_eval_samples_name(const std::string& path) {
  static const std::regex re(R"(^samples_(.+)_(\d{4}-\d{2}-\d{2}T[0-9.\-]+)\.jsonl$)");
  std::smatch m;
  std::string name = std::filesystem::path(path).filename().string();
  if (!std::regex_match(name, m, re)) return std::nullopt;
  return m[1].str();
}

namespace {
std::string answer_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array() && v.size() == 1 && v[0].is_string()) return v[0].get<std::string>();
  return v.dump();
}

void load_samples_file(const std::string& path, RunSamples& run) {
  for_each_samples_line(path, [&](json& j, const std::string& where) {
    if (!j.is_object() || !j.contains("doc_id") || !j["doc_id"].is_number_unsigned())
      fail("{}: no 'doc_id'", where);
    size_t id = j["doc_id"].get<size_t>();
    if (is_lm_eval_sample_line(j)) {
      auto task = task_from_lm_eval_samples_name(path);
      if (!task) fail("{}: an lm-eval samples file must be named samples_<task>_<date>.jsonl", path);
      DocRecord& r = run[*task][id];
      std::string filter = j["filter"].get<std::string>();
      r.prompt_hash = j.value("prompt_hash", std::string());
      if (j.contains("metrics") && j["metrics"].is_array())
        for (auto& m : j["metrics"]) {
          std::string name = m.get<std::string>();
          if (j.contains(name) && j[name].is_number()) r.metrics[name + "," + filter] = j[name].get<double>();
        }
      if (j.contains("filtered_resps") && j["filtered_resps"].is_array() && !j["filtered_resps"].empty())
        r.answers[filter] = answer_text(j["filtered_resps"].size() == 1 ? j["filtered_resps"][0] : j["filtered_resps"]);
      return;
    }
    if (!j.contains("task") || !j.contains("metrics") || !j["metrics"].is_object())
      fail("{}: neither an rvec samples line (task, doc_id, metrics) nor an lm-eval one", where);
    DocRecord& r = run[j["task"].get<std::string>()][id];
    if (j.contains("prompt") && j["prompt"].is_string()) r.prompt_hash = sha256_hex(j["prompt"].get<std::string>());
    for (auto& [k, v] : j["metrics"].items())
      if (v.is_number()) r.metrics[k] = v.get<double>();
    if (j.contains("filtered") && j["filtered"].is_object())
      for (auto& [k, v] : j["filtered"].items()) r.answers[k] = answer_text(v);
  });
}
}  // namespace

void for_each_samples_line(const std::string& path, const std::function<void(json&, const std::string&)>& fn) {
  std::istringstream in(read_file(path));  // a regular file only (FIFOs are refused, not waited on)
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    lineno++;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const std::exception& e) {
      fail("{}:{}: invalid JSON: {}", path, lineno, e.what());
    }
    fn(j, fmt::format("{}:{}", path, lineno));
  }
}

RunSamples load_run_samples(const std::string& path) {
  namespace fs = std::filesystem;
  RunSamples run;
  if (fs::is_directory(path)) {
    std::vector<std::string> files;
    for (auto& e : fs::directory_iterator(path)) {
      std::string n = e.path().filename().string();
      if (e.is_regular_file() && n.starts_with("samples_") && n.ends_with(".jsonl")) files.push_back(e.path().string());
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) fail("{}: no samples_<task>_<date>.jsonl file in this folder", path);
    std::map<std::string, std::string> file_of_task;
    for (auto& f : files) {
      auto task = task_from_lm_eval_samples_name(f);
      if (!task) continue;
      auto [it, fresh] = file_of_task.emplace(*task, f);
      if (!fresh) fail("{}: two samples files for task {} ({} and {}): pass the file to compare", path, *task, it->second, f);
    }
    for (auto& f : files) load_samples_file(f, run);
  } else {
    load_samples_file(path, run);
  }
  return run;
}

}  // namespace rvec::eval
