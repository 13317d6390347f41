#include "infer/engine.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <string_view>

#include "core/aligned.h"
#include "core/atomic_output.h"
#include "core/error.h"
#include "core/memory.h"
#include "infer/attention.h"
#include "infer/kernels.h"
#include "io/model_resolver.h"

namespace rvec::infer {

namespace fs = std::filesystem;

namespace {
io::Backing initial_weight_backing() {
  const char* e = std::getenv("RVEC_WEIGHTS");
  return e && std::string_view(e) == "hugepages" ? io::Backing::HugePages : io::Backing::PageCache;
}
std::atomic<io::Backing> g_weight_backing{initial_weight_backing()};

// Which matrices decode reads as column blocks (model/column_blocks.h): rows longer than
// min_cols, in blocks of `width`. RVEC_COLUMN_BLOCKS=off keeps every matrix in place (row-major,
// as mapped), =WIDTH[,MIN_COLS] sets both (for measurements).
struct ColumnBlockPolicy {
  int64_t width = 1024, min_cols = 4096;
};
ColumnBlockPolicy column_block_policy() {
  ColumnBlockPolicy p;
  const char* e = std::getenv("RVEC_COLUMN_BLOCKS");
  if (!e) return p;
  const std::string_view v(e);
  if (v == "off") return {0, 0};
  int64_t w = 0, mc = 0;
  const char *b = v.data(), *end = b + v.size();
  auto r = std::from_chars(b, end, w);
  const bool has_min = r.ec == std::errc() && r.ptr != end && *r.ptr == ',';
  if (has_min) r = std::from_chars(r.ptr + 1, end, mc);
  if (r.ec != std::errc() || r.ptr != end || w < 16 || w > (1 << 20) || mc < 0)
    fail("RVEC_COLUMN_BLOCKS must be 'off', WIDTH or WIDTH,MIN_COLS (WIDTH in [16, 1048576]), not '{}'", v);
  p.width = w;
  p.min_cols = has_min ? mc : w;
  return p;
}

// Bytes of the model's safetensors files (a hub name is resolved first).
uint64_t safetensors_bytes(const fs::path& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().extension() == ".safetensors") total += e.file_size(ec);
  return total;
}
}  // namespace

void set_default_weight_backing(io::Backing weights) { g_weight_backing.store(weights); }
io::Backing default_weight_backing() { return g_weight_backing.load(); }

std::unique_ptr<Model> load_model(const fs::path& name) { return load_model(name, default_weight_backing()); }

std::unique_ptr<Model> load_model(const fs::path& name, io::Backing weights) {
  auto m = std::unique_ptr<Model>(new Model());
  if (weights == io::Backing::HugePages) {
    // Keep a margin for the KV cache and activations: a copy that pushes the machine into
    // swap or the OOM killer is far slower than TLB misses.
    const fs::path dir = io::resolve_model_path(name);
    const uint64_t need = safetensors_bytes(dir);
    const auto avail = available_memory_bytes();
    if (avail && double(need) > 0.8 * double(*avail)) {
      fmt::print(stderr, "note: {} ({:.2f} GB of weights) does not fit in 80% of the {:.2f} GB available: weights "
                 "stay mapped from the page cache (no huge pages)\n", dir.string(), double(need) / 1e9, double(*avail) / 1e9);
      weights = io::Backing::PageCache;
    }
  }
  m->dir_ = io::ModelDir::open(name, true, weights);
  const fs::path dir = m->dir_->path();  // a hub name resolved to its snapshot
  m->cfg_ = model::ModelConfig::from_json(m->dir_->config(), (dir / "config.json").string());
  m->w_ = model::Weights::bind(*m->dir_, m->cfg_);
  if (const auto cb = column_block_policy(); cb.width > 0) {
    // The copies cost their size in memory (the mapped originals stay in the page cache,
    // reclaimable): skip them, with a note, where they would crowd out the KV cache.
    const uint64_t need = model::long_row_bytes(m->w_, cb.min_cols, cb.width);
    const auto avail = available_memory_bytes();
    if (need > 0 && avail && double(need) > 0.5 * double(*avail))
      fmt::print(stderr, "note: {}: the column-block copies of its long-row matrices ({:.2f} GB) would take over half "
                 "of the {:.2f} GB available: decode reads them row-major (somewhat slower)\n", dir.string(),
                 double(need) / 1e9, double(*avail) / 1e9);
    else
      m->column_blocks_ = model::block_long_rows(m->w_, cb.min_cols, cb.width);
  }
  if (fs::exists(dir / "tokenizer.json")) m->tok_ = text::Tokenizer::from_model_dir(dir);
  m->eos_ = m->cfg_.eos_token_ids;
  fs::path gc = dir / "generation_config.json";
  if (fs::exists(gc)) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_file(gc));
    } catch (const nlohmann::json::exception& e) {
      fail("{}: invalid JSON: {}", gc.string(), e.what());
    }
    if (j.is_object() && j.contains("eos_token_id")) {
      auto ids = model::parse_token_id_list(j["eos_token_id"], gc.string() + ": key 'eos_token_id'",
                                            m->cfg_.vocab_size);
      if (!ids.empty()) m->eos_ = ids;
    }
  }
  return m;
}

