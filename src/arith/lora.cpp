#include "arith/lora.h"

#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <cmath>
#include <regex>
#include <set>

#include "arith/analysis.h"
#include "arith/engine.h"
#include "arith/sparsify.h"
#include "core/atomic_output.h"
#include "core/error.h"
#include "core/json_strict.h"
#include "core/progress.h"
#include "io/model_dir.h"
#include "io/model_resolver.h"
#include "io/safetensors_writer.h"

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;

namespace rvec::arith::lora {

namespace {

constexpr const char* kPrefix = "base_model.model.";
constexpr size_t kChunk = size_t(1) << 16;

// "model.layers.3.self_attn.q_proj.weight" -> the module path and the parameter.
std::pair<std::string, std::string> split_param(const std::string& name) {
  const size_t d = name.rfind('.');
  if (d == std::string::npos) return {"", name};
  return {name.substr(0, d), name.substr(d + 1)};
}

// A 2-D weight inside the layer stack: what LoRA factors.
bool is_linear(const io::TensorInfo& t) {
  static const std::regex re(R"(^model\.layers\.\d+\..+\.weight$)");
  return t.shape.size() == 2 && std::regex_match(t.name, re);
}

// The name PEFT lists a module under: the part after "model.layers.N." for layer modules
// ("input_layernorm", "self_attn.q_norm"), the full path otherwise ("model.norm", "lm_head").
std::string module_class(const std::string& module) {
  static const std::regex re(R"(^model\.layers\.\d+\.(.+)$)");
  std::smatch m;
  if (std::regex_match(module, m, re)) return m[1];
  return module;
}

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

// Element i of a tensor as f32 (any float dtype).
float load1(const io::TensorInfo& t, uint64_t i) {
  float f;
  const size_t es = dtype_size(t.dtype);
  if (t.dtype == DType::F64) {
    double d;
    std::memcpy(&d, t.data + i * es, 8);
    return float(d);
  }
  to_f32(t.dtype, t.data + i * es, &f, 1);
  return f;
}

void load_range(const io::TensorInfo& t, uint64_t off, size_t n, float* dst) {
  if (t.dtype == DType::F64) {
    for (size_t i = 0; i < n; ++i) dst[i] = load1(t, off + i);
    return;
  }
  to_f32(t.dtype, t.data + off * dtype_size(t.dtype), dst, n);
}

// ---------------------------------------------------------------- extraction

// Where the deltas come from: a vector directory, or tuned - base.
struct Source {
  std::unique_ptr<io::ModelDir> vec, base, tuned;  // vec set: Δ = vec; else Δ = tuned - base
  std::string base_label;
  std::vector<const io::TensorInfo*> order;         // the tensors of Δ, in file order

