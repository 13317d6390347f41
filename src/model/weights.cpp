#include "model/weights.h"

#include <fmt/format.h>

#include "core/error.h"

namespace rvec::model {
namespace {

const io::TensorInfo& get_checked(const io::ModelDir& dir, const std::string& name,
                                  std::vector<int64_t> shape) {
  const io::TensorInfo* t = dir.find(name);
  if (!t) fail("{}: missing tensor '{}'", dir.path().string(), name);
  if (t->shape != shape)
    fail("{}: tensor '{}' has shape {}, expected [{}]", dir.path().string(), name, t->shape_str(),
         fmt::join(shape, ", "));
  if (!is_arith_dtype(t->dtype))
    fail("{}: tensor '{}' has dtype {}, rvec runs BF16, F16 or F32 weights", dir.path().string(), name,
         dtype_name(t->dtype));
  return *t;
}

Matrix matrix(const io::ModelDir& dir, const std::string& name, int64_t rows, int64_t cols) {
  const auto& t = get_checked(dir, name, {rows, cols});
  return Matrix{t.dtype, t.data, rows, cols};
}

std::vector<float> vec(const io::ModelDir& dir, const std::string& name, int64_t n) {
  const auto& t = get_checked(dir, name, {n});
  std::vector<float> out(n);
  to_f32(t.dtype, t.data, out.data(), n);
  return out;
}

Linear linear(const io::ModelDir& dir, const std::string& prefix, int64_t out, int64_t in, bool bias) {
  Linear l;
  l.w = matrix(dir, prefix + ".weight", out, in);
  if (bias) l.bias = vec(dir, prefix + ".bias", out);
  return l;
}

}  // namespace

Weights Weights::bind(const io::ModelDir& dir, const ModelConfig& c) {
  Weights w;
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  w.embed = matrix(dir, "model.embed_tokens.weight", V, H);
  for (int l = 0; l < c.num_layers; ++l) {
    std::string p = fmt::format("model.layers.{}.", l);
    LayerWeights lw;
    if (!c.post_block_norms) lw.input_norm = vec(dir, p + "input_layernorm.weight", H);
    lw.post_attention_norm = vec(dir, p + "post_attention_layernorm.weight", H);
    if (c.post_block_norms) lw.post_ffw_norm = vec(dir, p + "post_feedforward_layernorm.weight", H);
    if (c.qk_norm != QkNorm::None) {
      const bool full = c.qk_norm == QkNorm::Full;
      lw.q_norm = vec(dir, p + "self_attn.q_norm.weight", full ? c.q_dim() : c.head_dim);
      lw.k_norm = vec(dir, p + "self_attn.k_norm.weight", full ? c.kv_dim() : c.head_dim);
    }
    lw.q = linear(dir, p + "self_attn.q_proj", c.q_dim(), H, c.qkv_bias);
    lw.k = linear(dir, p + "self_attn.k_proj", c.kv_dim(), H, c.qkv_bias);
    lw.v = linear(dir, p + "self_attn.v_proj", c.kv_dim(), H, c.qkv_bias);
    lw.o = linear(dir, p + "self_attn.o_proj", H, c.q_dim(), c.o_bias);
    lw.gate = linear(dir, p + "mlp.gate_proj", I, H, c.mlp_bias);
    lw.up = linear(dir, p + "mlp.up_proj", I, H, c.mlp_bias);
    lw.down = linear(dir, p + "mlp.down_proj", H, I, c.mlp_bias);
    w.layers.push_back(std::move(lw));
  }
  w.final_norm = vec(dir, "model.norm.weight", H);
  // HF ties lm_head to the embeddings when tie_word_embeddings is set; a checkpoint
  // without lm_head.weight can only be used tied.
  if (c.tie_word_embeddings || !dir.find("lm_head.weight"))
    w.lm_head.w = w.embed;
  else
    w.lm_head.w = matrix(dir, "lm_head.weight", V, H);
  return w;
}

std::vector<const Matrix*> Weights::decode_matrices() const {
  std::vector<const Matrix*> m;
  for (const auto& l : layers)
    for (const Linear* lin : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) m.push_back(&lin->w);
  m.push_back(&lm_head.w);
  return m;
}

uint64_t Weights::matmul_bytes_per_token() const {
  uint64_t b = 0;
  for (const Matrix* m : decode_matrices()) b += m->bytes();
  return b;
}

}  // namespace rvec::model
