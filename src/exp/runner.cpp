#include "exp/runner.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <set>

#include "core/atomic_output.h"
#include "core/error.h"
#include "core/progress.h"
#include "exp/stats.h"
#include "exp/svg.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace rvec::experiment {

namespace {

uint64_t fnv1a(std::string_view s, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string sanitize(const std::string& s) {
  std::string o;
  for (char c : s) o += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_') ? c : '_';
  return o.substr(0, 80);
}

const VectorConfig& vector_of(const ExperimentConfig& cfg, const std::string& name) {
  for (auto& v : cfg.vectors)
    if (v.name == name) return v;
  fail("{}: unknown vector '{}'", cfg.origin, name);
}

std::string vector_fingerprint(const ExperimentConfig& cfg, const VectorConfig& v) {
  return fmt::format("{:016x}", fnv1a(fmt::format("{}|{}|{}", v.name, fs::absolute(cfg.model_path(v.tuned)).string(),
                                                  fs::absolute(cfg.model_path(v.base)).string())));
}

// {"vector_bytes": size of the vector's safetensors files, "rel_err": from compress_report.json}.
json vector_storage(const fs::path& dir) {
  json j = json::object();
  uint64_t bytes = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file() && e.path().extension() == ".safetensors") bytes += e.file_size();
  j["vector_bytes"] = bytes;
  if (fs::exists(dir / "compress_report.json")) {
    try {
      j["rel_err"] = json::parse(read_file(dir / "compress_report.json")).at("total").at("rel_err");
    } catch (const std::exception&) {
    }
  }
  return j;
}

bool is_binary(const std::vector<double>& x) {
  return std::all_of(x.begin(), x.end(), [](double v) { return v == 0.0 || v == 1.0; });
}

std::string pct(double v) { return fmt::format("{:.2f}", v * 100); }
std::string dpts(double d) { return fmt::format("{:+.2f}", d * 100); }
std::string pval(double p) { return p < 0.001 ? fmt::format("{:.1e}", p) : fmt::format("{:.3f}", p); }

}  // namespace

std::vector<Variant> plan_variants(const ExperimentConfig& cfg) {
  std::vector<Variant> out;
  for (auto& t : cfg.targets) {
    out.push_back({t, t, "", 0.0, false, ""});
    for (auto& v : cfg.vectors) {
      std::vector<double> alphas = cfg.alphas;
      std::sort(alphas.begin(), alphas.end());
      alphas.erase(std::unique(alphas.begin(), alphas.end()), alphas.end());
      for (double a : alphas) {
        if (a == 0) continue;
        std::string id = fmt::format("{}{}{}*{}", t, a < 0 ? "-" : "+", format_alpha(std::fabs(a)), v.name);
        out.push_back({id, t, v.name, a, false, ""});
      }
      if (cfg.control.enabled)
        for (double a : cfg.control.alphas) {
          if (a == 0) continue;
          std::string id = fmt::format("{}{}{}*rand({})", t, a < 0 ? "-" : "+", format_alpha(std::fabs(a)), v.name);
          out.push_back({id, t, v.name, a, true, ""});
        }
      for (const auto& cc : cfg.compress)
        out.push_back({fmt::format("{}+1*{}[{}]", t, v.name, cc.key()), t, v.name, 1.0, false, cc.key()});
    }
  }
  return out;
}

std::string cell_fingerprint(const ExperimentConfig& cfg, const Variant& v, const ConditionConfig& c,
                             const TaskConfig& t) {
  std::string s = fmt::format("target={}|", fs::absolute(cfg.model_path(v.target)).string());
  if (v.alpha != 0) {
    s += fmt::format("vector={}|alpha={}|control={}|", vector_fingerprint(cfg, vector_of(cfg, v.vector)),
                     format_alpha(v.alpha), v.control ? fmt::format("seed{}", cfg.control.seed) : "no");
  }
  s += fmt::format("cond={}|task={}|evalseed={}", c.key(), t.key(), cfg.seed);
  if (std::string b = cfg.backend.key(); !b.empty()) s += "|" + b;  // engine cells keep their fingerprints
  if (cfg.kv_cache_dtype != "f32") s += "|kv_cache_dtype=" + cfg.kv_cache_dtype;
  if (!v.compress.empty()) s += "|compress=" + v.compress;
  return fmt::format("{:016x}", fnv1a(s));
}