  uint64_t numel(const std::string& name) const { return (vec ? vec : tuned)->get(name).numel(); }
  // Elements [off, off + n) of Δ as f32.
  void delta_range(const std::string& name, uint64_t off, size_t n, float* dst) const {
    if (vec) {
      load_range(vec->get(name), off, n, dst);
      return;
    }
    std::vector<float> tmp(n);
    load_range(tuned->get(name), off, n, dst);
    load_range(base->get(name), off, n, tmp.data());
    for (size_t i = 0; i < n; ++i) dst[i] -= tmp[i];
  }
  void delta(const std::string& name, float* dst) const {
    const uint64_t total = numel(name);
    for (uint64_t off = 0; off < total; off += kChunk)
      delta_range(name, off, size_t(std::min<uint64_t>(kChunk, total - off)), dst + off);
  }
  // Calls fn(chunk, n) over Δ in chunks of kChunk elements: tensors that are only scanned
  // (embeddings, norms) never need a whole copy in memory.
  template <typename F>
  void scan(const std::string& name, F&& fn) const {
    std::vector<float> buf(kChunk);
    const uint64_t total = numel(name);
    for (uint64_t off = 0; off < total; off += kChunk) {
      const size_t n = size_t(std::min<uint64_t>(kChunk, total - off));
      delta_range(name, off, n, buf.data());
      fn(buf.data(), n);
    }
  }
  bool has_full() const { return bool(base); }
  // The tuned tensor's dtype (the full weights keep it).
  DType full_dtype(const std::string& name) const { return (tuned ? tuned : base)->get(name).dtype; }
  // Elements [off, off + n) of the tuned weight as f32 (base + Δ).
  void full(const std::string& name, uint64_t off, size_t n, float* dst) const {
    if (tuned) {
      load_range(tuned->get(name), off, n, dst);
      return;
    }
    std::vector<float> tmp(n);
    load_range(base->get(name), off, n, dst);
    load_range(vec->get(name), off, n, tmp.data());
    for (size_t i = 0; i < n; ++i) dst[i] += tmp[i];
  }
};

struct Factors {
  std::string module;  // "model.layers.0.self_attn.q_proj"
  int rank = 0;
  std::vector<uint8_t> a, b;  // encoded in the adapter dtype
};

// Oversampling and power iterations of the randomised SVD (Halko et al. 2011, section 4.3:
// 10 extra columns; two power iterations for the slowly decaying spectra of task vectors).
constexpr int kOversample = 10, kPower = 2;

// Whether a fixed rank r is far enough below min(m, n) for the randomised SVD: its cost grows
// with (r + oversample)·m·n against min(m, n)·m·n for the full one.
bool use_randomised(int64_t m, int64_t n, int r) { return int64_t(r + kOversample) * 4 <= std::min(m, n); }

// B = U_k sqrt(S_k) (m x k), A = sqrt(S_k) V_kᵀ (k x n) from the row-major SVD factors u (m x ldu),
// s and vt (rows of length n).
void split_factors(const std::vector<double>& u, int64_t ldu, const std::vector<double>& s, const std::vector<double>& vt,
                   int64_t m, int64_t n, int rank, std::vector<float>& bf, std::vector<float>& af) {
  bf.assign(size_t(m * rank), 0.0f);
  af.assign(size_t(rank * n), 0.0f);
  for (int j = 0; j < rank; ++j) {
    const double r = std::sqrt(s[size_t(j)]);
    for (int64_t i = 0; i < m; ++i) bf[size_t(i * rank + j)] = float(u[size_t(i * ldu + j)] * r);
    for (int64_t c = 0; c < n; ++c) af[size_t(j * n + c)] = float(vt[size_t(j * n + c)] * r);
  }
}

// Truncated SVD of the row-major m x n matrix d: B = U_k sqrt(S_k) (m x k), A = sqrt(S_k) V_kᵀ (k x n).
// `fixed_rank` given and far below min(m, n) (and not `exact`): randomised SVD, Δ ≈ Q Qᵀ Δ with Q
// an orthonormal basis of rank + 10 columns, then the SVD of the small Qᵀ Δ; the singular values
// returned are then only the top rank + 10. Otherwise the full SVD (LAPACK dgesdd) and the rank is
// chosen by `pick` from all the singular values. Sets `randomised` to the path taken.
std::vector<double> svd_factors(const std::vector<float>& d, int64_t m, int64_t n, std::optional<int> fixed_rank,
                                bool exact, uint64_t seed,
                                const std::function<int(const std::vector<double>&)>& pick, std::vector<float>& bf,
                                std::vector<float>& af, int& rank, bool& randomised) {
  const int64_t k = std::min(m, n);
  randomised = fixed_rank && !exact && use_randomised(m, n, *fixed_rank);
  if (randomised) {
    const int64_t l = *fixed_rank + kOversample;
    const std::vector<float> q = range_basis(d.data(), m, n, l, kPower, seed);  // m x l
    std::vector<float> bsmall(size_t(l * n));                                  // Qᵀ Δ, l x n
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(l), int(n), int(m), 1.0f, q.data(), int(l), d.data(),
                int(n), 0.0f, bsmall.data(), int(n));
    std::vector<double> a(bsmall.begin(), bsmall.end());
    std::vector<double> s(static_cast<size_t>(l)), ub(static_cast<size_t>(l * l)), vt(static_cast<size_t>(l * n));
    if (LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', lapack_int(l), lapack_int(n), a.data(), lapack_int(n), s.data(),
                       ub.data(), lapack_int(l), vt.data(), lapack_int(n)) != 0)
      fail("LAPACK SVD failed on a {}x{} sketch", l, n);
    rank = std::clamp(*fixed_rank, 0, int(k));
    std::vector<double> qd(q.begin(), q.end());
    std::vector<double> u(static_cast<size_t>(m * rank));  // U = Q · U_b, first `rank` columns
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(m), rank, int(l), 1.0, qd.data(), int(l), ub.data(),
                int(l), 0.0, u.data(), rank);
    split_factors(u, rank, s, vt, m, n, rank, bf, af);
    return s;
  }
  std::vector<double> a(d.begin(), d.end());
  std::vector<double> s(static_cast<size_t>(k)), u(static_cast<size_t>(m * k)), vt(static_cast<size_t>(k * n));
  if (LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', lapack_int(m), lapack_int(n), a.data(), lapack_int(n), s.data(), u.data(),
                     lapack_int(k), vt.data(), lapack_int(n)) != 0)
    fail("LAPACK SVD failed on a {}x{} matrix", m, n);
  rank = std::clamp(pick(s), 0, int(k));
  split_factors(u, k, s, vt, m, n, rank, bf, af);
  return s;
}

std::vector<uint8_t> encode(DType t, const std::vector<float>& v) {
  std::vector<uint8_t> out(v.size() * dtype_size(t));
  from_f32(t, v.data(), out.data(), v.size());
  return out;
}

