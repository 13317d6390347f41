#include "arith/analysis.h"

#include <cblas.h>
#include <lapacke.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>

#include "arith/arith.h"
#include "arith/inspect.h"
#include "arith/sparsify.h"
#include "core/dtype.h"
#include "core/error.h"
#include "io/model_dir.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace rvec::arith {

namespace {

constexpr size_t kChunk = size_t(1) << 16;

struct Chunk {
  const io::TensorInfo* t;
  const io::MappedFile* file;
  uint64_t off, len;
};

std::vector<Chunk> chunks_of(const io::ModelDir& m, const std::vector<const io::TensorInfo*>& ts) {
  std::vector<Chunk> c;
  for (auto* t : ts) {
    const io::MappedFile* f = &m.file_of(t->name).mapped();
    for (uint64_t off = 0; off < t->numel(); off += kChunk)
      c.push_back({t, f, off, std::min<uint64_t>(kChunk, t->numel() - off)});
  }
  return c;
}

// Converts a chunk to f32; its pages then leave the process's working set (they stay in the
// page cache), so RSS stays bounded whatever the vector's size. The 4 MB before the chunk go
// too: another thread's fault on a neighbouring chunk can map them again (fault-around).
void load(const Chunk& c, float* x) {
  constexpr size_t kBack = size_t(4) << 20;
  const size_t es = dtype_size(c.t->dtype);
  to_f32(c.t->dtype, c.t->data + c.off * es, x, c.len);
  const size_t b = size_t(c.t->data - c.file->data()) + c.off * es, e = b + c.len * es;
  const size_t start = b > kBack ? b - kBack : 0;
  c.file->advise_dontneed(start, e - start);
}

// Exact top-k L2 mass fractions of a group of tensors: pass A counts the high 16 bits of
// |v| (and Σ v² per chunk), pass B the low 16 bits inside each wanted bin, pass C sums v²
// above each threshold per chunk. Counts are integers and chunk sums are added in chunk
// order, so the result does not depend on the thread count.
SpectrumRow spectrum(const io::ModelDir& m, const std::string& name, const std::vector<const io::TensorInfo*>& ts) {
  SpectrumRow row;
  row.name = name;
  const auto ch = chunks_of(m, ts);
  for (auto* t : ts) row.numel += t->numel();
  if (row.numel == 0) return row;
  const int64_t nc = int64_t(ch.size());
  std::vector<double> sq(ch.size(), 0.0);
  auto hist_owner = std::make_unique<sparse::Hist>();  // 512 KB: on the heap
  sparse::Hist& hist = *hist_owner;
  hist.fill(0);
#pragma omp parallel
  {
    std::vector<float> x(kChunk);
    auto h = std::make_unique<sparse::Hist>();
    h->fill(0);
#pragma omp for schedule(dynamic)
    for (int64_t i = 0; i < nc; ++i) {
      load(ch[size_t(i)], x.data());
      double s = 0;
      for (uint64_t j = 0; j < ch[size_t(i)].len; ++j) {
        (*h)[sparse::mag_key(x[j]) >> 16]++;
        s += double(x[j]) * x[j];
      }
      sq[size_t(i)] = s;
    }
#pragma omp critical
    for (size_t b = 0; b < hist.size(); ++b) hist[b] += (*h)[b];
  }
  for (double s : sq) row.sumsq += s;
  const size_t nf = kSpectrumFractions.size();
  std::vector<uint64_t> ks(nf);
  std::vector<sparse::HiSel> sel(nf);
  std::vector<sparse::Boundary> bd(nf);
  for (size_t f = 0; f < nf; ++f) {
    ks[f] = std::min<uint64_t>(row.numel, std::max<uint64_t>(1, uint64_t(std::ceil(kSpectrumFractions[f] * double(row.numel)))));
    if (ks[f] < row.numel) sel[f] = sparse::select_hi(hist, ks[f]);
  }
  std::vector<sparse::Hist> lo(nf);
  for (auto& h : lo) h.fill(0);
#pragma omp parallel
  {
    std::vector<float> x(kChunk);
    std::vector<sparse::Hist> hl(nf);
    for (auto& h : hl) h.fill(0);
#pragma omp for schedule(dynamic)
    for (int64_t i = 0; i < nc; ++i) {
      load(ch[size_t(i)], x.data());
      for (uint64_t j = 0; j < ch[size_t(i)].len; ++j) {
        const uint32_t k = sparse::mag_key(x[j]);
        for (size_t f = 0; f < nf; ++f)
          if (ks[f] < row.numel && (k >> 16) == sel[f].hi) hl[f][k & 0xffff]++;
      }
    }
#pragma omp critical
    for (size_t f = 0; f < nf; ++f)
      for (size_t b = 0; b < hl[f].size(); ++b) lo[f][b] += hl[f][b];
  }
  for (size_t f = 0; f < nf; ++f)
    if (ks[f] < row.numel) bd[f] = sparse::select_lo(sel[f], lo[f], ks[f]);
  std::vector<double> above(ch.size() * nf, 0.0);
#pragma omp parallel
  {
    std::vector<float> x(kChunk);
#pragma omp for schedule(dynamic)
    for (int64_t i = 0; i < nc; ++i) {
      load(ch[size_t(i)], x.data());
      for (size_t f = 0; f < nf; ++f) {
        if (ks[f] >= row.numel) continue;
        double s = 0;
        for (uint64_t j = 0; j < ch[size_t(i)].len; ++j)
          if (sparse::mag_key(x[j]) > bd[f].key_t) s += double(x[j]) * x[j];
        above[size_t(i) * nf + f] = s;
      }
    }
  }
  for (size_t f = 0; f < nf; ++f) {
    double mass = row.sumsq;
    if (ks[f] < row.numel) {
      mass = 0;
      for (size_t i = 0; i < ch.size(); ++i) mass += above[i * nf + f];
      const double t = bd[f].value();
      mass += double(bd[f].quota) * t * t;
    }
    row.top_mass[f] = row.sumsq > 0 ? mass / row.sumsq : 0;
  }
  return row;
}

// In place: the m x l row-major matrix becomes an orthonormal basis of its columns.
void orthonormalise(std::vector<float>& y, int64_t m, int64_t l) {
  std::vector<float> tau(static_cast<size_t>(l));
  if (LAPACKE_sgeqrf(LAPACK_ROW_MAJOR, lapack_int(m), lapack_int(l), y.data(), lapack_int(l), tau.data()) != 0 ||
      LAPACKE_sorgqr(LAPACK_ROW_MAJOR, lapack_int(m), lapack_int(l), lapack_int(l), y.data(), lapack_int(l),
                     tau.data()) != 0)
    fail("LAPACK QR failed on a {}x{} sketch", m, l);
}

std::vector<double> svd_values(std::vector<double>& a, int64_t m, int64_t n) {
  std::vector<double> s(size_t(std::min(m, n)));
  double dummy = 0;
  // The row-major m x n matrix is the column-major n x m transpose: same singular values,
  // and no transposed copy inside LAPACKE.
  if (LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'N', lapack_int(n), lapack_int(m), a.data(), lapack_int(n), s.data(), &dummy, 1,
                     &dummy, 1) != 0)
    fail("LAPACK SVD failed on a {}x{} matrix", m, n);
  return s;
}

}  // namespace