namespace {
json gain_retained(const json& res);
}  // namespace

json build_results(const ExperimentConfig& cfg, const std::vector<json>& cells) {
  json res;
  res["rvec_version"] = RVEC_VERSION;
  res["name"] = cfg.name;
  json models = json::object();
  for (auto& [k, p] : cfg.models) models[k] = p.string();
  res["models"] = models;
  res["targets"] = cfg.targets;
  json vecs = json::array();
  for (auto& v : cfg.vectors) vecs.push_back({{"name", v.name}, {"tuned", v.tuned}, {"base", v.base}});
  res["vectors"] = vecs;
  std::vector<double> alphas = cfg.alphas;
  if (std::find(alphas.begin(), alphas.end(), 0.0) == alphas.end()) alphas.push_back(0.0);
  std::sort(alphas.begin(), alphas.end());
  res["alphas"] = alphas;
  res["random_control"] = {{"enabled", cfg.control.enabled}, {"seed", cfg.control.seed}, {"alphas", cfg.control.alphas}};
  json conds = json::array();
  for (auto& c : cfg.conditions) conds.push_back({{"name", c.name}, {"think", c.think}, {"perturb", c.perturb}});
  res["conditions"] = conds;
  json tasks = json::array();
  for (auto& t : cfg.tasks) {
    tasks.push_back({{"name", t.name}, {"limit", t.limit}, {"num_fewshot", t.num_fewshot}, {"chat", t.chat},
                     {"max_gen_tokens", t.max_gen_tokens}});
    if (!t.chat_template_kwargs.empty()) tasks.back()["chat_template_kwargs"] = json::parse(t.chat_template_kwargs.dump());
  }
  res["tasks"] = tasks;

  // Baselines: (target, condition, task) -> cell.
  std::map<std::string, const json*> base;
  auto bkey = [](const json& c) {
    return c["target"].get<std::string>() + "\x1f" + c["condition"].get<std::string>() + "\x1f" +
           c["task"].get<std::string>();
  };
  for (auto& c : cells)
    if (c["alpha"].get<double>() == 0) base[bkey(c)] = &c;
  json rows = json::array();
  for (auto& c : cells) {
    json r;
    for (const char* k : {"model", "target", "vector", "alpha", "control", "condition", "task", "metric", "value",
                          "stderr", "n"})
      r[k] = c[k];
    r["baseline_value"] = nullptr;
    r["delta"] = nullptr;
    r["p_value"] = nullptr;
    r["test"] = nullptr;
    auto it = base.find(bkey(c));
    std::vector<double> mine = c["per_doc"].get<std::vector<double>>();
    if (it != base.end()) {
      const json& b = *it->second;
      r["baseline_value"] = b["value"];
      if (c["alpha"].get<double>() != 0) {
        std::vector<double> bd = b["per_doc"].get<std::vector<double>>();
        r["delta"] = c["value"].get<double>() - b["value"].get<double>();
        if (bd.size() == mine.size() && !mine.empty()) {
          if (is_binary(bd) && is_binary(mine)) {
            auto m = mcnemar(bd, mine);
            r["p_value"] = m.p_exact;
            r["test"] = "mcnemar_exact";
            r["mcnemar_b"] = m.b;
            r["mcnemar_c"] = m.c;
          } else {
            auto bs = paired_bootstrap(bd, mine, 10000, 1234);
            r["p_value"] = bs.p;
            r["test"] = "paired_bootstrap";
            r["ci95"] = {bs.ci_low, bs.ci_high};
          }
        }
      }
    }
    r["compress"] = c.value("compress", "");
    for (const char* k : {"vector_bytes", "rel_err"})
      if (c.contains(k)) r[k] = c[k];
    r["per_doc"] = mine;
    if (c.contains("extra")) r["extra"] = c["extra"];
    rows.push_back(r);
  }
  res["rows"] = rows;
  if (!cfg.compress.empty()) {
    json cc = json::array();
    for (const auto& c : cfg.compress)
      cc.push_back({{"key", c.key()}, {"method", c.method}, {"density", c.density}, {"scope", c.scope},
                    {"rank", c.rank}, {"energy", c.energy}});
    res["compress"] = cc;
    res["gain_retained"] = gain_retained(res);
  }
  return res;
}