ExtractReport extract(Source& src, const ExtractOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  if (o.out.empty()) fail("no output directory given (-o)");
  if (o.rank.has_value() == o.energy.has_value()) fail("give exactly one of --rank and --energy");
  if (o.rank && *o.rank < 1) fail("--rank {}: must be at least 1", *o.rank);
  if (o.energy && !(*o.energy > 0 && *o.energy <= 1)) fail("--energy {}: must be in (0, 1]", *o.energy);
  if (o.dtype != DType::F32 && o.dtype != DType::BF16 && o.dtype != DType::F16)
    fail("adapter dtype {}: expected F32, BF16 or F16", dtype_name(o.dtype));
  if (!o.force && fs::exists(o.out)) fail("output {} already exists (use --force to replace it)", o.out.string());

  ExtractReport rep;
  rep.out = o.out;
  std::vector<const io::TensorInfo*> linear, other;
  for (auto* t : src.order) {
    if (!is_float(t->dtype)) fail("tensor '{}' has dtype {}; LoRA extraction needs float tensors", t->name, dtype_name(t->dtype));
    (is_linear(*t) ? linear : other).push_back(t);
  }
  if (linear.empty()) fail("no linear layer weights (model.layers.N.*.weight, 2-D) in the delta");

  // ---- what happens to the other tensors ----
  // Biases of the factored layers go to bias "lora_only"; the rest to modules_to_save, by
  // module class, when some tensor of the class changed.
  std::set<std::string> linear_modules;
  for (auto* t : linear) linear_modules.insert(split_param(t->name).first);
  struct FullTensor {
    const io::TensorInfo* t;
    std::string key;
  };
  std::vector<FullTensor> fulls;
  std::set<std::string> save_classes;
  bool lora_only_bias = false;
  if (!o.skip_embeddings && !other.empty()) {
    std::map<std::string, bool> class_changed;
    for (auto* t : other) {
      bool changed = false;
      src.scan(t->name, [&](const float* x, size_t n) { changed = changed || std::any_of(x, x + n, [](float v) { return v != 0.0f; }); });
      auto [mod, param] = split_param(t->name);
      if (linear_modules.count(mod)) {
        if (changed) lora_only_bias = true;
      } else {
        class_changed[module_class(mod)] |= changed;
      }
    }
    for (auto& [c, ch] : class_changed)
      if (ch) save_classes.insert(c);
    if ((lora_only_bias || !save_classes.empty()) && !src.has_full())
      fail("the vector changes {}: PEFT stores those as full weights, which need the base model (--base B), or "
           "drop them with --skip-embeddings",
           lora_only_bias && save_classes.empty() ? std::string("biases") : "embeddings / norms / lm_head");
  }
  // PEFT wraps every module whose name ends with a modules_to_save entry: check that the
  // entries select exactly the intended modules, else list full module paths.
  std::set<std::string> all_modules;
  for (auto* t : src.order) all_modules.insert(split_param(t->name).first);
  auto selected_by = [&](const std::set<std::string>& entries) {
    std::set<std::string> s;
    for (auto& m : all_modules)
      for (auto& e : entries)
        if (ends_with("base_model.model." + m, e)) s.insert(m);
    return s;
  };
  std::set<std::string> wanted;
  for (auto& m : all_modules)
    if (!linear_modules.count(m) && save_classes.count(module_class(m))) wanted.insert(m);
  if (selected_by(save_classes) != wanted) save_classes = wanted;
  for (auto* t : other) {
    auto [mod, param] = split_param(t->name);
    if (linear_modules.count(mod)) {
      if (lora_only_bias && param == "bias") {
        fulls.push_back({t, kPrefix + mod + ".base_layer.bias"});
        continue;
      }
    } else if (wanted.count(mod)) {
      fulls.push_back({t, kPrefix + t->name});
      continue;
    }
    rep.skipped.push_back(t->name);
  }

  // ---- factor the linear layers ----
  std::vector<Factors> factors;
  double err2 = 0, norm2 = 0;
  {
    Progress pr("lora", linear.size(), "tensors", o.quiet);
    for (auto* t : linear) {
      const int64_t m = t->shape[0], n = t->shape[1];
      std::vector<float> d(size_t(m * n));
      src.delta(t->name, d.data());
      double nn = 0;
      for (float x : d) nn += double(x) * x;
      ModuleReport mr;
      mr.tensor = t->name;
      mr.out = m;
      mr.in = n;
      mr.norm = std::sqrt(nn);
      Factors f;
      f.module = split_param(t->name).first;
      if (nn > 0) {
        std::vector<float> bf, af;
        bool randomised = false;
        svd_factors(
            d, m, n, o.rank, o.exact_svd, o.seed ^ sparse::stream_id(t->name, 0),
            [&](const std::vector<double>& s) {
              if (o.rank) return *o.rank;
              return energy_rank(s, nn, *o.energy).value_or(int(s.size()));
            },
            bf, af, f.rank, randomised);
        mr.exact = !randomised;
        f.a = encode(o.dtype, af);
        f.b = encode(o.dtype, bf);
        // The error of the factors as stored: Δ - B·A with B, A rounded to the adapter dtype.
        to_f32(o.dtype, f.a.data(), af.data(), af.size());
        to_f32(o.dtype, f.b.data(), bf.data(), bf.size());
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(m), int(n), f.rank, -1.0f, bf.data(), f.rank,
                    af.data(), int(n), 1.0f, d.data(), int(n));
        double e = 0;
        for (float x : d) e += double(x) * x;
        mr.rel_error = std::sqrt(e / nn);
        err2 += e;
      }
      norm2 += nn;
      mr.rank = f.rank;
      rep.modules.push_back(mr);
      if (f.rank > 0) factors.push_back(std::move(f));
      pr.add(1);
    }
    pr.finish();
  }
  if (factors.empty()) fail("every linear layer's delta is zero: nothing to write");
  double skipped2 = 0;
  for (auto& name : rep.skipped)
    src.scan(name, [&](const float* x, size_t n) {
      for (size_t i = 0; i < n; ++i) skipped2 += double(x[i]) * x[i];
    });
  rep.skipped_norm = std::sqrt(skipped2);
  rep.rel_error = norm2 > 0 ? std::sqrt(err2 / norm2) : 0;
  rep.total_rel_error = norm2 + skipped2 > 0 ? std::sqrt((err2 + skipped2) / (norm2 + skipped2)) : 0;

  // ---- config ----
  int r = 0;
  std::set<std::string> targets;
  for (auto& f : factors) {
    r = std::max(r, f.rank);
    targets.insert(split_param(f.module).second);
  }
  rep.r = r;
  ordered_json rank_pattern = ordered_json::object(), alpha_pattern = ordered_json::object();
  for (auto& f : factors)
    if (f.rank != r) {
      rank_pattern[f.module] = f.rank;
      alpha_pattern[f.module] = f.rank;  // scale alpha / r = 1 for every module
    }
  ordered_json cfg;
  // The fields of PEFT's LoraConfig as save_pretrained writes them (sorted keys, defaults).
  cfg["alpha_pattern"] = alpha_pattern;
  cfg["auto_mapping"] = nullptr;
  cfg["base_model_name_or_path"] = o.base_model_name_or_path.empty() ? src.base_label : o.base_model_name_or_path;
  cfg["bias"] = lora_only_bias ? "lora_only" : "none";
  cfg["fan_in_fan_out"] = false;
  cfg["inference_mode"] = true;
  cfg["init_lora_weights"] = true;
  cfg["layer_replication"] = nullptr;
  cfg["layers_pattern"] = nullptr;
  cfg["layers_to_transform"] = nullptr;
  cfg["lora_alpha"] = r;
  cfg["lora_bias"] = false;
  cfg["lora_dropout"] = 0.0;
  cfg["modules_to_save"] = nullptr;
  if (!save_classes.empty()) cfg["modules_to_save"] = std::vector<std::string>(save_classes.begin(), save_classes.end());
  cfg["peft_type"] = "LORA";
  cfg["r"] = r;
  cfg["rank_pattern"] = rank_pattern;
  cfg["revision"] = nullptr;
  cfg["target_modules"] = std::vector<std::string>(targets.begin(), targets.end());
  cfg["task_type"] = "CAUSAL_LM";
  cfg["use_dora"] = false;
  cfg["use_rslora"] = false;
  rep.config = json::parse(cfg.dump());

  // ---- write: factors from memory, full weights streamed ----
  struct Out {
    std::string key;
    const Factors* f = nullptr;
    bool is_a = false;
    const FullTensor* full = nullptr;
  };
  std::vector<Out> outs;
  std::vector<io::TensorSpec> specs;
  for (auto& f : factors) {
    const auto& t = (src.vec ? src.vec : src.tuned)->get(f.module + ".weight");
    outs.push_back({kPrefix + f.module + ".lora_A.weight", &f, true, nullptr});
    specs.push_back({outs.back().key, o.dtype, {f.rank, t.shape[1]}});
    outs.push_back({kPrefix + f.module + ".lora_B.weight", &f, false, nullptr});
    specs.push_back({outs.back().key, o.dtype, {t.shape[0], f.rank}});
  }
  for (auto& ft : fulls) {
    outs.push_back({ft.key, nullptr, false, &ft});
    DType dt = src.full_dtype(ft.t->name);
    if (!is_arith_dtype(dt)) dt = DType::F32;
    specs.push_back({ft.key, dt, ft.t->shape});
    rep.saved.push_back(ft.t->name);
  }
  AtomicDir dir(o.out, o.force);
  {
    io::SafetensorsWriter w(dir.tmp(), specs, UINT64_MAX, io::SafetensorsWriter::Mode::Synchronous);
    std::vector<float> buf(kChunk);
    std::vector<uint8_t> enc(kChunk * 4);
    for (size_t i = 0; i < outs.size(); ++i) {
      if (outs[i].f) {
        const auto& v = outs[i].is_a ? outs[i].f->a : outs[i].f->b;
        w.append(v.data(), v.size());
        continue;
      }
      const auto& t = *outs[i].full->t;
      const DType dt = specs[i].dtype;
      for (uint64_t off = 0; off < t.numel(); off += kChunk) {
        const size_t n = size_t(std::min<uint64_t>(kChunk, t.numel() - off));
        src.full(t.name, off, n, buf.data());
        from_f32(dt, buf.data(), enc.data(), n);
        w.append(enc.data(), n * dtype_size(dt));
      }
    }
    w.finish();
    rep.bytes_written = w.total_size();
    if (w.files().size() != 1) fail("internal: adapter written as {} files", w.files().size());
    fs::rename(dir.tmp() / w.files()[0], dir.tmp() / "adapter_model.safetensors");
  }
  write_file_atomic(dir.tmp() / "adapter_config.json", cfg.dump(2) + "\n");
  dir.commit();
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

}  // namespace

