// rvec's in-process inference engine as an eval::LanguageModel (tokenizing as lm-eval's HF
// backend does; see engine_model.cpp).
#pragma once
#include <memory>
#include <string>

#include "core/dtype.h"
#include "eval/language_model.h"

namespace rvec::backend {

struct EngineOptions {
  int threads = 0;  // 0: all cores
  int batch = 16;   // maximum concurrent sequences
  std::string chat_template_file;  // overrides the model's chat template when set
  double kv_cache_gb = 0;          // KV cache cap (infer::kv_cache_cap_bytes: 0 = half the available memory)
  DType kv_dtype = DType::F32;     // KV cache element type (infer::EngineOptions::kv_dtype)
};

// Loads the model directory (config.json, safetensors, tokenizer.json); rvec::Error when any is
// missing or invalid.
std::unique_ptr<eval::LanguageModel> open_engine_model(const std::string& path, const EngineOptions& opts);

}  // namespace rvec::backend
