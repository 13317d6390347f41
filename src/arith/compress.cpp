#include "arith/compress.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "arith/lora.h"
#include "arith/sparsify.h"
#include "core/atomic_output.h"
#include "core/error.h"
#include "core/progress.h"
#include "io/model_output.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace rvec::arith {

namespace {

constexpr size_t kChunk = size_t(1) << 16;  // elements read, selected and written at once

bool decodable(DType t) { return is_arith_dtype(t); }

// Elements [off, off + len) of a dense float tensor as f32 (F64 rounded).
void read_f32(const io::TensorInfo& t, uint64_t off, size_t len, float* dst) {
  if (t.dtype == DType::F64) {
    for (size_t i = 0; i < len; ++i) {
      double d;
      std::memcpy(&d, t.data + (off + i) * 8, 8);
      dst[i] = float(d);
    }
    return;
  }
  to_f32(t.dtype, t.data + off * dtype_size(t.dtype), dst, len);
}

// Calls f(offset, values, count) over the tensor in chunks of kChunk.
template <class F>
void for_chunks(const io::TensorInfo& t, std::vector<float>& buf, F&& f) {
  const uint64_t n = t.numel();
  buf.resize(kChunk);
  for (uint64_t off = 0; off < n; off += kChunk) {
    const size_t len = size_t(std::min<uint64_t>(kChunk, n - off));
    read_f32(t, off, len, buf.data());
    f(off, buf.data(), len);
  }
}

// Which entries of one tensor a sparse compression keeps: all, none, or those with
// key > key_t plus the first `quota` (in position order) with key == key_t.
struct Cut {
  bool all = false, none = false;
  uint32_t key_t = 0;
  uint64_t quota = 0, kept = 0;
};

// The rank-k boundary (|x| descending, ties by position) over tensors concatenated in order.
sparse::Boundary boundary(const std::vector<const io::TensorInfo*>& ts, uint64_t k, uint64_t n,
                          std::vector<float>& buf) {
  sparse::Boundary b;
  b.k = k;
  if (k == 0) return b;  // none
  if (k >= n) {
    b.all = true;
    b.none = false;
    return b;
  }
  auto hist = std::make_unique<sparse::Hist>();  // 512 KB: on the heap
  hist->fill(0);
  for (const auto* t : ts)
    for_chunks(*t, buf, [&](uint64_t, const float* x, size_t len) {
      for (size_t i = 0; i < len; ++i) ++(*hist)[sparse::mag_key(x[i]) >> 16];
    });
  const sparse::HiSel s = sparse::select_hi(*hist, k);
  hist->fill(0);
  for (const auto* t : ts)
    for_chunks(*t, buf, [&](uint64_t, const float* x, size_t len) {
      for (size_t i = 0; i < len; ++i) {
        const uint32_t key = sparse::mag_key(x[i]);
        if ((key >> 16) == s.hi) ++(*hist)[key & 0xffffu];
      }
    });
  return sparse::select_lo(s, *hist, k);
}

// Walks the kept entries of a tensor in position order: f(position, value).
template <class F>
void for_kept(const io::TensorInfo& t, const Cut& c, std::vector<float>& buf, F&& f) {
  if (c.none) return;
  uint64_t eq = 0;
  for_chunks(t, buf, [&](uint64_t off, const float* x, size_t len) {
    for (size_t i = 0; i < len; ++i) {
      bool keep = c.all;
      if (!keep) {
        const uint32_t key = sparse::mag_key(x[i]);
        keep = key > c.key_t || (key == c.key_t && eq++ < c.quota);
      }
      if (keep) f(off + i, x[i]);
    }
  });
}

struct Int8Shape {
  uint64_t rows = 1, cols = 0;
};
Int8Shape int8_shape(const std::vector<int64_t>& shape, uint64_t numel) {
  Int8Shape s;
  s.rows = shape.size() >= 2 ? uint64_t(shape[0]) : 1;
  s.cols = s.rows ? numel / s.rows : 0;
  return s;
}

float load_value(DType t, const uint8_t* p, uint64_t j) {
  switch (t) {
    case DType::F32: {
      float f;
      std::memcpy(&f, p + j * 4, 4);
      return f;
    }
    case DType::BF16: {
      uint16_t h;
      std::memcpy(&h, p + j * 2, 2);
      return bf16_to_f32(h);
    }
    default: {  // F16 (validated on open)
      uint16_t h;
      std::memcpy(&h, p + j * 2, 2);
      return f16_to_f32(h);
    }
  }
}

uint64_t load_index(const io::TensorInfo& t, uint64_t j) {
  if (t.dtype == DType::U32) {
    uint32_t u;
    std::memcpy(&u, t.data + j * 4, 4);
    return u;
  }
  int64_t v;
  std::memcpy(&v, t.data + j * 8, 8);
  return uint64_t(v);  // negative values were rejected on open
}

uint64_t files_bytes(const fs::path& dir, const std::vector<std::string>& names) {
  uint64_t b = 0;
  for (const auto& n : names) b += fs::file_size(dir / n);
  return b;
}

std::string shape_json(const std::vector<int64_t>& s) { return json(s).dump(); }

}  // namespace