std::vector<float> range_basis(const float* a, int64_t m, int64_t n, int64_t l, int power, uint64_t seed) {
  // Gaussian test matrix (Box-Muller on the counter-based uniforms: reproducible).
  std::vector<float> omega(size_t(n * l));
  for (size_t i = 0; i < omega.size(); ++i) {
    const double u1 = sparse::uniform(seed, 1, 2 * i), u2 = sparse::uniform(seed, 1, 2 * i + 1);
    omega[i] = float(std::sqrt(-2 * std::log(1 - u1)) * std::cos(2 * M_PI * u2));
  }
  std::vector<float> y(size_t(m * l)), z(size_t(n * l));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(m), int(l), int(n), 1.0f, a, int(n), omega.data(), int(l),
              0.0f, y.data(), int(l));
  orthonormalise(y, m, l);
  for (int q = 0; q < power; ++q) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(n), int(l), int(m), 1.0f, a, int(n), y.data(), int(l), 0.0f,
                z.data(), int(l));
    orthonormalise(z, n, l);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(m), int(l), int(n), 1.0f, a, int(n), z.data(), int(l),
                0.0f, y.data(), int(l));
    orthonormalise(y, m, l);
  }
  return y;
}

std::vector<double> top_singular_values(const float* a, int64_t m, int64_t n, int probe, int power, uint64_t seed,
                                        bool* exact) {
  const int64_t k = std::min(m, n);
  if (k <= probe) {
    if (exact) *exact = true;
    std::vector<double> d(size_t(m * n));
    for (size_t i = 0; i < d.size(); ++i) d[i] = a[i];
    return svd_values(d, m, n);
  }
  if (exact) *exact = false;
  const int64_t l = probe;
  const std::vector<float> y = range_basis(a, m, n, l, power, seed);
  std::vector<float> b(size_t(l * n));  // Qᵀ A
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(l), int(n), int(m), 1.0f, y.data(), int(l), a, int(n), 0.0f,
              b.data(), int(n));
  std::vector<double> bd(b.begin(), b.end());
  return svd_values(bd, l, n);
}

