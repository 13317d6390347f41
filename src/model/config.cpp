#include "model/config.h"

#include <cmath>
#include <numbers>

#include "core/checked_int.h"
#include "core/error.h"

namespace rvec::model {
namespace {

// Every numeric key is checked against its meaning here: a NaN-producing value
// (rope_theta <= 0, rms_norm_eps < 0, a fractional layer count, an eos id outside the
// vocabulary) is an error naming the key, not a model that silently computes garbage.
std::string key_name(const char* key, const char* parent) {
  return parent ? fmt::format("{}.{}", parent, key) : std::string(key);
}

int64_t get_int(const nlohmann::json& j, const char* key, int64_t lo, int64_t hi, const std::string& origin,
                std::optional<int64_t> dflt = std::nullopt, const char* parent = nullptr) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (dflt) return *dflt;
    fail("{}: config.json lacks required key '{}'", origin, key_name(key, parent));
  }
  return json_int_in_range(*it, lo, hi, fmt::format("{}: config key '{}'", origin, key_name(key, parent)));
}

// A finite number in [lo, hi] (open at lo when lo_open).
double get_real(const nlohmann::json& j, const char* key, double lo, bool lo_open, double hi,
                const std::string& origin, std::optional<double> dflt = std::nullopt, const char* parent = nullptr) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (dflt) return *dflt;
    fail("{}: config.json lacks required key '{}'", origin, key_name(key, parent));
  }
  if (!it->is_number())
    fail("{}: config key '{}' must be a number, got {}", origin, key_name(key, parent), it->dump());
  double v = it->get<double>();
  if (!std::isfinite(v) || (lo_open ? v <= lo : v < lo) || v > hi)
    fail("{}: config key '{}' must be a finite number {} {} and <= {}, got {}", origin, key_name(key, parent),
         lo_open ? ">" : ">=", lo, hi, it->dump());
  return v;
}

// Limits far above any released model, low enough that products of them stay in range.
constexpr int64_t kMaxDim = int64_t(1) << 20;    // hidden/intermediate size, head_dim
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxHeads = 4096;
constexpr int64_t kMaxVocab = int64_t(1) << 24;  // 16.7M ids (largest released: ~260k)

bool get_bool_or(const nlohmann::json& j, const char* key, bool dflt, const std::string& origin) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  if (!it->is_boolean()) fail("{}: config key '{}' must be a boolean, got {}", origin, key, it->dump());
  return it->get<bool>();
}

// A string key (absent or null: dflt).
std::string get_string_or(const nlohmann::json& j, const char* key, const std::string& dflt, const std::string& origin,
                          const char* parent = nullptr) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  if (!it->is_string())
    fail("{}: config key '{}' must be a string, got {}", origin, key_name(key, parent), it->dump());
  return it->get<std::string>();
}

}  // namespace

const char* supported_architectures() {
  return "Qwen2ForCausalLM, Qwen3ForCausalLM, LlamaForCausalLM, MistralForCausalLM, Olmo2ForCausalLM";
}

std::vector<int32_t> parse_token_id_list(const nlohmann::json& v, const std::string& what, int64_t vocab_size) {
  const int64_t hi = (vocab_size > 0 ? vocab_size : int64_t(INT32_MAX) + 1) - 1;
  std::vector<int32_t> out;
  if (v.is_null()) return out;
  if (v.is_array()) {
    for (size_t i = 0; i < v.size(); ++i)
      out.push_back(int32_t(json_int_in_range(v[i], 0, hi, fmt::format("{}[{}]", what, i))));
  } else {
    out.push_back(int32_t(json_int_in_range(v, 0, hi, what)));
  }
  return out;
}