double CompressTensorStats::rel_err() const { return sumsq > 0 ? std::sqrt(err_sq / sumsq) : (err_sq > 0 ? 1.0 : 0.0); }

namespace {

void add_tensor(CompressReport& rep, CompressTensorStats st) {
  rep.total.numel += st.numel;
  rep.total.kept += st.kept;
  rep.total.dense_bytes += st.dense_bytes;
  rep.total.bytes += st.bytes;
  rep.total.sumsq += st.sumsq;
  rep.total.err_sq += st.err_sq;
  rep.tensors.push_back(std::move(st));
}

// The LoRA form: a PEFT adapter, reported per tensor like the other methods.
CompressReport compress_lora(const fs::path& vector, const CompressOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  if (o.rank.has_value() == o.energy.has_value()) fail("--method lora: give --rank R or --energy E");
  auto dir = io::ModelDir::open(vector, false);
  if (PackedVector::open(*dir)) fail("{} is already a compressed vector", vector.string());
  lora::ExtractOptions lo;
  lo.out = o.out;
  lo.rank = o.rank;
  lo.energy = o.energy;
  lo.skip_embeddings = true;
  lo.force = o.force;
  lo.quiet = true;
  const lora::ExtractReport lr = lora::extract_from_vector(vector, std::nullopt, lo);
  CompressReport rep;
  rep.method = "lora";
  rep.vector = vector;
  rep.out = o.out;
  std::map<std::string, const lora::ModuleReport*> mods;
  for (const auto& m : lr.modules) mods[m.tensor] = &m;
  std::vector<float> buf;
  for (const io::TensorInfo* t : dir->tensors()) {
    CompressTensorStats st;
    st.name = t->name;
    st.numel = t->numel();
    st.dense_bytes = t->nbytes();
    if (auto it = mods.find(t->name); it != mods.end()) {
      const lora::ModuleReport& m = *it->second;
      st.kept = uint64_t(m.rank) * uint64_t(m.out + m.in);  // entries of A and B
      st.bytes = st.kept * dtype_size(lo.dtype);
      st.sumsq = m.norm * m.norm;
      st.err_sq = st.sumsq * m.rel_error * m.rel_error;
    } else {  // skipped: lost
      for_chunks(*t, buf, [&](uint64_t, const float* x, size_t len) {
        for (size_t j = 0; j < len; ++j) st.sumsq += double(x[j]) * double(x[j]);
      });
      st.err_sq = st.sumsq;
    }
    add_tensor(rep, std::move(st));
  }
  rep.total.name = "total";
  for (const auto& f : dir->files()) rep.dense_file_bytes += fs::file_size(f->path());
  rep.file_bytes = fs::file_size(o.out / "adapter_model.safetensors");
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  json rj = to_json(rep);
  rj["rank"] = o.rank ? json(*o.rank) : json();
  rj["energy"] = o.energy ? json(*o.energy) : json();
  write_file_atomic(o.out / "compress_report.json", rj.dump(1) + "\n");
  return rep;
}

}  // namespace

