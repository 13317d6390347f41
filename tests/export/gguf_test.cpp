// GGUF export: the file read back (structure, metadata keys as llama.cpp's converter writes
// them, tensors equal to the checkpoint's), q8_0 blocks against ggml's definition worked by
// hand, the Llama q/k permutation, and clear errors.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "core/atomic_output.h"
#include "core/dtype.h"
#include "core/error.h"
#include "export/gguf.h"
#include "io/model_dir.h"

namespace fs = std::filesystem;
using namespace rvec;
using nlohmann::json;

namespace {
const fs::path kFix = fs::path(RVEC_TESTDATA_DIR) / "fixtures";

fs::path tmp(const std::string& n) {
  return fs::temp_directory_path() / ("rvec_gguf_test_" + std::to_string(::getpid()) + "_" + n);
}

gguf::File export_read(const fs::path& model, const std::string& type, const std::string& name) {
  gguf::ExportOptions o;
  o.type = gguf::parse_file_type(type);
  o.quiet = true;
  o.force = true;
  const fs::path out = tmp(name + ".gguf");
  gguf::export_model(model, out, o);
  auto f = gguf::read(out);
  fs::remove(out);
  return f;
}

const gguf::TensorDesc* find(const gguf::File& f, const std::string& n) {
  for (const auto& t : f.tensors)
    if (t.name == n) return &t;
  return nullptr;
}

std::vector<float> src_f32(const io::ModelDir& d, const std::string& n) {
  const auto& t = d.get(n);
  std::vector<float> v(t.numel());
  to_f32(t.dtype, t.data, v.data(), v.size());
  return v;
}
}  // namespace

TEST(GgufQ8_0, BlockMatchesGgmlDefinitionByHand) {
  // x_j = (j - 16) / 4: max |x| = 4, d = 4/127 stored as f16 0x2808 (= 0.031494140625),
  // q_j = roundf(x_j * 127/4) = roundf((j - 16) * 7.9375).
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = float(j - 16) / 4;
  uint8_t b[34];
  gguf::quantize_q8_0(x.data(), 32, b);
  EXPECT_EQ(b[0] | (b[1] << 8), 0x2808);
  EXPECT_EQ(int8_t(b[2 + 0]), -127);
  EXPECT_EQ(int8_t(b[2 + 14]), -16);  // -15.875
  EXPECT_EQ(int8_t(b[2 + 16]), 0);
  EXPECT_EQ(int8_t(b[2 + 17]), 8);    // 7.9375
  EXPECT_EQ(int8_t(b[2 + 31]), 119);  // 119.0625
  std::vector<float> y(32);
  gguf::dequantize_q8_0(b, 32, y.data());
  EXPECT_FLOAT_EQ(y[17], 8 * 0.031494140625f);
  // An all-zero block: d = 0, q = 0.
  std::vector<float> z(32, 0.0f);
  gguf::quantize_q8_0(z.data(), 32, b);
  for (int i = 0; i < 34; ++i) EXPECT_EQ(b[i], 0);
  EXPECT_THROW(gguf::quantize_q8_0(x.data(), 31, b), Error);
}