std::optional<int> energy_rank(const std::vector<double>& s, double energy, double f) {
  if (energy <= 0) return 0;
  double c = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    c += s[i] * s[i];
    if (c >= f * energy * (1 - 1e-12)) return int(i + 1);
  }
  return std::nullopt;
}

AnalysisResult analyse(const fs::path& path, const AnalysisOptions& o) {
  AnalysisResult r;
  r.path = path.string();
  auto m = io::ModelDir::open(path, false);
  std::vector<const io::TensorInfo*> all;
  std::map<std::string, std::vector<const io::TensorInfo*>> groups;
  std::vector<std::string> order;
  for (auto* t : m->tensors()) {
    if (!is_arith_dtype(t->dtype)) continue;
    all.push_back(t);
    const std::string g = tensor_group(t->name);
    if (!groups.count(g)) order.push_back(g);
    groups[g].push_back(t);
  }
  if (o.spectrum) {
    for (auto* t : all) r.tensors.push_back(spectrum(*m, t->name, {t}));
    for (auto& g : order) r.groups.push_back(spectrum(*m, g, groups[g]));
    r.total = spectrum(*m, "total", all);
  }
  if (o.rank) {
    if (o.probe < 1) fail("--rank-probe must be at least 1");
    for (auto* t : all) {
      if (t->shape.size() != 2 || layer_index(t->name) < 0) continue;
      RankRow row;
      row.name = t->name;
      row.rows = t->shape[0];
      row.cols = t->shape[1];
      std::vector<float> a(t->numel());
      load({t, &m->file_of(t->name).mapped(), 0, t->numel()}, a.data());
      for (float x : a) row.energy += double(x) * x;
      row.singular = top_singular_values(a.data(), row.rows, row.cols, o.probe, o.power,
                                         o.seed ^ sparse::stream_id(t->name, 0), &row.exact);
      row.probe = int(row.singular.size());
      const double fr[3] = {0.5, 0.9, 0.99};
      for (int i = 0; i < 3; ++i) row.rank[size_t(i)] = energy_rank(row.singular, row.energy, fr[i]);
      r.ranks.push_back(std::move(row));
    }
  }
  return r;
}

json to_json(const AnalysisResult& r) {
  auto spec = [](const SpectrumRow& s) {
    return json{{"name", s.name},
                {"numel", s.numel},
                {"l2_norm", std::sqrt(s.sumsq)},
                {"top_1pct", s.top_mass[0]},
                {"top_5pct", s.top_mass[1]},
                {"top_10pct", s.top_mass[2]},
                {"top_50pct", s.top_mass[3]}};
  };
  json out = {{"path", r.path}};
  if (!r.tensors.empty() || !r.groups.empty()) {
    json t = json::array(), g = json::array();
    for (auto& s : r.tensors) t.push_back(spec(s));
    for (auto& s : r.groups) g.push_back(spec(s));
    out["spectrum"] = {{"tensors", t}, {"layers", g}, {"total", spec(r.total)}};
  }
  if (!r.ranks.empty()) {
    json a = json::array();
    for (auto& x : r.ranks) {
      auto rk = [](const std::optional<int>& v) { return v ? json(*v) : json(nullptr); };
      json sv = json::array();
      for (size_t i = 0; i < std::min<size_t>(x.singular.size(), 16); ++i) sv.push_back(x.singular[i]);
      a.push_back({{"name", x.name},
                   {"shape", {x.rows, x.cols}},
                   {"exact", x.exact},
                   {"probe", x.probe},
                   {"rank_50", rk(x.rank[0])},
                   {"rank_90", rk(x.rank[1])},
                   {"rank_99", rk(x.rank[2])},
                   {"top_singular_values", sv}});
    }
    out["effective_rank"] = a;
  }
  return out;
}