CompressReport compress(const fs::path& vector, const CompressOptions& o) {
  if (o.method == "lora") {
    if (o.out.empty()) fail("no output directory given (-o)");
    return compress_lora(vector, o);
  }
  const auto t0 = std::chrono::steady_clock::now();
  const bool sp = o.method == "sparse";
  if (!sp && o.method != "int8") fail("--method {}: expected sparse, int8 or lora", o.method);
  if (sp && !(o.density > 0 && o.density <= 1)) fail("--density {}: must be in (0, 1]", o.density);
  if (sp && o.scope != "tensor" && o.scope != "global") fail("--scope {}: expected tensor or global", o.scope);
  if (o.out.empty()) fail("no output directory given (-o)");
  if (!o.force && fs::exists(o.out)) fail("output {} already exists (use --force to replace it)", o.out.string());
  if (fs::absolute(vector).lexically_normal() == fs::absolute(o.out).lexically_normal())
    fail("the vector {} is also the output directory", vector.string());
  auto dir = io::ModelDir::open(vector, false);
  if (PackedVector::open(*dir)) fail("{} is already a compressed vector", vector.string());

  CompressReport rep;
  rep.method = o.method;
  rep.scope = sp ? o.scope : "";
  rep.density = sp ? o.density : 0;
  rep.vector = vector;
  rep.out = o.out;
  const auto& ts = dir->tensors();
  uint64_t total_n = 0;
  for (const auto* t : ts) {
    if (!is_float(t->dtype))
      fail("{}: tensor '{}' is {}: only float tensors can be compressed", vector.string(), t->name,
           dtype_name(t->dtype));
    total_n += t->numel();
  }
  for (const auto& f : dir->files()) rep.dense_file_bytes += fs::file_size(f->path());

  std::vector<float> buf;
  // ---- selection (sparse) ----
  std::vector<Cut> cuts(ts.size());
  if (sp) {
    Progress pr("selecting", ts.size(), "tensors", o.quiet);
    auto cut_of = [](const sparse::Boundary& b) {
      Cut c;
      c.all = b.all;
      c.none = b.none;
      c.key_t = b.key_t;
      c.quota = b.quota;
      return c;
    };
    if (o.scope == "tensor") {
      for (size_t i = 0; i < ts.size(); ++i) {
        const uint64_t n = ts[i]->numel(), k = sparse::magnitude_window(n, o.density).hi;
        cuts[i] = cut_of(boundary({ts[i]}, k, n, buf));
        cuts[i].kept = std::min(k, n);
        pr.add(1);
      }
    } else {
      const uint64_t k = sparse::magnitude_window(total_n, o.density).hi;
      const sparse::Boundary b = boundary(ts, k, total_n, buf);
      uint64_t quota = b.quota;  // equal-to-threshold entries still to keep, in tensor order
      for (size_t i = 0; i < ts.size(); ++i) {
        Cut c = cut_of(b);
        if (!b.all && !b.none) {
          uint64_t greater = 0, equal = 0;
          for_chunks(*ts[i], buf, [&](uint64_t, const float* x, size_t len) {
            for (size_t j = 0; j < len; ++j) {
              const uint32_t key = sparse::mag_key(x[j]);
              greater += key > b.key_t;
              equal += key == b.key_t;
            }
          });
          c.quota = std::min(equal, quota);
          quota -= c.quota;
          c.kept = greater + c.quota;
        } else {
          c.kept = b.all ? ts[i]->numel() : 0;
        }
        cuts[i] = c;
        pr.add(1);
      }
    }
    pr.finish();
  }

  // ---- layout ----
  std::vector<io::TensorSpec> specs;
  std::map<std::string, std::string> meta = {{kCompressedTag, o.method}, {kCompressedVersionKey, kCompressedVersion}};
  for (size_t i = 0; i < ts.size(); ++i) {
    const io::TensorInfo& t = *ts[i];
    const uint64_t n = t.numel();
    const DType dec = sp ? (t.dtype == DType::F64 ? DType::F32 : t.dtype) : DType::F32;
    meta[t.name + ".shape"] = shape_json(t.shape);
    meta[t.name + ".dtype"] = std::string(dtype_name(dec));
    if (sp) {
      const int64_t k = int64_t(cuts[i].kept);
      specs.push_back({t.name + ".sparse_idx", n >= (uint64_t(1) << 32) ? DType::I64 : DType::U32, {k}});
      specs.push_back({t.name + ".sparse_val", dec, {k}});
    } else {
      specs.push_back({t.name + ".q", DType::I8, t.shape});
      specs.push_back({t.name + ".scale", DType::F32, {int64_t(int8_shape(t.shape, n).rows)}});
    }
  }

  // ---- write ----
  AtomicDir outdir(o.out, o.force);
  io::SafetensorsWriter w(outdir.tmp(), specs, o.shard_size, io::SafetensorsWriter::Mode::Background, meta);
  Progress prog("compressing", ts.size(), "tensors", o.quiet);
  std::vector<uint8_t> ob(kChunk * 8);
  std::vector<float> fb(kChunk);
  for (size_t i = 0; i < ts.size(); ++i) {
    const io::TensorInfo& t = *ts[i];
    const uint64_t n = t.numel();
    CompressTensorStats st;
    st.name = t.name;
    st.numel = n;
    st.dense_bytes = t.nbytes();
    for_chunks(t, buf, [&](uint64_t, const float* x, size_t len) {
      for (size_t j = 0; j < len; ++j) st.sumsq += double(x[j]) * double(x[j]);
    });
    if (sp) {
      const Cut& c = cuts[i];
      const io::TensorSpec& is = specs[2 * i];
      const io::TensorSpec& vs = specs[2 * i + 1];
      const size_t ies = dtype_size(is.dtype), ves = dtype_size(vs.dtype);
      size_t m = 0;
      auto flush_idx = [&] {
        if (m) w.append(ob.data(), m * ies);
        m = 0;
      };
      for_kept(t, c, buf, [&](uint64_t pos, float) {
        if (is.dtype == DType::U32) {
          const uint32_t u = uint32_t(pos);
          std::memcpy(ob.data() + m * 4, &u, 4);
        } else {
          const int64_t v = int64_t(pos);
          std::memcpy(ob.data() + m * 8, &v, 8);
        }
        if (++m == kChunk) flush_idx();
      });
      flush_idx();
      double kept_sq = 0, kept_err = 0;
      uint64_t kept = 0;
      auto flush_val = [&] {
        if (!m) return;
        from_f32(vs.dtype, fb.data(), ob.data(), m);
        std::vector<float> back(m);
        to_f32(vs.dtype, ob.data(), back.data(), m);
        for (size_t j = 0; j < m; ++j) {
          const double d = double(fb[j]) - double(back[j]);
          kept_err += d * d;
        }
        w.append(ob.data(), m * ves);
        m = 0;
      };
      for_kept(t, c, buf, [&](uint64_t, float x) {
        fb[m] = x;
        kept_sq += double(x) * double(x);
        ++kept;
        if (++m == kChunk) flush_val();
      });
      flush_val();
      if (kept != c.kept) fail("internal: tensor '{}': {} entries selected, {} expected", t.name, kept, c.kept);
      st.kept = kept;
      st.err_sq = std::max(0.0, st.sumsq - kept_sq) + kept_err;
      st.bytes = is.nbytes() + vs.nbytes();
    } else {
      const Int8Shape sh = int8_shape(t.shape, n);
      std::vector<float> scale(sh.rows, 0.0f);
      {
        std::vector<double> amax(sh.rows, 0.0);
        for_chunks(t, buf, [&](uint64_t off, const float* x, size_t len) {
          for (size_t j = 0; j < len; ++j) {
            if (!std::isfinite(x[j]))
              fail("{}: tensor '{}': element {} is {}; int8 cannot store it", vector.string(), t.name, off + j, x[j]);
            const uint64_t r = (off + j) / sh.cols;
            amax[r] = std::max(amax[r], double(std::fabs(x[j])));
          }
        });
        for (uint64_t r = 0; r < sh.rows; ++r) scale[r] = float(amax[r] / 127.0);
      }
      auto* q = reinterpret_cast<int8_t*>(ob.data());
      for_chunks(t, buf, [&](uint64_t off, const float* x, size_t len) {
        for (size_t j = 0; j < len; ++j) {
          const float s = scale[(off + j) / sh.cols];
          double r = s > 0 ? std::nearbyint(double(x[j]) / double(s)) : 0.0;
          r = std::clamp(r, -127.0, 127.0);
          q[j] = int8_t(r);
          const double d = double(x[j]) - double(float(q[j]) * s);
          st.err_sq += d * d;
        }
        w.append(q, len);
      });
      w.append(scale.data(), scale.size() * 4);
      st.kept = n;
      st.bytes = n + sh.rows * 4;
    }
    add_tensor(rep, std::move(st));
    prog.add(1);
  }
  w.finish();
  prog.finish();
  rep.total.name = "total";
  rep.file_bytes = files_bytes(outdir.tmp(), w.files());
  if (fs::exists(vector / "config.json")) io::copy_donor_files(vector, outdir.tmp(), std::nullopt);
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  json rj = to_json(rep);
  write_file_atomic(outdir.tmp() / "compress_report.json", rj.dump(1) + "\n");
  json rec = {{"operation", "compress"},
              {"method", o.method},
              {"vector", fs::absolute(vector).lexically_normal().string()},
              {"format_version", kCompressedVersion},
              {"total", rj["total"]},
              {"output", {{"files", w.files()}, {"total_size", w.total_size()}}}};
  if (sp) {
    rec["density"] = o.density;
    rec["scope"] = o.scope;
  }
  io::write_rvec_json(outdir.tmp(), rec);
  outdir.commit();
  return rep;
}