TEST(GgufExport, Qwen2RoundTripAndMetadataKeys) {
  const fs::path m = kFix / "qwen2_tiny_untied_mha4x4" / "model";
  auto dir = io::ModelDir::open(m);
  auto f = export_read(m, "f32", "q2");
  EXPECT_EQ(f.version, 3u);
  // The key list of convert_hf_to_gguf.py for a qwen2 checkpoint (TextModel.set_gguf_parameters
  // + _set_vocab_gpt2 + SpecialVocab), no more and no fewer.
  std::set<std::string> keys;
  for (auto& [k, v] : f.kv.items()) keys.insert(k);
  const std::set<std::string> expected{
      "general.architecture", "general.name", "general.file_type", "general.quantization_version",
      "qwen2.block_count", "qwen2.context_length", "qwen2.embedding_length", "qwen2.feed_forward_length",
      "qwen2.attention.head_count", "qwen2.attention.head_count_kv", "qwen2.rope.freq_base",
      "qwen2.attention.layer_norm_rms_epsilon", "tokenizer.ggml.model", "tokenizer.ggml.pre",
      "tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges",
      "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id",
      "tokenizer.ggml.add_bos_token"};  // (the fixture has no chat template)
  for (const auto& k : expected) EXPECT_TRUE(keys.count(k)) << "missing " << k;
  for (const auto& k : keys) EXPECT_TRUE(expected.count(k)) << "unexpected " << k;
  EXPECT_EQ(f.kv["general.architecture"], "qwen2");
  EXPECT_EQ(f.kv["qwen2.block_count"], 3);
  EXPECT_EQ(f.kv["qwen2.embedding_length"], 256);
  EXPECT_EQ(f.kv["qwen2.attention.head_count_kv"], 4);
  EXPECT_FLOAT_EQ(f.kv["qwen2.rope.freq_base"].get<float>(), 1e6f);
  EXPECT_EQ(f.kv_type["qwen2.block_count"], 4u);  // UINT32
  EXPECT_EQ(f.kv_type["qwen2.rope.freq_base"], 6u);  // FLOAT32
  EXPECT_EQ(f.kv["general.file_type"], 0);
  EXPECT_EQ(f.kv["tokenizer.ggml.model"], "gpt2");
  EXPECT_EQ(f.kv["tokenizer.ggml.pre"], "qwen2");
  // Tokens: vocab_size entries, the last three the special ones (see fixtures/README.md).
  const auto& toks = f.kv["tokenizer.ggml.tokens"];
  ASSERT_EQ(toks.size(), 512u);
  EXPECT_EQ(toks[511], "<|im_end|>");
  EXPECT_EQ(f.kv["tokenizer.ggml.token_type"][511], 3);  // CONTROL
  EXPECT_EQ(f.kv["tokenizer.ggml.token_type"][0], 1);    // NORMAL
  EXPECT_EQ(toks[0], "!");                                 // byte-level alphabet first
  auto tj = json::parse(read_file(m / "tokenizer.json"));
  EXPECT_EQ(f.kv["tokenizer.ggml.merges"].size(), tj["model"]["merges"].size());
  EXPECT_EQ(f.kv["tokenizer.ggml.eos_token_id"], 511);   // tokenizer_config's eos_token <|im_end|>
  // Tensors: llama.cpp's names, ggml dimension order, the checkpoint's values.
  EXPECT_EQ(f.tensors.size(), dir->tensors().size());
  const auto* q = find(f, "blk.1.attn_q.weight");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->ne, (std::vector<int64_t>{256, 256}));
  EXPECT_EQ(q->type, uint32_t(gguf::kF32));
  auto want = src_f32(*dir, "model.layers.1.self_attn.q_proj.weight");
  EXPECT_EQ(std::memcmp(f.data(*q), want.data(), want.size() * 4), 0);
  for (const char* n : {"token_embd.weight", "output.weight", "output_norm.weight", "blk.0.attn_norm.weight",
                        "blk.0.ffn_norm.weight", "blk.2.attn_k.bias", "blk.2.ffn_down.weight", "blk.0.attn_output.weight"})
    EXPECT_TRUE(find(f, n)) << n;
}

TEST(GgufExport, F16AndQ8_0TensorsAndOneDimensionalF32) {
  const fs::path m = kFix / "qwen2_tiny_untied_mha4x4" / "model";
  auto dir = io::ModelDir::open(m);
  auto want = src_f32(*dir, "model.layers.0.mlp.up_proj.weight");
  auto f16 = export_read(m, "f16", "f16");
  const auto* t = find(f16, "blk.0.ffn_up.weight");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->type, uint32_t(gguf::kF16));
  std::vector<float> got(want.size());
  to_f32(DType::F16, f16.data(*t), got.data(), got.size());
  for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], f16_to_f32(f32_to_f16(want[i]))) << i;
  EXPECT_EQ(find(f16, "blk.0.attn_norm.weight")->type, uint32_t(gguf::kF32));
  EXPECT_EQ(find(f16, "blk.0.attn_q.bias")->type, uint32_t(gguf::kF32));
  EXPECT_EQ(f16.kv["general.file_type"], 1);
  auto q8 = export_read(m, "q8_0", "q8");
  t = find(q8, "blk.0.ffn_up.weight");
  ASSERT_EQ(t->type, uint32_t(gguf::kQ8_0));
  EXPECT_EQ(t->nbytes, want.size() / 32 * 34);
  gguf::dequantize_q8_0(q8.data(*t), int64_t(got.size()), got.data());
  for (size_t b = 0; b < want.size() / 32; ++b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(want[b * 32 + j]));
    // Half a step, plus the f16 rounding of the scale (2^-11 relative) times |q| <= 127.
    const float d = amax / 127;
    for (int j = 0; j < 32; ++j) ASSERT_LE(std::fabs(got[b * 32 + j] - want[b * 32 + j]), d * (0.5f + 127.f / 2048) + 1e-7f);
  }
  EXPECT_EQ(q8.kv["general.file_type"], 7);
}

