// mergekit configs (merge_method: linear | task_arithmetic) mapped onto the engine.
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <set>

#include "arith/arith.h"
#include "arith/engine.h"
#include "arith/sparsify.h"
#include "core/error.h"
#include "core/input_file.h"
#include "io/model_dir.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace rvec::arith {

namespace {

json to_json(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Scalar: {
      const std::string s = n.Scalar();
      try {
        size_t pos = 0;
        double d = std::stod(s, &pos);
        if (pos == s.size()) return d;
      } catch (...) {
      }
      if (s == "true") return true;
      if (s == "false") return false;
      return s;
    }
    case YAML::NodeType::Sequence: {
      json a = json::array();
      for (const auto& e : n) a.push_back(to_json(e));
      return a;
    }
    case YAML::NodeType::Map: {
      json o = json::object();
      for (const auto& kv : n) o[kv.first.Scalar()] = to_json(kv.second);
      return o;
    }
    default: return nullptr;
  }
}

struct Ctx {
  std::string file;
  int num_layers = 1;
};

double as_number(const Ctx& c, const YAML::Node& n, const std::string& what) {
  if (!n.IsScalar()) fail("{}: {} must be a number", c.file, what);
  try {
    size_t pos = 0;
    double d = std::stod(n.Scalar(), &pos);
    if (pos != n.Scalar().size()) throw std::invalid_argument("trailing");
    return d;
  } catch (const std::exception&) {
    fail("{}: {}: '{}' is not a number", c.file, what, n.Scalar());
  }
}

// Position of a tensor along the layer stack: embeddings 0, layer i i/(L-1), the rest 1.
double tensor_t(const Ctx& c, const std::string& name) {
  int l = layer_index(name);
  if (l >= 0) return c.num_layers > 1 ? double(l) / double(c.num_layers - 1) : 0.0;
  if (name.find("embed_tokens") != std::string::npos) return 0.0;
  return 1.0;
}

// Evaluates a parameter value (scalar, gradient, or [{filter, value}]) for a tensor.
std::optional<double> eval_param(const Ctx& c, const YAML::Node& v, const std::string& tensor, const std::string& what) {
  if (!v || v.IsNull()) return std::nullopt;
  if (v.IsScalar()) {
    if (v.Scalar() == "true") return 1.0;
    if (v.Scalar() == "false") return 0.0;
    return as_number(c, v, what);
  }
  if (!v.IsSequence()) fail("{}: {} must be a number, a list of numbers or a list of {{filter, value}}", c.file, what);
  if (v.size() == 0) fail("{}: {} is an empty list", c.file, what);
  if (v[0].IsMap()) {
    for (const auto& e : v) {
      if (!e.IsMap() || !e["value"]) fail("{}: {}: each entry must be {{filter, value}}", c.file, what);
      const YAML::Node f = e["filter"];
      if (!f || f.IsNull() || f.Scalar() == "*" || tensor.find(f.Scalar()) != std::string::npos)
        return eval_param(c, e["value"], tensor, what);
    }
    return std::nullopt;
  }
  std::vector<double> g;
  for (const auto& e : v) g.push_back(as_number(c, e, what));
  if (g.size() == 1) return g[0];
  const double t = tensor_t(c, tensor) * double(g.size() - 1);
  size_t i = std::min(size_t(t), g.size() - 2);
  const double f = t - double(i);
  return g[i] + (g[i + 1] - g[i]) * f;
}

// mergekit's generalized task-arithmetic methods (merge_methods/registry.py):
// consensus, sparsification, and the defaults of normalize and rescale.
struct GtaMethod {
  const char* name;
  bool consensus;
  sparse::Method sparsify;
  bool normalize, rescale;
};
constexpr GtaMethod kGta[] = {
    {"ties", true, sparse::Method::Magnitude, true, false},
    {"dare_ties", true, sparse::Method::Random, false, true},
    {"dare_linear", false, sparse::Method::Random, false, true},
    {"breadcrumbs", false, sparse::Method::MagnitudeOutliers, false, false},
    {"breadcrumbs_ties", true, sparse::Method::MagnitudeOutliers, false, false},
    {"della", true, sparse::Method::Della, true, true},
    {"della_linear", false, sparse::Method::Della, false, true},
};

const GtaMethod* find_gta(const std::string& m) {
  for (const auto& g : kGta)
    if (m == g.name) return &g;
  return nullptr;
}

fs::path resolve_model(const fs::path& cfg, const std::string& m) {
  fs::path p(m);
  if (p.is_absolute() || fs::exists(p)) return p;
  fs::path q = cfg.parent_path() / p;
  if (fs::exists(q)) return q;
  return p;  // ModelDir::open reports it
}

std::string model_name(const Ctx& c, const YAML::Node& n, const std::string& what) {
  if (n.IsScalar()) return n.Scalar();
  if (n.IsMap() && n["model"] && n["model"].IsScalar()) return n["model"].Scalar();
  fail("{}: {} must be a model path", c.file, what);
}