ExtractReport extract_from_vector(const fs::path& vector, const std::optional<fs::path>& base, const ExtractOptions& o) {
  Source s;
  s.vec = io::ModelDir::open(io::resolve_model_path(vector), false);
  for (auto* t : s.vec->tensors()) s.order.push_back(t);
  if (base) {
    s.base = io::ModelDir::open(io::resolve_model_path(*base), false);
    s.base_label = base->string();
    for (auto* t : s.order) {
      const io::TensorInfo* b = s.base->find(t->name);
      if (!b) fail("base {} has no tensor '{}' (in the vector {})", base->string(), t->name, vector.string());
      if (b->shape != t->shape)
        fail("tensor '{}': shape {} in the vector but {} in the base {}", t->name, t->shape_str(), b->shape_str(),
             base->string());
    }
  }
  return extract(s, o);
}

ExtractReport extract_from_models(const fs::path& base, const fs::path& tuned, const ExtractOptions& o) {
  Source s;
  s.base = io::ModelDir::open(io::resolve_model_path(base), false);
  s.tuned = io::ModelDir::open(io::resolve_model_path(tuned), false);
  s.base_label = base.string();
  for (auto* t : s.tuned->tensors()) {
    const io::TensorInfo* b = s.base->find(t->name);
    if (!b) fail("base {} has no tensor '{}' (in the tuned model {})", base.string(), t->name, tuned.string());
    if (b->shape != t->shape)
      fail("tensor '{}': shape {} in the tuned model but {} in the base", t->name, t->shape_str(), b->shape_str());
    s.order.push_back(t);
  }
  for (auto* b : s.base->tensors())
    if (!s.tuned->find(b->name)) fail("tuned model {} has no tensor '{}' (in the base)", tuned.string(), b->name);
  return extract(s, o);
}

