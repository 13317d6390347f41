#include "exp/config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "core/atomic_output.h"
#include "core/error.h"

namespace fs = std::filesystem;

namespace rvec::experiment {

std::string TaskConfig::key() const {
  std::string k = fmt::format("{}|limit={}|fewshot={}|chat={}|maxgen={}|data={}", name, limit, num_fewshot,
                              chat ? 1 : 0, max_gen_tokens, data_dir);
  // Sampling settings only when used, so greedy configurations keep their cache keys.
  if (samples != 1 || temperature != 0 || top_p != 1)
    k += fmt::format("|samples={}|temperature={}|top_p={}", samples, temperature, top_p);
  if (!chat_template_kwargs.empty()) k += "|template_kwargs=" + chat_template_kwargs.dump();
  if (min_p != 0) k += fmt::format("|min_p={}", min_p);
  return k;
}

std::string ConditionConfig::key() const {
  std::string p;
  for (auto& s : perturb) p += (p.empty() ? "" : ",") + s;
  return fmt::format("{}|think={}|perturb={}", name, think ? 1 : 0, p);
}

std::string BackendConfig::key() const {
  if (kind == "engine") return "";
  return fmt::format("backend={}|launch={}|served={}|chat_endpoint={}", kind, launch, served_model,
                     chat_endpoint ? 1 : 0);
}

std::string CompressConfig::key() const {
  if (method == "sparse") return fmt::format("sparse-d{}{}", format_alpha(density), scope == "global" ? "-global" : "");
  if (method == "lora") return rank > 0 ? fmt::format("lora-r{}", rank) : fmt::format("lora-e{}", format_alpha(energy));
  return method;
}

const fs::path& ExperimentConfig::model_path(const std::string& n) const {
  auto it = models.find(n);
  if (it == models.end()) fail("{}: model '{}' is used but not listed under `models`", origin, n);
  return it->second;
}

std::string format_alpha(double a) {
  for (int prec = 1; prec <= 17; ++prec) {
    std::string s = fmt::format("{:.{}g}", a, prec);
    if (std::stod(s) == a) return s == "-0" ? "0" : s;
  }
  return fmt::format("{}", a);
}

namespace {

struct Ctx {
  std::string origin;
  [[noreturn]] void err(const YAML::Node& n, const std::string& what) const {
    if (n.Mark().is_null()) fail("{}: {}", origin, what);
    fail("{}:{}: {}", origin, n.Mark().line + 1, what);
  }
  void keys(const YAML::Node& n, const std::string& where, std::initializer_list<const char*> allowed) const {
    if (!n.IsMap()) err(n, where + " must be a mapping");
    for (auto it = n.begin(); it != n.end(); ++it) {
      std::string k = it->first.as<std::string>();
      if (std::none_of(allowed.begin(), allowed.end(), [&](const char* a) { return k == a; })) {
        std::string list;
        for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
        err(it->first, fmt::format("unknown key '{}' in {} (allowed: {})", k, where, list));
      }
    }
  }
  // A YAML value as JSON: plain scalars true/false, null, integers and decimals are typed,
  // quoted scalars stay strings (YAML 1.2 core schema, as a Python yaml.safe_load user expects).
  nlohmann::ordered_json to_json(const YAML::Node& n, const std::string& what) const {
    using oj = nlohmann::ordered_json;
    if (n.IsMap()) {
      oj o = oj::object();
      for (auto it = n.begin(); it != n.end(); ++it) {
        std::string k = as<std::string>(it->first, what + " key");
        o[k] = to_json(it->second, what + "." + k);
      }
      return o;
    }
    if (n.IsSequence()) {
      oj a = oj::array();
      for (auto x : n) a.push_back(to_json(x, what));
      return a;
    }
    if (n.IsNull()) return nullptr;
    if (!n.IsScalar()) err(n, what + ": unsupported YAML value");
    const std::string s = n.Scalar();
    if (n.Tag() == "!") return s;  // quoted
    if (s == "true" || s == "True") return true;
    if (s == "false" || s == "False") return false;
    if (s == "null" || s == "~") return nullptr;
    try {
      size_t pos = 0;
      long long i = std::stoll(s, &pos);
      if (pos == s.size()) return i;
      double d = std::stod(s, &pos);
      if (pos == s.size()) return d;
    } catch (const std::exception&) {
    }
    return s;
  }
  template <typename T>
  T as(const YAML::Node& n, const std::string& what) const {
    try {
      return n.as<T>();
    } catch (const YAML::Exception&) {
      err(n, fmt::format("{}: cannot read '{}' as the expected type", what, YAML::Dump(n)));
    }
  }
};

std::pair<std::string, std::string> parse_expr(const Ctx& c, const YAML::Node& n, const std::string& expr) {
  // "tuned - base"
  auto pos = expr.find('-');
  if (pos == std::string::npos) c.err(n, fmt::format("vector expression '{}' must be 'TUNED - BASE'", expr));
  auto trim = [](std::string s) {
    s.erase(0, s.find_first_not_of(" \t"));
    s.erase(s.find_last_not_of(" \t") + 1);
    return s;
  };
  std::string a = trim(expr.substr(0, pos)), b = trim(expr.substr(pos + 1));
  if (a.empty() || b.empty() || b.find('-') != std::string::npos)
    c.err(n, fmt::format("vector expression '{}' must be 'TUNED - BASE'", expr));
  return {a, b};
}

}  // namespace

ExperimentConfig parse_config(const std::string& yaml, const fs::path& base_dir, const std::string& origin) {
  Ctx c{origin};
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    fail("{}: invalid YAML: {}", origin, e.what());
  }
  ExperimentConfig cfg;
  cfg.origin = origin;
  c.keys(root, "the experiment config",
         {"name", "models", "targets", "vectors", "vector", "alphas", "conditions", "tasks", "random_control", "eval",
          "out", "keep_models", "backend", "compress"});
  auto resolve = [&](const std::string& p) {
    fs::path q(p);
    return q.is_absolute() ? q : (base_dir / q).lexically_normal();
  };
  if (root["name"]) cfg.name = c.as<std::string>(root["name"], "name");
  if (!root["models"] || !root["models"].IsMap()) c.err(root, "`models` (name: path) is required");
  for (auto it = root["models"].begin(); it != root["models"].end(); ++it)
    cfg.models[it->first.as<std::string>()] = resolve(c.as<std::string>(it->second, "models"));
  if (auto t = root["targets"]) {
    cfg.targets.clear();
    if (t.IsScalar()) cfg.targets.push_back(t.as<std::string>());
    else
      for (auto x : t) cfg.targets.push_back(c.as<std::string>(x, "targets"));
  }
  if (root["vectors"] && root["vector"]) c.err(root, "give either `vector` or `vectors`, not both");
  if (auto v = root["vector"]) {
    auto [a, b] = parse_expr(c, v, c.as<std::string>(v, "vector"));
    cfg.vectors = {VectorConfig{"v", a, b}};
  }
  if (auto vs = root["vectors"]) {
    cfg.vectors.clear();
    if (!vs.IsSequence()) c.err(vs, "`vectors` must be a list");
    for (auto v : vs) {
      VectorConfig vc;
      if (v.IsScalar()) {
        std::tie(vc.tuned, vc.base) = parse_expr(c, v, v.as<std::string>());
      } else {
        c.keys(v, "a vector", {"name", "expr", "tuned", "base"});
        if (v["name"]) vc.name = c.as<std::string>(v["name"], "vector name");
        if (v["expr"]) std::tie(vc.tuned, vc.base) = parse_expr(c, v, c.as<std::string>(v["expr"], "expr"));
        if (v["tuned"]) vc.tuned = c.as<std::string>(v["tuned"], "tuned");
        if (v["base"]) vc.base = c.as<std::string>(v["base"], "base");
      }
      cfg.vectors.push_back(vc);
    }
  }
  if (auto a = root["alphas"]) {
    cfg.alphas.clear();
    for (auto x : a) cfg.alphas.push_back(c.as<double>(x, "alphas"));
  }
  if (auto cs = root["conditions"]) {
    cfg.conditions.clear();
    for (auto x : cs) {
      ConditionConfig cc;
      if (x.IsScalar()) {
        std::string s = x.as<std::string>();
        cc.name = s;
        if (s == "think") cc.think = true;
        else if (s.rfind("perturb:", 0) == 0) {
          std::string rest = s.substr(8);
          size_t p = 0;
          while (p <= rest.size()) {
            size_t e = rest.find(',', p);
            if (e == std::string::npos) e = rest.size();
            if (e > p) cc.perturb.push_back(rest.substr(p, e - p));
            p = e + 1;
          }
          if (cc.perturb.empty()) c.err(x, "condition 'perturb:' names no perturbation");
        } else if (s != "plain") {
          c.err(x, fmt::format("unknown condition '{}' (plain, think, perturb:NAME[,NAME], or a mapping)", s));
        }
      } else {
        c.keys(x, "a condition", {"name", "think", "perturb"});
        if (!x["name"]) c.err(x, "a condition mapping needs a `name`");
        cc.name = c.as<std::string>(x["name"], "condition name");
        if (x["think"]) cc.think = c.as<bool>(x["think"], "think");
        if (auto p = x["perturb"]) {
          if (p.IsScalar()) cc.perturb.push_back(p.as<std::string>());
          else
            for (auto y : p) cc.perturb.push_back(c.as<std::string>(y, "perturb"));
        }
      }
      cfg.conditions.push_back(cc);
    }
  }
  if (!root["tasks"] || !root["tasks"].IsSequence() || root["tasks"].size() == 0)
    c.err(root, "`tasks` (a non-empty list) is required");
  for (auto t : root["tasks"]) {
    TaskConfig tc;
    if (t.IsScalar()) {
      tc.name = t.as<std::string>();
    } else {
      c.keys(t, "a task", {"name", "limit", "num_fewshot", "chat", "max_gen_tokens", "data_dir", "samples", "temperature",
                           "top_p", "min_p", "chat_template_kwargs"});
      if (!t["name"]) c.err(t, "a task needs a `name`");
      tc.name = c.as<std::string>(t["name"], "task name");
      if (t["limit"]) tc.limit = c.as<int64_t>(t["limit"], "limit");
      if (t["num_fewshot"]) tc.num_fewshot = c.as<int>(t["num_fewshot"], "num_fewshot");
      if (t["chat"]) tc.chat = c.as<bool>(t["chat"], "chat");
      if (t["max_gen_tokens"]) tc.max_gen_tokens = c.as<int>(t["max_gen_tokens"], "max_gen_tokens");
      if (t["data_dir"]) tc.data_dir = resolve(c.as<std::string>(t["data_dir"], "data_dir")).string();
      if (t["samples"]) tc.samples = c.as<int>(t["samples"], "samples");
      if (t["temperature"]) tc.temperature = c.as<double>(t["temperature"], "temperature");
      if (t["top_p"]) tc.top_p = c.as<double>(t["top_p"], "top_p");
      if (auto k = t["chat_template_kwargs"]) {
        if (!k.IsMap()) c.err(k, "chat_template_kwargs must be a mapping, e.g. {enable_thinking: false}");
        tc.chat_template_kwargs = c.to_json(k, "chat_template_kwargs");
        if (!tc.chat) c.err(k, fmt::format("task '{}': chat_template_kwargs needs chat: true", tc.name));
      }
      if (t["min_p"]) tc.min_p = c.as<double>(t["min_p"], "min_p");
    }
    cfg.tasks.push_back(tc);
  }
  if (auto r = root["random_control"]) {
    if (r.IsScalar()) {
      cfg.control.enabled = c.as<bool>(r, "random_control");
    } else {
      c.keys(r, "random_control", {"seed", "alphas", "enabled"});
      if (r["enabled"]) cfg.control.enabled = c.as<bool>(r["enabled"], "enabled");
      if (r["seed"]) cfg.control.seed = c.as<uint64_t>(r["seed"], "seed");
      if (r["alphas"]) {
        cfg.control.alphas.clear();
        for (auto x : r["alphas"]) cfg.control.alphas.push_back(c.as<double>(x, "random_control.alphas"));
      }
    }
  }
  if (auto cs = root["compress"]) {
    if (!cs.IsSequence()) c.err(cs, "`compress` must be a list of {method: sparse|int8|lora, ...}");
    for (auto x : cs) {
      CompressConfig cc;
      if (x.IsScalar()) {
        cc.method = x.as<std::string>();
      } else {
        c.keys(x, "a compress entry", {"method", "density", "scope", "rank", "energy"});
        if (!x["method"]) c.err(x, "a compress entry needs a `method` (sparse, int8 or lora)");
        cc.method = c.as<std::string>(x["method"], "compress.method");
        if (x["density"]) cc.density = c.as<double>(x["density"], "compress.density");
        if (x["scope"]) cc.scope = c.as<std::string>(x["scope"], "compress.scope");
        if (x["rank"]) cc.rank = c.as<int>(x["rank"], "compress.rank");
        if (x["energy"]) cc.energy = c.as<double>(x["energy"], "compress.energy");
        const bool sp = cc.method == "sparse", lora = cc.method == "lora";
        if ((x["density"] || x["scope"]) && !sp) c.err(x, "compress: density and scope are options of method sparse");
        if ((x["rank"] || x["energy"]) && !lora) c.err(x, "compress: rank and energy are options of method lora");
      }
      if (cc.method != "sparse" && cc.method != "int8" && cc.method != "lora")
        c.err(x, fmt::format("compress: unknown method '{}' (sparse, int8, lora)", cc.method));
      if (cc.method == "sparse" && !(cc.density > 0 && cc.density <= 1))
        c.err(x, fmt::format("compress: density {} must be in (0, 1]", cc.density));
      if (cc.scope != "tensor" && cc.scope != "global")
        c.err(x, fmt::format("compress: scope '{}' is not tensor or global", cc.scope));
      if (cc.method == "lora" && (cc.rank > 0) == (cc.energy > 0))
        c.err(x, "compress: method lora needs exactly one of rank (> 0) and energy (in (0, 1])");
      if (cc.method == "lora" && cc.energy > 1) c.err(x, fmt::format("compress: energy {} must be in (0, 1]", cc.energy));
      for (const auto& o : cfg.compress)
        if (o.key() == cc.key()) c.err(x, fmt::format("compress: '{}' is listed twice", cc.key()));
      cfg.compress.push_back(cc);
    }
  }
  if (auto e = root["eval"]) {
    c.keys(e, "eval", {"threads", "batch", "seed", "kv_cache_dtype"});
    if (e["threads"]) cfg.threads = c.as<int>(e["threads"], "threads");
    if (auto k = e["kv_cache_dtype"]) {
      cfg.kv_cache_dtype = c.as<std::string>(k, "eval.kv_cache_dtype");
      if (cfg.kv_cache_dtype != "f32" && cfg.kv_cache_dtype != "bf16" && cfg.kv_cache_dtype != "f16")
        c.err(k, fmt::format("eval.kv_cache_dtype must be f32, bf16 or f16, not '{}'", cfg.kv_cache_dtype));
    }
    if (e["batch"]) cfg.batch = c.as<int>(e["batch"], "batch");
    if (e["seed"]) cfg.seed = c.as<uint64_t>(e["seed"], "seed");
  }
  if (auto b = root["backend"]) {
    c.keys(b, "backend",
           {"kind", "launch", "instances", "gpus", "port", "ready_timeout", "stop_grace", "base_url", "served_model",
            "api_key_env", "concurrency", "max_retries", "timeout", "chat_endpoint", "wait_for_server"});
    BackendConfig& bc = cfg.backend;
    if (b["kind"]) bc.kind = c.as<std::string>(b["kind"], "backend.kind");
    if (bc.kind != "engine" && bc.kind != "openai")
      c.err(b["kind"], fmt::format("backend.kind '{}' is not one of: engine, openai", bc.kind));
    if (b["launch"]) bc.launch = c.as<std::string>(b["launch"], "backend.launch");
    if (b["instances"]) bc.instances = c.as<int>(b["instances"], "backend.instances");
    if (auto g = b["gpus"]) {
      if (g.IsScalar()) bc.gpus.push_back(c.as<std::string>(g, "backend.gpus"));
      else
        for (auto x : g) bc.gpus.push_back(c.as<std::string>(x, "backend.gpus"));
    }
    if (b["port"]) bc.port = c.as<int>(b["port"], "backend.port");
    if (b["ready_timeout"]) bc.ready_timeout = c.as<double>(b["ready_timeout"], "backend.ready_timeout");
    if (b["stop_grace"]) bc.stop_grace = c.as<double>(b["stop_grace"], "backend.stop_grace");
    if (auto u = b["base_url"]) {
      if (u.IsScalar()) bc.base_urls.push_back(c.as<std::string>(u, "backend.base_url"));
      else
        for (auto x : u) bc.base_urls.push_back(c.as<std::string>(x, "backend.base_url"));
    }
    if (b["served_model"]) bc.served_model = c.as<std::string>(b["served_model"], "backend.served_model");
    if (b["api_key_env"]) bc.api_key_env = c.as<std::string>(b["api_key_env"], "backend.api_key_env");
    if (b["concurrency"]) bc.concurrency = c.as<int>(b["concurrency"], "backend.concurrency");
    if (b["max_retries"]) bc.max_retries = c.as<int>(b["max_retries"], "backend.max_retries");
    if (b["timeout"]) bc.timeout = c.as<double>(b["timeout"], "backend.timeout");
    if (b["chat_endpoint"]) bc.chat_endpoint = c.as<bool>(b["chat_endpoint"], "backend.chat_endpoint");
    if (b["wait_for_server"]) bc.wait_for_server = c.as<double>(b["wait_for_server"], "backend.wait_for_server");
    if (bc.kind == "openai") {
      if (bc.launch.empty() == bc.base_urls.empty())
        c.err(b, "backend (kind openai) needs exactly one of `launch` (managed servers) and `base_url` (a running one)");
      if (!bc.launch.empty() && bc.launch.find("{port}") == std::string::npos)
        c.err(b["launch"], "backend.launch must contain {port}");
      if (!bc.launch.empty() && bc.launch.find("{model}") == std::string::npos)
        c.err(b["launch"], "backend.launch must contain {model}");
    } else if (!bc.launch.empty() || !bc.base_urls.empty()) {
      c.err(b, "backend.launch / backend.base_url need kind: openai");
    }
    if (bc.instances < 1) c.err(b["instances"], "backend.instances must be at least 1");
    if (bc.concurrency < 1) c.err(b["concurrency"], "backend.concurrency must be at least 1");
    if (!(bc.ready_timeout > 0)) c.err(b["ready_timeout"], "backend.ready_timeout must be positive");
    if (!(bc.timeout > 0)) c.err(b["timeout"], "backend.timeout must be positive");
    if (bc.max_retries < 0) c.err(b["max_retries"], "backend.max_retries must be >= 0");
    if (!(bc.wait_for_server >= 0)) c.err(b["wait_for_server"], "backend.wait_for_server must be >= 0");
  }
  if (root["out"]) cfg.out = resolve(c.as<std::string>(root["out"], "out"));
  if (root["keep_models"]) cfg.keep_models = c.as<bool>(root["keep_models"], "keep_models");