namespace {

struct Table {
  std::vector<std::string> head;
  size_t nleft = 3;  // leading text columns (left-aligned); the rest are numbers
  std::vector<std::vector<std::string>> rows;
  std::string markdown() const {
    std::string o = "|";
    for (auto& h : head) o += " " + h + " |";
    o += "\n|";
    for (size_t i = 0; i < head.size(); ++i) o += i < nleft ? "---|" : "---:|";
    o += "\n";
    for (auto& r : rows) {
      o += "|";
      for (auto& c : r) o += " " + c + " |";
      o += "\n";
    }
    return o;
  }
  std::string text() const {
    std::vector<size_t> w(head.size());
    auto width = [](const std::string& s) {  // UTF-8 code points
      size_t n = 0;
      for (unsigned char c : s) n += (c & 0xC0) != 0x80;
      return n;
    };
    for (size_t i = 0; i < head.size(); ++i) w[i] = width(head[i]);
    for (auto& r : rows)
      for (size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], width(r[i]));
    auto line = [&](const std::vector<std::string>& r) {
      std::string o;
      for (size_t i = 0; i < r.size(); ++i) {
        std::string pad(w[i] - width(r[i]), ' ');
        o += (i ? "  " : "") + (i < nleft ? r[i] + pad : pad + r[i]);
      }
      return o + "\n";
    };
    std::string o = line(head);
    size_t total = 0;
    for (size_t x : w) total += x + 2;
    o += std::string(total > 2 ? total - 2 : 0, '-') + "\n";
    for (auto& r : rows) o += line(r);
    return o;
  }
};

const json* find_row(const json& rows, const std::string& target, const std::string& vec, double alpha, bool control,
                     const std::string& cond, const std::string& task, const std::string& compress = "") {
  for (auto& r : rows) {
    if (r["target"] != target || r["condition"] != cond || r["task"] != task) continue;
    if (r.value("compress", "") != compress) continue;
    double a = r["alpha"].get<double>();
    if (a != alpha) continue;
    if (alpha == 0) return &r;
    if (r["vector"] == vec && r["control"].get<bool>() == control) return &r;
  }
  return nullptr;
}

std::string cell_str(const json* r, bool with_delta) {
  if (!r) return "–";
  std::string s = pct(r->at("value").get<double>());
  if (with_delta && !r->at("delta").is_null()) {
    s += " (" + dpts(r->at("delta").get<double>());
    if (!r->at("p_value").is_null()) s += ", p=" + pval(r->at("p_value").get<double>());
    s += ")";
  }
  return s;
}

// The summary: baseline, +v, -v and the random control at alpha = +-1 per (target, vector, condition, task).
Table summary_table(const json& res) {
  Table t;
  t.head = {"target", "condition", "task", "baseline", "+v (α=1)", "−v (α=−1)", "random (α=1)", "random (α=−1)"};
  for (auto& target : res["targets"])
    for (auto& v : res["vectors"])
      for (auto& c : res["conditions"])
        for (auto& task : res["tasks"]) {
          std::string tg = target, vn = v["name"], cn = c["name"], tn = task["name"];
          const json* b = find_row(res["rows"], tg, vn, 0, false, cn, tn);
          if (!b) continue;
          std::string label = res["vectors"].size() > 1 ? tg + " [" + vn + "]" : tg;
          t.rows.push_back({label, cn, tn, cell_str(b, false), cell_str(find_row(res["rows"], tg, vn, 1, false, cn, tn), true),
                            cell_str(find_row(res["rows"], tg, vn, -1, false, cn, tn), true),
                            cell_str(find_row(res["rows"], tg, vn, 1, true, cn, tn), true),
                            cell_str(find_row(res["rows"], tg, vn, -1, true, cn, tn), true)});
        }
  // Drop control columns that are entirely empty.
  for (int col = int(t.head.size()) - 1; col >= 4; --col) {
    bool empty = std::all_of(t.rows.begin(), t.rows.end(), [&](auto& r) { return r[size_t(col)] == "–"; });
    if (empty && !t.rows.empty()) {
      t.head.erase(t.head.begin() + col);
      for (auto& r : t.rows) r.erase(r.begin() + col);
    }
  }
  return t;
}

