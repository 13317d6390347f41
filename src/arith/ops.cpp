// extract / apply / merge --expr / random-vector on top of the engine.
#include <omp.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstring>

#include "arith/arith.h"
#include "arith/engine.h"
#include "core/atomic_output.h"
#include "core/error.h"
#include "core/progress.h"
#include "io/model_dir.h"
#include "io/model_output.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace rvec::arith {

int layer_index(const std::string& name) {
  static const std::string key = "layers.";
  size_t p = name.find(key);
  if (p == std::string::npos) return -1;
  p += key.size();
  size_t e = p;
  while (e < name.size() && std::isdigit(static_cast<unsigned char>(name[e]))) ++e;
  if (e == p || e - p > 6 || (e < name.size() && name[e] != '.')) return -1;
  return std::stoi(name.substr(p, e - p));
}

Report extract(const fs::path& base, const fs::path& tuned, const Options& opts) {
  detail::Job job;
  job.operation = "extract";
  job.names = {"tuned", "base"};
  job.paths = {tuned, base};
  job.target = 0;
  job.coef = [](size_t i, const std::string&) { return i == 0 ? 1.0 : -1.0; };
  job.vector_output = true;
  job.extract_lossless = true;
  job.record = {{"expression", "tuned - base"}};
  return detail::run(job, opts);
}

Report apply(const fs::path& target, const std::vector<std::pair<fs::path, double>>& vectors, const Options& opts) {
  if (vectors.empty()) fail("apply: no --vector given");
  detail::Job job;
  job.operation = "apply";
  job.names = {"target"};
  job.paths = {target};
  std::vector<double> alphas = {1.0};
  json vecs = json::array();
  for (size_t i = 0; i < vectors.size(); ++i) {
    job.names.push_back(vectors.size() == 1 ? "vector" : fmt::format("vector{}", i + 1));
    job.paths.push_back(vectors[i].first);
    alphas.push_back(vectors[i].second);
    vecs.push_back({{"path", fs::absolute(vectors[i].first).lexically_normal().string()}, {"alpha", vectors[i].second}});
  }
  job.coef = [alphas](size_t i, const std::string&) { return alphas[i]; };
  job.record = {{"vectors", vecs}};
  return detail::run(job, opts);
}

Report apply_sparse(const fs::path& target, const std::vector<std::pair<fs::path, double>>& vectors,
                    const SparsifyOptions& sp, const Options& opts) {
  if (vectors.empty()) fail("apply: no --vector given");
  struct M {
    const char* name;
    sparse::Method method;
    bool consensus, rescale;
  };
  // The defaults of mergekit's ties, dare_linear, della and breadcrumbs.
  static const M kMethods[] = {{"ties", sparse::Method::Magnitude, true, false},
                               {"dare", sparse::Method::Random, false, true},
                               {"della", sparse::Method::Della, true, true},
                               {"breadcrumbs", sparse::Method::MagnitudeOutliers, false, false}};
  const M* m = nullptr;
  for (const auto& x : kMethods)
    if (sp.method == x.name) m = &x;
  if (!m) fail("--sparsify {}: expected ties, dare, della or breadcrumbs", sp.method);
  if (!(sp.density >= 0 && sp.density <= 1)) fail("--density {}: must be in [0, 1]", sp.density);
  if (!(sp.gamma >= 0 && sp.gamma <= 1)) fail("--gamma {}: must be in [0, 1]", sp.gamma);
  detail::Job job;
  job.operation = "apply";
  job.names = {"target"};
  job.paths = {target};
  detail::SparseJob sj;
  sj.method = m->method;
  sj.consensus = sp.consensus.value_or(m->consensus);
  sj.seed = opts.seed;
  std::vector<double> alphas;
  json vecs = json::array();
  for (size_t i = 0; i < vectors.size(); ++i) {
    job.names.push_back(vectors.size() == 1 ? "vector" : fmt::format("vector{}", i + 1));
    job.paths.push_back(vectors[i].first);
    sj.deltas.push_back({{i + 1, 1.0}});
    alphas.push_back(vectors[i].second);
    vecs.push_back({{"path", fs::absolute(vectors[i].first).lexically_normal().string()}, {"alpha", vectors[i].second}});
  }
  sj.delta_params = [alphas, sp](size_t d, const std::string&) {
    return detail::DeltaParams{alphas[d], sp.density, sp.gamma, sp.epsilon};
  };
  const bool rescale = sp.rescale.value_or(m->rescale);
  sj.tensor_params = [rescale, sp](const std::string&) { return detail::TensorParams{1.0, sp.normalize, rescale}; };
  job.sparse = std::move(sj);
  job.record = {{"vectors", vecs},
                {"sparsify",
                 {{"method", sp.method},
                  {"mergekit_method", sparse::method_name(m->method)},
                  {"density", sp.density},
                  {"gamma", sp.gamma},
                  {"epsilon", sp.epsilon},
                  {"rescale", rescale},
                  {"consensus", sp.consensus.value_or(m->consensus)},
                  {"normalize", sp.normalize},
                  {"seed", opts.seed}}}};
  return detail::run(job, opts);
}

