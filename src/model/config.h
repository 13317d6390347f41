// Model hyper-parameters from a Hugging Face config.json, for the decoder-only
// architectures rvec runs: Qwen2ForCausalLM, LlamaForCausalLM, MistralForCausalLM,
// Qwen3ForCausalLM (per-head q/k RMSNorm) and Olmo2ForCausalLM (norms after the
// attention/MLP blocks, q/k RMSNorm over the whole projection).
// Anything the engine does not implement (other architectures, activations,
// rope_scaling types) is rejected with an rvec::Error naming the file and key.
// Sliding-window attention (Mistral/Qwen2 `sliding_window`) is ignored: rvec always
// attends to the full context, which equals the windowed result while the context
// is shorter than the window (true for every model/task rvec evaluates).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace rvec::model {

enum class Arch { Qwen2, Llama, Mistral, Qwen3, Olmo2 };

// Where the q/k RMSNorm sits: none, per head over head_dim (Qwen3: q_norm/k_norm weights
// [head_dim]), or over the whole q/k projection (OLMo2: [heads * head_dim]).
enum class QkNorm { None, PerHead, Full };

// "Qwen2ForCausalLM, LlamaForCausalLM, ..." for error messages.
const char* supported_architectures();

struct RopeScaling {
  std::string type = "default";  // "default" | "llama3"
  double factor = 1, low_freq_factor = 1, high_freq_factor = 4;
  double original_max_position_embeddings = 8192;
};

struct ModelConfig {
  Arch arch = Arch::Qwen2;
  std::string architecture;  // "Qwen2ForCausalLM", ...
  int hidden_size = 0, intermediate_size = 0, num_layers = 0;
  int num_heads = 0, num_kv_heads = 0, head_dim = 0;
  double rms_norm_eps = 1e-6, rope_theta = 10000;
  RopeScaling rope_scaling;
  int vocab_size = 0;
  bool tie_word_embeddings = false;
  int64_t max_position_embeddings = 4096;
  std::optional<int32_t> bos_token_id;
  std::vector<int32_t> eos_token_ids;  // config.json's eos_token_id (int or list)
  bool qkv_bias = false;  // Qwen2: always; Llama/Mistral: attention_bias
  bool o_bias = false;    // Llama attention_bias also covers o_proj
  bool mlp_bias = false;  // Llama mlp_bias
  std::optional<int64_t> sliding_window;  // parsed, ignored (see above)
  QkNorm qk_norm = QkNorm::None;
  // OLMo2: no input/pre-MLP norms; post_attention_layernorm and post_feedforward_layernorm
  // normalise each block's output before it is added to the residual stream.
  bool post_block_norms = false;

  // `origin` names the file in error messages.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& origin);
  int q_dim() const { return num_heads * head_dim; }
  int kv_dim() const { return num_kv_heads * head_dim; }
  // Rotary inverse frequencies (head_dim/2 values), with llama3 scaling applied, in double.
  std::vector<double> rope_inv_freq() const;
};

// eos ids as config.json / generation_config.json give them (null, int or list), each
// checked to lie in [0, vocab_size) (or int32 when vocab_size is 0); `what` prefixes errors.
std::vector<int32_t> parse_token_id_list(const nlohmann::json& v, const std::string& what, int64_t vocab_size = 0);

}  // namespace rvec::model
