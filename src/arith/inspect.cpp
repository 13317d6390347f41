#include "arith/inspect.h"

#include <omp.h>

#include <cmath>
#include <map>

#include "arith/arith.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/json_fields.h"
#include "io/model_dir.h"
#include "io/model_output.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace rvec::arith {

double InspectRow::norm() const { return std::sqrt(sumsq); }
double InspectRow::zero_fraction() const { return numel ? double(zeros) / double(numel) : 0; }
double InspectRow::ref_norm() const { return std::sqrt(ref_sumsq); }
double InspectRow::relative() const { return ref_sumsq > 0 ? norm() / ref_norm() : 0; }
double InspectRow::sign_agreement() const { return both_nonzero ? double(same_sign) / double(both_nonzero) : 0; }
double InspectRow::cosine() const { return sumsq > 0 && ref_sumsq > 0 ? dot / (norm() * ref_norm()) : 0; }

std::string tensor_group(const std::string& name) {
  int l = layer_index(name);
  if (l >= 0) return fmt::format("layer {}", l);
  if (name.find("embed_tokens") != std::string::npos) return "embed";
  if (name.find("lm_head") != std::string::npos) return "lm_head";
  return "other";
}

namespace {
constexpr size_t kChunk = size_t(1) << 16;

void accumulate(InspectRow& g, const InspectRow& t) {
  g.numel += t.numel;
  g.zeros += t.zeros;
  g.sumsq += t.sumsq;
  g.max_abs = std::max(g.max_abs, t.max_abs);
  g.ref_sumsq += t.ref_sumsq;
  g.dot += t.dot;
  g.both_nonzero += t.both_nonzero;
  g.same_sign += t.same_sign;
  if (g.dtype.empty())
    g.dtype = t.dtype;
  else if (g.dtype != t.dtype)
    g.dtype = "mixed";
}
}  // namespace

InspectResult inspect(const fs::path& path, const std::optional<fs::path>& against, std::string kind) {
  InspectResult r;
  auto m = io::ModelDir::open(path, false);
  std::unique_ptr<io::ModelDir> ref;
  r.path = path.string();
  if (against) {
    ref = io::ModelDir::open(*against, false);
    r.against = against->string();
    if (kind == "auto" || kind.empty()) {
      std::string op = json_string_or(io::read_rvec_json(*against), "operation", "", (*against / "rvec.json").string());
      kind = (op == "extract" || op == "random-vector") ? "vector" : "model";
    }
    if (kind != "vector" && kind != "model") fail("inspect: --against-kind must be vector or model, not '{}'", kind);
    r.against_kind = kind;
  }
  std::map<std::string, InspectRow> groups;
  std::vector<std::string> group_order;
  for (auto* t : m->tensors()) {
    InspectRow row;
    row.name = t->name;
    row.dtype = std::string(dtype_name(t->dtype));
    row.numel = t->numel();
    const bool num = is_arith_dtype(t->dtype);
    const io::TensorInfo* u = nullptr;
    if (ref && num) {
      u = ref->find(t->name);
      if (!u && t->name == "lm_head.weight" && ref->tie_word_embeddings()) u = ref->find("model.embed_tokens.weight");
      if (u && (!is_arith_dtype(u->dtype) || (u->shape.size() && t->shape.size() && u->numel() / std::max<int64_t>(1, u->shape[0]) !=
                                                                       t->numel() / std::max<int64_t>(1, t->shape[0]))))
        u = nullptr;
    }
    if (num) {
      const uint64_t n = t->numel();
      const uint64_t nref = u ? std::min(n, u->numel()) : 0;  // common rows on vocab mismatch
      const int64_t nch = int64_t((n + kChunk - 1) / kChunk);
      std::vector<InspectRow> parts(size_t(std::max<int64_t>(nch, 0)));
      const io::MappedFile& tf = m->file_of(t->name).mapped();
      const size_t toff = size_t(t->data - tf.data());
#pragma omp parallel if (nch > 1)
      {
        std::vector<float> a(kChunk), b(kChunk);
#pragma omp for schedule(static)
        for (int64_t c = 0; c < nch; ++c) {
          const uint64_t off = uint64_t(c) * kChunk, len = std::min<uint64_t>(kChunk, n - off);
          to_f32(t->dtype, t->data + off * dtype_size(t->dtype), a.data(), len);
          InspectRow& p = parts[size_t(c)];
          // Consumed pages leave this process's working set (they stay in the page cache).
          tf.advise_dontneed(toff + off * dtype_size(t->dtype), len * dtype_size(t->dtype));
          for (uint64_t i = 0; i < len; ++i) {
            const double x = a[i];
            p.sumsq += x * x;
            p.max_abs = std::max(p.max_abs, std::fabs(x));
            p.zeros += x == 0;
          }
          if (off < nref) {
            const uint64_t l2 = std::min<uint64_t>(len, nref - off);
            to_f32(u->dtype, u->data + off * dtype_size(u->dtype), b.data(), l2);
            for (uint64_t i = 0; i < l2; ++i) {
              p.ref_sumsq += double(b[i]) * b[i];
              p.dot += double(a[i]) * b[i];
              const bool both = a[i] != 0 && b[i] != 0;
              p.both_nonzero += both;
              p.same_sign += both && ((a[i] > 0) == (b[i] > 0));
            }
          }
        }
      }
      for (auto& p : parts) {
        row.sumsq += p.sumsq;
        row.max_abs = std::max(row.max_abs, p.max_abs);
        row.zeros += p.zeros;
        row.ref_sumsq += p.ref_sumsq;
        row.dot += p.dot;
        row.both_nonzero += p.both_nonzero;
        row.same_sign += p.same_sign;
      }
    }
    std::string g = tensor_group(t->name);
    if (!groups.count(g)) {
      group_order.push_back(g);
      groups[g].name = g;
    }
    if (num) {
      accumulate(groups[g], row);
      accumulate(r.total, row);
    }
    r.tensors.push_back(row);
  }
  for (auto& g : group_order) r.groups.push_back(groups[g]);
  r.total.name = "total";
  return r;
}