Table sweep_table(const json& res) {
  Table t;
  t.head = {"target", "condition", "task"};
  std::vector<double> alphas = res["alphas"].get<std::vector<double>>();
  for (double a : alphas) t.head.push_back("α=" + format_alpha(a));
  for (auto& target : res["targets"])
    for (auto& v : res["vectors"])
      for (auto& c : res["conditions"])
        for (auto& task : res["tasks"]) {
          std::string tg = target, vn = v["name"], cn = c["name"], tn = task["name"];
          std::vector<std::string> row{res["vectors"].size() > 1 ? tg + " [" + vn + "]" : tg, cn, tn};
          for (double a : alphas) {
            const json* r = find_row(res["rows"], tg, vn, a, false, cn, tn);
            row.push_back(r ? pct(r->at("value").get<double>()) : "–");
          }
          t.rows.push_back(row);
        }
  return t;
}

// The "gain retained vs size" rows (runner.h, render_gain_svg).
json gain_retained(const json& res) {
  json out = json::array();
  const json& rows = res["rows"];
  for (auto& target : res["targets"])
    for (auto& v : res["vectors"])
      for (auto& c : res["conditions"])
        for (auto& task : res["tasks"]) {
          std::string tg = target, vn = v["name"], cn = c["name"], tn = task["name"];
          const json* b = find_row(rows, tg, vn, 0, false, cn, tn);
          const json* l = find_row(rows, tg, vn, 1, false, cn, tn);
          if (!b || !l) continue;
          const double base = b->at("value").get<double>(), lgain = l->at("value").get<double>() - base;
          const json lbytes = l->value("vector_bytes", json());
          auto add = [&](const json& r, const std::string& key) {
            const double gain = r["value"].get<double>() - base;
            json g = {{"target", tg},   {"vector", vn},        {"condition", cn},        {"task", tn},
                      {"compress", key}, {"model", r["model"]}, {"value", r["value"]},    {"baseline_value", base},
                      {"gain", gain},   {"lossless_gain", lgain}, {"p_value", r["p_value"]}};
            g["retained"] = lgain != 0 ? json(gain / lgain) : json();
            g["bytes"] = r.value("vector_bytes", json());
            g["size_fraction"] = g["bytes"].is_number() && lbytes.is_number() && lbytes.get<double>() > 0
                                     ? json(g["bytes"].get<double>() / lbytes.get<double>())
                                     : json();
            g["rel_err"] = r.value("rel_err", json(key.empty() ? json(0.0) : json()));
            out.push_back(g);
          };
          add(*l, "");
          for (auto& cc : res["compress"]) {
            const std::string key = cc["key"];
            if (const json* r = find_row(rows, tg, vn, 1, false, cn, tn, key)) add(*r, key);
          }
        }
  return out;
}

Table gain_table(const json& res) {
  Table t;
  t.head = {"target", "condition", "task", "vector", "stored", "% of lossless size", "rel. error", "+v score",
            "gain (pts)", "gain retained"};
  t.nleft = 4;
  for (auto& g : res["gain_retained"]) {
    std::string vec = g["vector"].get<std::string>() + (g["compress"] == "" ? " (lossless)" : " [" + g["compress"].get<std::string>() + "]");
    t.rows.push_back({g["target"], g["condition"], g["task"], vec,
                      g["bytes"].is_number() ? format_bytes(g["bytes"].get<double>()) : "–",
                      g["size_fraction"].is_number() ? pct(g["size_fraction"].get<double>()) : "–",
                      g["rel_err"].is_number() ? fmt::format("{:.3f}", g["rel_err"].get<double>()) : "–",
                      pct(g["value"].get<double>()), dpts(g["gain"].get<double>()),
                      g["retained"].is_number() ? pct(g["retained"].get<double>()) + "%" : "–"});
  }
  return t;
}

}  // namespace