json to_json(const CompressReport& r) {
  auto row = [](const CompressTensorStats& s) {
    return json{{"numel", s.numel},  {"kept", s.kept},         {"dense_bytes", s.dense_bytes},
                {"bytes", s.bytes},  {"rel_err", s.rel_err()}, {"ratio", s.dense_bytes ? double(s.bytes) / double(s.dense_bytes) : 0.0}};
  };
  json t = json::object();
  for (const auto& s : r.tensors) t[s.name] = row(s);
  json j = {{"method", r.method},
            {"vector", fs::absolute(r.vector).lexically_normal().string()},
            {"out", fs::absolute(r.out).lexically_normal().string()},
            {"tensors", t},
            {"total", row(r.total)},
            {"dense_file_bytes", r.dense_file_bytes},
            {"file_bytes", r.file_bytes},
            {"seconds", r.seconds}};
  if (r.method == "sparse") {
    j["density"] = r.density;
    j["scope"] = r.scope;
  }
  return j;
}

std::string to_table(const CompressReport& r, bool per_tensor) {
  size_t w = 6;
  if (per_tensor)
    for (const auto& s : r.tensors) w = std::max(w, s.name.size());
  auto line = [&](const CompressTensorStats& s) {
    return fmt::format("{:<{}}  {:>12}  {:>12}  {:>12}  {:>12}  {:>7.4f}  {:>9.3e}\n", s.name, w, s.numel, s.kept,
                       s.dense_bytes, s.bytes, s.dense_bytes ? double(s.bytes) / double(s.dense_bytes) : 0.0,
                       s.rel_err());
  };
  std::string o = fmt::format("{:<{}}  {:>12}  {:>12}  {:>12}  {:>12}  {:>7}  {:>9}\n", "tensor", w, "entries", "stored",
                              "dense B", "compact B", "ratio", "rel.err");
  if (per_tensor)
    for (const auto& s : r.tensors) o += line(s);
  o += line(r.total);
  o += fmt::format("files: {} -> {} ({:.2f}%), relative error (Frobenius) {:.3e}\n", format_bytes(double(r.dense_file_bytes)),
                   format_bytes(double(r.file_bytes)),
                   r.dense_file_bytes ? 100.0 * double(r.file_bytes) / double(r.dense_file_bytes) : 0.0,
                   r.total.rel_err());
  return o;
}

