#include "export/gguf.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>

#include "core/atomic_output.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/progress.h"
#include "arith/lora.h"
#include "io/model_dir.h"
#include "io/model_resolver.h"
#include "model/config.h"

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;

namespace rvec::gguf {

namespace {

enum ValueType : uint32_t { kU8 = 0, kI8, kU16, kI16, kU32, kI32, kF32v, kBool, kStr, kArr, kU64, kI64, kF64 };
constexpr uint64_t kAlign = 32;  // general.alignment default
// llama.cpp's token types (llama_token_type).
enum TokType : int32_t { kNormal = 1, kControl = 3, kUserDefined = 4, kUnused = 5 };

// GGUF metadata and tensor-info bytes.
class Header {
 public:
  void str(const std::string& s) {
    u64(s.size());
    b_ += s;
  }
  void u32(uint32_t v) { raw(&v, 4); }
  void u64(uint64_t v) { raw(&v, 8); }
  void key(const std::string& k, ValueType t) {
    str(k);
    u32(t);
    ++n_kv_;
  }
  void kv_u32(const std::string& k, uint32_t v) { key(k, kU32), u32(v); }
  void kv_f32(const std::string& k, float v) { key(k, kF32v), raw(&v, 4); }
  void kv_bool(const std::string& k, bool v) {
    key(k, kBool);
    b_ += char(v ? 1 : 0);
  }
  void kv_str(const std::string& k, const std::string& v) { key(k, kStr), str(v); }
  void kv_strs(const std::string& k, const std::vector<std::string>& v) {
    key(k, kArr);
    u32(kStr);
    u64(v.size());
    for (const auto& s : v) str(s);
  }
  void kv_i32s(const std::string& k, const std::vector<int32_t>& v) {
    key(k, kArr);
    u32(kI32);
    u64(v.size());
    raw(v.data(), v.size() * 4);
  }
  void raw(const void* p, size_t n) { b_.append(static_cast<const char*>(p), n); }
  std::string& bytes() { return b_; }
  uint64_t n_kv() const { return n_kv_; }