std::string render_report(const json& res) {
  std::string o;
  o += fmt::format("# Reasoning-vector experiment: {}\n\n", res["name"].get<std::string>());
  o += "Produced by `rvec experiment` (rvec " + res["rvec_version"].get<std::string>() + ").\n\n";
  o += "Models:\n\n";
  for (auto& [k, v] : res["models"].items()) o += fmt::format("- `{}`: `{}`\n", k, v.get<std::string>());
  o += "\nVectors:";
  for (auto& v : res["vectors"])
    o += fmt::format(" `{} = {} − {}`", v["name"].get<std::string>(), v["tuned"].get<std::string>(),
                     v["base"].get<std::string>());
  o += ". Merged models: `target + α·v`.";
  if (res["random_control"]["enabled"].get<bool>())
    o += fmt::format(" Random control `rand(v)`: a random direction with the same per-tensor L2 norms as v (seed {}).",
                     res["random_control"]["seed"].get<uint64_t>());
  o += "\n\nValues are percentages (metric × 100); Δ is the difference to the baseline (α = 0, same target, "
       "condition and task) in points; p is the two-sided paired test on the same documents "
       "(exact McNemar for 0/1 scores, paired bootstrap otherwise).\n\n";
  o += "## Summary\n\n" + summary_table(res).markdown() + "\n";
  o += "## α sweep\n\n" + sweep_table(res).markdown() + "\n";
  // Think condition versus plain at the baseline, when both are present.
  bool has_plain = false, has_think = false;
  for (auto& c : res["conditions"]) {
    if (c["name"] == "plain") has_plain = true;
    if (c["think"].get<bool>()) has_think = true;
  }
  if (has_plain && has_think) {
    Table t;
    t.head = {"model", "condition", "task", "plain", "this condition", "Δ", "p"};
    for (auto& target : res["targets"])
      for (auto& c : res["conditions"]) {
        if (!c["think"].get<bool>()) continue;
        for (auto& task : res["tasks"]) {
          std::string tg = target, cn = c["name"], tn = task["name"];
          bool baseline_done = false;
          for (auto& v : res["vectors"])
            for (double a : res["alphas"].get<std::vector<double>>()) {
              if (a == 0 && baseline_done) continue;  // the baseline is shared by all vectors
              const json* p = find_row(res["rows"], tg, v["name"], a, false, "plain", tn);
              const json* q = find_row(res["rows"], tg, v["name"], a, false, cn, tn);
              if (!p || !q) continue;
              if (a == 0) baseline_done = true;
              std::vector<double> pd = p->at("per_doc").get<std::vector<double>>(),
                                  qd = q->at("per_doc").get<std::vector<double>>();
              std::string ps = "–";
              if (pd.size() == qd.size() && !pd.empty())
                ps = pval(is_binary(pd) && is_binary(qd) ? mcnemar(pd, qd).p_exact : paired_bootstrap(pd, qd).p);
              t.rows.push_back({q->at("model").get<std::string>(), cn, tn, pct(p->at("value").get<double>()),
                                pct(q->at("value").get<double>()),
                                dpts(q->at("value").get<double>() - p->at("value").get<double>()), ps});
            }
        }
      }
    o += "## Think condition versus plain\n\n" + t.markdown() + "\n";
  }
  Table all;
  all.head = {"model", "α", "condition", "task", "metric", "value", "stderr", "n", "Δ", "p", "test"};
  all.nleft = 5;
  for (auto& r : res["rows"])
    all.rows.push_back({r["model"].get<std::string>(), format_alpha(r["alpha"].get<double>()),
                        r["condition"].get<std::string>(), r["task"].get<std::string>(), r["metric"].get<std::string>(),
                        pct(r["value"].get<double>()), pct(r["stderr"].get<double>()), std::to_string(r["n"].get<int64_t>()),
                        r["delta"].is_null() ? "–" : dpts(r["delta"].get<double>()),
                        r["p_value"].is_null() ? "–" : pval(r["p_value"].get<double>()),
                        r["test"].is_null() ? "–" : r["test"].get<std::string>()});
  if (res.contains("gain_retained")) {
    o += "## Gain retained vs size\n\n"
         "Each compressed vector (`rvec compress`) is applied at α = 1. *Gain retained* = (its score − baseline) ÷ "
         "(the lossless vector's score at α = 1 − baseline); *stored* counts the vector's safetensors files; *rel. "
         "error* is ‖v − decoded‖_F / ‖v‖_F. Plotted in `gain_vs_size.svg`.\n\n" +
         gain_table(res).markdown() + "\n";
  }
  o += "## All cells\n\n" + all.markdown() + "\n";
  o += "The α sweep is plotted in `alpha_sweep.svg`; every number above is in `results.json` (`rows`).\n";
  return o;
}