// ---- linear expressions ----
namespace {

struct Lin {
  double constant = 0;
  std::map<std::string, double> coef;
  bool is_const() const {
    for (auto& [n, c] : coef)
      if (c != 0) return false;
    return true;
  }
};

class Parser {
 public:
  Parser(const std::string& s, std::vector<std::string>* order) : s_(s), order_(order) {}
  Lin parse() {
    Lin v = expr();
    skip();
    if (i_ != s_.size()) err("unexpected '{}'", s_.substr(i_, 1));
    return v;
  }

 private:
  template <typename... A>
  [[noreturn]] void err(fmt::format_string<A...> f, A&&... a) {
    fail("expression '{}', at column {}: {}", s_, i_ + 1, fmt::format(f, std::forward<A>(a)...));
  }
  void skip() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool eat(char c) {
    skip();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  static Lin add(Lin a, const Lin& b, double sign) {
    a.constant += sign * b.constant;
    for (auto& [n, c] : b.coef) a.coef[n] += sign * c;
    return a;
  }
  static Lin scale(Lin a, double k) {
    a.constant *= k;
    for (auto& [n, c] : a.coef) c *= k;
    return a;
  }
  Lin expr() {
    Lin v = term();
    for (;;) {
      if (eat('+'))
        v = add(v, term(), 1);
      else if (eat('-'))
        v = add(v, term(), -1);
      else
        return v;
    }
  }
  Lin term() {
    Lin v = unary();
    for (;;) {
      if (eat('*')) {
        size_t at = i_;
        Lin r = unary();
        if (v.is_const())
          v = scale(r, v.constant);
        else if (r.is_const())
          v = scale(v, r.constant);
        else {
          i_ = at;
          err("product of two model terms is not a linear expression");
        }
      } else if (eat('/')) {
        size_t at = i_;
        Lin r = unary();
        if (!r.is_const()) {
          i_ = at;
          err("division by a model term is not a linear expression");
        }
        if (r.constant == 0) {
          i_ = at;
          err("division by zero");
        }
        v = scale(v, 1.0 / r.constant);
      } else {
        return v;
      }
    }
  }
  Lin unary() {
    if (eat('-')) return scale(unary(), -1);
    if (eat('+')) return unary();
    return primary();
  }
  Lin primary() {
    skip();
    if (i_ >= s_.size()) err("unexpected end of expression");
    char c = s_[i_];
    if (c == '(') {
      ++i_;
      Lin v = expr();
      if (!eat(')')) err("expected ')'");
      return v;
    }
    if (std::isdigit(static_cast<unsigned char>(c)) || c == '.') {
      const char* b = s_.c_str() + i_;
      char* e = nullptr;
      double d = std::strtod(b, &e);
      if (e == b) err("bad number");
      i_ += size_t(e - b);
      Lin v;
      v.constant = d;
      return v;
    }
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t b = i_;
      // Names: letters, digits, '_' and '.'; '-' always means minus.
      while (i_ < s_.size() &&
             (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '_' || s_[i_] == '.'))
        ++i_;
      std::string name = s_.substr(b, i_ - b);
      if (order_ && std::find(order_->begin(), order_->end(), name) == order_->end()) order_->push_back(name);
      Lin v;
      v.coef[name] = 1;
      return v;
    }
    err("unexpected '{}'", std::string(1, c));
  }
  const std::string& s_;
  std::vector<std::string>* order_;
  size_t i_ = 0;
};

}  // namespace