// ---- reader ----

uint64_t PackedTensor::stored_bytes() const {
  return sparse ? idx->nbytes() + val->nbytes() : q->nbytes() + scale->nbytes();
}

void PackedTensor::decode(uint64_t off, size_t len, float* dst) const {
  if (sparse) {
    std::fill(dst, dst + len, 0.0f);
    const uint64_t k = idx->numel(), end = off + len;
    uint64_t lo = 0, hi = k;  // first j with idx[j] >= off
    while (lo < hi) {
      const uint64_t mid = lo + (hi - lo) / 2;
      if (load_index(*idx, mid) < off)
        lo = mid + 1;
      else
        hi = mid;
    }
    for (uint64_t j = lo; j < k; ++j) {
      const uint64_t e = load_index(*idx, j);
      if (e >= end) break;
      dst[e - off] = load_value(val->dtype, val->data, j);
    }
    return;
  }
  const auto* qv = reinterpret_cast<const int8_t*>(q->data);
  size_t i = 0;
  while (i < len) {
    const uint64_t e = off + i, r = e / cols;
    const size_t run = size_t(std::min<uint64_t>(len - i, (r + 1) * cols - e));
    float s;
    std::memcpy(&s, scale->data + r * 4, 4);
    for (size_t j = 0; j < run; ++j) dst[i + j] = float(qv[e + j]) * s;
    i += run;
  }
}

