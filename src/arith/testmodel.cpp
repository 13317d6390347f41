#include "core/build_info.h"
#include "arith/testmodel.h"

#include <omp.h>

#include <cstdlib>

#include "core/atomic_output.h"
#include "core/error.h"
#include "core/json_fields.h"
#include "core/progress.h"
#include "io/model_dir.h"
#include "io/model_output.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace rvec::arith {

namespace {

int64_t geti(const json& c, const char* k) {
  if (!c.contains(k) || !c[k].is_number_integer() || c[k].get<int64_t>() <= 0)
    fail("config.json: \"{}\" must be a positive integer", k);
  return c[k].get<int64_t>();
}

uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
uint64_t hash_name(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}
constexpr size_t kChunk = size_t(1) << 16;
constexpr size_t kBlockChunks = 64;

// Uniform in [-1, 1) for element i of a tensor: counter-based, so any chunking and
// thread count give the same values.
inline float unit_uniform(uint64_t key, uint64_t i) {
  uint64_t r = mix(key + i * 0x9e3779b97f4a7c15ull);
  return float(double(r >> 40) * 0x1.0p-23 - 1.0);
}

bool is_norm(const std::string& n) { return n.find("norm") != std::string::npos; }

}  // namespace

std::vector<io::TensorSpec> decoder_tensors(const json& c, DType dt) {
  const int64_t H = geti(c, "hidden_size"), I = geti(c, "intermediate_size"), L = geti(c, "num_hidden_layers"),
                nh = geti(c, "num_attention_heads"), V = geti(c, "vocab_size");
  const int64_t nkv = c.contains("num_key_value_heads") ? geti(c, "num_key_value_heads") : nh;
  const int64_t hd = c.contains("head_dim") && c["head_dim"].is_number_integer() ? c["head_dim"].get<int64_t>() : H / nh;
  std::string mt = json_string_or(c, "model_type", "qwen2", "config.json");
  if (mt != "qwen2" && mt != "llama" && mt != "mistral" && mt != "qwen3" && mt != "olmo2")
    fail("config.json: model_type '{}' is not qwen2/qwen3/llama/mistral/olmo2", mt);
  const bool bias = mt == "qwen2" || json_bool_or(c, "attention_bias", false, "config.json");
  const bool olmo2 = mt == "olmo2", qk_norm = mt == "qwen3" || olmo2;
  const bool tied = json_bool_or(c, "tie_word_embeddings", true, "config.json");
  std::vector<io::TensorSpec> t;
  t.push_back({"model.embed_tokens.weight", dt, {V, H}});
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    if (!olmo2) t.push_back({p + "input_layernorm.weight", dt, {H}});
    t.push_back({p + "self_attn.q_proj.weight", dt, {nh * hd, H}});
    if (bias) t.push_back({p + "self_attn.q_proj.bias", dt, {nh * hd}});
    t.push_back({p + "self_attn.k_proj.weight", dt, {nkv * hd, H}});
    if (bias) t.push_back({p + "self_attn.k_proj.bias", dt, {nkv * hd}});
    t.push_back({p + "self_attn.v_proj.weight", dt, {nkv * hd, H}});
    if (bias) t.push_back({p + "self_attn.v_proj.bias", dt, {nkv * hd}});
    t.push_back({p + "self_attn.o_proj.weight", dt, {H, nh * hd}});
    if (bias && mt != "qwen2") t.push_back({p + "self_attn.o_proj.bias", dt, {H}});
    if (qk_norm) {  // Qwen3: per head; OLMo2: over the whole projection
      t.push_back({p + "self_attn.q_norm.weight", dt, {olmo2 ? nh * hd : hd}});
      t.push_back({p + "self_attn.k_norm.weight", dt, {olmo2 ? nkv * hd : hd}});
    }
    t.push_back({p + "post_attention_layernorm.weight", dt, {H}});
    t.push_back({p + "mlp.gate_proj.weight", dt, {I, H}});
    t.push_back({p + "mlp.up_proj.weight", dt, {I, H}});
    t.push_back({p + "mlp.down_proj.weight", dt, {H, I}});
    if (olmo2) t.push_back({p + "post_feedforward_layernorm.weight", dt, {H}});
  }
  t.push_back({"model.norm.weight", dt, {H}});
  if (!tied) t.push_back({"lm_head.weight", dt, {V, H}});
  return t;
}

json tiny_config() {
  return json{{"architectures", {"Qwen2ForCausalLM"}},
              {"attention_dropout", 0.0},
              {"bos_token_id", 1021},
              {"eos_token_id", 1023},
              {"hidden_act", "silu"},
              {"hidden_size", 64},
              {"initializer_range", 0.02},
              {"intermediate_size", 128},
              {"max_position_embeddings", 4096},
              {"max_window_layers", 2},
              {"model_type", "qwen2"},
              {"num_attention_heads", 4},
              {"num_hidden_layers", 2},
              {"num_key_value_heads", 2},
              {"rms_norm_eps", 1e-06},
              {"rope_theta", 1000000.0},
              {"sliding_window", 4096},
              {"tie_word_embeddings", true},
              {"torch_dtype", "bfloat16"},
              {"use_cache", true},
              {"use_sliding_window", false},
              {"vocab_size", 1024}};
}

fs::path data_dir() {
  if (const char* e = std::getenv("RVEC_DATA")) return e;
  return fs::path(RVEC_SOURCE_DIR) / "data";
}