void print_report(const ExtractReport& r) {
  fmt::print("{:<52} {:>12} {:>5} {:>10} {:>5}\n", "tensor", "shape", "rank", "rel.err", "svd");
  for (auto& m : r.modules)
    fmt::print("{:<52} {:>12} {:>5} {:>10.3e} {:>5}\n", m.tensor, fmt::format("{}x{}", m.out, m.in), m.rank, m.rel_error,
               m.exact ? "full" : "rand");
  fmt::print("lora: wrote {} (r = {}, {} modules, {} full weights{}, {})\n", r.out.string(), r.r, r.modules.size(),
             r.saved.size(), r.skipped.empty() ? "" : fmt::format(", {} tensors skipped", r.skipped.size()),
             format_bytes(double(r.bytes_written)));
  fmt::print("relative error (Frobenius): {:.4e} over the factored layers, {:.4e} over the whole vector\n", r.rel_error,
             r.total_rel_error);
}

// ---------------------------------------------------------------- reading

namespace {

bool pattern_match(const std::string& pattern, const std::string& key) {
  try {
    return std::regex_match(key, std::regex("(.*\\.)?(" + pattern + ")"));
  } catch (const std::regex_error&) {
    fail("rank_pattern / alpha_pattern key '{}' is not a valid regular expression", pattern);
  }
}

template <typename T>
std::vector<std::pair<std::string, T>> read_pattern(const json& j, const char* field, const fs::path& file) {
  std::vector<std::pair<std::string, T>> v;
  if (!j.contains(field) || j[field].is_null()) return v;
  if (!j[field].is_object()) fail("{}: '{}' must be an object", file.string(), field);
  for (auto& [k, x] : j[field].items()) {
    if (!x.is_number()) fail("{}: {}['{}'] must be a number", file.string(), field, k);
    v.emplace_back(k, x.template get<T>());
  }
  return v;
}

}  // namespace

