// LoRA GGUF export: the keys and tensor layout convert_lora_to_gguf.py writes and
// llama-adapter.cpp checks (general.type "adapter", adapter.type "lora", adapter.lora.alpha f32;
// <tensor>.lora_a ne [in, r], .lora_b ne [r, out]), llama's q rows of lora_b permuted like the
// weights, per-module PEFT scales folded into lora_b so that llama.cpp's alpha / r gives them.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "core/atomic_output.h"
#include "core/error.h"
#include "export/gguf.h"
#include "io/safetensors_writer.h"

namespace fs = std::filesystem;
using namespace rvec;
using nlohmann::json;

namespace {

const fs::path kFix = fs::path(RVEC_TESTDATA_DIR) / "fixtures";

struct Tmp {
  fs::path p = fs::temp_directory_path() / ("rvec_gguf_lora_" + std::to_string(::getpid()));
  Tmp() {
    fs::remove_all(p);
    fs::create_directories(p);
  }
  ~Tmp() { fs::remove_all(p); }
};

struct F {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> v;
};

void write_adapter(const fs::path& dir, const json& cfg, const std::vector<F>& ts) {
  fs::create_directories(dir);
  std::vector<io::TensorSpec> specs;
  std::vector<const void*> ptrs;
  for (auto& t : ts) {
    specs.push_back({t.name, DType::F32, t.shape});
    ptrs.push_back(t.v.data());
  }
  io::write_safetensors_file(dir / "adapter_model.safetensors", specs, ptrs);
  write_file_atomic(dir / "adapter_config.json", cfg.dump());
}

std::vector<float> iota(size_t n, float start) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = start + float(i);
  return v;
}

const gguf::TensorDesc& find(const gguf::File& f, const std::string& n) {
  for (const auto& t : f.tensors)
    if (t.name == n) return t;
  throw Error("no tensor " + n);
}

const float* f32(const gguf::File& f, const std::string& n) { return reinterpret_cast<const float*>(f.data(find(f, n))); }

}  // namespace