DType parse_kv_cache_dtype(std::string_view name) {
  if (name == "f32") return DType::F32;
  if (name == "bf16") return DType::BF16;
  if (name == "f16") return DType::F16;
  fail("--kv-cache-dtype must be f32, bf16 or f16, not '{}'", name);
}

std::string_view kv_cache_dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
    default: fail("{} is not a KV cache element type (f32, bf16, f16)", dtype_name(t));
  }
}

int64_t kv_bytes_per_token(const model::ModelConfig& c, DType kv_dtype) {
  return c.num_layers * 2 * c.kv_dim() * int64_t(dtype_size(kv_dtype));
}

std::string kv_cache_report(const model::ModelConfig& c, const EngineOptions& o) {
  const double gib = double(1 << 30), per = double(kv_bytes_per_token(c, o.kv_dtype));
  const double full = per * double(o.max_batch) * double(o.max_context);
  return fmt::format("KV cache: {}, {} bytes/token ({} layers x K,V x {} values); {} sequences x {} tokens = {:.2f} "
                     "GiB; cap {} (--kv-cache-gb)",
                     kv_cache_dtype_name(o.kv_dtype), int64_t(per), c.num_layers, c.kv_dim(), o.max_batch,
                     o.max_context, full / gib,
                     o.kv_cache_bytes ? fmt::format("{:.2f} GiB ({} bytes)", double(o.kv_cache_bytes) / gib, o.kv_cache_bytes) : "none");
}

size_t kv_cache_cap_bytes(double gb) {
  if (!(gb >= 0) || !std::isfinite(gb)) fail("--kv-cache-gb must be a number >= 0 (got {})", gb);
  if (gb > 0) return size_t(gb * double(1 << 30));
  const auto avail = available_memory_bytes();
  return avail ? size_t(*avail / 2) : 0;
}

void KVCache::fill_random_for_bench(const model::ModelConfig& c, int64_t n, int64_t room, uint64_t seed,
                                    DType dtype) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> nd;
  const size_t es = dtype_size(dtype), m = size_t((n + room) * c.kv_dim());
  dtype_ = dtype;
  k_tiled_ = attention_kernel() == AttentionKernel::Tiled;
  k_.assign(size_t(c.num_layers), std::vector<uint8_t>(size_t(attention_key_floats(n + room, c.kv_dim())) * es));
  v_.assign(size_t(c.num_layers), std::vector<uint8_t>(m * es));
  std::vector<float> vals(size_t(n * c.kv_dim()));
  for (auto* kv : {&k_, &v_})
    for (auto& l : *kv) {
      for (auto& x : vals) x = nd(g);
      from_f32(dtype, vals.data(), l.data(), vals.size());
    }
  len_ = n;
}

// Activation buffers, reused across calls.
struct Engine::Work {
  AlignedVector<float> x, xn, q, k, v, att, attp, tmp, gate, up, rope, fin;
};