std::map<std::string, double> parse_linear_expr(const std::string& expr, std::vector<std::string>* order) {
  Lin v = Parser(expr, order).parse();
  if (std::fabs(v.constant) > 0) fail("expression '{}': a constant term ({}) is not a model", expr, v.constant);
  if (v.coef.empty()) fail("expression '{}': names no model", expr);
  return v.coef;
}

Report merge_expr(const std::string& expr, const std::map<std::string, fs::path>& models, const Options& opts,
                  const std::string& target) {
  std::vector<std::string> order;
  auto coef = parse_linear_expr(expr, &order);
  for (auto& n : order)
    if (!models.count(n)) fail("expression '{}': no --model given for '{}'", expr, n);
  for (auto& [n, p] : models)
    if (!coef.count(n)) fail("--model {}={}: '{}' does not appear in the expression '{}'", n, p.string(), n, expr);
  std::string tgt = target.empty() ? order.front() : target;
  if (!models.count(tgt)) fail("target '{}' is not one of the models", tgt);
  detail::Job job;
  job.operation = "merge";
  std::vector<double> cs;
  job.names.push_back(tgt);
  job.paths.push_back(models.at(tgt));
  cs.push_back(coef[tgt]);
  for (auto& n : order) {
    if (n == tgt) continue;
    job.names.push_back(n);
    job.paths.push_back(models.at(n));
    cs.push_back(coef[n]);
  }
  job.target = 0;
  job.coef = [cs](size_t i, const std::string&) { return cs[i]; };
  json c = json::object();
  for (auto& [n, v] : coef) c[n] = v;
  job.record = {{"expression", expr}, {"coefficients", c}};
  return detail::run(job, opts);
}

// ---- random vector with the same per-tensor norms ----
namespace {
struct SplitMix {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }
};
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}
constexpr size_t kRandChunk = size_t(1) << 16;
// Deterministic standard normals for chunk `chunk` of a tensor (Box-Muller).
void gaussian_chunk(uint64_t seed, uint64_t name_hash, uint64_t chunk, float* out, size_t n) {
  SplitMix r{seed * 0x2545f4914f6cdd1dull ^ name_hash ^ (chunk * 0x9e3779b97f4a7c15ull)};
  for (size_t i = 0; i < n; i += 2) {
    double u1 = r.uniform(), u2 = r.uniform();
    double rad = std::sqrt(-2.0 * std::log(1.0 - u1)), th = 6.283185307179586 * u2;
    out[i] = float(rad * std::cos(th));
    if (i + 1 < n) out[i + 1] = float(rad * std::sin(th));
  }
}
}  // namespace