TEST(GgufLora, KeysNamesShapesAndScales) {
  Tmp tmp;
  // The base: the 4-head, hidden-256 fixture (its config is all the exporter reads).
  const fs::path base = kFix / "qwen2_tiny_untied_mha4x4" / "model";
  const std::string p = "base_model.model.model.layers.";
  // q_proj of layer 0 at r 2; down_proj of layer 2 at r 1 (rank_pattern) with alpha 3
  // (alpha_pattern): PEFT scale 3 / 1 but llama.cpp's 8 / 1, so lora_b carries 3 / 8.
  json cfg = {{"peft_type", "LORA"},
              {"r", 2},
              {"lora_alpha", 8},
              {"rank_pattern", {{"model.layers.2.mlp.down_proj", 1}}},
              {"alpha_pattern", {{"model.layers.2.mlp.down_proj", 3}}},
              {"base_model_name_or_path", base.string()},
              {"modules_to_save", {"input_layernorm"}}};
  write_adapter(tmp.p / "ad", cfg,
                {{p + "0.self_attn.q_proj.lora_A.weight", {2, 256}, iota(512, 0)},
                 {p + "0.self_attn.q_proj.lora_B.weight", {256, 2}, iota(512, 1000)},
                 {p + "2.mlp.down_proj.lora_A.weight", {1, 256}, iota(256, 0)},
                 {p + "2.mlp.down_proj.lora_B.weight", {256, 1}, iota(256, 0)},
                 {p + "1.input_layernorm.weight", {256}, iota(256, 0)}});
  gguf::LoraExportOptions o;
  o.quiet = true;
  auto rep = gguf::export_lora(tmp.p / "ad", tmp.p / "a.gguf", o);
  EXPECT_EQ(rep.pairs, 2u);
  EXPECT_EQ(rep.dropped, std::vector<std::string>{"model.layers.1.input_layernorm.weight"});
  auto f = gguf::read(tmp.p / "a.gguf");
  EXPECT_EQ(f.version, 3u);
  EXPECT_EQ(f.kv["general.architecture"], "qwen2");
  EXPECT_EQ(f.kv["general.type"], "adapter");
  EXPECT_EQ(f.kv["adapter.type"], "lora");
  EXPECT_EQ(f.kv["adapter.lora.alpha"], 8.0);
  EXPECT_EQ(f.kv_type["adapter.lora.alpha"], 6u);  // GGUF_TYPE_FLOAT32, as llama.cpp reads it
  ASSERT_EQ(f.tensors.size(), 4u);
  const auto& qa = find(f, "blk.0.attn_q.weight.lora_a");
  const auto& qb = find(f, "blk.0.attn_q.weight.lora_b");
  EXPECT_EQ(qa.ne, (std::vector<int64_t>{256, 2}));  // [in, r]
  EXPECT_EQ(qb.ne, (std::vector<int64_t>{2, 256}));  // [r, out]
  EXPECT_EQ(qa.type, 0u);
  // Qwen2 keeps HF's row order; scale 8 / 2 equals PEFT's: values as stored.
  EXPECT_EQ(f32(f, "blk.0.attn_q.weight.lora_a")[300], 300.0f);
  EXPECT_EQ(f32(f, "blk.0.attn_q.weight.lora_b")[7], 1007.0f);
  const auto& db = find(f, "blk.2.ffn_down.weight.lora_b");
  EXPECT_EQ(db.ne, (std::vector<int64_t>{1, 256}));
  EXPECT_FLOAT_EQ(f32(f, "blk.2.ffn_down.weight.lora_b")[10], 10.0f * 3 / 8);

  // As llama: lora_b rows of attn_q follow the weights' rotary permutation (head_dim 64:
  // GGUF row 1 is HF row 32, row 2 is HF row 1), and f16 output.
  fs::create_directories(tmp.p / "llama");
  auto bc = json::parse(read_file(base / "config.json"));
  bc["architectures"] = {"LlamaForCausalLM"};
  bc["model_type"] = "llama";
  write_file_atomic(tmp.p / "llama" / "config.json", bc.dump());
  o.base = tmp.p / "llama";
  o.type = gguf::FileType::F16;
  gguf::export_lora(tmp.p / "ad", tmp.p / "l.gguf", o);
  auto g = gguf::read(tmp.p / "l.gguf");
  EXPECT_EQ(g.kv["general.architecture"], "llama");
  const auto& lb = find(g, "blk.0.attn_q.weight.lora_b");
  EXPECT_EQ(lb.type, 1u);
  const uint16_t* h = reinterpret_cast<const uint16_t*>(g.data(lb));
  for (auto [gr, hr] : std::vector<std::pair<int, int>>{{0, 0}, {1, 32}, {2, 1}, {67, 97}})
    EXPECT_EQ(f16_to_f32(h[gr * 2]), 1000.0f + float(hr * 2)) << gr;

  // Errors: no base known, an existing output, q8_0.
  cfg.erase("base_model_name_or_path");
  write_adapter(tmp.p / "nobase", cfg, {{p + "0.self_attn.q_proj.lora_A.weight", {2, 256}, iota(512, 0)},
                                        {p + "0.self_attn.q_proj.lora_B.weight", {256, 2}, iota(512, 0)}});
  o = {};
  o.quiet = true;
  try {
    gguf::export_lora(tmp.p / "nobase", tmp.p / "n.gguf", o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--base"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(tmp.p / "n.gguf"));
  o.base = base;
  EXPECT_THROW(gguf::export_lora(tmp.p / "ad", tmp.p / "a.gguf", o), Error);  // exists
  o.force = true;
  o.type = gguf::FileType::Q8_0;
  EXPECT_THROW(gguf::export_lora(tmp.p / "ad", tmp.p / "a.gguf", o), Error);
}