std::string render_terminal_table(const json& res) {
  std::string o = summary_table(res).text() + "\n" + sweep_table(res).text();
  if (res.contains("gain_retained")) o += "\n" + gain_table(res).text();
  return o;
}

std::string render_gain_svg(const json& res) {
  PlotSpec p;
  p.title = "Gain retained vs size (" + res["name"].get<std::string>() + ")";
  p.x_label = "stored size (% of the lossless vector)";
  p.y_label = "gain retained (%)";
  // One series per storage method and cell group; int8 (one size) as markers.
  std::map<std::string, PlotSeries> series;
  std::vector<std::string> order;
  const bool many = res["gain_retained"].size() > res["compress"].size() + 1;
  for (auto& g : res["gain_retained"]) {
    if (!g["retained"].is_number() || !g["size_fraction"].is_number()) continue;
    const std::string key = g["compress"];
    const std::string method = key.empty() ? "lossless" : key.substr(0, key.find('-'));
    std::string name = method == "sparse" && key.ends_with("-global") ? "sparse (global)" : method;
    if (many)
      name += fmt::format(" – {} ({}, {})", g["task"].get<std::string>(), g["target"].get<std::string>(),
                          g["condition"].get<std::string>());
    if (!series.count(name)) {
      series[name] = PlotSeries{name, {}, method == "int8" || method == "lossless"};
      order.push_back(name);
    }
    series[name].points.push_back({g["size_fraction"].get<double>() * 100, g["retained"].get<double>() * 100, 0});
  }
  for (auto& n : order) {
    auto& s = series[n];
    std::sort(s.points.begin(), s.points.end(), [](const PlotPoint& a, const PlotPoint& b) { return a.x < b.x; });
    p.series.push_back(s);
  }
  return render_line_chart_svg(p);
}

std::string render_alpha_svg(const json& res) {
  PlotSpec p;
  p.title = "Accuracy vs α: target + α·v (" + res["name"].get<std::string>() + ")";
  p.x_label = "α";
  p.y_label = "score (%)";
  p.x_ticks = res["alphas"].get<std::vector<double>>();
  size_t nt = res["targets"].size(), nv = res["vectors"].size(), nc = res["conditions"].size();
  std::vector<PlotSeries> controls;
  for (auto& target : res["targets"])
    for (auto& v : res["vectors"])
      for (auto& c : res["conditions"])
        for (auto& task : res["tasks"]) {
          std::string tg = target, vn = v["name"], cn = c["name"], tn = task["name"];
          std::string suffix;
          if (nt > 1) suffix += tg;
          if (nv > 1) suffix += (suffix.empty() ? "" : ", ") + vn;
          if (nc > 1) suffix += (suffix.empty() ? "" : ", ") + cn;
          std::string name = suffix.empty() ? tn : tn + " (" + suffix + ")";
          PlotSeries s{name, {}, false}, ctl{"random control: " + name, {}, true};
          for (auto& r : res["rows"]) {
            if (r["target"] != tg || r["condition"] != cn || r["task"] != tn) continue;
            double a = r["alpha"].get<double>();
            if (a != 0 && r["vector"] != vn) continue;
            if (r.value("compress", "") != "") continue;  // in gain_vs_size.svg
            PlotPoint pt{a, r["value"].get<double>() * 100, r["stderr"].get<double>() * 100};
            if (a != 0 && r["control"].get<bool>()) ctl.points.push_back(pt);
            else s.points.push_back(pt);
          }
          if (!s.points.empty()) p.series.push_back(s);
          if (!ctl.points.empty()) controls.push_back(ctl);
        }
  for (auto& c : controls) p.series.push_back(c);
  return render_line_chart_svg(p);
}

