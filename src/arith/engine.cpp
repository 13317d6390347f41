#include "arith/engine.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <future>
#include <memory>
#include <set>

#include <fmt/ranges.h>

#include "arith/compress.h"
#include "arith/gta.h"
#include "arith/kernels.h"
#include "arith/lora.h"
#include "arith/pipeline.h"
#include "arith/regex.h"
#include "core/atomic_output.h"
#include "core/error.h"
#include "core/progress.h"
#include "io/model_dir.h"
#include "io/model_resolver.h"
#include "io/model_output.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace rvec::arith::detail {

namespace {

constexpr const char* kEmbed = "model.embed_tokens.weight";
constexpr const char* kHead = "lm_head.weight";
constexpr size_t kItem = size_t(128) << 10;  // elements per item of the lossless check
// Output bytes per item of the write phase: each is one write() whose source is still in
// the core's L2 cache (1 MB writes made the kernel's page-cache copy ~2x slower).
constexpr size_t kItemBytes = size_t(256) << 10;
constexpr size_t kSub = size_t(2) << 10;     // elements converted at once inside an item (L1-resident)

bool is_vocab_tensor(const std::string& n) { return n == kEmbed || n == kHead; }
bool computable(DType t) { return is_arith_dtype(t) || t == DType::F64; }

struct Input {
  std::string name;
  fs::path path;
  std::unique_ptr<io::ModelDir> dir;
  std::unique_ptr<PackedVector> packed;  // a compressed vector (rvec compress): decoded per chunk
  const io::TensorInfo* find(const std::string& n) const {
    if (packed) {
      const PackedTensor* p = packed->find(n);
      return p ? &p->info : nullptr;
    }
    return dir->find(n);
  }
  const std::vector<const io::TensorInfo*>& tensors() const { return packed ? packed->tensors() : dir->tensors(); }
  // Resolves an output tensor name through tied embeddings; nullptr if absent.
  const io::TensorInfo* resolve(const std::string& n) const {
    if (auto* t = find(n)) return t;
    if (n == kHead && dir->tie_word_embeddings()) return find(kEmbed);
    return nullptr;
  }
  std::string resolved_name(const std::string& n) const {
    if (find(n)) return n;
    return n == kHead ? std::string(kEmbed) : n;
  }
};

struct Term {
  size_t input;
  double coef;
  const io::TensorInfo* t;
  const io::MappedFile* file;
  uint64_t file_off;  // offset of the tensor's data in its file
  const PackedTensor* packed = nullptr;  // set: a compressed vector's tensor (file is then nullptr)
};

// Elements [off, off + n) of a term as f32.
void load_term(const Term& t, uint64_t off, size_t n, float* dst) {
  if (t.packed)
    t.packed->decode(off, n, dst);
  else
    to_f32(t.t->dtype, t.t->data + off * dtype_size(t.t->dtype), dst, n);
}

struct Plan {
  io::TensorSpec out;
  const io::TensorInfo* target = nullptr;
  std::vector<Term> terms;          // nonzero coefficients, over the common rows
  uint64_t common_elems = 0;        // elements computed from all terms; the rest copied from target
  bool copy_only = false;           // non-float tensor copied through
  bool use_f64 = false;
  const GtaPlan* gta = nullptr;     // a sparsifying merge's tensor (Job::sparse)
  struct LoraTerm {
    const lora::Adapter* adapter;
    size_t entry;
    double coef;
  };
  std::vector<LoraTerm> loras;      // adapter changes applied after the combination
};

// Applies the plan's LoRA adapter entries to elements [off, off + len) held in acc.
void add_loras(const Plan& p, uint64_t off, size_t len, float* acc) {
  for (const auto& l : p.loras) l.adapter->add_elements(l.entry, off, len, l.coef, acc);
}

std::string family(const std::string& arch) {
  // Qwen2ForCausalLM -> qwen2; LlamaForCausalLM -> llama; MistralForCausalLM -> mistral.
  std::string a = arch;
  for (const char* suf : {"ForCausalLM", "Model", "LMHeadModel"}) {
    size_t p = a.rfind(suf);
    if (p != std::string::npos && p + std::strlen(suf) == a.size()) {
      a = a.substr(0, p);
      break;
    }
  }
  for (auto& c : a) c = char(std::tolower(static_cast<unsigned char>(c)));
  return a;
}

double load_f64(DType t, const uint8_t* p, size_t i) {
  switch (t) {
    case DType::F64: {
      double d;
      std::memcpy(&d, p + i * 8, 8);
      return d;
    }
    case DType::F32: {
      float f;
      std::memcpy(&f, p + i * 4, 4);
      return f;
    }
    case DType::BF16: {
      uint16_t h;
      std::memcpy(&h, p + i * 2, 2);
      return bf16_to_f32(h);
    }
    case DType::F16: {
      uint16_t h;
      std::memcpy(&h, p + i * 2, 2);
      return f16_to_f32(h);
    }
    default: return 0;
  }
}

void store_from_f64(DType t, double v, uint8_t* p, size_t i) {
  if (t == DType::F64) {
    std::memcpy(p + i * 8, &v, 8);
    return;
  }
  float f = float(v);
  from_f32(t, &f, p + i * dtype_size(t), 1);
}

struct Selection {
  std::optional<Regex> include, exclude;
  std::vector<std::pair<Regex, double>> scales;
  double factor(const std::string& n) const {
    if (include && !include->search(n)) return 0;
    if (exclude && exclude->search(n)) return 0;
    double s = 1;
    for (const auto& [re, f] : scales)
      if (re.search(n)) s *= f;
    return s;
  }
};

// Per-tensor decision for extract: the lossless storage dtype.
struct Decision {
  DType dtype = DType::F32;
  bool lossless = true;
};

// Flags of one chunk of the lossless check.
struct LosslessChunk {
  bool bf16_bad = false, f32_bad = false, f64_bad = false;
};

LosslessChunk check_lossless_chunk(const Term& tuned, const Term& base, size_t off, size_t len, bool bf16_ok,
                                   bool f32_ok, bool f64_ok, float* a, float* b, float* v, uint8_t* enc) {
  const DType td = tuned.t->dtype, bd = base.t->dtype;
  const size_t es = dtype_size(td);
  LosslessChunk r;
  bool chunk_f32 = false;
  if (f32_ok) {
    to_f32(td, tuned.t->data + off * es, a, len);
    to_f32(bd, base.t->data + off * es, b, len);
    sub_into(v, a, b, len);
    if (bf16_ok && !bf16_exact(v, len)) r.bf16_bad = true;
    add_into(a, b, v, len);  // base + v, rounded back to the tuned dtype below
    from_f32(td, a, enc, len);
    if (std::memcmp(enc, tuned.t->data + off * es, len * es) != 0)
      r.f32_bad = true;
    else
      chunk_f32 = true;
  }
  // Exact in double (almost always): v = t - b in f64, base + v rounded back. Only
  // needed where the f32 round trip failed (an exact f32 round trip implies this one).
  if (f64_ok && !chunk_f32) {
    uint8_t e8[8];
    for (size_t i = off; i < off + len; ++i) {
      double t = load_f64(td, tuned.t->data, i), bb = load_f64(bd, base.t->data, i);
      store_from_f64(td, float(bb + (t - bb)), e8, 0);
      if (std::memcmp(e8, tuned.t->data + i * es, es) != 0 && !std::isnan(t)) {
        r.f64_bad = true;
        break;
      }
    }
  }
  return r;
}

Decision decide_lossless(const Plan& p, const Term& tuned, const Term& base, size_t workers) {
  const DType td = tuned.t->dtype, bd = base.t->dtype;
  const uint64_t n = p.common_elems;
  if (td == DType::F64 || bd == DType::F64) return {DType::F64, td == bd};
  if (td != bd) return {DType::F32, false};
  const size_t es = dtype_size(td);
  // Flags only go from true to false; a chunk that sees a flag already false skips that
  // check (the result does not depend on the order chunks run in).
  std::atomic<bool> bf16_ok{true}, f32_ok{true}, f64_ok{true};
  const size_t nitems = size_t((n + kItem - 1) / kItem), slots = 2 * workers + 2;
  std::vector<std::vector<float>> scratch(slots, std::vector<float>(3 * kSub));
  std::vector<std::vector<uint8_t>> enc(slots, std::vector<uint8_t>(kSub * 4));
  run_ordered(
      nitems, workers, slots,
      [&](size_t it, size_t slot) {
        const uint64_t i0 = uint64_t(it) * kItem, i1 = std::min<uint64_t>(n, i0 + kItem);
        float* f = scratch[slot].data();
        for (uint64_t off = i0; off < i1; off += kSub) {
          const size_t len = size_t(std::min<uint64_t>(kSub, i1 - off));
          LosslessChunk c = check_lossless_chunk(tuned, base, size_t(off), len, bf16_ok, f32_ok, f64_ok, f, f + kSub,
                                                 f + 2 * kSub, enc[slot].data());
          if (c.bf16_bad) bf16_ok = false;
          if (c.f32_bad) f32_ok = false;
          if (c.f64_bad) f64_ok = false;
          if (!f32_ok && !f64_ok) break;
        }
      },
      [&](size_t it, size_t) {
        const uint64_t i0 = uint64_t(it) * kItem, i1 = std::min<uint64_t>(n, i0 + kItem);
        drop_consumed(*tuned.file, tuned.file_off, es, i0, i1);
        drop_consumed(*base.file, base.file_off, es, i0, i1);
      });
  if (f32_ok) return {bf16_ok ? DType::BF16 : DType::F32, true};
  return {DType::F64, f64_ok};
}

// How the write phase computes.
struct Compute {
  bool vector_output;  // report the rounding error of the stored dtype
  bool compat;         // --mergekit-compat: round to compat_dtype after every product and sum
  DType compat_dtype;
};

// One pipeline slot: an item's output bytes and statistics, and its f32 scratch.
struct Slot {
  std::vector<uint8_t> out;
  size_t bytes = 0;
  uint64_t nonfinite = 0;
  double max_err = 0, sq_err = 0;
  std::vector<float> acc = std::vector<float>(kSub), tmp = std::vector<float>(kSub), rt = std::vector<float>(kSub);
  GtaScratch gta;
};

float round_to(DType t, float x) {
  uint8_t buf[4];
  from_f32(t, &x, buf, 1);
  to_f32(t, buf, &x, 1);
  return x;
}

// Computes elements [off, off + len) of p (len <= kSub) into dst, in f64 when the plan says so.
void compute_chunk(const Plan& p, const Compute& cx, uint64_t off, size_t len, uint8_t* dst, Slot& s) {
  // Elements [off, off+len) split into the part inside the common rows and the rest.
  const uint64_t c_end = std::min<uint64_t>(off + len, std::max<uint64_t>(off, p.common_elems));
  const size_t nc = size_t(c_end - off);
  if (p.gta) {  // target + merged deltas on the common rows, the target's own values beyond
    float* acc = s.acc.data();
    to_f32(p.target->dtype, p.target->data + off * dtype_size(p.target->dtype), acc, len);
    if (nc > 0) gta_add(*p.gta, off, nc, acc, s.gta);
    add_loras(p, off, len, acc);
    s.nonfinite += count_nonfinite(acc, len);
    from_f32(p.out.dtype, acc, dst, len);
    return;
  }
  if (p.use_f64) {
    if (!p.loras.empty()) {  // the adapters' change computed in f32 on the f32-rounded values, added in f64
      std::vector<double> a(len);
      for (size_t i = 0; i < len; ++i) {
        const uint64_t e = off + i;
        if (i < nc) {
          for (const auto& t : p.terms) a[i] += t.coef * load_f64(t.t->dtype, t.t->data, e);
        } else {
          a[i] = load_f64(p.target->dtype, p.target->data, e);
        }
        s.acc[i] = s.tmp[i] = float(a[i]);
      }
      add_loras(p, off, len, s.acc.data());
      for (size_t i = 0; i < len; ++i) {
        a[i] += double(s.acc[i]) - double(s.tmp[i]);
        if (!std::isfinite(a[i])) ++s.nonfinite;
        store_from_f64(p.out.dtype, a[i], dst, i);
      }
      return;
    }
    for (size_t i = 0; i < len; ++i) {
      const uint64_t e = off + i;
      double a = 0;
      if (i < nc) {
        for (const auto& t : p.terms) a += t.coef * load_f64(t.t->dtype, t.t->data, e);
      } else {
        a = load_f64(p.target->dtype, p.target->data, e);
      }
      if (!std::isfinite(a)) ++s.nonfinite;
      store_from_f64(p.out.dtype, a, dst, i);
    }
    return;
  }
  float* acc = s.acc.data();
  float* tmp = s.tmp.data();
  if (nc > 0) {
    bool first = true;
    for (const auto& t : p.terms) {
      const float c = float(t.coef);
      if (cx.compat) {
        load_term(t, off, nc, tmp);
        const float rc = round_to(cx.compat_dtype, c);
        for (size_t i = 0; i < nc; ++i) {
          float x = round_to(cx.compat_dtype, round_to(cx.compat_dtype, tmp[i]) * rc);
          acc[i] = first ? x : round_to(cx.compat_dtype, acc[i] + x);
        }
      } else if (first && c == 1.0f) {
        load_term(t, off, nc, acc);
      } else {
        load_term(t, off, nc, tmp);
        if (first)
          scale_into(acc, tmp, c, nc);
        else
          axpy(acc, tmp, c, nc);
      }
      first = false;
    }
    if (first) std::fill(acc, acc + nc, 0.0f);
  }
  if (nc < len) {
    const size_t es = dtype_size(p.target->dtype);
    to_f32(p.target->dtype, p.target->data + c_end * es, acc + nc, len - nc);
  }
  add_loras(p, off, len, acc);
  s.nonfinite += count_nonfinite(acc, len);
  from_f32(p.out.dtype, acc, dst, len);
  if (cx.vector_output && p.out.dtype != DType::F32) {
    to_f32(p.out.dtype, dst, s.rt.data(), len);
    round_error(s.rt.data(), acc, len, s.max_err, s.sq_err);
  }
}

// Computes the elements [b0, b1) of a plan into the slot.
void compute_item(const Plan& p, const Compute& cx, uint64_t b0, uint64_t b1, Slot& s) {
  const size_t osz = dtype_size(p.out.dtype);
  s.bytes = size_t(b1 - b0) * osz;
  if (s.out.size() < s.bytes) s.out.resize(s.bytes);
  s.nonfinite = 0;
  s.max_err = s.sq_err = 0;
  for (uint64_t off = b0; off < b1; off += kSub) {
    const size_t len = size_t(std::min<uint64_t>(kSub, b1 - off));
    compute_chunk(p, cx, off, len, s.out.data() + (off - b0) * osz, s);
  }
}

}  // namespace