 private:
  std::string b_;
  uint64_t n_kv_ = 0;
};

uint64_t align_up(uint64_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

std::optional<json> read_json_opt(const fs::path& p) {
  if (!fs::exists(p)) return std::nullopt;
  try {
    return json::parse(read_file(p));
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", p.string(), e.what());
  }
}

// HF name -> GGUF name ("" for tensors llama.cpp has no use for).
std::string gguf_name(const std::string& hf, bool olmo2) {
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  static const std::pair<const char*, const char*> kLayer[] = {
      {"input_layernorm.weight", "attn_norm.weight"},     {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.q_proj.bias", "attn_q.bias"},           {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.k_proj.bias", "attn_k.bias"},           {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.v_proj.bias", "attn_v.bias"},           {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.o_proj.bias", "attn_output.bias"},      {"self_attn.q_norm.weight", "attn_q_norm.weight"},
      {"self_attn.k_norm.weight", "attn_k_norm.weight"},  {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},            {"mlp.down_proj.weight", "ffn_down.weight"},
      {"post_feedforward_layernorm.weight", "post_ffw_norm.weight"}};
  const std::string pre = "model.layers.";
  if (hf.rfind(pre, 0) != 0) return "";
  size_t dot = hf.find('.', pre.size());
  if (dot == std::string::npos) return "";
  const std::string layer = hf.substr(pre.size(), dot - pre.size()), rest = hf.substr(dot + 1);
  if (rest == "post_attention_layernorm.weight")  // OLMo2's norm sits after attention; the others' before the MLP
    return "blk." + layer + (olmo2 ? ".post_attention_norm.weight" : ".ffn_norm.weight");
  for (const auto& [h, g] : kLayer)
    if (rest == h) return "blk." + layer + "." + g;
  return "";
}

struct Vocab {
  std::vector<std::string> tokens, merges;
  std::vector<int32_t> types;
  std::string pre;
};

bool looks_special(const std::string& t) {
  return (t.size() >= 4 && t.rfind("<|", 0) == 0 && t.compare(t.size() - 2, 2, "|>") == 0) || t == "<pad>" ||
         t == "<mask>";
}

// The byte-level BPE vocabulary of tokenizer.json, as convert_hf_to_gguf's get_vocab_base
// lays it out: vocab_size entries, holes filled with [PAD<i>] (UNUSED), added tokens CONTROL
// when special (or <|...|>-shaped), else USER_DEFINED.
Vocab read_vocab(const fs::path& dir, int64_t vocab_size) {
  auto tj = read_json_opt(dir / "tokenizer.json");
  if (!tj) fail("{}: no tokenizer.json (GGUF export needs the tokenizer)", dir.string());
  const std::string where = (dir / "tokenizer.json").string();
  const json& model = (*tj)["model"];
  if (!model.is_object() || model.value("type", "") != "BPE" || !model.contains("vocab") || !model["vocab"].is_object())
    fail("{}: only BPE tokenizers can be exported", where);
  const json& pt = (*tj)["pre_tokenizer"];
  const std::string dump = pt.dump();
  if (dump.find("ByteLevel") == std::string::npos)
    fail("{}: only byte-level BPE tokenizers (Qwen, Llama 3, OLMo2) can be exported; SentencePiece-style "
         "vocabularies are not supported",
         where);
  Vocab v;
  v.tokens.assign(size_t(vocab_size), "");
  v.types.assign(size_t(vocab_size), kUnused);
  std::vector<bool> have(size_t(vocab_size), false);
  for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
    int64_t id = it.value().get<int64_t>();
    if (id < 0 || id >= vocab_size) fail("{}: token id {} is outside the model's vocab_size {}", where, id, vocab_size);
    v.tokens[size_t(id)] = it.key();
    v.types[size_t(id)] = kNormal;
    have[size_t(id)] = true;
  }
  if (tj->contains("added_tokens") && (*tj)["added_tokens"].is_array())
    for (const auto& a : (*tj)["added_tokens"]) {
      int64_t id = a.value("id", int64_t(-1));
      if (id < 0 || id >= vocab_size) fail("{}: added token id {} is outside vocab_size {}", where, id, vocab_size);
      const std::string c = a.value("content", "");
      v.tokens[size_t(id)] = c;
      v.types[size_t(id)] = a.value("special", false) || looks_special(c) ? kControl : kUserDefined;
      have[size_t(id)] = true;
    }
  for (int64_t i = 0; i < vocab_size; ++i)
    if (!have[size_t(i)]) v.tokens[size_t(i)] = fmt::format("[PAD{}]", i);
  if (model.contains("merges") && model["merges"].is_array())
    for (const auto& m : model["merges"]) {
      if (m.is_string()) v.merges.push_back(m.get<std::string>());
      else if (m.is_array() && m.size() == 2) v.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
    }
  // tokenizer.ggml.pre names llama.cpp's pre-tokenizer regex; llama.cpp picks it by hashing
  // the tokens of a test string, rvec by the regex itself.
  if (dump.find("\\\\p{N}{1,3}") != std::string::npos) v.pre = "llama-bpe";        // also OLMo2's cl100k regex
  else if (dump.find("\\\\p{N}|") != std::string::npos || dump.find("\\\\p{N}\"") != std::string::npos) v.pre = "qwen2";
  else v.pre = "default";
  return v;
}

int32_t added_id(const json& tj, const std::string& content) {
  if (tj.contains("added_tokens"))
    for (const auto& a : tj["added_tokens"])
      if (a.value("content", "") == content) return a.value("id", -1);
  if (tj.contains("model") && tj["model"].contains("vocab") && tj["model"]["vocab"].contains(content))
    return tj["model"]["vocab"][content].get<int32_t>();
  return -1;
}

uint32_t ggml_type_for(FileType ft, const io::TensorInfo& t, bool is_1d) {
  if (is_1d) return kF32;
  switch (ft) {
    case FileType::F32: return kF32;
    case FileType::F16: return kF16;
    case FileType::BF16: return kBF16;
    case FileType::Q8_0: return t.shape.back() % kQ8Block == 0 ? kQ8_0 : kF16;  // llama.cpp falls back to F16 too
  }
  return kF32;
}

uint64_t row_bytes(uint32_t type, int64_t cols) {
  switch (type) {
    case kF32: return uint64_t(cols) * 4;
    case kF16:
    case kBF16: return uint64_t(cols) * 2;
    case kQ8_0: return uint64_t(cols / kQ8Block) * 34;
  }
  fail("gguf: unknown ggml type {}", type);
}

void encode_row(uint32_t type, const float* x, int64_t n, uint8_t* out) {
  switch (type) {
    case kF32: std::memcpy(out, x, size_t(n) * 4); break;
    case kF16: from_f32(DType::F16, x, out, size_t(n)); break;
    case kBF16: from_f32(DType::BF16, x, out, size_t(n)); break;
    case kQ8_0: quantize_q8_0(x, n, out); break;
  }
}

struct Planned {
  const io::TensorInfo* src;  // null: `values` (a tensor the converter computes, F32 1-D)
  std::string name;
  uint32_t type;
  int64_t rows, cols;
  int permute_heads = 0;  // Llama/Mistral q/k: heads to permute to GGML's rotary layout
  uint64_t offset = 0, nbytes = 0;
  std::vector<float> values;
  int n_dims = 2;  // ne = [cols] or [cols, rows]
  std::function<void(int64_t, float*)> make_row;  // export_lora: produces row r
};

// llama.cpp's architecture name for a config (llama.cpp runs Mistral as llama).
std::string gguf_arch(const model::ModelConfig& cfg) {
  switch (cfg.arch) {
    case model::Arch::Qwen2: return "qwen2";
    case model::Arch::Qwen3: return "qwen3";
    case model::Arch::Llama:
    case model::Arch::Mistral: return "llama";
    case model::Arch::Olmo2: return "olmo2";
  }
  return "";
}

// convert_hf_to_gguf's LlamaModel.permute as a row map: within each head of hd rows, HF's
// rotate-half order [first halves..., second halves...] becomes interleaved pairs. Output
// row r is input row rotary_perm(r).
int64_t rotary_perm(int64_t r, int64_t hd) {
  const int64_t head_i = r / hd, k = r % hd, i = k / 2, j = k % 2;
  return head_i * hd + j * (hd / 2) + i;
}

// Writes a GGUF v3 file: the metadata `h`, the tensor infos of `plan` (offsets already laid
// out, `data_size` bytes of aligned data in all), then each tensor row by row: row(p, r, dst)
// fills the p.cols f32 values of row r, encoded to p.type. Built in a temporary sibling and
// renamed when complete.
void write_gguf(const fs::path& out, Header& h, const std::vector<Planned>& plan, uint64_t data_size,
                const std::string& label, bool quiet,
                const std::function<void(const Planned&, int64_t, float*)>& row_of) {
  std::string head = "GGUF";
  const uint32_t version = 3;
  head.append(reinterpret_cast<const char*>(&version), 4);
  const uint64_t n_tensors = plan.size(), n_kv = h.n_kv();
  head.append(reinterpret_cast<const char*>(&n_tensors), 8);
  head.append(reinterpret_cast<const char*>(&n_kv), 8);
  head += h.bytes();
  Header ti;
  for (const auto& p : plan) {
    ti.str(p.name);
    ti.u32(uint32_t(p.n_dims));
    ti.u64(uint64_t(p.cols));  // ggml order: ne[0] = row length
    if (p.n_dims == 2) ti.u64(uint64_t(p.rows));
    ti.u32(p.type);
    ti.u64(p.offset);
  }
  head += ti.bytes();
  head.resize(align_up(head.size()), '\0');

  const fs::path tmp = out.string() + ".rvec-tmp-" + std::to_string(::getpid());
  struct Cleanup {
    fs::path p;
    bool keep = false;
    ~Cleanup() {
      std::error_code ec;
      if (!keep) fs::remove(p, ec);
    }
  } cleanup{tmp};
  std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
  if (!f) fail("{}: cannot write", tmp.string());
  f.write(head.data(), std::streamsize(head.size()));
  Progress prog(label, data_size, "B", quiet);
  std::vector<float> row;
  std::vector<uint8_t> enc;
  uint64_t pos = 0;
  for (const auto& p : plan) {
    if (pos < p.offset) {
      std::string pad(p.offset - pos, '\0');
      f.write(pad.data(), std::streamsize(pad.size()));
      pos = p.offset;
    }
    row.resize(size_t(p.cols));
    const uint64_t rb = row_bytes(p.type, p.cols);
    enc.resize(rb);
    for (int64_t r = 0; r < p.rows; ++r) {
      row_of(p, r, row.data());
      encode_row(p.type, row.data(), p.cols, enc.data());
      f.write(reinterpret_cast<const char*>(enc.data()), std::streamsize(rb));
    }
    pos += p.nbytes;
    prog.add(p.nbytes);
  }
  if (pos < data_size) {
    std::string pad(data_size - pos, '\0');
    f.write(pad.data(), std::streamsize(pad.size()));
  }
  f.close();
  if (!f) fail("{}: write failed", tmp.string());
  prog.finish();
  fs::rename(tmp, out);
  cleanup.keep = true;
}

}  // namespace

FileType parse_file_type(const std::string& s) {
  if (s == "f32") return FileType::F32;
  if (s == "f16") return FileType::F16;
  if (s == "bf16") return FileType::BF16;
  if (s == "q8_0") return FileType::Q8_0;
  fail("--type {}: expected f32, f16, bf16 or q8_0", s);
}

void quantize_q8_0(const float* x, int64_t n, uint8_t* out) {
  if (n % kQ8Block != 0) fail("q8_0: row length {} is not a multiple of 32", n);
  for (int64_t b = 0; b < n / kQ8Block; ++b, x += kQ8Block, out += 34) {
    float amax = 0;
    for (int j = 0; j < kQ8Block; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    const uint16_t dh = f32_to_f16(d);
    std::memcpy(out, &dh, 2);
    for (int j = 0; j < kQ8Block; ++j) out[2 + j] = uint8_t(int8_t(std::roundf(x[j] * id)));
  }
}

void dequantize_q8_0(const uint8_t* in, int64_t n, float* y) {
  for (int64_t b = 0; b < n / kQ8Block; ++b, in += 34) {
    uint16_t dh;
    std::memcpy(&dh, in, 2);
    const float d = f16_to_f32(dh);
    for (int j = 0; j < kQ8Block; ++j) *y++ = d * float(int8_t(in[2 + j]));
  }
}

void export_model(const fs::path& model_name, const fs::path& out, const ExportOptions& o) {
  auto dir = io::ModelDir::open(model_name);
  const fs::path mdir = dir->path();
  const auto cfg = model::ModelConfig::from_json(dir->config(), (mdir / "config.json").string());
  const std::string arch = gguf_arch(cfg);
  if (cfg.rope_scaling.type == "llama3" && arch != "llama")
    fail("{}: llama3 rope_scaling is exported for llama only", mdir.string());
  if (!o.force && fs::exists(out)) fail("output {} already exists (use --force to replace it)", out.string());
  const bool llama_layout = arch == "llama";

  // ---- tensors
  std::vector<Planned> plan;
  uint64_t off = 0;
  if (cfg.rope_scaling.type == "llama3") {
    // LlamaModel.generate_extra_tensors: rope_freqs.weight holds, per frequency, the factor
    // llama.cpp divides the unscaled frequency by (1, `factor`, or the smooth blend).
    model::ModelConfig plain = cfg;
    plain.rope_scaling = {};
    const auto base = plain.rope_inv_freq(), scaled = cfg.rope_inv_freq();
    Planned p{nullptr, "rope_freqs.weight", kF32, 1, int64_t(base.size()), 0, 0, 0, {}, 1, {}};
    for (size_t i = 0; i < base.size(); ++i) p.values.push_back(float(base[i] / scaled[i]));
    p.nbytes = uint64_t(p.cols) * 4;
    off = align_up(p.nbytes);
    plan.push_back(std::move(p));
  }
  for (const auto* t : dir->tensors()) {
    std::string g = gguf_name(t->name, cfg.arch == model::Arch::Olmo2);
    if (g.empty()) continue;
    if (t->name == "lm_head.weight" && cfg.tie_word_embeddings) continue;
    if (!is_arith_dtype(t->dtype)) fail("{}: tensor '{}' has dtype {}", mdir.string(), t->name, dtype_name(t->dtype));
    if (t->shape.empty() || t->shape.size() > 2) fail("{}: tensor '{}' is not 1-D or 2-D", mdir.string(), t->name);
    Planned p{t, g, 0, t->shape.size() == 2 ? t->shape[0] : 1, t->shape.back(), 0, 0, 0, {}, 2, {}};
    const bool one_d = t->shape.size() == 1 || g.find("_norm.weight") != std::string::npos;
    p.type = ggml_type_for(o.type, *t, one_d);
    p.n_dims = int(t->shape.size());
    if (llama_layout && g.find(".attn_q.") != std::string::npos) p.permute_heads = cfg.num_heads;
    if (llama_layout && g.find(".attn_k.") != std::string::npos) p.permute_heads = cfg.num_kv_heads;
    p.nbytes = row_bytes(p.type, p.cols) * uint64_t(p.rows);
    p.offset = off;
    off = align_up(off + p.nbytes);
    plan.push_back(std::move(p));
  }

  // ---- metadata (convert_hf_to_gguf's key set for these architectures)
  Header h;
  h.kv_str("general.architecture", arch);
  // A hub snapshot's folder is its commit: name the file after the repository instead.
  std::string name = fs::exists(model_name) ? mdir.filename().string() : model_name.filename().string();
  name = name.substr(0, name.find('@'));
  h.kv_str("general.name", name);
  h.kv_u32(arch + ".block_count", uint32_t(cfg.num_layers));
  h.kv_u32(arch + ".context_length", uint32_t(cfg.max_position_embeddings));
  h.kv_u32(arch + ".embedding_length", uint32_t(cfg.hidden_size));
  h.kv_u32(arch + ".feed_forward_length", uint32_t(cfg.intermediate_size));
  h.kv_u32(arch + ".attention.head_count", uint32_t(cfg.num_heads));
  h.kv_u32(arch + ".attention.head_count_kv", uint32_t(cfg.num_kv_heads));
  h.kv_f32(arch + ".rope.freq_base", float(cfg.rope_theta));
  h.kv_f32(arch + ".attention.layer_norm_rms_epsilon", float(cfg.rms_norm_eps));
  if (dir->config().contains("head_dim") && dir->config()["head_dim"].is_number_integer()) {
    h.kv_u32(arch + ".attention.key_length", uint32_t(cfg.head_dim));
    h.kv_u32(arch + ".attention.value_length", uint32_t(cfg.head_dim));
  }
  if (llama_layout) {
    h.kv_u32(arch + ".vocab_size", uint32_t(cfg.vocab_size));
    h.kv_u32(arch + ".rope.dimension_count", uint32_t(cfg.head_dim));
  }
  const uint32_t file_type = o.type == FileType::F32 ? 0 : o.type == FileType::F16 ? 1 : o.type == FileType::Q8_0 ? 7 : 32;
  h.kv_u32("general.file_type", file_type);
  h.kv_u32("general.quantization_version", 2);

  // ---- tokenizer (a field of an unexpected type is an error naming the directory, not nlohmann's)
  try {
    const Vocab v = read_vocab(mdir, cfg.vocab_size);
    const json tj = *read_json_opt(mdir / "tokenizer.json");
    const json tc = read_json_opt(mdir / "tokenizer_config.json").value_or(json::object());
    h.kv_str("tokenizer.ggml.model", "gpt2");
    h.kv_str("tokenizer.ggml.pre", v.pre);
    h.kv_strs("tokenizer.ggml.tokens", v.tokens);
    h.kv_i32s("tokenizer.ggml.token_type", v.types);
    h.kv_strs("tokenizer.ggml.merges", v.merges);
    // Special ids as gguf-py's SpecialVocab finds them: tokenizer_config.json's *_token
    // contents, else config.json's *_token_id.
    for (const auto& [typ, key] : std::vector<std::pair<std::string, std::string>>{
             {"bos", "bos_token_id"}, {"eos", "eos_token_id"}, {"unk", "unknown_token_id"},
             {"sep", "seperator_token_id"}, {"pad", "padding_token_id"}}) {
      int32_t id = -1;
      auto it = tc.find(typ + "_token");
      if (it != tc.end()) {
        std::string content = it->is_string() ? it->get<std::string>()
                              : it->is_object() ? it->value("content", "") : "";
        if (!content.empty()) id = added_id(tj, content);
      }
      const json& cj = dir->config();
      if (id < 0 && cj.contains(typ + "_token_id") && cj[typ + "_token_id"].is_number_integer())
        id = cj[typ + "_token_id"].get<int32_t>();
      if (id >= 0 && id < cfg.vocab_size) h.kv_u32("tokenizer.ggml." + key, uint32_t(id));
    }
    for (const char* k : {"add_bos_token", "add_eos_token"})
      if (tc.contains(k) && tc[k].is_boolean()) h.kv_bool(std::string("tokenizer.ggml.") + k, tc[k].get<bool>());
    std::string tpl;
    if (fs::exists(mdir / "chat_template.jinja")) tpl = read_file(mdir / "chat_template.jinja");
    else if (tc.contains("chat_template") && tc["chat_template"].is_string()) tpl = tc["chat_template"].get<std::string>();
    if (!tpl.empty()) h.kv_str("tokenizer.chat_template", tpl);
  } catch (const json::exception& e) {
    fail("{}: tokenizer.json / tokenizer_config.json field of an unexpected type: {}", mdir.string(), e.what());
  }

  // ---- data, streamed row by row
  write_gguf(out, h, plan, off, "export gguf", o.quiet, [](const Planned& p, int64_t r, float* row) {
    if (!p.src) {
      std::copy(p.values.begin(), p.values.end(), row);
      return;
    }
    const size_t es = dtype_size(p.src->dtype);
    // Llama q/k: rows of weights and elements of biases in GGML's rotary layout.
    const bool vec = p.src->shape.size() == 1;
    const int64_t n_perm = vec ? p.cols : p.rows, hd = p.permute_heads ? n_perm / p.permute_heads : 0;
    auto perm = [&](int64_t x) { return p.permute_heads ? rotary_perm(x, hd) : x; };
    to_f32(p.src->dtype, p.src->data + size_t(vec ? r : perm(r)) * size_t(p.cols) * es, row, size_t(p.cols));
    if (vec && p.permute_heads) {
      std::vector<float> tmpv(row, row + p.cols);
      for (int64_t c = 0; c < p.cols; ++c) row[c] = tmpv[size_t(perm(c))];
    }
  });
}

// ------------------------------------------------------------------ LoRA adapters

LoraExportReport export_lora(const fs::path& adapter_dir, const fs::path& out, const LoraExportOptions& o) {
  if (o.type == FileType::Q8_0) fail("gguf-lora: --type q8_0 is not supported for LoRA tensors (use f32, f16 or bf16)");
  if (!o.force && fs::exists(out)) fail("output {} already exists (use --force to replace it)", out.string());
  const auto ad = arith::lora::Adapter::open(adapter_dir);
  const auto& ac = ad->config();
  // The base model's config: architecture and head counts (llama's q/k row order).
  std::string base = o.base ? o.base->string() : ac.base_model_name_or_path;
  if (base.empty())
    fail("{}: adapter_config.json has no base_model_name_or_path; give --base MODEL (the base model's directory, "
         "its config.json is enough)",
         adapter_dir.string());
  const fs::path bdir = io::resolve_model_path(base);
  const fs::path cfg_path = bdir / "config.json";
  if (!fs::exists(cfg_path)) fail("base model {}: no config.json ({})", base, cfg_path.string());
  const auto cfg = model::ModelConfig::from_json(json::parse(read_file(cfg_path)), cfg_path.string());
  const std::string arch = gguf_arch(cfg);
  const bool llama_layout = arch == "llama";

  LoraExportReport rep;
  rep.arch = arch;
  rep.alpha = float(ac.lora_alpha);
  std::vector<Planned> plan;
  uint64_t off = 0;
  const uint32_t type = o.type == FileType::F32 ? kF32 : o.type == FileType::F16 ? kF16 : kBF16;
  auto add = [&](Planned p) {
    p.type = type;
    p.nbytes = row_bytes(p.type, p.cols) * uint64_t(p.rows);
    p.offset = off;
    off = align_up(off + p.nbytes);
    plan.push_back(std::move(p));
  };
  for (const auto& e : ad->entries()) {
    if (e.kind != arith::lora::Entry::Kind::LowRank) {
      rep.dropped.push_back(e.target);
      continue;
    }
    const std::string g = gguf_name(e.target, cfg.arch == model::Arch::Olmo2);
    if (e.target == "lm_head.weight" && cfg.tie_word_embeddings)
      fail("{}: the adapter changes lm_head.weight but the base model ties it to the embeddings (llama.cpp has no "
           "separate output tensor)",
           adapter_dir.string());
    if (g.empty() || e.shape.size() != 2)
      fail("{}: '{}' changes '{}', which has no llama.cpp tensor", adapter_dir.string(), e.key, e.target);
    // llama.cpp scales by adapter.lora.alpha / rank (rank = lora_b ne[0]) for every tensor, or by 1
    // when alpha is 0: a module whose PEFT scale differs (rank_pattern / alpha_pattern, rsLoRA)
    // has the difference folded into lora_b.
    const double llama_scale = ac.lora_alpha != 0 ? ac.lora_alpha / double(e.rank) : 1.0;
    const float fold = float(e.scale / llama_scale);
    const io::TensorInfo* A = e.a;
    const io::TensorInfo* B = e.b;
    const int64_t r = e.rank;
    auto load = [](const io::TensorInfo* t, uint64_t i, size_t n, float* dst) {
      to_f32(t->dtype, t->data + i * dtype_size(t->dtype), dst, n);
    };
    Planned pa{nullptr, g + ".lora_a", 0, 0, 0, 0, 0, 0, {}, 2, {}};
    Planned pb{nullptr, g + ".lora_b", 0, 0, r, 0, 0, 0, {}, 2, {}};
    if (!e.transposed) {
      // lora_a ne [in, r]: A's rows as they are; lora_b ne [r, out]: B's rows (q/k permuted for llama).
      pa.rows = r;
      pa.cols = A->shape[1];
      pa.make_row = [A, load](int64_t row, float* dst) { load(A, uint64_t(row * A->shape[1]), size_t(A->shape[1]), dst); };
      pb.rows = B->shape[0];
      int heads = 0;
      if (llama_layout && g.find(".attn_q.") != std::string::npos) heads = cfg.num_heads;
      if (llama_layout && g.find(".attn_k.") != std::string::npos) heads = cfg.num_kv_heads;
      const int64_t hd = heads ? B->shape[0] / heads : 0;
      pb.make_row = [B, r, hd, fold, load](int64_t row, float* dst) {
        const int64_t src = hd ? rotary_perm(row, hd) : row;
        load(B, uint64_t(src * r), size_t(r), dst);
        for (int64_t k = 0; k < r; ++k) dst[k] *= fold;
      };
    } else {
      // token_embd (convert_lora_to_gguf: lora_a = lora_embedding_Aᵀ, ne [r, vocab]; lora_b = lora_embedding_B, ne [r, dim]).
      pa.rows = A->shape[1];
      pa.cols = r;
      pa.make_row = [A, r](int64_t row, float* dst) {
        const int64_t vocab = A->shape[1];
        for (int64_t k = 0; k < r; ++k)
          to_f32(A->dtype, A->data + uint64_t(k * vocab + row) * dtype_size(A->dtype), dst + k, 1);
      };
      pb.rows = B->shape[0];
      pb.make_row = [B, r, fold, load](int64_t row, float* dst) {
        load(B, uint64_t(row * r), size_t(r), dst);
        for (int64_t k = 0; k < r; ++k) dst[k] *= fold;
      };
    }
    add(std::move(pa));
    add(std::move(pb));
    ++rep.pairs;
  }
  if (plan.empty()) fail("{}: no lora_A / lora_B pairs to export", adapter_dir.string());

  // ---- metadata (convert_lora_to_gguf.py's keys)
  Header h;
  h.kv_str("general.architecture", arch);
  h.kv_str("general.type", "adapter");
  h.kv_str("adapter.type", "lora");
  h.kv_f32("adapter.lora.alpha", rep.alpha);
  h.kv_str("general.name", fs::absolute(adapter_dir).lexically_normal().filename().string());
  h.kv_u32("general.file_type", o.type == FileType::F32 ? 0 : o.type == FileType::F16 ? 1 : 32);
  h.kv_u32("general.quantization_version", 2);
  write_gguf(out, h, plan, off, "export gguf-lora", o.quiet,
             [](const Planned& p, int64_t r, float* row) { p.make_row(r, row); });
  return rep;
}

// ------------------------------------------------------------------ reading
namespace {
struct Reader {
  const std::string& b;
  size_t p = 0;
  std::string where;
  void need(size_t n) {
    if (n > b.size() || p > b.size() - n) fail("{}: truncated at byte {}", where, p);
  }
  template <typename T>
  T get() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, b.data() + p, sizeof(T));
    p += sizeof(T);
    return v;
  }
  std::string str() {
    uint64_t n = get<uint64_t>();
    need(n);
    std::string s = b.substr(p, n);
    p += n;
    return s;
  }
  ordered_json value(uint32_t t) {
    switch (t) {
      case kU8: return get<uint8_t>();
      case kI8: return get<int8_t>();
      case kU16: return get<uint16_t>();
      case kI16: return get<int16_t>();
      case kU32: return get<uint32_t>();
      case kI32: return get<int32_t>();
      case kF32v: return get<float>();
      case kBool: return get<uint8_t>() != 0;
      case kStr: return str();
      case kU64: return get<uint64_t>();
      case kI64: return get<int64_t>();
      case kF64: return get<double>();
      case kArr: {
        uint32_t et = get<uint32_t>();
        uint64_t n = get<uint64_t>();
        if (n > b.size()) fail("{}: array of {} elements at byte {}", where, n, p);
        ordered_json a = ordered_json::array();
        for (uint64_t i = 0; i < n; ++i) a.push_back(value(et));
        return a;
      }
    }
    fail("{}: unknown metadata value type {} at byte {}", where, t, p);
  }
};
}  // namespace