Report random_like(const fs::path& vector_dir, uint64_t seed, const Options& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  if (opts.out.empty()) fail("no output directory given (-o)");
  auto v = io::ModelDir::open(vector_dir, false);
  if (!opts.force && fs::exists(opts.out))
    fail("output {} already exists (use --force to replace it)", opts.out.string());
  Report rep;
  rep.out = opts.out;
  std::vector<io::TensorSpec> specs;
  for (auto* t : v->tensors()) specs.push_back({t->name, t->dtype, t->shape});
  auto hash = opts.hash_inputs ? io::describe_input(vector_dir)
                               : json{{"path", fs::absolute(vector_dir).lexically_normal().string()}};
  AtomicDir outdir(opts.out, opts.force);
  io::SafetensorsWriter w(outdir.tmp(), specs, opts.shard_size);
  Progress prog("random-vector", w.total_size(), "B", opts.quiet);
  std::vector<float> g, x;
  std::vector<uint8_t> enc;
  json tens = json::object();
  for (auto* t : v->tensors()) {
    const uint64_t n = t->numel();
    TensorReport tr;
    tr.name = t->name;
    tr.dtype = t->dtype;
    if (!detail::computable_dtype(t->dtype)) {
      w.append(t->data, t->nbytes());
      prog.add(t->nbytes());
      rep.tensors.push_back(tr);
      continue;
    }
    const uint64_t h = fnv1a(t->name);
    const int64_t nchunks = int64_t((n + kRandChunk - 1) / kRandChunk);
    // Pass 1: norms of the vector tensor and of the Gaussian.
    // Per-chunk partial sums added in order: the result does not depend on the thread count.
    const size_t nch = static_cast<size_t>(nchunks);
    const io::MappedFile& vf = v->file_of(t->name).mapped();
    const size_t voff = size_t(t->data - vf.data());
    std::vector<double> vparts(nch), gparts(nch);
#pragma omp parallel if (nchunks > 1)
    {
      std::vector<float> a(kRandChunk), b(kRandChunk);
#pragma omp for schedule(static)
      for (int64_t c = 0; c < nchunks; ++c) {
        const size_t off = size_t(c) * kRandChunk, len = std::min<size_t>(kRandChunk, n - off);
        double vs = 0, gs = 0;
        if (t->dtype == DType::F64) {
          for (size_t i = 0; i < len; ++i) {
            double d;
            std::memcpy(&d, t->data + (off + i) * 8, 8);
            vs += d * d;
          }
        } else {
          to_f32(t->dtype, t->data + off * dtype_size(t->dtype), a.data(), len);
          for (size_t i = 0; i < len; ++i) vs += double(a[i]) * a[i];
        }
        gaussian_chunk(seed, h, uint64_t(c), b.data(), len);
        for (size_t i = 0; i < len; ++i) gs += double(b[i]) * b[i];
        vf.advise_dontneed(voff + off * dtype_size(t->dtype), len * dtype_size(t->dtype));
        vparts[size_t(c)] = vs;
        gparts[size_t(c)] = gs;
      }
    }
    double vn = 0, gn = 0;
    for (int64_t c = 0; c < nchunks; ++c) vn += vparts[size_t(c)], gn += gparts[size_t(c)];
    const double k = gn > 0 ? std::sqrt(vn) / std::sqrt(gn) : 0;
    // Pass 2: regenerate, scale, write.
    const size_t es = dtype_size(t->dtype);
    for (uint64_t b0 = 0; b0 < n; b0 += 64 * kRandChunk) {
      const uint64_t b1 = std::min<uint64_t>(n, b0 + 64 * kRandChunk);
      enc.resize(size_t(b1 - b0) * es);
      const int64_t c0 = int64_t(b0 / kRandChunk), c1 = int64_t((b1 + kRandChunk - 1) / kRandChunk);
#pragma omp parallel if (c1 - c0 > 1)
      {
        std::vector<float> a(kRandChunk);
#pragma omp for schedule(static)
        for (int64_t c = c0; c < c1; ++c) {
          const size_t off = size_t(c) * kRandChunk, len = std::min<size_t>(kRandChunk, n - off);
          gaussian_chunk(seed, h, uint64_t(c), a.data(), len);
          for (size_t i = 0; i < len; ++i) a[i] = float(a[i] * k);
          uint8_t* dst = enc.data() + (off - b0) * es;
          if (t->dtype == DType::F64)
            for (size_t i = 0; i < len; ++i) {
              double d = a[i];
              std::memcpy(dst + i * 8, &d, 8);
            }
          else
            from_f32(t->dtype, a.data(), dst, len);
        }
      }
      w.append(enc.data(), enc.size());
      prog.add(enc.size());
    }
    tens[t->name] = {{"dtype", std::string(dtype_name(t->dtype))}, {"norm", std::sqrt(vn)}};
    rep.tensors.push_back(tr);
  }
  w.finish();
  prog.finish();
  rep.bytes_written = w.total_size();
  for (auto& t : rep.tensors) rep.dtype_counts[std::string(dtype_name(t.dtype))]++;
  if (fs::exists(vector_dir / "config.json")) io::copy_donor_files(vector_dir, outdir.tmp(), std::nullopt);
  json rec = {{"operation", "random-vector"},
              {"seed", seed},
              {"inputs", {{"vector", hash}}},
              {"tensors", tens},
              {"dtype_counts", rep.dtype_counts},
              {"output", {{"files", w.files()}, {"total_size", w.total_size()}}}};
  io::write_rvec_json(outdir.tmp(), rec);
  rep.record = rec;
  outdir.commit();
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

void print_report(const Report& r, const std::string& what) {
  std::string counts;
  for (auto& [d, n] : r.dtype_counts) counts += fmt::format("{}{} {}", counts.empty() ? "" : ", ", n, d);
  fmt::print("{}: wrote {} ({} tensors: {}; {}) in {}\n", what, r.out.string(), r.tensors.size(), counts,
             format_bytes(double(r.bytes_written)), format_duration(r.seconds));
  if (r.nonfinite) fmt::print("  non-finite values: {}\n", r.nonfinite);
  if (!r.warnings.empty()) fmt::print("  {} warning(s), recorded in rvec.json\n", r.warnings.size());
}

}  // namespace rvec::arith