ModelConfig ModelConfig::from_json(const nlohmann::json& j, const std::string& origin) {
  if (!j.is_object()) fail("{}: config.json is not a JSON object", origin);
  ModelConfig c;
  auto archs = j.find("architectures");
  if (archs == j.end() || !archs->is_array() || archs->empty() || !(*archs)[0].is_string())
    fail("{}: config.json has no 'architectures' list", origin);
  c.architecture = (*archs)[0].get<std::string>();
  if (c.architecture == "Qwen2ForCausalLM") c.arch = Arch::Qwen2;
  else if (c.architecture == "LlamaForCausalLM") c.arch = Arch::Llama;
  else if (c.architecture == "MistralForCausalLM") c.arch = Arch::Mistral;
  else if (c.architecture == "Qwen3ForCausalLM") c.arch = Arch::Qwen3;
  else if (c.architecture == "Olmo2ForCausalLM") c.arch = Arch::Olmo2;
  else
    fail("{}: unsupported architecture '{}' (rvec runs {})", origin, c.architecture, supported_architectures());
  // Mixture-of-experts variants share a family name but not the layer layout.
  if (j.contains("num_experts") || j.contains("num_local_experts"))
    fail("{}: mixture-of-experts models are not supported (rvec runs {})", origin, supported_architectures());

  c.hidden_size = int(get_int(j, "hidden_size", 1, kMaxDim, origin));
  c.intermediate_size = int(get_int(j, "intermediate_size", 1, kMaxDim, origin));
  c.num_layers = int(get_int(j, "num_hidden_layers", 1, kMaxLayers, origin));
  c.num_heads = int(get_int(j, "num_attention_heads", 1, kMaxHeads, origin));
  c.num_kv_heads = int(get_int(j, "num_key_value_heads", 1, kMaxHeads, origin, c.num_heads));
  c.vocab_size = int(get_int(j, "vocab_size", 1, kMaxVocab, origin));
  if (c.num_heads % c.num_kv_heads != 0)
    fail("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", origin, c.num_heads,
         c.num_kv_heads);
  // Qwen3Config's head_dim defaults to 128, independent of hidden_size / heads.
  const bool own_head_dim = c.arch == Arch::Qwen3 || (j.contains("head_dim") && !j["head_dim"].is_null());
  if (c.hidden_size % c.num_heads != 0 && !own_head_dim)
    fail("{}: hidden_size {} is not a multiple of num_attention_heads {}", origin, c.hidden_size, c.num_heads);
  c.head_dim = int(get_int(j, "head_dim", 1, kMaxDim, origin, c.arch == Arch::Qwen3 ? 128 : c.hidden_size / c.num_heads));
  if (c.head_dim % 2 != 0) fail("{}: config key 'head_dim' must be even (rotary pairs), got {}", origin, c.head_dim);
  if (int64_t(c.num_heads) * c.head_dim > kMaxDim)
    fail("{}: num_attention_heads x head_dim = {} exceeds {}", origin, int64_t(c.num_heads) * c.head_dim, kMaxDim);
  c.rms_norm_eps = get_real(j, "rms_norm_eps", 0, false, 1, origin, c.arch == Arch::Olmo2 ? 1e-5 : 1e-6);
  c.rope_theta = get_real(j, "rope_theta", 0, true, 1e300, origin, 10000.0);
  // Newer transformers write rope_parameters {rope_type, rope_theta} instead.
  auto rp = j.find("rope_parameters");
  if (rp != j.end() && rp->is_object() && rp->contains("rope_theta"))
    c.rope_theta = get_real(*rp, "rope_theta", 0, true, 1e300, origin, std::nullopt, "rope_parameters");
  c.max_position_embeddings = get_int(j, "max_position_embeddings", 1, int64_t(1) << 40, origin, 4096);
  c.tie_word_embeddings = get_bool_or(j, "tie_word_embeddings", false, origin);  // Qwen2/Llama/MistralConfig default
  if (auto b = j.find("bos_token_id"); b != j.end() && !b->is_null())
    c.bos_token_id = int32_t(json_int_in_range(*b, 0, c.vocab_size - 1, fmt::format("{}: config key 'bos_token_id'", origin)));
  if (auto e = j.find("eos_token_id"); e != j.end())
    c.eos_token_ids = parse_token_id_list(*e, fmt::format("{}: config key 'eos_token_id'", origin), c.vocab_size);

  std::string act = get_string_or(j, "hidden_act", "silu", origin);
  if (act != "silu") fail("{}: unsupported hidden_act '{}' (only silu/SwiGLU)", origin, act);
  if (j.contains("partial_rotary_factor") && !j["partial_rotary_factor"].is_null() &&
      get_real(j, "partial_rotary_factor", 0, true, 1, origin) != 1.0)
    fail("{}: unsupported partial_rotary_factor {}", origin, j["partial_rotary_factor"].dump());

  if (c.arch == Arch::Qwen2) {
    c.qkv_bias = true;
    if (get_bool_or(j, "use_sliding_window", false, origin) && j.contains("sliding_window") &&
        !j["sliding_window"].is_null())
      c.sliding_window = get_int(j, "sliding_window", 1, int64_t(1) << 40, origin);
  } else if (c.arch == Arch::Qwen3 || c.arch == Arch::Olmo2) {
    bool ab = get_bool_or(j, "attention_bias", false, origin);
    c.qkv_bias = ab;
    c.o_bias = ab;
    c.qk_norm = c.arch == Arch::Qwen3 ? QkNorm::PerHead : QkNorm::Full;
    c.post_block_norms = c.arch == Arch::Olmo2;
    if (get_bool_or(j, "use_sliding_window", false, origin) && j.contains("sliding_window") &&
        !j["sliding_window"].is_null())
      c.sliding_window = get_int(j, "sliding_window", 1, int64_t(1) << 40, origin);
  } else {
    bool ab = get_bool_or(j, "attention_bias", false, origin);
    c.qkv_bias = ab;
    c.o_bias = ab;
    c.mlp_bias = get_bool_or(j, "mlp_bias", false, origin);
    if (j.contains("sliding_window") && !j["sliding_window"].is_null())
      c.sliding_window = get_int(j, "sliding_window", 1, int64_t(1) << 40, origin);
  }

  auto rs = j.find("rope_scaling");
  if ((rs == j.end() || rs->is_null()) && rp != j.end() && rp->is_object()) rs = rp;
  if (rs != j.end() && !rs->is_null()) {
    if (!rs->is_object()) fail("{}: rope_scaling must be an object or null", origin);
    std::string type = get_string_or(*rs, "rope_type", get_string_or(*rs, "type", "default", origin, "rope_scaling"),
                                     origin, "rope_scaling");
    if (type == "default") {
      c.rope_scaling.type = "default";
    } else if (type == "llama3") {
      auto& r = c.rope_scaling;
      r.type = "llama3";
      r.factor = get_real(*rs, "factor", 0, true, 1e6, origin, std::nullopt, "rope_scaling");
      r.low_freq_factor = get_real(*rs, "low_freq_factor", 0, true, 1e6, origin, std::nullopt, "rope_scaling");
      r.high_freq_factor = get_real(*rs, "high_freq_factor", 0, true, 1e6, origin, std::nullopt, "rope_scaling");
      r.original_max_position_embeddings = double(get_int(*rs, "original_max_position_embeddings", 1,
                                                          int64_t(1) << 40, origin, std::nullopt, "rope_scaling"));
      if (r.high_freq_factor == r.low_freq_factor)
        fail("{}: rope_scaling llama3 needs high_freq_factor != low_freq_factor", origin);
    } else {
      fail("{}: unsupported rope_scaling type '{}' (supported: default, llama3)", origin, type);
    }
  }
  return c;
}

std::vector<double> ModelConfig::rope_inv_freq() const {
  int half = head_dim / 2;
  std::vector<double> inv(half);
  for (int i = 0; i < half; ++i) inv[i] = 1.0 / std::pow(rope_theta, double(2 * i) / double(head_dim));
  if (rope_scaling.type == "llama3") {
    // transformers' _compute_llama3_parameters.
    const auto& r = rope_scaling;
    double low_wavelen = r.original_max_position_embeddings / r.low_freq_factor;
    double high_wavelen = r.original_max_position_embeddings / r.high_freq_factor;
    for (auto& f : inv) {
      double wavelen = 2 * std::numbers::pi / f;
      if (wavelen > low_wavelen) {
        f = f / r.factor;
      } else if (wavelen >= high_wavelen) {
        double smooth = (r.original_max_position_embeddings / wavelen - r.low_freq_factor) /
                        (r.high_freq_factor - r.low_freq_factor);
        f = (1 - smooth) * f / r.factor + smooth * f;
      }
    }
  }
  return inv;
}

}  // namespace rvec::model