Engine::Engine(const Model& m, EngineOptions opts) : m_(m), opts_(opts), w_(std::make_unique<Work>()) {
  if (opts_.threads > 0) omp_set_num_threads(opts_.threads);
  if (opts_.max_batch < 1) opts_.max_batch = 1;
  if (opts_.max_context < 2) opts_.max_context = 2;
  if (!attention_kv_dtype_supported(opts_.kv_dtype))
    fail("a {} KV cache is not supported (f32, bf16 or f16)", dtype_name(opts_.kv_dtype));
  inv_freq_ = m_.config().rope_inv_freq();
}
Engine::~Engine() = default;

namespace {
constexpr int64_t kChunkRows = 256;

void ensure(AlignedVector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}
}  // namespace

void Engine::forward(const std::vector<Row>& rows, float* logits, std::vector<float>* hidden) {
  const int64_t V = m_.config().vocab_size;
  int64_t done = 0;
  while (done < int64_t(rows.size())) {
    const int64_t n = std::min<int64_t>(kChunkRows, int64_t(rows.size()) - done);
    int64_t nl = 0;
    for (int64_t i = 0; i < n; ++i) nl += rows[done + i].want_logits;
    forward_chunk(rows.data() + done, n, logits, hidden);
    if (logits) logits += nl * V;
    done += n;
  }
}

