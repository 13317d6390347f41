// GGUF v3 files for llama.cpp / Ollama from Hugging Face checkpoints (qwen2, qwen3, llama,
// mistral, olmo2), laid out as llama.cpp's convert_hf_to_gguf.py writes them: the same
// metadata keys, tensor names (token_embd, blk.N.attn_q, ...), 1-D tensors in F32, Llama/
// Mistral q/k rows permuted to GGML's interleaved rotary layout, the byte-level BPE
// tokenizer (tokens, token types, merges, special ids, add_bos_token, chat template).
// Tensors are streamed one at a time (memory stays bounded); the file is written to a
// temporary sibling and renamed when complete.
#pragma once
#include <cstdint>
#include <map>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace rvec::gguf {

enum class FileType { F32, F16, BF16, Q8_0 };
FileType parse_file_type(const std::string& s);  // f32 | f16 | bf16 | q8_0, else rvec::Error

// ggml tensor types used here (ggml.h numbering).
enum GgmlType : uint32_t { kF32 = 0, kF16 = 1, kQ8_0 = 8, kBF16 = 30 };
constexpr int64_t kQ8Block = 32;  // ggml's QK8_0: one f16 scale + 32 int8 per block (34 bytes)

// ggml's quantize_row_q8_0 reference: per block of 32, d = max|x| / 127, q = round(x / d)
// (halfway away from zero), d stored as f16. n must be a multiple of 32.
void quantize_q8_0(const float* x, int64_t n, uint8_t* out);
void dequantize_q8_0(const uint8_t* in, int64_t n, float* y);

struct ExportOptions {
  FileType type = FileType::F16;
  bool force = false, quiet = false;
};
// Writes MODEL (a directory or hub name) as a GGUF file. Throws rvec::Error naming the
// model and what is unsupported (architecture, tokenizer kind, rope scaling).
void export_model(const std::filesystem::path& model, const std::filesystem::path& out, const ExportOptions& o);

// A PEFT LoRA adapter (arith/lora.h) as a llama.cpp LoRA GGUF, laid out as convert_lora_to_gguf.py
// writes it: general.type "adapter", adapter.type "lora", adapter.lora.alpha (f32, the config's
// lora_alpha), and per factored tensor <gguf name>.lora_a (ne [in, r]) / .lora_b (ne [r, out]),
// llama's q/k rows of lora_b permuted like the weights, token_embd's lora_a transposed. llama.cpp
// scales every pair by alpha / r; per-module scales that differ (rank_pattern / alpha_pattern,
// use_rslora) are folded into lora_b. Full weights (modules_to_save, biases) have no place in a
// llama.cpp LoRA and are left out (listed in the report). The base model's config.json
// (o.base, else base_model_name_or_path) gives the architecture.
struct LoraExportOptions {
  FileType type = FileType::F32;  // f32 (the converter's default), f16 or bf16
  std::optional<std::filesystem::path> base;
  bool force = false, quiet = false;
};
struct LoraExportReport {
  std::string arch;
  float alpha = 0;
  size_t pairs = 0;
  std::vector<std::string> dropped;  // adapter entries that are not lora_A / lora_B pairs
};
LoraExportReport export_lora(const std::filesystem::path& adapter, const std::filesystem::path& out,
                             const LoraExportOptions& o);

// A GGUF file read back: metadata values as JSON (arrays as arrays) with their GGUF value
// types, tensor descriptors and data. For tests and checks; the file is read whole.
struct TensorDesc {
  std::string name;
  std::vector<int64_t> ne;  // ggml order: ne[0] is the row length
  uint32_t type = 0;
  uint64_t offset = 0;      // from the start of the data section
  uint64_t nbytes = 0;
};
struct File {
  uint32_t version = 0;
  nlohmann::ordered_json kv;               // key -> value
  std::map<std::string, uint32_t> kv_type;  // key -> GGUF value type (array: 9)
  std::vector<TensorDesc> tensors;
  std::string bytes;     // the whole file
  uint64_t data_offset = 0;
  const uint8_t* data(const TensorDesc& t) const {
    return reinterpret_cast<const uint8_t*>(bytes.data()) + data_offset + t.offset;
  }
};
File read(const std::filesystem::path& path);  // throws rvec::Error naming the file

}  // namespace rvec::gguf