json to_json(const InspectResult& r) {
  auto row = [&](const InspectRow& x) {
    json j = {{"name", x.name},       {"numel", x.numel},         {"l2_norm", x.norm()},
              {"max_abs", x.max_abs}, {"zero_fraction", x.zero_fraction()}};
    if (!x.dtype.empty()) j["dtype"] = x.dtype;
    if (r.against_kind == "model") {
      j["model_norm"] = x.ref_norm();
      j["relative_norm"] = x.relative();
    } else if (r.against_kind == "vector") {
      j["other_norm"] = x.ref_norm();
      j["cosine"] = x.cosine();
      j["sign_agreement"] = x.sign_agreement();
      j["both_nonzero"] = x.both_nonzero;
    }
    return j;
  };
  json t = json::array(), g = json::array();
  for (auto& x : r.tensors) t.push_back(row(x));
  for (auto& x : r.groups) g.push_back(row(x));
  json out = {{"path", r.path}, {"tensors", t}, {"layers", g}, {"total", row(r.total)}};
  if (!r.against.empty()) out["against"] = {{"path", r.against}, {"kind", r.against_kind}};
  return out;
}

std::string to_table(const InspectResult& r, bool per_tensor) {
  std::string s;
  const bool m = r.against_kind == "model", v = r.against_kind == "vector";
  auto header = [&](const char* first) {
    s += fmt::format("{:<48} {:>6} {:>12} {:>11} {:>7}", first, "dtype", "L2 norm", "max |v|", "zeros");
    if (m) s += fmt::format(" {:>12} {:>10}", "|theta|", "|v|/|theta|");
    if (v) s += fmt::format(" {:>12} {:>8} {:>7}", "|other|", "cosine", "signs");
    s += "\n";
  };
  auto line = [&](const InspectRow& x) {
    s += fmt::format("{:<48} {:>6} {:>12.6g} {:>11.4g} {:>6.2f}%", x.name, x.dtype, x.norm(), x.max_abs,
                     100 * x.zero_fraction());
    if (m) s += fmt::format(" {:>12.6g} {:>10.4g}", x.ref_norm(), x.relative());
    if (v) s += fmt::format(" {:>12.6g} {:>8.4f} {:>6.1f}%", x.ref_norm(), x.cosine(), 100 * x.sign_agreement());
    s += "\n";
  };
  if (per_tensor) {
    header("tensor");
    for (auto& x : r.tensors) line(x);
    s += "\n";
  }
  header("layer");
  for (auto& x : r.groups) line(x);
  line(r.total);
  return s;
}

}  // namespace rvec::arith