TEST(GgufExport, Qwen3AndOlmo2TensorNamesAndKeys) {
  auto q3 = export_read(kFix / "qwen3_tiny_tied_hd32" / "model", "f32", "q3");
  EXPECT_EQ(q3.kv["general.architecture"], "qwen3");
  EXPECT_EQ(q3.kv["qwen3.attention.key_length"], 32);
  EXPECT_EQ(q3.kv["qwen3.attention.value_length"], 32);
  ASSERT_TRUE(find(q3, "blk.0.attn_q_norm.weight"));
  EXPECT_EQ(find(q3, "blk.0.attn_q_norm.weight")->ne, (std::vector<int64_t>{32}));
  EXPECT_FALSE(find(q3, "output.weight"));  // tied: llama.cpp reuses token_embd
  auto o2 = export_read(kFix / "olmo2_tiny_untied_gqa" / "model", "bf16", "o2");
  EXPECT_EQ(o2.kv["general.architecture"], "olmo2");
  EXPECT_TRUE(find(o2, "blk.1.post_attention_norm.weight"));
  EXPECT_TRUE(find(o2, "blk.1.post_ffw_norm.weight"));
  EXPECT_FALSE(find(o2, "blk.1.attn_norm.weight"));
  EXPECT_FALSE(find(o2, "blk.1.ffn_norm.weight"));
  EXPECT_EQ(find(o2, "blk.1.attn_k_norm.weight")->ne[0], o2.kv["olmo2.attention.head_count_kv"].get<int64_t>() *
                                                             o2.kv["olmo2.embedding_length"].get<int64_t>() /
                                                             o2.kv["olmo2.attention.head_count"].get<int64_t>());
  EXPECT_EQ(find(o2, "blk.1.attn_v.weight")->type, uint32_t(gguf::kBF16));
}

TEST(GgufExport, LlamaQkRowsPermutedToGgmlRotaryLayout) {
  const fs::path src = kFix / "qwen2_tiny_untied_mha4x4" / "model", m = tmp("llama");
  fs::remove_all(m);
  fs::create_directories(m);
  for (auto& e : fs::directory_iterator(src)) fs::copy_file(e.path(), m / e.path().filename());
  auto cfg = json::parse(read_file(m / "config.json"));
  cfg["architectures"] = {"LlamaForCausalLM"};
  cfg["model_type"] = "llama";
  write_file_atomic(m / "config.json", cfg.dump());
  auto dir = io::ModelDir::open(m);
  auto f = export_read(m, "f32", "llama");
  EXPECT_EQ(f.kv["general.architecture"], "llama");
  EXPECT_EQ(f.kv["llama.rope.dimension_count"], 64);
  EXPECT_EQ(f.kv["llama.vocab_size"], 512);
  // head_dim 64: GGUF row 1 of each head is HF row 32 (the pair partner of row 0), row 2 is
  // HF row 1, row 64 + 3 is HF row 64 + 33.
  auto hf = src_f32(*dir, "model.layers.0.self_attn.q_proj.weight");
  const auto* q = find(f, "blk.0.attn_q.weight");
  auto row = [&](int64_t r) { return reinterpret_cast<const float*>(f.data(*q)) + r * 256; };
  for (auto [g, h] : std::vector<std::pair<int, int>>{{0, 0}, {1, 32}, {2, 1}, {67, 97}, {255, 255}})
    EXPECT_EQ(std::memcmp(row(g), hf.data() + h * 256, 256 * 4), 0) << g;
  auto kb = src_f32(*dir, "model.layers.0.self_attn.k_proj.bias");
  const float* gb = reinterpret_cast<const float*>(f.data(*find(f, "blk.0.attn_k.bias")));
  EXPECT_EQ(gb[1], kb[32]);
  EXPECT_EQ(gb[66], kb[65]);
  fs::remove_all(m);
}

