// Opens the model the evaluation harness runs on, from options: rvec's engine in-process, or
// (kind "openai") OpenAI-compatible servers. The CLI and the experiment construct models only here.
#pragma once
#include <memory>
#include <string>

#include "backend/engine_model.h"
#include "backend/openai_model.h"
#include "eval/language_model.h"

namespace rvec::backend {

struct BackendOptions {
  std::string kind = "engine";  // "engine" | "openai"
  std::string model;            // engine: the model directory
  EngineOptions engine;
  OpenAIOptions openai;
};

std::unique_ptr<eval::LanguageModel> open_backend(const BackendOptions& opts);

}  // namespace rvec::backend