RunSummary run_experiment(const ExperimentConfig& cfg, const RunOptions& opts, CellEvaluator& evaluator,
                          VectorOps& ops) {
  auto t0 = std::chrono::steady_clock::now();
  RunSummary sum;
  sum.out = opts.out.empty() ? cfg.out : opts.out;
  bool keep = opts.keep_models || cfg.keep_models;
  auto log = [&](const std::string& s) {
    if (!opts.quiet) fmt::print(stderr, "{}\n", s);
  };
  fs::path cells_dir = sum.out / "cells", vec_dir = sum.out / "vectors",
           scratch = sum.out / (keep ? "models" : "scratch");
  if (opts.fresh) {
    std::error_code ec;
    fs::remove_all(cells_dir, ec);
  } else if (!opts.resume && fs::exists(cells_dir) && !fs::is_empty(cells_dir)) {
    fail("{} holds cells of an earlier run: pass --resume to reuse them (or --fresh to start over)",
         cells_dir.string());
  }
  fs::create_directories(cells_dir);
  // Inputs must exist before anything runs.
  for (auto& [name, path] : cfg.models)
    if (!fs::is_directory(path)) fail("{}: model '{}': {} is not a directory", cfg.origin, name, path.string());

  std::vector<Variant> variants = plan_variants(cfg);
  if (!cfg.backend.base_urls.empty() && variants.size() != 1)
    fail("{}: backend.base_url is one running server, which serves one model, but this grid evaluates {} models "
         "(targets x alphas, random control); use backend.launch to start servers per model, or reduce the grid "
         "to one model (alphas: [0], random_control: false)",
         cfg.origin, variants.size());
  struct Cell {
    const Variant* v;
    const ConditionConfig* c;
    const TaskConfig* t;
    std::string fp;
    fs::path file;
  };
  std::vector<Cell> cells;
  for (auto& v : variants)
    for (auto& c : cfg.conditions)
      for (auto& t : cfg.tasks) {
        std::string fp = cell_fingerprint(cfg, v, c, t);
        fs::path f = cells_dir / (sanitize(v.id + "__" + c.name + "__" + t.name) + "__" + fp.substr(0, 12) + ".json");
        cells.push_back({&v, &c, &t, fp, f});
      }
  sum.cells_total = cells.size();
  std::map<std::string, json> done;  // fingerprint -> cell json
  for (auto& c : cells) {
    if (!fs::exists(c.file)) continue;
    try {
      json j = json::parse(read_file(c.file));
      if (j.value("fingerprint", "") == c.fp) {
        done[c.fp] = j;
        continue;
      }
    } catch (const std::exception& e) {
      log(fmt::format("rvec: ignoring unreadable cache {}: {}", c.file.string(), e.what()));
    }
  }
  sum.cells_cached = done.size();
  log(fmt::format("experiment '{}': {} models x {} conditions x {} tasks = {} cells ({} cached) -> {}", cfg.name,
                  variants.size(), cfg.conditions.size(), cfg.tasks.size(), cells.size(), done.size(),
                  sum.out.string()));

  // Vectors on demand, kept under DIR/vectors for resumed runs.
  std::map<std::string, fs::path> vec_paths;
  auto vector_path = [&](const Variant& v) -> fs::path {
    const VectorConfig& vc = vector_of(cfg, v.vector);
    std::string fp = vector_fingerprint(cfg, vc);
    std::string key = v.control ? fmt::format("{}-random-{}-{}", vc.name, cfg.control.seed, fp.substr(0, 12))
                                : fmt::format("{}-{}", vc.name, fp.substr(0, 12));
    if (!v.compress.empty()) key += "-" + v.compress;
    fs::path p = vec_dir / sanitize(key);
    if (vec_paths.count(key)) return p;
    fs::create_directories(vec_dir);
    fs::path plain = vec_dir / sanitize(fmt::format("{}-{}", vc.name, fp.substr(0, 12)));
    if (!fs::exists(plain)) {
      log(fmt::format("extracting {} = {} - {}", vc.name, vc.tuned, vc.base));
      ops.extract(cfg.model_path(vc.base), cfg.model_path(vc.tuned), plain);
    }
    if (v.control && !fs::exists(p)) {
      log(fmt::format("building the random control for {} (same per-tensor norms, seed {})", vc.name,
                      cfg.control.seed));
      ops.random_like(plain, cfg.control.seed, p);
    }
    if (!v.compress.empty() && !fs::exists(p)) {
      log(fmt::format("compressing {} ({})", vc.name, v.compress));
      auto cc = std::find_if(cfg.compress.begin(), cfg.compress.end(),
                             [&](const CompressConfig& x) { return x.key() == v.compress; });
      if (cc == cfg.compress.end()) fail("internal: unknown compress key '{}'", v.compress);
      ops.compress(plain, *cc, p);
    }
    vec_paths[key] = p;
    return p;
  };

  int computed = 0;
  size_t index = 0;
  for (auto& v : variants) {
    std::vector<Cell*> todo;
    for (auto& c : cells)
      if (c.v == &v && !done.count(c.fp)) todo.push_back(&c);
    index += cfg.conditions.size() * cfg.tasks.size();
    if (todo.empty()) continue;
    fs::path model = cfg.model_path(v.target);
    bool transient = false;
    json vec_info = json::object();  // storage of the vector (lossless or compressed)
    if (v.alpha != 0) {
      fs::path vp = vector_path(v);
      if (!v.control) vec_info = vector_storage(vp);
      fs::create_directories(scratch);
      model = scratch / sanitize(v.id + "-" + todo.front()->fp.substr(0, 8));
      if (!(keep && fs::exists(model))) {
        log(fmt::format("building {}", v.id));
        ops.apply(cfg.model_path(v.target), vp, v.alpha, model);
      }
      transient = !keep;
    }
    for (Cell* c : todo) {
      auto tc = std::chrono::steady_clock::now();
      log(fmt::format("[{}/{}] evaluating {} | {} | {}", computed + sum.cells_cached + 1, cells.size(), v.id,
                      c->c->name, c->t->name));
      // Samples finished within the cell are cached here (remote backends), so an interrupted
      // cell resumes at request granularity; the folder goes once the cell is written.
      fs::path partial = sum.out / "partial" / c->fp;
      evaluator.begin_cell(partial);
      CellResult r = evaluator.evaluate(model, *c->c, *c->t);
      if (r.per_doc.size() != size_t(r.n))
        fail("evaluation of {} on {} returned {} per-document scores for n = {}", c->t->name, v.id, r.per_doc.size(),
             r.n);
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - tc).count();
      json j = {{"fingerprint", c->fp},  {"model", v.id},          {"target", v.target},   {"vector", v.vector},
                {"alpha", v.alpha},      {"control", v.control},   {"condition", c->c->name}, {"task", c->t->name},
                {"task_key", c->t->key()}, {"metric", r.metric},   {"value", r.value},     {"stderr", r.std_err},
                {"n", r.n},              {"per_doc", r.per_doc},   {"extra", r.extra},    {"seconds", secs}};
      if (!v.compress.empty()) j["compress"] = v.compress;
      j.update(vec_info);
      write_file_atomic(c->file, j.dump());
      {
        std::error_code ec;
        fs::remove_all(partial, ec);
      }
      done[c->fp] = j;
      ++computed;
      log(fmt::format("      {} = {:.2f}% ± {:.2f} (n={}, {:.1f}s)", r.metric, r.value * 100, r.std_err * 100, r.n,
                      secs));
      if (opts.fail_after_cells >= 0 && computed >= opts.fail_after_cells)
        fail("injected failure after {} computed cells (testing)", computed);
    }
    if (transient) {
      evaluator.release();
      std::error_code ec;
      fs::remove_all(model, ec);
    }
  }
  (void)index;
  sum.cells_computed = size_t(computed);
  if (!keep) {
    std::error_code ec;
    fs::remove_all(sum.out / "scratch", ec);
  }
  {
    std::error_code ec;
    fs::remove(sum.out / "partial", ec);  // only when empty
  }

  std::vector<json> ordered;
  for (auto& c : cells) ordered.push_back(done.at(c.fp));
  sum.results = build_results(cfg, ordered);
  sum.report_md = render_report(sum.results);
  sum.terminal_table = render_terminal_table(sum.results);
  write_file_atomic(sum.out / "results.json", sum.results.dump(1));
  write_file_atomic(sum.out / "report.md", sum.report_md);
  write_file_atomic(sum.out / "alpha_sweep.svg", render_alpha_svg(sum.results));
  if (sum.results.contains("gain_retained")) write_file_atomic(sum.out / "gain_vs_size.svg", render_gain_svg(sum.results));
  sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return sum;
}

void VectorOps::compress(const fs::path& vector, const CompressConfig& c, const fs::path&) {
  fail("compressing {} ({}) is not supported by this arithmetic backend", vector.string(), c.key());
}

}  // namespace rvec::experiment