  // Validation.
  if (cfg.targets.empty()) fail("{}: `targets` is empty", origin);
  for (auto& t : cfg.targets) cfg.model_path(t);
  std::set<std::string> vnames;
  for (auto& v : cfg.vectors) {
    cfg.model_path(v.tuned), cfg.model_path(v.base);
    if (!vnames.insert(v.name).second) fail("{}: two vectors are named '{}'", origin, v.name);
  }
  if (cfg.alphas.empty()) fail("{}: `alphas` is empty", origin);
  for (double a : cfg.alphas)
    if (!std::isfinite(a)) fail("{}: alpha {} is not finite", origin, a);
  std::set<std::string> cnames;
  for (auto& cc : cfg.conditions)
    if (!cnames.insert(cc.name).second) fail("{}: two conditions are named '{}'", origin, cc.name);
  std::set<std::string> tnames;
  for (auto& t : cfg.tasks) {
    if (!tnames.insert(t.name).second) fail("{}: task '{}' is listed twice", origin, t.name);
    if (t.limit == 0 || t.limit < -1) fail("{}: task '{}': limit must be positive", origin, t.name);
  }
  if (cfg.batch < 1) fail("{}: eval.batch must be >= 1", origin);
  if (cfg.kv_cache_dtype != "f32" && cfg.backend.kind != "engine")
    fail("{}: eval.kv_cache_dtype is rvec's engine's; a server sets its own (vLLM, SGLang: --kv-cache-dtype in "
         "backend.launch)",
         origin);
  if (!cfg.compress.empty() && std::find(cfg.alphas.begin(), cfg.alphas.end(), 1.0) == cfg.alphas.end())
    fail("{}: `compress` compares gains at α = 1: add 1 to `alphas`", origin);
  return cfg;
}

ExperimentConfig load_config(const fs::path& file) {
  return parse_config(read_file(file), file.parent_path().empty() ? fs::path(".") : file.parent_path(),
                      file.string());
}

}  // namespace rvec::experiment