std::string to_table(const AnalysisResult& r) {
  std::string s;
  if (!r.groups.empty()) {
    s += fmt::format("{:<48} {:>12} {:>8} {:>8} {:>8} {:>8}\n", "L2 mass in the top k% of entries", "entries", "1%", "5%",
                     "10%", "50%");
    auto line = [&](const SpectrumRow& x) {
      s += fmt::format("{:<48} {:>12} {:>7.1f}% {:>7.1f}% {:>7.1f}% {:>7.1f}%\n", x.name, x.numel, 100 * x.top_mass[0],
                       100 * x.top_mass[1], 100 * x.top_mass[2], 100 * x.top_mass[3]);
    };
    for (auto& x : r.tensors) line(x);
    s += "\n";
    for (auto& x : r.groups) line(x);
    line(r.total);
  }
  if (!r.ranks.empty()) {
    if (!s.empty()) s += "\n";
    s += fmt::format("{:<48} {:>12} {:>8} {:>8} {:>8}\n", "effective rank (energy)", "shape", "50%", "90%", "99%");
    for (auto& x : r.ranks) {
      auto rk = [&](const std::optional<int>& v) { return v ? fmt::format("{}", *v) : fmt::format(">{}", x.probe); };
      s += fmt::format("{:<48} {:>12} {:>8} {:>8} {:>8}\n", x.name, fmt::format("{}x{}", x.rows, x.cols), rk(x.rank[0]),
                       rk(x.rank[1]), rk(x.rank[2]));
    }
  }
  return s;
}

std::string to_svg(const AnalysisResult& r) {
  // Per layer: the spectrum's four fractions, and the mean r90 / min(rows, cols).
  std::vector<int> layers;
  std::map<int, std::array<double, 4>> spec;
  for (auto& g : r.groups) {
    if (g.name.rfind("layer ", 0) != 0) continue;
    const int l = std::stoi(g.name.substr(6));
    layers.push_back(l);
    spec[l] = g.top_mass;
  }
  std::map<int, std::pair<double, int>> rk;
  for (auto& x : r.ranks) {
    const int l = layer_index(x.name);
    const double v = x.rank[1] ? double(*x.rank[1]) / double(std::min(x.rows, x.cols)) : 1.0;
    rk[l].first += v;
    rk[l].second++;
    if (std::find(layers.begin(), layers.end(), l) == layers.end()) layers.push_back(l);
  }
  std::sort(layers.begin(), layers.end());
  const int W = 640, H = 260, pw = 280, ph = 180, top = 40, left1 = 50, left2 = 360;
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" "
      "font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
      W, H);
  const double nl = std::max<double>(1, double(layers.size()) - 1);
  auto px = [&](int left, size_t i) { return left + (layers.size() > 1 ? double(i) / nl * pw : pw / 2.0); };
  auto py = [&](double v) { return top + ph - v * ph; };
  for (int left : {left1, left2}) {
    s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#888\"/>\n", left, top, pw,
                     ph);
    for (double v : {0.0, 0.5, 1.0})
      s += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", left - 4, py(v) + 4, v);
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">layer</text>\n", left + pw / 2, top + ph + 28);
    if (!layers.empty())
      s += fmt::format("<text x=\"{}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", left,
                       top + ph + 14, layers.front(), left + pw, top + ph + 14, layers.back());
  }
  s += fmt::format("<text x=\"{}\" y=\"20\">fraction of L2 mass in the top k% of entries</text>\n", left1);
  s += fmt::format("<text x=\"{}\" y=\"20\">90% effective rank / min(rows, cols)</text>\n", left2);
  const char* colors[4] = {"#d62728", "#ff7f0e", "#2ca02c", "#1f77b4"};
  const char* labels[4] = {"1%", "5%", "10%", "50%"};
  for (size_t f = 0; f < 4; ++f) {
    std::string pts;
    for (size_t i = 0; i < layers.size(); ++i)
      if (spec.count(layers[i])) pts += fmt::format("{:.1f},{:.1f} ", px(left1, i), py(spec[layers[i]][f]));
    if (!pts.empty())
      s += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"/>\n", pts, colors[f]);
    s += fmt::format("<text x=\"{}\" y=\"{}\" fill=\"{}\">top {}</text>\n", left1 + 6 + 45 * int(f), top + 14, colors[f],
                     labels[f]);
  }
  std::string pts;
  for (size_t i = 0; i < layers.size(); ++i)
    if (rk.count(layers[i]))
      pts += fmt::format("{:.1f},{:.1f} ", px(left2, i), py(rk[layers[i]].first / rk[layers[i]].second));
  if (!pts.empty()) s += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\"/>\n", pts);
  s += "</svg>\n";
  return s;
}

}  // namespace rvec::arith