void Engine::forward_chunk(const Row* rows, int64_t n, float* logits, std::vector<float>* hidden) {
  const auto& c = m_.config();
  const auto& W = m_.weights();
  const int64_t H = c.hidden_size, I = c.intermediate_size, QD = c.q_dim(), KVD = c.kv_dim(), hd = c.head_dim,
                half = hd / 2, nh = c.num_heads, group = c.num_heads / c.num_kv_heads, L = c.num_layers;
  Work& w = *w_;
  ensure(w.x, n * H);
  ensure(w.xn, n * H);
  ensure(w.q, n * QD);
  ensure(w.k, n * KVD);
  ensure(w.v, n * KVD);
  ensure(w.att, n * QD);
  ensure(w.tmp, n * H);
  ensure(w.gate, n * I);
  ensure(w.up, n * I);
  ensure(w.rope, n * hd);

  // Positions, cache growth, embeddings, rotary tables.
  std::vector<int64_t> pos(n);
  for (int64_t r = 0; r < n; ++r) {
    KVCache& kv = *rows[r].cache;
    if (kv.k_.empty()) {
      kv.k_.resize(L);
      kv.v_.resize(L);
      kv.k_tiled_ = attention_kernel() == AttentionKernel::Tiled;
      kv.dtype_ = opts_.kv_dtype;
    }
    pos[r] = kv.len_++;
    if (size_t(kv.len_) > opts_.max_context)
      fail("sequence length {} exceeds the engine's max_context {}", kv.len_, opts_.max_context);
    const int32_t tok = rows[r].token;
    if (tok < 0 || tok >= c.vocab_size) fail("token id {} out of range (vocab size {})", tok, c.vocab_size);
    const size_t es = dtype_size(W.embed.dtype);
    to_f32(W.embed.dtype, static_cast<const uint8_t*>(W.embed.data) + size_t(tok) * H * es, w.x.data() + r * H,
           size_t(H));
    float* cs = w.rope.data() + r * hd;  // cos[half], sin[half]
    for (int64_t i = 0; i < half; ++i) {
      const double a = double(pos[r]) * inv_freq_[i];
      cs[i] = float(std::cos(a));
      cs[half + i] = float(std::sin(a));
    }
  }
  for (int64_t r = 0; r < n; ++r) {
    KVCache& kv = *rows[r].cache;
    const size_t es = dtype_size(kv.dtype_), need = size_t(kv.len_) * KVD, have = kv.v_[0].size() / es;
    if (have < need) {  // in elements
      const size_t most = kv.limit_ > 0 ? size_t(kv.limit_) * KVD : opts_.max_context * KVD;
      const size_t cap = std::max(need, std::min(have * 2, most));
      for (int64_t l = 0; l < L; ++l) {
        kv.k_[l].resize(size_t(attention_key_floats(int64_t(cap) / KVD, KVD)) * es);  // whole tiles (as row-major)
        kv.v_[l].resize(cap * es);
      }
    }
  }
  if (hidden) hidden->insert(hidden->end(), w.x.begin(), w.x.begin() + n * H);

  const float att_scale = float(1.0 / std::sqrt(double(hd)));
  const bool post_norms = c.post_block_norms;
  // The per-row steps between the products (norms, RoPE, residual adds) run over the thread
  // team from 64 rows on: on one thread they kept the other waiting (a 0.5B prefill, perf: the
  // worker's waiting samples 12.2 % -> 10.6 %). Each row is computed alike either way.
  const bool rows_parallel = n >= 64;
  // x += block output (w.tmp), normalised first when the architecture has post-block norms.
  auto add_block = [&](const std::vector<float>& post_norm) {
#pragma omp parallel for schedule(static) if (rows_parallel)
    for (int64_t r = 0; r < n; ++r) {
      float* t = w.tmp.data() + r * H;
      if (post_norms) rmsnorm(t, post_norm.data(), t, H, c.rms_norm_eps);
      float* xr = w.x.data() + r * H;
      for (int64_t i = 0; i < H; ++i) xr[i] += t[i];
    }
  };
  for (int64_t l = 0; l < L; ++l) {
    const auto& lw = W.layers[l];
    // --- attention block (OLMo2 has no input norm: the block sees the residual stream)
    const float* att_in = w.x.data();
    if (!post_norms) {
#pragma omp parallel for schedule(static) if (rows_parallel)
      for (int64_t r = 0; r < n; ++r)
        rmsnorm(w.x.data() + r * H, lw.input_norm.data(), w.xn.data() + r * H, H, c.rms_norm_eps);
      att_in = w.xn.data();
    }
    auto bias = [](const model::Linear& lin) { return lin.bias.empty() ? nullptr : lin.bias.data(); };
    const MatmulOut qkv[] = {{&lw.q.w, bias(lw.q), w.q.data(), QD},
                             {&lw.k.w, bias(lw.k), w.k.data(), KVD},
                             {&lw.v.w, bias(lw.v), w.v.data(), KVD}};
    matmul_multi(att_in, n, H, qkv);
    // q/k RMSNorm before RoPE: per head (Qwen3) or over the whole projection (OLMo2).
    if (c.qk_norm != model::QkNorm::None) {
      const int64_t qs = c.qk_norm == model::QkNorm::PerHead ? hd : QD;
      const int64_t ks = c.qk_norm == model::QkNorm::PerHead ? hd : KVD;
#pragma omp parallel for schedule(static) if (rows_parallel)
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t o = 0; o < QD; o += qs) {
          float* p = w.q.data() + r * QD + o;
          rmsnorm(p, lw.q_norm.data(), p, qs, c.rms_norm_eps);
        }
        for (int64_t o = 0; o < KVD; o += ks) {
          float* p = w.k.data() + r * KVD + o;
          rmsnorm(p, lw.k_norm.data(), p, ks, c.rms_norm_eps);
        }
      }
    }
    // RoPE (rotate-half layout) on q and k, then k, v into the cache (each row its own
    // position: the caches were grown above).