namespace {
// Streams tensors whose values are f(tensor index, element range) into a writer.
template <typename Fill>
void stream_tensors(io::SafetensorsWriter& w, const std::vector<io::TensorSpec>& specs, Progress& prog, Fill fill) {
  std::vector<uint8_t> enc;
  for (size_t k = 0; k < specs.size(); ++k) {
    const auto& s = specs[k];
    const uint64_t n = s.numel();
    const size_t es = dtype_size(s.dtype);
    for (uint64_t b0 = 0; b0 < n; b0 += kChunk * kBlockChunks) {
      const uint64_t b1 = std::min<uint64_t>(n, b0 + kChunk * kBlockChunks);
      enc.resize(size_t(b1 - b0) * es);
      const int64_t nc = int64_t((b1 - b0 + kChunk - 1) / kChunk);
#pragma omp parallel if (nc > 1)
      {
        std::vector<float> f(kChunk);
#pragma omp for schedule(static)
        for (int64_t c = 0; c < nc; ++c) {
          const uint64_t off = b0 + uint64_t(c) * kChunk, len = std::min<uint64_t>(kChunk, b1 - off);
          fill(k, off, len, f.data());
          from_f32(s.dtype, f.data(), enc.data() + (off - b0) * es, len);
        }
      }
      w.append(enc.data(), enc.size());
      prog.add(enc.size());
    }
  }
}
}  // namespace

void write_test_model(const fs::path& out, const TestModelOptions& o) {
  if (!is_arith_dtype(o.dtype)) fail("testmodel: dtype must be bf16, f16 or f32");
  json cfg = o.config;
  cfg["torch_dtype"] = std::string(torch_dtype_name(o.dtype));
  auto specs = decoder_tensors(cfg, o.dtype);
  AtomicDir dir(out, o.force);
  io::SafetensorsWriter w(dir.tmp(), specs, o.shard_size);
  Progress prog("testmodel", w.total_size(), "B", o.quiet);
  std::vector<uint64_t> keys;
  std::vector<bool> norm;
  for (auto& s : specs) {
    keys.push_back(mix(o.seed * 0x2545f4914f6cdd1dull + hash_name(s.name)));
    norm.push_back(is_norm(s.name));
  }
  const float a = 0.02f * 1.7320508f;  // uniform(-a, a) has std 0.02
  stream_tensors(w, specs, prog, [&](size_t k, uint64_t off, uint64_t len, float* f) {
    if (norm[k])
      for (uint64_t i = 0; i < len; ++i) f[i] = 1.0f + 0.1f * unit_uniform(keys[k], off + i);
    else
      for (uint64_t i = 0; i < len; ++i) f[i] = a * unit_uniform(keys[k], off + i);
  });
  w.finish();
  prog.finish();
  write_file_atomic(dir.tmp() / "config.json", cfg.dump(2) + "\n");
  if (o.tokenizer_dir) {
    for (const auto& f : io::donor_files()) {
      fs::path src = *o.tokenizer_dir / f;
      if (fs::is_regular_file(src)) copy_file_checked(src, dir.tmp() / f);
    }
  }
  io::write_rvec_json(dir.tmp(), json{{"operation", "testmodel"},
                                      {"seed", o.seed},
                                      {"dtype", std::string(dtype_name(o.dtype))},
                                      {"tokenizer", o.tokenizer_dir ? o.tokenizer_dir->string() : ""},
                                      {"output", {{"files", w.files()}, {"total_size", w.total_size()}}}});
  dir.commit();
}

void write_perturbed(const fs::path& like, double scale, uint64_t seed, const fs::path& out, bool force, bool quiet,
                     uint64_t shard_size) {
  auto m = io::ModelDir::open(like, true);
  std::vector<io::TensorSpec> specs;
  std::vector<const io::TensorInfo*> src;
  for (auto* t : m->tensors()) {
    if (!is_arith_dtype(t->dtype)) fail("{}: tensor '{}' has dtype {}; --like needs bf16/f16/f32", like.string(), t->name, dtype_name(t->dtype));
    specs.push_back({t->name, t->dtype, t->shape});
    src.push_back(t);
  }
  AtomicDir dir(out, force);
  io::SafetensorsWriter w(dir.tmp(), specs, shard_size);
  Progress prog("perturb", w.total_size(), "B", quiet);
  std::vector<uint64_t> keys;
  for (auto& s : specs) keys.push_back(mix(seed * 0x2545f4914f6cdd1dull + hash_name(s.name) + 0x5bd1e995));
  const float k = float(scale * 1.7320508075688772);  // unit variance
  stream_tensors(w, specs, prog, [&](size_t t, uint64_t off, uint64_t len, float* f) {
    to_f32(src[t]->dtype, src[t]->data + off * dtype_size(src[t]->dtype), f, len);
    for (uint64_t i = 0; i < len; ++i) f[i] += k * unit_uniform(keys[t], off + i);
  });
  w.finish();
  prog.finish();
  io::copy_donor_files(m->path(), dir.tmp(), std::nullopt);
  io::write_rvec_json(dir.tmp(), json{{"operation", "perturb"},
                                      {"like", fs::absolute(like).lexically_normal().string()},
                                      {"scale", scale},
                                      {"seed", seed},
                                      {"output", {{"files", w.files()}, {"total_size", w.total_size()}}}});
  dir.commit();
}

}  // namespace rvec::arith