int module_rank(const AdapterConfig& c, const std::string& module) {
  for (auto& [k, v] : c.rank_pattern)
    if (pattern_match(k, module)) return v;
  return c.r;
}

double module_scale(const AdapterConfig& c, const std::string& module) {
  double alpha = c.lora_alpha;
  for (auto& [k, v] : c.alpha_pattern)
    if (pattern_match(k, module)) {
      alpha = v;
      break;
    }
  const int r = module_rank(c, module);
  return c.use_rslora ? alpha / std::sqrt(double(r)) : alpha / double(r);
}

std::unique_ptr<Adapter> Adapter::open(const fs::path& dir) {
  std::unique_ptr<Adapter> ad(new Adapter());
  ad->path_ = dir;
  const fs::path cfg_path = dir / "adapter_config.json", st_path = dir / "adapter_model.safetensors";
  if (!fs::is_directory(dir)) fail("{}: not a directory (a PEFT adapter is a directory with adapter_config.json)", dir.string());
  if (!fs::exists(cfg_path)) fail("{}: no adapter_config.json (not a PEFT adapter)", dir.string());
  if (!fs::exists(st_path)) {
    if (fs::exists(dir / "adapter_model.bin"))
      fail("{}: only adapter_model.bin (a pickle) is present; rvec reads adapter_model.safetensors (re-save the adapter "
           "with PEFT's save_pretrained(..., safe_serialization=True))",
           dir.string());
    fail("{}: no adapter_model.safetensors", dir.string());
  }
  const json j = parse_json_strict(read_file(cfg_path, 16 << 20), cfg_path.string());
  if (!j.is_object()) fail("{}: not a JSON object", cfg_path.string());
  AdapterConfig& c = ad->cfg_;
  c.raw = j;
  auto str = [&](const char* k, std::string def) {
    if (!j.contains(k) || j[k].is_null()) return def;
    if (!j[k].is_string()) fail("{}: '{}' must be a string", cfg_path.string(), k);
    return j[k].get<std::string>();
  };
  auto boolean = [&](const char* k) {
    if (!j.contains(k) || j[k].is_null()) return false;
    if (!j[k].is_boolean()) fail("{}: '{}' must be true or false", cfg_path.string(), k);
    return j[k].get<bool>();
  };
  const std::string type = str("peft_type", "");
  if (type != "LORA")
    fail("{}: peft_type is '{}'; only LORA adapters are supported", cfg_path.string(), type.empty() ? "(missing)" : type);
  if (boolean("use_dora")) fail("{}: use_dora is true; DoRA adapters are not supported (only plain LoRA)", cfg_path.string());
  if (boolean("fan_in_fan_out"))
    fail("{}: fan_in_fan_out is true (GPT-2 Conv1D layout); only fan_in_fan_out false is supported", cfg_path.string());
  if (j.contains("use_qalora") && boolean("use_qalora")) fail("{}: QALoRA adapters are not supported", cfg_path.string());
  c.use_rslora = boolean("use_rslora");
  if (!j.contains("r") || !j["r"].is_number_integer() || j["r"].get<int64_t>() < 1 || j["r"].get<int64_t>() > (1 << 20))
    fail("{}: 'r' must be a positive integer", cfg_path.string());
  c.r = j["r"].get<int>();
  if (j.contains("lora_alpha") && !j["lora_alpha"].is_null()) {
    if (!j["lora_alpha"].is_number()) fail("{}: 'lora_alpha' must be a number", cfg_path.string());
    c.lora_alpha = j["lora_alpha"].get<double>();
  } else {
    c.lora_alpha = 8;  // PEFT's default
  }
  c.rank_pattern = read_pattern<int>(j, "rank_pattern", cfg_path);
  c.alpha_pattern = read_pattern<double>(j, "alpha_pattern", cfg_path);
  for (auto& [k, v] : c.rank_pattern)
    if (v < 1) fail("{}: rank_pattern['{}'] = {} must be positive", cfg_path.string(), k, v);
  c.bias = str("bias", "none");
  c.base_model_name_or_path = str("base_model_name_or_path", "");
  if (j.contains("target_modules") && j["target_modules"].is_array())
    for (auto& x : j["target_modules"])
      if (x.is_string()) c.target_modules.push_back(x.get<std::string>());
  if (j.contains("target_modules") && j["target_modules"].is_string())
    c.target_modules.push_back(j["target_modules"].get<std::string>());
  if (j.contains("modules_to_save") && j["modules_to_save"].is_array())
    for (auto& x : j["modules_to_save"]) {
      if (!x.is_string()) fail("{}: modules_to_save entries must be strings", cfg_path.string());
      c.modules_to_save.push_back(x.get<std::string>());
    }

  ad->file_ = io::SafetensorsFile::open(st_path);
  const std::string what = st_path.string();
  std::map<std::string, const io::TensorInfo*> a_of, b_of, ea_of, eb_of;
  for (const auto& t : ad->file_->tensors()) {
    const std::string& k = t.name;
    if (k.rfind(kPrefix, 0) != 0) fail("{}: tensor '{}' does not start with '{}' (not a PEFT LoRA key)", what, k, kPrefix);
    if (!is_float(t.dtype)) fail("{}: tensor '{}' has dtype {}", what, k, dtype_name(t.dtype));
    const std::string rest = k.substr(std::string(kPrefix).size());
    auto take = [&](const std::string& suf, std::map<std::string, const io::TensorInfo*>& m) {
      if (!ends_with(rest, suf)) return false;
      m[rest.substr(0, rest.size() - suf.size())] = &t;
      return true;
    };
    if (take(".lora_A.weight", a_of) || take(".lora_B.weight", b_of) || take(".lora_embedding_A", ea_of) ||
        take(".lora_embedding_B", eb_of))
      continue;
    if (rest.find("lora_magnitude_vector") != std::string::npos)
      fail("{}: tensor '{}' is a DoRA magnitude; DoRA adapters are not supported", what, k);
    if (ends_with(rest, ".lora_B.bias")) {
      Entry e;
      e.kind = Entry::Kind::BiasDelta;
      e.key = k;
      const std::string mod = rest.substr(0, rest.size() - std::string(".lora_B.bias").size());
      e.target = mod + ".bias";
      e.shape = t.shape;
      e.b = &t;
      e.scale = module_scale(c, mod);
      if (t.shape.size() != 1) fail("{}: '{}' has shape {}, expected 1-D", what, k, t.shape_str());
      ad->entries_.push_back(e);
      continue;
    }
    if (rest.find(".lora_") != std::string::npos)
      fail("{}: tensor '{}' is not a LoRA key rvec knows (lora_A.weight, lora_B.weight, lora_embedding_A/B, "
           "lora_B.bias); an adapter name left in the key?",
           what, k);
    Entry e;
    e.kind = Entry::Kind::Replace;
    e.key = k;
    e.full = &t;
    e.shape = t.shape;
    e.target = rest;
    const size_t bl = rest.find(".base_layer.");
    if (bl != std::string::npos) e.target = rest.substr(0, bl) + rest.substr(bl + std::string(".base_layer").size());
    ad->entries_.push_back(e);
  }
  auto pair_up = [&](std::map<std::string, const io::TensorInfo*>& as, std::map<std::string, const io::TensorInfo*>& bs,
                     bool emb) {
    for (auto& [mod, a] : as) {
      auto it = bs.find(mod);
      if (it == bs.end()) fail("{}: '{}' has no matching lora_B", what, a->name);
      const io::TensorInfo* b = it->second;
      if (a->shape.size() != 2 || b->shape.size() != 2)
        fail("{}: LoRA factors of '{}' must be 2-D (A {}, B {})", what, mod, a->shape_str(), b->shape_str());
      if (a->shape[0] != b->shape[1])
        fail("{}: rank mismatch for '{}': lora_A {} has {} rows but lora_B {} has {} columns", what, mod,
             a->shape_str(), a->shape[0], b->shape_str(), b->shape[1]);
      const int want = module_rank(c, mod);
      if (a->shape[0] != want)
        fail("{}: '{}' has rank {} but adapter_config.json gives it r = {} (r / rank_pattern)", what, mod, a->shape[0],
             want);
      Entry e;
      e.kind = Entry::Kind::LowRank;
      e.key = a->name;
      e.target = mod + ".weight";
      e.rank = int(a->shape[0]);
      e.a = a;
      e.b = b;
      e.transposed = emb;
      e.shape = emb ? std::vector<int64_t>{a->shape[1], b->shape[0]} : std::vector<int64_t>{b->shape[0], a->shape[1]};
      e.scale = module_scale(c, mod);
      ad->entries_.push_back(e);
      bs.erase(it);
    }
    if (!bs.empty()) fail("{}: '{}' has no matching lora_A", what, bs.begin()->second->name);
  };
  pair_up(a_of, b_of, false);
  pair_up(ea_of, eb_of, true);
  std::sort(ad->entries_.begin(), ad->entries_.end(), [](const Entry& x, const Entry& y) { return x.target < y.target; });
  for (size_t i = 1; i < ad->entries_.size(); ++i)
    if (ad->entries_[i].target == ad->entries_[i - 1].target)
      fail("{}: tensor '{}' is changed twice ('{}' and '{}')", what, ad->entries_[i].target, ad->entries_[i - 1].key,
           ad->entries_[i].key);
  if (ad->entries_.empty()) fail("{}: no LoRA tensors", what);
  return ad;
}