#pragma omp parallel for schedule(static) if (rows_parallel)
    for (int64_t r = 0; r < n; ++r) {
      const float* cs = w.rope.data() + r * hd;
      auto rot = [&](float* h) {
        for (int64_t i = 0; i < half; ++i) {
          const float x1 = h[i], x2 = h[i + half];
          h[i] = x1 * cs[i] - x2 * cs[half + i];
          h[i + half] = x2 * cs[i] + x1 * cs[half + i];
        }
      };
      for (int64_t h = 0; h < nh; ++h) rot(w.q.data() + r * QD + h * hd);
      for (int64_t h = 0; h < c.num_kv_heads; ++h) rot(w.k.data() + r * KVD + h * hd);
      KVCache& kv = *rows[r].cache;
      const DType kt = kv.dtype_;
      const size_t es = dtype_size(kt);
      const float* kr = w.k.data() + r * KVD;
      if (kv.k_tiled_) {  // one element at a time, rounded to nearest even as from_f32 rounds the values
        uint8_t* base = kv.k_[l].data();
        for (int64_t col = 0; col < KVD; ++col) {
          const size_t at = size_t(attention_key_index(pos[r], col, KVD));
          if (kt == DType::F32) reinterpret_cast<float*>(base)[at] = kr[col];
          else
            reinterpret_cast<uint16_t*>(base)[at] = kt == DType::BF16 ? f32_to_bf16(kr[col]) : f32_to_f16(kr[col]);
        }
      } else {
        from_f32(kt, kr, kv.k_[l].data() + size_t(pos[r] * KVD) * es, size_t(KVD));
      }
      from_f32(kt, w.v.data() + r * KVD, kv.v_[l].data() + size_t(pos[r] * KVD) * es, size_t(KVD));
    }
    // Causal attention with GQA over each row's cache (positions 0..pos): one work item per
    // block of up to 16 consecutive rows of one sequence. A one-row block (decode) reaching past
    // one partition is split further, one item per partition, and its partials are merged
    // afterwards in partition order (attention.h): the same bits as one item, so results do not
    // depend on the thread count, and one long sequence keeps every thread busy. An item takes
    // every KV head when there are enough items for the threads (each then reads whole cache
    // rows in order), else one KV head (batch-1 decode within one partition: one item per head).
    struct AttItem {
      int64_t r0, rows, g, part;  // KV heads [g, g + G); part -1: all partitions
      size_t off;                 // part >= 0: its partial in w.attp
    };
    struct AttMerge {
      int64_t r, g;
      size_t off;  // its partials in w.attp, one partition after another
    };
    const bool tiled = attention_kernel() == AttentionKernel::Tiled;
    auto att_args = [&](int64_t r0, int64_t nr, int64_t g, int64_t ng) {
      const KVCache& kv = *rows[r0].cache;
      return AttentionArgs{w.q.data() + r0 * QD + g * group * hd,
                           QD,
                           group,
                           hd,
                           attention_kv_advance(kv.k_[l].data(), attention_key_head_offset(g, hd, kv.k_tiled_),
                                                kv.dtype_),
                           attention_kv_advance(kv.v_[l].data(), g * hd, kv.dtype_),
                           KVD,
                           nr,
                           pos[r0],
                           att_scale,
                           ng,
                           kv.k_tiled_,
                           kv.dtype_,
                           kv.dtype_ == DType::BF16 && matmul_precision() == MatmulPrecision::BF16Dot};
    };
    // Row blocks [r, e) and their partition counts (one item each unless split by partition).
    struct RowBlock {
      int64_t r, e, np;
    };
    std::vector<RowBlock> blocks;
    int64_t units = 0, att_work = 0;
    for (int64_t r = 0; r < n;) {
      int64_t e = r + 1;
      while (e < n && e - r < 16 && rows[e].cache == rows[r].cache) ++e;
      const int64_t np = attention_partitions(att_args(r, e - r, 0, 1));
      blocks.push_back({r, e, np});
      units += e - r > 1 ? 1 : np;
      att_work += (e - r) * (pos[e - 1] + 1) * QD;
      r = e;
    }
    const int64_t kvh = c.num_kv_heads;
    const int64_t G = tiled && units >= 2 * omp_get_max_threads() ? kvh : 1;
    std::vector<AttItem> items;
    std::vector<AttMerge> merges;
    size_t attp_size = 0;
    const size_t part1 = size_t(attention_partial_floats(att_args(0, 1, 0, 1)));  // one decode row, one KV head
    for (const auto& [r, e, np] : blocks) {
      if (e - r > 1 || np == 1 || !tiled) {
        for (int64_t g = 0; g < kvh; g += G) items.push_back({r, e - r, g, -1, 0});
      } else {
        // Partials by partition, then KV head (an item's heads are consecutive); with one head
        // per item, partitions outer and heads inner, so the threads read the heads' parts of
        // the same cache rows at about the same time.
        const size_t base = attp_size;
        for (int64_t g = 0; g < kvh; g += G) merges.push_back({r, g, base + size_t(g) * part1});
        for (int64_t j = 0; j < np; ++j)
          for (int64_t g = 0; g < kvh; g += G) items.push_back({r, 1, g, j, base + size_t(j * kvh + g) * part1});
        attp_size += size_t(kvh * np) * part1;
      }
    }
    ensure(w.attp, attp_size);
