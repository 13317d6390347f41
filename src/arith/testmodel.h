// Random-weight Hugging Face models with real Qwen2/Llama shapes, for tests,
// benchmarks and trying rvec without downloads, and "fine-tuned" siblings of an
// existing model (θ + scale·noise). Deterministic for a seed.
#pragma once
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "io/safetensors_writer.h"

namespace rvec::arith {

// The tensors of a Qwen2 / Qwen3 / Llama / Mistral / OLMo2 decoder described by an HF
// config.json (qkv biases for qwen2, q/k norms for qwen3/olmo2, no lm_head when
// tie_word_embeddings is true).
std::vector<io::TensorSpec> decoder_tensors(const nlohmann::json& config, DType dtype);

// The config of the small preset: Qwen2, hidden 64, 2 layers, 4/2 heads, vocab 1024, tied.
nlohmann::json tiny_config();

// Directory of rvec's run-time data (data/ in the source tree, or RVEC_DATA).
std::filesystem::path data_dir();

struct TestModelOptions {
  nlohmann::json config;       // HF config.json
  DType dtype = DType::BF16;
  uint64_t seed = 0;
  uint64_t shard_size = io::kDefaultShardSize;
  std::optional<std::filesystem::path> tokenizer_dir;  // tokenizer/generation files to copy
  bool force = false, quiet = false;
};
// Weights: uniform with std 0.02 (biases too), norm weights 1 + uniform(±0.1).
void write_test_model(const std::filesystem::path& out, const TestModelOptions& o);

// out = like + scale·u, u uniform with unit variance, same dtypes/config/tokenizer.
void write_perturbed(const std::filesystem::path& like, double scale, uint64_t seed,
                     const std::filesystem::path& out, bool force, bool quiet,
                     uint64_t shard_size = io::kDefaultShardSize);

}  // namespace rvec::arith