const Entry* Adapter::find(const std::string& target) const {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), target,
                             [](const Entry& e, const std::string& t) { return e.target < t; });
  return it != entries_.end() && it->target == target ? &*it : nullptr;
}

void Adapter::add_elements(size_t i, uint64_t off, size_t len, double coef, float* acc) const {
  const Entry& e = entries_.at(i);
  if (len == 0) return;
  thread_local std::vector<float> tmp, coefs;
  if (e.kind == Entry::Kind::Replace || e.kind == Entry::Kind::BiasDelta) {
    tmp.resize(len);
    load_range(e.kind == Entry::Kind::Replace ? *e.full : *e.b, off, len, tmp.data());
    if (e.kind == Entry::Kind::Replace) {
      const float c = float(coef);
      for (size_t j = 0; j < len; ++j) acc[j] += c * (tmp[j] - acc[j]);
    } else {
      const float c = float(coef * e.scale);
      for (size_t j = 0; j < len; ++j) acc[j] += c * tmp[j];
    }
    return;
  }
  const int64_t cols = e.shape[1];
  const int r = e.rank;
  coefs.resize(size_t(r));
  tmp.resize(size_t(std::max<int64_t>(cols, r)));
  const float c = float(coef * e.scale);
  uint64_t pos = off;
  const uint64_t end = off + len;
  while (pos < end) {
    const int64_t row = int64_t(pos / uint64_t(cols));
    const int64_t c0 = int64_t(pos % uint64_t(cols));
    const int64_t c1 = std::min<int64_t>(cols, c0 + int64_t(end - pos));
    float* dst = acc + (pos - off);
    if (!e.transposed) {
      // Δ[row, c] = Σ_k B[row, k] A[k, c]
      load_range(*e.b, uint64_t(row) * uint64_t(r), size_t(r), coefs.data());
      for (int k = 0; k < r; ++k) {
        const float bk = c * coefs[size_t(k)];
        if (bk == 0.0f) continue;
        load_range(*e.a, uint64_t(k) * uint64_t(cols) + uint64_t(c0), size_t(c1 - c0), tmp.data());
        for (int64_t x = 0; x < c1 - c0; ++x) dst[x] += bk * tmp[size_t(x)];
      }
    } else {
      // Embedding: Δ[row, d] = Σ_k B[d, k] A[k, row] (A [r, vocab], B [dim, r])
      const int64_t vocab = e.a->shape[1];
      for (int k = 0; k < r; ++k) coefs[size_t(k)] = c * load1(*e.a, uint64_t(k) * uint64_t(vocab) + uint64_t(row));
      for (int64_t d = c0; d < c1; ++d) {
        load_range(*e.b, uint64_t(d) * uint64_t(r), size_t(r), tmp.data());
        float s = 0;
        for (int k = 0; k < r; ++k) s += coefs[size_t(k)] * tmp[size_t(k)];
        dst[d - c0] += s;
      }
    }
    pos += uint64_t(c1 - c0);
  }
}