// Llama 3.1-style rope scaling: rope_freqs.weight divides each unscaled frequency into the
// scaled one that transformers' _compute_llama3_parameters gives (checked in config_test).
TEST(GgufExport, Llama3RopeFactors) {
  const fs::path src = kFix / "qwen2_tiny_untied_mha4x4" / "model", m = tmp("llama3");
  fs::remove_all(m);
  fs::create_directories(m);
  for (auto& e : fs::directory_iterator(src)) fs::copy_file(e.path(), m / e.path().filename());
  auto cfg = json::parse(read_file(m / "config.json"));
  cfg["architectures"] = {"LlamaForCausalLM"};
  cfg["rope_theta"] = 500000.0;
  cfg["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  write_file_atomic(m / "config.json", cfg.dump());
  auto f = export_read(m, "f16", "llama3");
  const auto* t = find(f, "rope_freqs.weight");
  ASSERT_TRUE(t);
  ASSERT_EQ(t->ne, (std::vector<int64_t>{32}));
  EXPECT_EQ(t->type, uint32_t(gguf::kF32));
  const float* r = reinterpret_cast<const float*>(f.data(*t));
  EXPECT_FLOAT_EQ(r[0], 1.0f);   // wavelength 2π < 8192/4: unscaled
  EXPECT_FLOAT_EQ(r[31], 8.0f);  // longest wavelength > 8192: divided by `factor`
  int blended = 0;
  for (int i = 0; i < 32; ++i) {
    EXPECT_GE(r[i], 1.0f);
    EXPECT_LE(r[i], 8.0f);
    blended += r[i] > 1.0f && r[i] < 8.0f;
  }
  EXPECT_GT(blended, 0);
  fs::remove_all(m);
}

TEST(GgufExport, ClearErrors) {
  gguf::ExportOptions o;
  o.quiet = true;
  EXPECT_THROW(gguf::parse_file_type("q4_k"), Error);
  // A SentencePiece-style vocabulary is refused by name.
  const fs::path m = tmp("sp");
  fs::remove_all(m);
  fs::create_directories(m);
  const fs::path src = kFix / "qwen2_tiny_untied_mha4x4" / "model";
  for (const char* n : {"config.json", "model.safetensors"}) fs::copy_file(src / n, m / n);
  fs::copy_file(fs::path(RVEC_TESTDATA_DIR) / "tokenizers/tiny-llama2/tokenizer.json", m / "tokenizer.json");
  try {
    gguf::export_model(m, tmp("sp.gguf"), o);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("byte-level BPE"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(tmp("sp.gguf")));
  // A tokenizer field of another type names the directory (it was nlohmann's bare type_error).
  {
    auto tj = json::parse(read_file(src / "tokenizer.json"));
    tj["added_tokens"] = json::array({{{"id", "zero"}, {"content", "<x>"}}});
    write_file_atomic(m / "tokenizer.json", tj.dump());
    try {
      gguf::export_model(m, tmp("sp.gguf"), o);
      ADD_FAILURE();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(m.string() + ": tokenizer.json / tokenizer_config.json field of an "
                                           "unexpected type"),
                std::string::npos)
          << e.what();
    }
    EXPECT_FALSE(fs::exists(tmp("sp.gguf")));
  }
  // An existing output needs --force; a truncated file is named on reading.
  write_file_atomic(tmp("x.gguf"), "GGUF\x03");
  EXPECT_THROW(gguf::export_model(src, tmp("x.gguf"), o), Error);
  EXPECT_THROW(gguf::read(tmp("x.gguf")), Error);
  fs::remove(tmp("x.gguf"));
  fs::remove_all(m);
}