template <typename Param, typename GlobalParam>
Report merge_gta(const Ctx& c, const fs::path& config, const YAML::Node& root, const GtaMethod& m,
                 const std::vector<std::string>& names, size_t nmodels, Param param, GlobalParam global_param,
                 const Options& opts) {
  detail::Job job;
  job.operation = "merge";
  for (const auto& n : names) {
    job.names.push_back(n);
    job.paths.push_back(resolve_model(config, n));
  }
  job.target = 0;
  detail::SparseJob sj;
  sj.method = m.sparsify;
  sj.consensus = m.consensus;
  sj.seed = opts.seed;
  for (size_t i = 0; i < nmodels; ++i) sj.deltas.push_back({{i + 1, 1.0}, {0, -1.0}});  // model_i - base
  const bool has_gamma = m.sparsify == sparse::Method::MagnitudeOutliers;
  const bool has_eps = m.sparsify == sparse::Method::Della;
  sj.delta_params = [=](size_t d, const std::string& tensor) {
    detail::DeltaParams p;
    auto w = param(d, "weight", tensor);
    if (!w) fail("{}: no weight for model {} (tensor {})", c.file, names[d + 1], tensor);
    p.weight = *w;
    p.density = param(d, "density", tensor).value_or(1.0);
    if (!(p.density >= 0 && p.density <= 1))
      fail("{}: density of {} must be in [0, 1], not {} (tensor {})", c.file, names[d + 1], p.density, tensor);
    if (has_gamma) {
      p.gamma = param(d, "gamma", tensor).value_or(0.01);
      if (!(p.gamma >= 0 && p.gamma <= 1))
        fail("{}: gamma of {} must be in [0, 1], not {} (tensor {})", c.file, names[d + 1], p.gamma, tensor);
    }
    if (has_eps) p.epsilon = param(d, "epsilon", tensor).value_or(0.15);
    return p;
  };
  sj.tensor_params = [=](const std::string& tensor) {
    detail::TensorParams t;
    t.lambda = global_param("lambda", tensor).value_or(1.0);
    t.normalize = global_param("normalize", tensor).value_or(m.normalize ? 1.0 : 0.0) != 0.0;
    t.rescale = global_param("rescale", tensor).value_or(m.rescale ? 1.0 : 0.0) != 0.0;
    (void)global_param("int8_mask", tensor);  // mergekit's mask storage type; rvec never stores a mask
    return t;
  };
  job.sparse = std::move(sj);
  std::map<std::string, int> seen;
  for (auto& n : job.names)
    if (seen[n]++) n += fmt::format("#{}", seen[n]);
  job.record = {{"config_file", fs::absolute(config).lexically_normal().string()},
                {"config", to_json(root)},
                {"sparsify", sparse::method_name(m.sparsify)},
                {"consensus", m.consensus ? "sum" : "none"},
                {"seed", opts.seed}};
  return detail::run(job, opts);
}

}  // namespace