const PackedTensor* PackedVector::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

std::unique_ptr<PackedVector> PackedVector::open(const io::ModelDir& dir) {
  std::map<std::string, std::string> md;
  for (const auto& f : dir.files()) md.insert(f->metadata().begin(), f->metadata().end());
  auto tag = md.find(kCompressedTag);
  if (tag == md.end()) return nullptr;
  const std::string where = dir.path().string();
  auto pv = std::unique_ptr<PackedVector>(new PackedVector);
  pv->method_ = tag->second;
  if (pv->method_ != "sparse" && pv->method_ != "int8")
    fail("{}: unknown compressed format '{}' (metadata {}); this rvec reads sparse and int8", where, pv->method_,
         kCompressedTag);
  if (auto v = md.find(kCompressedVersionKey); v == md.end() || v->second != kCompressedVersion)
    fail("{}: compressed format version '{}' (metadata {}); this rvec reads version {}", where,
         v == md.end() ? "" : v->second, kCompressedVersionKey, kCompressedVersion);
  const bool sp = pv->method_ == "sparse";
  const std::vector<std::string> suffixes = sp ? std::vector<std::string>{".sparse_idx", ".sparse_val"}
                                               : std::vector<std::string>{".q", ".scale"};
  std::map<std::string, PackedTensor*> work;
  for (const io::TensorInfo* t : dir.tensors()) {
    std::string base;
    size_t which = 0;
    for (size_t s = 0; s < suffixes.size(); ++s)
      if (t->name.size() > suffixes[s].size() && t->name.ends_with(suffixes[s])) {
        base = t->name.substr(0, t->name.size() - suffixes[s].size());
        which = s;
      }
    if (base.empty())
      fail("{}: tensor '{}' is not part of the {} layout (expected <name>{} and <name>{})", where, t->name, pv->method_,
           suffixes[0], suffixes[1]);
    PackedTensor*& p = work[base];
    if (!p) {
      pv->all_.push_back(std::make_unique<PackedTensor>());
      p = pv->all_.back().get();
      p->info.name = base;
      p->sparse = sp;
    }
    (which == 0 ? (sp ? p->idx : p->q) : (sp ? p->val : p->scale)) = t;
  }
  for (const auto& [k, v] : md)
    if (k.size() > 6 && k.ends_with(".shape") && !work.count(k.substr(0, k.size() - 6)))
      fail("{}: metadata names tensor '{}' but its data is missing", where, k.substr(0, k.size() - 6));
  for (auto& up : pv->all_) {
    PackedTensor& p = *up;
    const std::string& n = p.info.name;
    auto sh = md.find(n + ".shape");
    auto dt = md.find(n + ".dtype");
    if (sh == md.end() || dt == md.end())
      fail("{}: tensor '{}': metadata '{}.shape' and '{}.dtype' are required", where, n, n, n);
    try {
      json s = json::parse(sh->second);
      if (!s.is_array()) throw std::runtime_error("not an array");
      for (const auto& d : s) {
        if (!d.is_number_integer() || d.get<int64_t>() < 0) throw std::runtime_error("not a non-negative integer");
        p.info.shape.push_back(d.get<int64_t>());
      }
    } catch (const std::exception& e) {
      fail("{}: tensor '{}': metadata shape '{}' is not a list of sizes ({})", where, n, sh->second, e.what());
    }
    auto d = parse_dtype(dt->second);
    if (!d || !decodable(*d)) fail("{}: tensor '{}': metadata dtype '{}' is not F32, BF16 or F16", where, n, dt->second);
    p.info.dtype = *d;
    const uint64_t numel = p.info.numel();
    if (sp) {
      if (!p.idx || !p.val) fail("{}: tensor '{}': needs both {}.sparse_idx and {}.sparse_val", where, n, n, n);
      if (p.idx->shape.size() != 1 || (p.idx->dtype != DType::U32 && p.idx->dtype != DType::I64))
        fail("{}: tensor '{}': sparse_idx must be a 1-D U32 or I64 tensor (got {} {})", where, n,
             dtype_name(p.idx->dtype), p.idx->shape_str());
      if (p.val->shape.size() != 1 || !decodable(p.val->dtype))
        fail("{}: tensor '{}': sparse_val must be a 1-D F32, BF16 or F16 tensor (got {} {})", where, n,
             dtype_name(p.val->dtype), p.val->shape_str());
      const uint64_t k = p.idx->numel();
      if (p.val->numel() != k)
        fail("{}: tensor '{}': {} indices but {} values", where, n, k, p.val->numel());
      if (k > numel) fail("{}: tensor '{}': {} entries stored for shape {}", where, n, k, p.info.shape_str());
      uint64_t prev = 0;
      for (uint64_t j = 0; j < k; ++j) {
        const uint64_t e = load_index(*p.idx, j);
        if (p.idx->dtype == DType::I64 && int64_t(e) < 0)
          fail("{}: tensor '{}': sparse index {} at position {} is negative", where, n, int64_t(e), j);
        if (e >= numel)
          fail("{}: tensor '{}': sparse index {} at position {} is out of range (shape {}, {} entries)", where, n, e,
               j, p.info.shape_str(), numel);
        if (j > 0 && e <= prev)
          fail("{}: tensor '{}': sparse indices are not strictly ascending at position {} ({} after {})", where, n, j,
               e, prev);
        prev = e;
      }
    } else {
      if (!p.q || !p.scale) fail("{}: tensor '{}': needs both {}.q and {}.scale", where, n, n, n);
      if (p.q->dtype != DType::I8) fail("{}: tensor '{}': q must be I8 (got {})", where, n, dtype_name(p.q->dtype));
      if (p.q->numel() != numel)
        fail("{}: tensor '{}': q has shape {} but the tensor's shape is {}", where, n, p.q->shape_str(),
             p.info.shape_str());
      const Int8Shape s = int8_shape(p.info.shape, numel);
      if (p.scale->dtype != DType::F32 || p.scale->numel() != s.rows)
        fail("{}: tensor '{}': scale must be F32 with {} entries (one per row), got {} {}", where, n, s.rows,
             dtype_name(p.scale->dtype), p.scale->shape_str());
      for (uint64_t r = 0; r < s.rows; ++r) {
        float f;
        std::memcpy(&f, p.scale->data + r * 4, 4);
        if (!std::isfinite(f) || f < 0) fail("{}: tensor '{}': scale of row {} is {}", where, n, r, f);
      }
      p.cols = s.cols;
    }
    pv->order_.push_back(&p.info);
    pv->by_name_[n] = &p;
  }
  return pv;
}