File read(const fs::path& path) {
  File f;
  f.bytes = read_file(path);
  Reader r{f.bytes, 0, path.string()};
  if (f.bytes.size() < 24 || f.bytes.compare(0, 4, "GGUF") != 0) fail("{}: not a GGUF file", path.string());
  r.p = 4;
  f.version = r.get<uint32_t>();
  if (f.version != 3) fail("{}: GGUF version {} (rvec reads v3)", path.string(), f.version);
  const uint64_t nt = r.get<uint64_t>(), nkv = r.get<uint64_t>();
  for (uint64_t i = 0; i < nkv; ++i) {
    std::string k = r.str();
    uint32_t t = r.get<uint32_t>();
    if (f.kv.contains(k)) fail("{}: duplicate metadata key '{}'", path.string(), k);
    f.kv[k] = r.value(t);
    f.kv_type[k] = t;
  }
  uint64_t align = kAlign;
  if (f.kv.contains("general.alignment")) align = f.kv["general.alignment"].get<uint64_t>();
  for (uint64_t i = 0; i < nt; ++i) {
    TensorDesc t;
    t.name = r.str();
    uint32_t nd = r.get<uint32_t>();
    if (nd == 0 || nd > 4) fail("{}: tensor '{}' has {} dimensions", path.string(), t.name, nd);
    uint64_t numel = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      t.ne.push_back(int64_t(r.get<uint64_t>()));
      numel *= uint64_t(t.ne.back());
    }
    t.type = r.get<uint32_t>();
    t.offset = r.get<uint64_t>();
    t.nbytes = row_bytes(t.type, t.ne[0]) * (numel / uint64_t(t.ne[0]));
    if (t.offset % align != 0) fail("{}: tensor '{}' is not aligned", path.string(), t.name);
    f.tensors.push_back(std::move(t));
  }
  f.data_offset = (r.p + align - 1) / align * align;
  for (const auto& t : f.tensors)
    if (f.data_offset + t.offset + t.nbytes > f.bytes.size())
      fail("{}: tensor '{}' extends past the end of the file", path.string(), t.name);
  return f;
}

}  // namespace rvec::gguf