#pragma omp parallel if (att_work > (int64_t(1) << 18))
    {
#pragma omp for schedule(dynamic, 1)
      for (size_t it = 0; it < items.size(); ++it) {
        const auto [r0, nr, g, part, off] = items[it];
        const AttentionArgs a = att_args(r0, nr, g, G);
        float* out = w.att.data() + r0 * QD + g * group * hd;
        if (part >= 0) attention_partial(a, part, w.attp.data() + off);
        else if (tiled) attention(a, out, QD);
        else attention_untiled(a, out, QD);
      }
#pragma omp for schedule(dynamic, 1)
      for (size_t mi = 0; mi < merges.size(); ++mi) {
        const auto [r, g, off] = merges[mi];
        const AttentionArgs a = att_args(r, 1, g, G);
        attention_merge(a, w.attp.data() + off, kvh * int64_t(part1), w.att.data() + r * QD + g * group * hd, QD);
      }
    }
    matmul(w.att.data(), n, QD, lw.o.w, bias(lw.o), w.tmp.data(), H);
    add_block(lw.post_attention_norm);
    // --- MLP block (SwiGLU)
    const float* mlp_in = w.x.data();
    if (!post_norms) {
#pragma omp parallel for schedule(static) if (rows_parallel)
      for (int64_t r = 0; r < n; ++r)
        rmsnorm(w.x.data() + r * H, lw.post_attention_norm.data(), w.xn.data() + r * H, H, c.rms_norm_eps);
      mlp_in = w.xn.data();
    }
    const MatmulOut gate_up[] = {{&lw.gate.w, bias(lw.gate), w.gate.data(), I},
                                 {&lw.up.w, bias(lw.up), w.up.data(), I}};
    matmul_multi(mlp_in, n, H, gate_up);
#pragma omp parallel for schedule(static) if (n * I > (int64_t(1) << 16))
    for (int64_t r = 0; r < n; ++r) silu_mul(w.gate.data() + r * I, w.up.data() + r * I, I);
    matmul(w.gate.data(), n, I, lw.down.w, bias(lw.down), w.tmp.data(), H);
    add_block(lw.post_ffw_norm);
    if (hidden) hidden->insert(hidden->end(), w.x.begin(), w.x.begin() + n * H);
  }
  // Final norm + lm_head for the rows that want logits.
  int64_t m = 0;
  ensure(w.fin, n * H);
  for (int64_t r = 0; r < n; ++r)
    if (rows[r].want_logits) {
      rmsnorm(w.x.data() + r * H, W.final_norm.data(), w.fin.data() + m * H, H, c.rms_norm_eps);
      ++m;
    }
  if (m > 0 && logits) {
    const auto& lm = W.lm_head;
    matmul(w.fin.data(), m, H, lm.w, lm.bias.empty() ? nullptr : lm.bias.data(), logits, c.vocab_size);
  }
}

std::vector<std::vector<float>> Engine::step(const std::vector<KVCache*>& caches,
                                             const std::vector<std::vector<int32_t>>& tokens, bool all_logits) {
  if (caches.size() != tokens.size()) fail("Engine::step: {} caches but {} token lists", caches.size(), tokens.size());
  const int64_t V = m_.config().vocab_size;
  std::vector<Row> rows;
  size_t nl = 0;
  for (size_t i = 0; i < caches.size(); ++i)
    for (size_t t = 0; t < tokens[i].size(); ++t) {
      bool want = all_logits || t + 1 == tokens[i].size();
      rows.push_back({caches[i], tokens[i][t], want});
      nl += want;
    }
  std::vector<float> lg(nl * V);
  forward(rows, lg.data());
  std::vector<std::vector<float>> out(caches.size());
  size_t off = 0;
  for (size_t i = 0; i < caches.size(); ++i) {
    size_t cnt = tokens[i].empty() ? 0 : all_logits ? tokens[i].size() : 1;
    out[i].assign(lg.begin() + off * V, lg.begin() + (off + cnt) * V);
    off += cnt;
  }
  return out;
}