Report merge_yaml(const fs::path& config, const Options& opts_in) {
  Ctx c;
  c.file = config.string();
  YAML::Node root;
  try {
    root = YAML::Load(read_file(config));
  } catch (const YAML::Exception& e) {
    fail("{}: invalid YAML: {}", c.file, e.what());
  }
  if (!root.IsMap()) fail("{}: not a mergekit config (expected a mapping)", c.file);
  static const std::set<std::string> known = {"merge_method", "models",       "slices",          "base_model",
                                              "dtype",        "out_dtype",    "parameters",      "tokenizer_source",
                                              "chat_template", "tokenizer",   "name"};
  for (const auto& kv : root)
    if (!known.count(kv.first.Scalar())) fail("{}: unknown key '{}'", c.file, kv.first.Scalar());
  const std::string method = root["merge_method"] ? root["merge_method"].Scalar() : "";
  const GtaMethod* gta = find_gta(method);
  if (method != "linear" && method != "task_arithmetic" && !gta)
    fail("{}: merge_method '{}' is not supported (rvec supports linear, task_arithmetic, ties, dare_ties, "
         "dare_linear, breadcrumbs, breadcrumbs_ties, della and della_linear)",
         c.file, method);
  if (root["slices"]) fail("{}: 'slices' is not supported; list whole models under 'models'", c.file);
  if (!root["models"] || !root["models"].IsSequence() || root["models"].size() == 0)
    fail("{}: 'models' must be a non-empty list", c.file);

  Options opts = opts_in;
  std::optional<DType> compute, out;
  if (root["dtype"]) {
    compute = parse_torch_dtype(root["dtype"].Scalar());
    if (!compute || !is_arith_dtype(*compute)) fail("{}: unsupported dtype '{}'", c.file, root["dtype"].Scalar());
  }
  if (root["out_dtype"]) {
    out = parse_torch_dtype(root["out_dtype"].Scalar());
    if (!out || !is_arith_dtype(*out)) fail("{}: unsupported out_dtype '{}'", c.file, root["out_dtype"].Scalar());
  }
  if (!opts.out_dtype) opts.out_dtype = out ? out : compute;

  const YAML::Node global = root["parameters"];
  std::optional<std::string> base;
  if (root["base_model"]) base = model_name(c, root["base_model"], "base_model");
  if ((method == "task_arithmetic" || gta) && !base) fail("{}: {} needs a base_model", c.file, method);

  struct M {
    std::string name;
    YAML::Node params;
  };
  std::vector<M> models;
  for (const auto& m : root["models"]) {
    if (!m.IsMap() || !m["model"]) fail("{}: each entry of 'models' needs a 'model'", c.file);
    std::string name = model_name(c, m["model"], "model");
    if ((method == "task_arithmetic" || gta) && base && name == *base) continue;  // the base contributes through Δ only
    models.push_back({name, m["parameters"]});
  }
  // Inputs: the target first (base_model, else the first model), then the others.
  std::vector<std::string> names;
  std::string target = base ? *base : models.front().name;
  names.push_back(target);
  for (auto& m : models) names.push_back(m.name);
  // Layer count for gradients, from the target's config.
  {
    auto td = io::ModelDir::open(resolve_model(config, target), false);
    if (td->config().contains("num_hidden_layers") && td->config()["num_hidden_layers"].is_number_integer())
      c.num_layers = td->config()["num_hidden_layers"].get<int>();
  }
  auto param = [&](const M& m, const char* key, const std::string& tensor) -> std::optional<double> {
    if (m.params && m.params.IsMap() && m.params[key]) {
      auto v = eval_param(c, m.params[key], tensor, fmt::format("{} of {}", key, m.name));
      if (v) return v;
    }
    if (global && global.IsMap() && global[key]) return eval_param(c, global[key], tensor, key);
    return std::nullopt;
  };
  auto global_param = [&](const char* key, const std::string& tensor) -> std::optional<double> {
    if (global && global.IsMap() && global[key]) return eval_param(c, global[key], tensor, key);
    return std::nullopt;
  };
  if (gta) {
    auto mparam = [&](size_t d, const char* key, const std::string& t) { return param(models[d], key, t); };
    return merge_gta(c, config, root, *gta, names, models.size(), mparam, global_param, opts);
  }
  const bool linear = method == "linear";
  const bool base_in_models = base && linear;
  // Coefficients for one tensor: index 0 is the target.
  auto coefs = [=](const std::string& tensor) {
    std::vector<double> cs(names.size(), 0.0);
    double wsum = 0;
    std::vector<double> w(models.size());
    for (size_t i = 0; i < models.size(); ++i) {
      auto v = param(models[i], "weight", tensor);
      if (!v) fail("{}: no weight for model {} (tensor {})", c.file, models[i].name, tensor);
      w[i] = *v;
      wsum += w[i];
    }
    const bool normalize = global_param("normalize", tensor).value_or(linear ? 1.0 : 0.0) != 0.0;
    if (normalize) {
      if (std::fabs(wsum) < 1e-12)
        fail("{}: weights sum to zero for tensor {} with normalize: true (set normalize: false)", c.file, tensor);
      for (auto& x : w) x /= wsum;
    }
    if (linear) {
      // Σ w_i θ_i; with base_model set, the base is only the donor/target unless listed.
      for (size_t i = 0; i < models.size(); ++i) cs[i + 1] += w[i];
      (void)base_in_models;
    } else {
      const double lambda = global_param("lambda", tensor).value_or(1.0);
      double s = 0;
      for (size_t i = 0; i < models.size(); ++i) {
        cs[i + 1] = lambda * w[i];
        s += cs[i + 1];
      }
      cs[0] = 1.0 - s;
    }
    return cs;
  };
  // Linear merges whose target (first model) is also a weighted input: fold into index 0.
  std::vector<std::string> in_names = names;
  detail::Job job;
  job.operation = "merge";
  bool fold_first = linear && !base;
  if (fold_first) in_names.erase(in_names.begin() + 1);  // target == models[0]
  for (auto& n : in_names) {
    job.names.push_back(n);
    job.paths.push_back(resolve_model(config, n));
  }
  job.target = 0;
  std::map<std::string, std::vector<double>> cache;
  job.coef = [=](size_t i, const std::string& tensor) mutable {
    auto it = cache.find(tensor);
    if (it == cache.end()) {
      std::vector<double> cs = coefs(tensor);
      if (fold_first) {
        cs[0] += cs[1];
        cs.erase(cs.begin() + 1);
      }
      it = cache.emplace(tensor, std::move(cs)).first;
    }
    return it->second[i];
  };
  // Duplicate names would become separate inputs with the same label; make labels unique.
  std::map<std::string, int> seen;
  for (auto& n : job.names)
    if (seen[n]++) n += fmt::format("#{}", seen[n]);
  job.compat_dtype = compute.value_or(DType::BF16);
  job.record = {{"config_file", fs::absolute(config).lexically_normal().string()}, {"config", to_json(root)}};
  return detail::run(job, opts);
}

}  // namespace rvec::arith
