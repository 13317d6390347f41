#include "model/config.h"

#include <cmath>
#include <numbers>

#include "core/error.h"

namespace rvec::model {
namespace {

template <typename T>
T get_num(const nlohmann::json& j, const char* key, const std::string& origin) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) fail("{}: config.json lacks required key '{}'", origin, key);
  if (!it->is_number()) fail("{}: config key '{}' must be a number, got {}", origin, key, it->dump());
  return it->get<T>();
}

template <typename T>
T get_num_or(const nlohmann::json& j, const char* key, T dflt, const std::string& origin) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  if (!it->is_number()) fail("{}: config key '{}' must be a number, got {}", origin, key, it->dump());
  return it->get<T>();
}

bool get_bool_or(const nlohmann::json& j, const char* key, bool dflt, const std::string& origin) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  if (!it->is_boolean()) fail("{}: config key '{}' must be a boolean, got {}", origin, key, it->dump());
  return it->get<bool>();
}

}  // namespace

const char* supported_architectures() {
  return "Qwen2ForCausalLM, Qwen3ForCausalLM, LlamaForCausalLM, MistralForCausalLM, Olmo2ForCausalLM";
}

std::vector<int32_t> parse_token_id_list(const nlohmann::json& v) {
  std::vector<int32_t> out;
  if (v.is_number_integer()) {
    out.push_back(v.get<int32_t>());
  } else if (v.is_array()) {
    for (const auto& e : v)
      if (e.is_number_integer()) out.push_back(e.get<int32_t>());
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

  c.hidden_size = get_num<int>(j, "hidden_size", origin);
  c.intermediate_size = get_num<int>(j, "intermediate_size", origin);
  c.num_layers = get_num<int>(j, "num_hidden_layers", origin);
  c.num_heads = get_num<int>(j, "num_attention_heads", origin);
  c.num_kv_heads = get_num_or<int>(j, "num_key_value_heads", c.num_heads, origin);
  c.vocab_size = get_num<int>(j, "vocab_size", origin);
  if (c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0 ||
      c.num_kv_heads <= 0 || c.vocab_size <= 0)
    fail("{}: model sizes must be positive", origin);
  if (c.num_heads % c.num_kv_heads != 0)
    fail("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", origin, c.num_heads,
         c.num_kv_heads);
  // Qwen3Config's head_dim defaults to 128, independent of hidden_size / heads.
  const bool own_head_dim = c.arch == Arch::Qwen3 || (j.contains("head_dim") && !j["head_dim"].is_null());
  if (c.hidden_size % c.num_heads != 0 && !own_head_dim)
    fail("{}: hidden_size {} is not a multiple of num_attention_heads {}", origin, c.hidden_size, c.num_heads);
  c.head_dim = get_num_or<int>(j, "head_dim", c.arch == Arch::Qwen3 ? 128 : c.hidden_size / c.num_heads, origin);
  if (c.head_dim <= 0 || c.head_dim % 2 != 0) fail("{}: head_dim {} must be positive and even", origin, c.head_dim);
  c.rms_norm_eps = get_num_or<double>(j, "rms_norm_eps", c.arch == Arch::Olmo2 ? 1e-5 : 1e-6, origin);
  c.rope_theta = get_num_or<double>(j, "rope_theta", 10000.0, origin);
  // Newer transformers write rope_parameters {rope_type, rope_theta} instead.
  auto rp = j.find("rope_parameters");
  if (rp != j.end() && rp->is_object() && rp->contains("rope_theta"))
    c.rope_theta = get_num<double>(*rp, "rope_theta", origin);
  c.max_position_embeddings = get_num_or<int64_t>(j, "max_position_embeddings", 4096, origin);
  c.tie_word_embeddings = get_bool_or(j, "tie_word_embeddings", false, origin);  // Qwen2/Llama/MistralConfig default
  if (j.contains("bos_token_id") && j["bos_token_id"].is_number_integer())
    c.bos_token_id = j["bos_token_id"].get<int32_t>();
  if (j.contains("eos_token_id")) c.eos_token_ids = parse_token_id_list(j["eos_token_id"]);

  std::string act = j.value("hidden_act", std::string("silu"));
  if (act != "silu") fail("{}: unsupported hidden_act '{}' (only silu/SwiGLU)", origin, act);
  if (j.contains("partial_rotary_factor") && j["partial_rotary_factor"].is_number() &&
      j["partial_rotary_factor"].get<double>() != 1.0)
    fail("{}: unsupported partial_rotary_factor {}", origin, j["partial_rotary_factor"].dump());

  if (c.arch == Arch::Qwen2) {
    c.qkv_bias = true;
    if (get_bool_or(j, "use_sliding_window", false, origin) && j.contains("sliding_window") &&
        j["sliding_window"].is_number_integer())
      c.sliding_window = j["sliding_window"].get<int64_t>();
  } else if (c.arch == Arch::Qwen3 || c.arch == Arch::Olmo2) {
    bool ab = get_bool_or(j, "attention_bias", false, origin);
    c.qkv_bias = ab;
    c.o_bias = ab;
    c.qk_norm = c.arch == Arch::Qwen3 ? QkNorm::PerHead : QkNorm::Full;
    c.post_block_norms = c.arch == Arch::Olmo2;
    if (get_bool_or(j, "use_sliding_window", false, origin) && j.contains("sliding_window") &&
        j["sliding_window"].is_number_integer())
      c.sliding_window = j["sliding_window"].get<int64_t>();
  } else {
    bool ab = get_bool_or(j, "attention_bias", false, origin);
    c.qkv_bias = ab;
    c.o_bias = ab;
    c.mlp_bias = get_bool_or(j, "mlp_bias", false, origin);
    if (j.contains("sliding_window") && j["sliding_window"].is_number_integer())
      c.sliding_window = j["sliding_window"].get<int64_t>();
  }

  auto rs = j.find("rope_scaling");
  if ((rs == j.end() || rs->is_null()) && rp != j.end() && rp->is_object()) rs = rp;
  if (rs != j.end() && !rs->is_null()) {
    if (!rs->is_object()) fail("{}: rope_scaling must be an object or null", origin);
    std::string type = rs->value("rope_type", rs->value("type", std::string("default")));
    if (type == "default") {
      c.rope_scaling.type = "default";
    } else if (type == "llama3") {
      auto& r = c.rope_scaling;
      r.type = "llama3";
      r.factor = get_num<double>(*rs, "factor", origin);
      r.low_freq_factor = get_num<double>(*rs, "low_freq_factor", origin);
      r.high_freq_factor = get_num<double>(*rs, "high_freq_factor", origin);
      r.original_max_position_embeddings = get_num<double>(*rs, "original_max_position_embeddings", origin);
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