// Drops the pages of elements [lo, hi) of a tensor (at byte offset file_off, es bytes per
// element) from this process's working set once they are consumed, keeping RSS bounded.
// Called in item order by the consuming thread, it also drops the 4 MB before lo: pages
// there can be mapped again after their own item by a worker's fault on a later item
// (fault-around and large folios map up to the faulting address's 2 MB-aligned region).
void drop_consumed(const io::MappedFile& f, uint64_t file_off, size_t es, uint64_t lo, uint64_t hi) {
  constexpr uint64_t kBack = uint64_t(4) << 20;
  if (hi <= lo) return;
  const uint64_t b = file_off + lo * es, e = file_off + hi * es;
  const uint64_t start = b > kBack ? b - kBack : 0;
  f.advise_dontneed(size_t(start), size_t(e - start));
}

Report run(const Job& job, const Options& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  if (opts.out.empty()) fail("no output directory given (-o)");
  Report rep;
  rep.out = opts.out;
  auto warn = [&](std::string w) {
    if (!opts.quiet) fmt::print(stderr, "rvec: warning: {}\n", w);
    rep.warnings.push_back(std::move(w));
  };
  if (!opts.force && fs::exists(opts.out))
    fail("output {} already exists (use --force to replace it)", opts.out.string());

  // ---- open and validate every input before anything is written ----
  std::vector<Input> in(job.paths.size());
  for (size_t i = 0; i < in.size(); ++i) {
    in[i].name = job.names[i];
    in[i].path = io::resolve_model_path(job.paths[i]);  // ORG/NAME -> its HF cache snapshot
    const fs::path abs_out = fs::absolute(opts.out).lexically_normal();
    if (fs::absolute(in[i].path).lexically_normal() == abs_out)
      fail("input '{}' ({}) is also the output directory", job.names[i], job.paths[i].string());
    in[i].dir = io::ModelDir::open(in[i].path, false);
    in[i].packed = PackedVector::open(*in[i].dir);
    if (in[i].packed && (i == job.target || job.extract_lossless || job.sparse))
      fail("'{}' ({}) is a compressed vector ({}): it can only be added (apply, merge --expr); decompress it first "
           "(rvec compress --decompress)",
           in[i].name, in[i].path.string(), in[i].packed->method());
  }
  const Input& tgt = in[job.target];
  {
    std::string fam0, who0;
    for (auto& x : in) {
      std::string a = x.dir->architecture();
      if (a.empty()) continue;
      if (fam0.empty()) {
        fam0 = family(a);
        who0 = x.name;
      } else if (family(a) != fam0) {
        fail("architecture mismatch: '{}' is {} but '{}' is {} ({})", who0, fam0, x.name, family(a), x.path.string());
      }
    }
  }
  Selection sel;
  if (!opts.include.empty()) sel.include.emplace(opts.include);
  if (!opts.exclude.empty()) sel.exclude.emplace(opts.exclude);
  for (const auto& [re, f] : opts.scales) sel.scales.emplace_back(Regex(re), f);

  std::vector<std::string> mismatches;
  auto mismatch = [&](std::string m) {
    if (mismatches.size() < 20) mismatches.push_back(std::move(m));
  };
  std::vector<Plan> plans;
  for (const io::TensorInfo* tt : tgt.dir->tensors()) {
    Plan p;
    p.target = tt;
    p.out.name = tt->name;
    p.out.shape = tt->shape;
    p.out.dtype = tt->dtype;
    p.common_elems = tt->numel();
    const bool comp = computable(tt->dtype);
    if (!comp) p.copy_only = true;
    if (comp && opts.out_dtype) p.out.dtype = *opts.out_dtype;
    int64_t rows = tt->shape.empty() ? 0 : tt->shape[0];
    int64_t common_rows = rows;
    for (size_t i = 0; i < in.size(); ++i) {
      const io::TensorInfo* t = in[i].resolve(tt->name);
      if (!t) {
        mismatch(fmt::format("'{}' ({}) has no tensor '{}'", in[i].name, in[i].path.string(), tt->name));
        continue;
      }
      if (t->shape != tt->shape) {
        bool vocab = is_vocab_tensor(tt->name) && t->shape.size() == 2 && tt->shape.size() == 2 &&
                     t->shape[1] == tt->shape[1];
        if (!vocab) {
          mismatch(fmt::format("tensor '{}': shape {} in '{}' but {} in '{}'", tt->name, tt->shape_str(), tgt.name,
                               t->shape_str(), in[i].name));
          continue;
        }
        if (opts.strict_vocab) {
          mismatch(fmt::format("tensor '{}': {} vocabulary rows in '{}' but {} in '{}' (--strict-vocab)", tt->name,
                               tt->shape[0], tgt.name, t->shape[0], in[i].name));
          continue;
        }
        common_rows = std::min(common_rows, t->shape[0]);
      }
      if (!comp || !computable(t->dtype)) {
        if (t->dtype != tt->dtype)
          mismatch(fmt::format("tensor '{}': dtype {} in '{}' but {} in '{}'", tt->name, dtype_name(tt->dtype),
                               tgt.name, dtype_name(t->dtype), in[i].name));
        continue;
      }
      if (p.copy_only) continue;
      double c = job.sparse ? 1.0 : job.coef(i, tt->name);
      if (in[i].packed) {
        p.terms.push_back({i, c, t, nullptr, 0, in[i].packed->find(in[i].resolved_name(tt->name))});
        continue;
      }
      p.terms.push_back({i, c, t, &in[i].dir->file_of(in[i].resolved_name(tt->name)).mapped(),
                         uint64_t(t->data - in[i].dir->file_of(in[i].resolved_name(tt->name)).mapped().data())});
    }
    if (common_rows != rows && rows > 0) {
      const uint64_t cols = tt->numel() / uint64_t(rows);
      p.common_elems = uint64_t(common_rows) * cols;
      if (job.vector_output) {
        p.out.shape[0] = common_rows;
        warn(fmt::format("tensor '{}': vocabulary rows differ ({} in '{}', {} in common); the vector keeps the "
                         "{} common rows",
                         tt->name, rows, tgt.name, common_rows, common_rows));
      } else {
        warn(fmt::format("tensor '{}': vocabulary rows differ; arithmetic on the {} common rows, the {} extra rows "
                         "of '{}' kept unchanged",
                         tt->name, common_rows, rows - common_rows, tgt.name));
      }
    }
    plans.push_back(std::move(p));
  }
  // Tensors that an input has but the target lacks.
  for (size_t i = 0; i < in.size(); ++i) {
    if (i == job.target) continue;
    for (const io::TensorInfo* t : in[i].tensors()) {
      if (tgt.dir->find(t->name)) continue;
      if (t->name == kHead && tgt.dir->find(kEmbed)) {
        if (!tgt.dir->tie_word_embeddings() && in[i].find(kHead)) {
          mismatch(fmt::format("'{}' has no lm_head.weight (untied) but '{}' has one", tgt.name, in[i].name));
          continue;
        }
        warn(fmt::format("'{}' has a separate lm_head.weight but '{}' ties it to embed_tokens; the output stays tied "
                         "and that lm_head is not used",
                         in[i].name, tgt.name));
        continue;
      }
      mismatch(fmt::format("'{}' ({}) has tensor '{}' which '{}' lacks", in[i].name, in[i].path.string(), t->name,
                           tgt.name));
    }
  }
  if (!mismatches.empty()) {
    std::string msg = fmt::format("inputs do not match ({} problem{}{}):", mismatches.size(),
                                  mismatches.size() == 1 ? "" : "s", mismatches.size() >= 20 ? ", first 20 shown" : "");
    for (auto& m : mismatches) msg += "\n  " + m;
    fail("{}", msg);
  }

  if (job.sparse && opts.mergekit_compat)
    fail("--mergekit-compat (bf16 rounding at every step) is not available for sparsifying merges");
  // ---- selection, scales, output dtypes ----
  std::vector<GtaPlan> gplans;
  gplans.reserve(plans.size());  // Plan::gta points into it
  for (auto& p : plans) {
    if (p.copy_only) continue;
    const double s = sel.factor(p.out.name);
    if (job.sparse) {
      if (s == 0) {  // unselected: the target's tensor
        std::erase_if(p.terms, [&](const Term& t) { return t.input != job.target; });
        continue;
      }
      const SparseJob& sj = *job.sparse;
      GtaPlan g;
      g.name = p.out.name;
      g.method = sj.method;
      g.consensus = sj.consensus;
      g.seed = sj.seed;
      g.tp = sj.tensor_params(p.out.name);
      g.vec_scale = s;
      g.n = p.common_elems;
      g.cols = p.out.shape.size() >= 2 ? uint64_t(p.target->numel() / uint64_t(std::max<int64_t>(1, p.target->shape[0])))
                                       : std::max<uint64_t>(1, g.n);
      for (size_t d = 0; d < sj.deltas.size(); ++d) {
        GtaDelta gd;
        gd.prm = sj.delta_params(d, p.out.name);
        for (auto& [input, c] : sj.deltas[d]) {
          const auto in_id = input;  // clang 14 cannot capture a structured binding
          auto it = std::find_if(p.terms.begin(), p.terms.end(), [&](const Term& t) { return t.input == in_id; });
          if (it == p.terms.end()) fail("internal: tensor '{}' has no input {}", p.out.name, input);
          if (it->t->dtype == DType::F64)
            fail("tensor '{}' of '{}' is F64; sparsifying merges compute in f32", p.out.name, in[input].name);
          gd.parts.push_back({it->t, it->file, it->file_off, float(c)});
        }
        g.deltas.push_back(std::move(gd));
      }
      gplans.push_back(std::move(g));
      p.gta = &gplans.back();
      continue;
    }
    for (auto& t : p.terms) {
      if (job.vector_output)
        t.coef *= s;
      else
        t.coef = (t.input == job.target) ? 1.0 + s * (t.coef - 1.0) : s * t.coef;
    }
    std::erase_if(p.terms, [](const Term& t) { return t.coef == 0.0; });
  }
  // ---- LoRA adapters: every entry must name a float tensor of the target with its shape ----
  std::vector<std::unique_ptr<lora::Adapter>> adapters;
  {
    std::map<std::string, size_t> plan_of;
    for (size_t k = 0; k < plans.size(); ++k) plan_of[plans[k].out.name] = k;
    for (const auto& li : job.loras) {
      adapters.push_back(lora::Adapter::open(io::resolve_model_path(li.path)));
      const lora::Adapter& ad = *adapters.back();
      for (size_t e = 0; e < ad.entries().size(); ++e) {
        const lora::Entry& en = ad.entries()[e];
        auto it = plan_of.find(en.target);
        if (it == plan_of.end()) {
          if (en.target == kHead && tgt.dir->find(kEmbed))
            fail("adapter '{}' ({}) changes {} but '{}' ties it to {}", li.name, li.path.string(), kHead, tgt.name, kEmbed);
          fail("adapter '{}' ({}): key '{}' changes tensor '{}', which '{}' ({}) does not have", li.name,
               li.path.string(), en.key, en.target, tgt.name, tgt.path.string());
        }
        Plan& p = plans[it->second];
        if (p.copy_only)
          fail("adapter '{}': tensor '{}' of '{}' has dtype {}; LoRA changes need a float tensor", li.name, en.target,
               tgt.name, dtype_name(p.target->dtype));
        if (p.target->shape != en.shape)
          fail("adapter '{}' ({}): key '{}' gives tensor '{}' the shape [{}] but '{}' has {}", li.name,
               li.path.string(), en.key, en.target, fmt::join(en.shape, ", "), tgt.name, p.target->shape_str());
        if (p.gta && en.kind == lora::Entry::Kind::Replace)
          fail("adapter '{}' replaces '{}' (modules_to_save); not combinable with --sparsify", li.name, en.target);
        const double c = li.alpha * sel.factor(en.target);
        if (c != 0) p.loras.push_back({&ad, e, c});
      }
    }
  }
  // ---- hashing inputs in the background (overlaps the lossless check and the write) ----
  // One hash per distinct directory (an input given twice is read once).
  std::vector<std::shared_future<json>> hashes;
  if (opts.hash_inputs) {
    std::map<fs::path, std::shared_future<json>> by_dir;
    for (auto& x : in) {
      const fs::path key = fs::weakly_canonical(x.path);
      auto it = by_dir.find(key);
      if (it == by_dir.end())
        it = by_dir.emplace(key, std::async(std::launch::async, [p = x.path] { return io::describe_input(p); })).first;
      hashes.push_back(it->second);
    }
  }

  const size_t workers = arith_threads();
  std::vector<Decision> decisions(plans.size());
  if (job.extract_lossless && !opts.out_dtype) {
    Progress pr("checking", plans.size(), "tensors", opts.quiet);
    for (size_t k = 0; k < plans.size(); ++k) {
      auto& p = plans[k];
      pr.add(1);
      if (p.copy_only) continue;
      // terms: tuned (+1), base (-1) unless excluded (all zero).
      const Term* tu = nullptr;
      const Term* ba = nullptr;
      for (auto& t : p.terms) (t.input == 0 ? tu : ba) = &t;
      if (tu && ba && tu->coef == 1.0 && ba->coef == -1.0) {
        decisions[k] = decide_lossless(p, *tu, *ba, workers);
      } else {
        decisions[k] = {p.target->dtype == DType::F64 ? DType::F64 : DType::F32, false};
        if (p.terms.empty()) decisions[k].dtype = DType::BF16;  // excluded: a zero tensor
      }
      p.out.dtype = decisions[k].dtype;
    }
    pr.finish();
  }
  if (!gplans.empty()) {
    Progress pr("analysing", gplans.size(), "tensors", opts.quiet);
    for (auto& g : gplans) {
      gta_prepare(g, workers);
      pr.add(1);
    }
    pr.finish();
  }
  for (auto& p : plans) {
    if (p.gta && p.out.dtype == DType::F64) fail("tensor '{}': sparsifying merges write f32/bf16/f16, not F64", p.out.name);
    // Non-target terms first (in input order), the target last: then target + (g - s) computed by
    // merge/--expr, and target + v with v = g - s from extract, round identically.
    std::stable_partition(p.terms.begin(), p.terms.end(), [&](const Term& t) { return t.input != job.target; });
    p.use_f64 = p.out.dtype == DType::F64;
    for (auto& t : p.terms)
      if (t.t->dtype == DType::F64) p.use_f64 = true;
    if (p.use_f64)
      for (auto& t : p.terms)
        if (t.packed)
          fail("tensor '{}' is computed in F64, which compressed vectors do not support; decompress '{}' first",
               p.out.name, in[t.input].name);
  }

  // ---- write ----
  // Items of up to kItemBytes of output are computed by `workers` threads into per-slot buffers
  // and written in order by this thread (straight from the slot buffer, no copy).
  AtomicDir outdir(opts.out, opts.force);
  std::vector<io::TensorSpec> specs;
  for (auto& p : plans) specs.push_back(p.out);
  io::SafetensorsWriter w(outdir.tmp(), specs, opts.shard_size, io::SafetensorsWriter::Mode::Synchronous);
  const Compute cx{job.vector_output, opts.mergekit_compat, job.compat_dtype};

  struct Item {
    size_t plan;
    uint64_t b0, b1;
  };
  std::vector<Item> items;
  for (size_t k = 0; k < plans.size(); ++k) {
    const uint64_t n = plans[k].copy_only ? plans[k].target->numel() : plans[k].out.numel();
    // Sparse tensors: items on statistics-block boundaries (the running threshold counts).
    const uint64_t step = plans[k].gta ? kGtaBlock
                                       : kItemBytes / dtype_size(plans[k].copy_only ? plans[k].target->dtype
                                                                                     : plans[k].out.dtype);
    for (uint64_t b0 = 0; b0 < n; b0 += step) items.push_back({k, b0, std::min<uint64_t>(n, b0 + step)});
    if (n == 0) items.push_back({k, 0, 0});
  }
  const size_t slots = 2 * workers + 2;
  std::vector<Slot> slot(slots);
  Progress prog(job.operation, w.total_size(), "B", opts.quiet);
  TensorReport tr;
  double sq_err = 0;
  run_ordered(
      items.size(), workers, slots,
      [&](size_t it, size_t si) {
        const Item& item = items[it];
        const Plan& p = plans[item.plan];
        if (p.copy_only) return;  // written straight from the input's mapping
        compute_item(p, cx, item.b0, item.b1, slot[si]);
      },
      [&](size_t it, size_t si) {
        const Item& item = items[it];
        const Plan& p = plans[item.plan];
        if (item.b0 == 0) {
          tr = TensorReport{};
          tr.name = p.out.name;
          tr.dtype = p.out.dtype;
          tr.lossless = decisions[item.plan].lossless;
          sq_err = 0;
        }
        const io::MappedFile& tfile = tgt.dir->file_of(p.target->name).mapped();
        const uint64_t toff = uint64_t(p.target->data - tfile.data());
        const size_t tes = dtype_size(p.target->dtype);
        if (p.copy_only) {
          w.append(p.target->data + item.b0 * tes, size_t(item.b1 - item.b0) * tes);
          prog.add((item.b1 - item.b0) * tes);
        } else {
          const Slot& s = slot[si];
          w.append(s.out.data(), s.bytes);
          prog.add(s.bytes);
          tr.nonfinite += s.nonfinite;
          tr.max_round_err = std::max(tr.max_round_err, s.max_err);
          sq_err += s.sq_err;
          for (const auto& t : p.terms)
            if (t.file)
              drop_consumed(*t.file, t.file_off, dtype_size(t.t->dtype), std::min(item.b0, p.common_elems),
                            std::min(item.b1, p.common_elems));
        }
        // Copied tensors and the target's rows beyond the common ones are read from the target.
        const uint64_t own = p.copy_only ? item.b0 : std::max(item.b0, p.common_elems);
        drop_consumed(tfile, toff, tes, own, item.b1);
        const uint64_t n = p.copy_only ? p.target->numel() : p.out.numel();
        if (item.b1 == n) {
          tr.rms_round_err = n ? std::sqrt(sq_err / double(n)) : 0;
          rep.nonfinite += tr.nonfinite;
          rep.tensors.push_back(tr);
        }
      });
  w.finish();
  prog.finish();
  rep.bytes_written = w.total_size();
  for (auto& t : rep.tensors) rep.dtype_counts[std::string(dtype_name(t.dtype))]++;
  if (rep.nonfinite) {
    std::string list;
    int shown = 0;
    for (auto& t : rep.tensors)
      if (t.nonfinite && shown++ < 5) list += fmt::format(" {} ({})", t.name, t.nonfinite);
    if (opts.strict) fail("{} non-finite values in the result (--strict):{}", rep.nonfinite, list);
    warn(fmt::format("{} non-finite values in the result:{}", rep.nonfinite, list));
  }
  if (job.extract_lossless && !opts.out_dtype)
    for (auto& t : rep.tensors)
      if (!t.lossless) warn(fmt::format("tensor '{}': the round trip is not bit-exact", t.name));

  // ---- config, tokenizer, rvec.json ----
  fs::path donor = opts.donor ? io::resolve_model_path(*opts.donor) : tgt.path;
  std::optional<DType> cfg_dtype;
  {
    std::map<DType, uint64_t> bytes;
    for (size_t k = 0; k < plans.size(); ++k)
      if (!plans[k].copy_only) bytes[plans[k].out.dtype] += plans[k].out.nbytes();
    uint64_t best = 0;
    for (auto& [d, b] : bytes)
      if (b > best) best = b, cfg_dtype = d;
  }
  if (fs::exists(donor / "config.json")) {
    io::copy_donor_files(donor, outdir.tmp(), cfg_dtype);
  } else if (opts.donor) {
    fail("{}: donor has no config.json", donor.string());
  }
  json rec = job.record;
  rec["operation"] = job.operation;
  rec["target"] = tgt.name;
  rec["donor"] = fs::absolute(donor).lexically_normal().string();
  json inputs = json::object();
  for (size_t i = 0; i < in.size(); ++i) {
    json d = opts.hash_inputs ? hashes[i].get() : json::object();
    d["path"] = fs::absolute(in[i].path).lexically_normal().string();  // as this input spelled it
    inputs[in[i].name] = d;
  }
  rec["inputs"] = inputs;
  json o = json::object();
  if (!opts.include.empty()) o["include"] = opts.include;
  if (!opts.exclude.empty()) o["exclude"] = opts.exclude;
  for (auto& [re, f] : opts.scales) o["scale"][re] = f;
  if (opts.out_dtype) o["dtype"] = std::string(dtype_name(*opts.out_dtype));
  o["mergekit_compat"] = opts.mergekit_compat;
  o["shard_size"] = opts.shard_size;
  rec["options"] = o;
  json tens = json::object();
  for (auto& t : rep.tensors) {
    json e = {{"dtype", std::string(dtype_name(t.dtype))}};
    if (t.nonfinite) e["nonfinite"] = t.nonfinite;
    if (job.vector_output) {
      e["max_round_err"] = t.max_round_err;
      e["rms_round_err"] = t.rms_round_err;
    }
    if (job.extract_lossless && !opts.out_dtype) e["lossless"] = t.lossless;
    tens[t.name] = e;
  }
  for (const auto& g : gplans) {
    json ds = json::array();
    for (const auto& d : g.deltas)
      ds.push_back({{"weight", d.prm.weight},
                    {"density", d.prm.density},
                    {"kept", d.kept},
                    {"l1_before", d.l1_before},
                    {"l1_after", d.l1_after},
                    {"rescale", d.scale}});
    tens[g.name]["deltas"] = ds;
    tens[g.name]["elements"] = g.n;
  }
  rec["tensors"] = tens;
  rec["dtype_counts"] = rep.dtype_counts;
  rec["nonfinite"] = rep.nonfinite;
  rec["warnings"] = rep.warnings;
  rec["output"] = {{"files", w.files()}, {"total_size", w.total_size()}};
  io::write_rvec_json(outdir.tmp(), rec);
  rep.record = rec;
  outdir.commit();
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

}  // namespace rvec::arith::detail