std::vector<float> Engine::logits(const std::vector<int32_t>& tokens) {
  KVCache kv;
  return std::move(step({&kv}, {tokens}, true)[0]);
}

std::vector<float> Engine::hidden_states(const std::vector<int32_t>& tokens) {
  // Collect per chunk ([L+1, chunk, H] each), then reorder to [L+1, T, H].
  const int64_t H = m_.config().hidden_size, L1 = m_.config().num_layers + 1, T = int64_t(tokens.size());
  KVCache kv;
  std::vector<float> out(size_t(L1 * T * H));
  for (int64_t s = 0; s < T; s += kChunkRows) {
    const int64_t n = std::min(kChunkRows, T - s);
    std::vector<Row> rows;
    for (int64_t i = 0; i < n; ++i) rows.push_back({&kv, tokens[s + i], false});
    std::vector<float> h;
    forward_chunk(rows.data(), n, nullptr, &h);
    for (int64_t l = 0; l < L1; ++l)
      std::copy_n(h.data() + l * n * H, n * H, out.data() + (l * T + s) * H);
  }
  return out;
}

// ------------------------------------------------------------------ sampling
int32_t sample_token(const float* logits, int64_t V, const SamplingParams& p, double u) {
  if (p.temperature <= 0) return int32_t(argmax(logits, V));
  std::vector<int32_t> idx(V);
  std::iota(idx.begin(), idx.end(), 0);
  auto desc = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  if (p.min_p > 0) {  // p_i >= min_p * p_max, i.e. exp((l_i - l_max) / T) >= min_p
    const float top = *std::max_element(logits, logits + V);
    std::erase_if(idx, [&](int32_t i) { return std::exp(double(logits[i] - top) / p.temperature) < double(p.min_p); });
  }
  int64_t n = int64_t(idx.size());
  if (p.top_k > 0 && p.top_k < n) {
    n = p.top_k;
    std::partial_sort(idx.begin(), idx.begin() + n, idx.end(), desc);
  } else if (p.top_p < 1) {
    std::sort(idx.begin(), idx.end(), desc);
  }
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, logits[idx[i]]);
  std::vector<double> pr(n);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += pr[i] = std::exp(double(logits[idx[i]] - mx) / p.temperature);
  if (p.top_p < 1) {  // candidates are sorted by probability: keep the smallest prefix reaching top_p
    double cum = 0;
    int64_t keep = 0;
    while (keep < n) {
      cum += pr[keep++] / sum;
      if (cum >= p.top_p) break;
    }
    n = keep;
    sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += pr[i];
  }
  double target = u * sum, acc = 0;
  for (int64_t i = 0; i < n; ++i) {
    acc += pr[i];
    if (target < acc) return idx[i];
  }
  return idx[n - 1];
}

// ------------------------------------------------------------------ scoring
LogSoftmax::LogSoftmax(const float* l, int64_t V) : logits_(l), argmax_(infer::argmax(l, V)) {
  max_ = l[argmax_];
  double s = 0;
  for (int64_t v = 0; v < V; ++v) s += std::exp(double(l[v]) - double(max_));
  log_sum_ = std::log(s);
}

namespace {
// Sum of log-softmax at the continuation tokens; logits [cont.size() * V].
Engine::Loglik score_cont(const float* lg, int64_t V, const std::vector<int32_t>& cont) {
  Engine::Loglik r{0.0, true};
  for (size_t j = 0; j < cont.size(); ++j) {
    const float* l = lg + j * V;
    const int32_t t = cont[j];
    if (t < 0 || t >= V) fail("loglikelihood: token id {} out of range", t);
    const LogSoftmax ls(l, V);
    r.logprob += ls(t);
    if (ls.argmax() != t) r.is_greedy = false;
  }
  return r;
}
}  // namespace