Report apply_adapters(const fs::path& target, const std::vector<std::pair<fs::path, double>>& vectors,
                      const std::vector<std::pair<fs::path, double>>& adapters, const Options& opts) {
  if (vectors.empty() && adapters.empty()) fail("apply: no --vector or --lora given");
  detail::Job job;
  job.operation = "apply";
  job.names = {"target"};
  job.paths = {target};
  std::vector<double> alphas = {1.0};
  json vecs = json::array(), ads = json::array();
  for (size_t i = 0; i < vectors.size(); ++i) {
    job.names.push_back(vectors.size() == 1 ? "vector" : fmt::format("vector{}", i + 1));
    job.paths.push_back(vectors[i].first);
    alphas.push_back(vectors[i].second);
    vecs.push_back({{"path", fs::absolute(vectors[i].first).lexically_normal().string()}, {"alpha", vectors[i].second}});
  }
  for (size_t i = 0; i < adapters.size(); ++i) {
    job.loras.push_back({adapters.size() == 1 ? std::string("lora") : fmt::format("lora{}", i + 1), adapters[i].first,
                         adapters[i].second});
    ads.push_back({{"path", fs::absolute(adapters[i].first).lexically_normal().string()}, {"alpha", adapters[i].second}});
  }
  job.coef = [alphas](size_t i, const std::string&) { return alphas[i]; };
  job.record = {{"vectors", vecs}, {"loras", ads}};
  return detail::run(job, opts);
}

std::vector<float> Adapter::dense(size_t i) const {
  const Entry& e = entries_.at(i);
  uint64_t n = 1;
  for (auto d : e.shape) n *= uint64_t(d);
  std::vector<float> v(n, 0.0f);
  for (uint64_t off = 0; off < n; off += kChunk) add_elements(i, off, size_t(std::min<uint64_t>(kChunk, n - off)), 1.0, v.data() + off);
  return v;
}

}  // namespace rvec::arith::lora