void decompress(const fs::path& packed, const fs::path& out, bool force, bool quiet) {
  auto dir = io::ModelDir::open(packed, false);
  auto pv = PackedVector::open(*dir);
  if (!pv) fail("{} is not a compressed vector (no {} metadata)", packed.string(), kCompressedTag);
  if (!force && fs::exists(out)) fail("output {} already exists (use --force to replace it)", out.string());
  std::vector<io::TensorSpec> specs;
  for (const auto* t : pv->tensors()) specs.push_back({t->name, t->dtype, t->shape});
  AtomicDir outdir(out, force);
  io::SafetensorsWriter w(outdir.tmp(), specs);
  Progress prog("decompressing", specs.size(), "tensors", quiet);
  std::vector<float> fb(kChunk);
  std::vector<uint8_t> ob(kChunk * 4);
  for (const auto* t : pv->tensors()) {
    const PackedTensor& p = *pv->find(t->name);
    const uint64_t n = t->numel();
    for (uint64_t off = 0; off < n; off += kChunk) {
      const size_t len = size_t(std::min<uint64_t>(kChunk, n - off));
      p.decode(off, len, fb.data());
      from_f32(t->dtype, fb.data(), ob.data(), len);
      w.append(ob.data(), len * dtype_size(t->dtype));
    }
    prog.add(1);
  }
  w.finish();
  prog.finish();
  if (fs::exists(packed / "config.json")) io::copy_donor_files(packed, outdir.tmp(), std::nullopt);
  io::write_rvec_json(outdir.tmp(), {{"operation", "decompress"},
                                     {"method", pv->method()},
                                     {"compressed", fs::absolute(packed).lexically_normal().string()},
                                     {"output", {{"files", w.files()}, {"total_size", w.total_size()}}}});
  outdir.commit();
}

}  // namespace rvec::arith