void Engine::loglikelihood(const std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>>& ctx_cont,
                           const std::function<void(size_t, Loglik)>& on_done) {
  const int64_t V = m_.config().vocab_size;
  // Prefix sharing: requests with the same context (multiple-choice questions) prefill the
  // context once; each continuation then runs on a copy of that KV cache.
  std::map<std::vector<int32_t>, std::vector<size_t>> by_ctx;
  std::vector<size_t> plain;
  for (size_t i = 0; i < ctx_cont.size(); ++i) {
    const auto& [ctx, cont] = ctx_cont[i];
    if (ctx.empty()) fail("loglikelihood: request {} has an empty context", i);
    if (cont.empty()) fail("loglikelihood: request {} has an empty continuation", i);
    if (ctx.size() + cont.size() - 1 <= opts_.max_context) by_ctx[ctx].push_back(i);
    else plain.push_back(i);
  }
  std::vector<std::vector<size_t>> groups;
  for (auto& [ctx, idx] : by_ctx) {
    if (idx.size() == 1) plain.push_back(idx[0]);
    else groups.push_back(std::move(idx));
  }
  std::sort(plain.begin(), plain.end());
  for (const auto& g : groups) {
    const auto& ctx = ctx_cont[g[0]].first;
    KVCache base;
    std::vector<Row> rows;
    for (size_t t = 0; t < ctx.size(); ++t) rows.push_back({&base, ctx[t], t + 1 == ctx.size()});
    std::vector<float> first(V);
    forward(rows, first.data());
    for (size_t s = 0; s < g.size(); s += size_t(opts_.max_batch)) {
      const size_t e = std::min(g.size(), s + size_t(opts_.max_batch));
      std::vector<KVCache> caches(e - s, base);
      rows.clear();
      size_t nl = 0;
      for (size_t m = s; m < e; ++m) {
        const auto& cont = ctx_cont[g[m]].second;
        for (size_t t = 0; t + 1 < cont.size(); ++t) rows.push_back({&caches[m - s], cont[t], true});
        nl += cont.size() - 1;
      }
      std::vector<float> lg(nl * V);
      if (nl) forward(rows, lg.data());
      size_t off = 0;
      for (size_t m = s; m < e; ++m) {
        const auto& cont = ctx_cont[g[m]].second;
        std::vector<float> all(cont.size() * V);
        std::copy(first.begin(), first.end(), all.begin());
        std::copy_n(lg.data() + off * V, (cont.size() - 1) * V, all.data() + V);
        off += cont.size() - 1;
        on_done(g[m], score_cont(all.data(), V, cont));
      }
    }
  }
  size_t pi = 0;
  while (pi < plain.size()) {
    // Pack requests into one forward pass of up to ~kChunkRows rows (at least one request).
    std::vector<KVCache> caches;
    caches.reserve(size_t(opts_.max_batch));
    std::vector<Row> rows;
    struct Item {
      size_t idx;
      std::vector<int32_t> cont;
      size_t logit_off;
    };
    std::vector<Item> items;
    size_t nlog = 0;
    while (pi < plain.size() && caches.size() < size_t(opts_.max_batch)) {
      const size_t i = plain[pi];
      const auto& [ctx, cont] = ctx_cont[i];
      if (cont.size() >= opts_.max_context)
        fail("loglikelihood: request {} continuation ({} tokens) does not fit max_context {}", i, cont.size(),
             opts_.max_context);
      std::vector<int32_t> all(ctx);
      all.insert(all.end(), cont.begin(), cont.end());
      // Input = all[:-1] (last max_context tokens); logits at the positions predicting cont.
      std::vector<int32_t> inp(all.begin(), all.end() - 1);
      if (inp.size() > opts_.max_context) inp.erase(inp.begin(), inp.end() - opts_.max_context);
      if (!rows.empty() && rows.size() + inp.size() > size_t(kChunkRows)) break;
      caches.emplace_back();
      const size_t first_logit = inp.size() - cont.size();
      for (size_t t = 0; t < inp.size(); ++t) rows.push_back({&caches.back(), inp[t], t >= first_logit});
      items.push_back({i, cont, nlog});
      nlog += cont.size();
      ++pi;
    }
    std::vector<float> lg(nlog * V);
    forward(rows, lg.data());
    for (const auto& it : items) on_done(it.idx, score_cont(lg.data() + it.logit_off * V, V, it.cont));
  }
}

}  // namespace rvec::infer
