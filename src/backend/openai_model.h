// OpenAI-compatible servers (vLLM, SGLang, llama.cpp server, rvec serve) as an
// eval::LanguageModel. Prompts and chat templates are built locally, so they are the ones the
// in-process engine sees; generation goes to /v1/completions (token-id prompts when a local
// tokenizer is known, else strings) or, with chat_endpoint, /v1/chat/completions; the `until`
// cut is applied again locally. Log-likelihoods are token-id prompts with echo + logprobs, the
// (context, continuation) boundary tokenized locally (lm-eval's local-completions payload).
// Requests run on a bounded pool (concurrency per endpoint), spread over all endpoints; failures
// of the connection, 429 and 5xx are retried with exponential backoff, and an endpoint that
// stops answering rests for a cool-down while the others take its requests.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "eval/language_model.h"

namespace rvec::backend {

struct OpenAIOptions {
  std::vector<std::string> base_urls;  // server root or its /v1 URL
  std::string served_model;            // "": the first id of /v1/models
  std::string api_key_env;             // environment variable holding the API key ("" : none)
  std::string tokenizer;               // model dir (tokenizer.json, chat template); "": the server's
  std::string chat_template_file;      // overrides the tokenizer dir's chat template
  int concurrency = 8;                 // requests in flight per endpoint
  double timeout_s = 600;              // per request
  int max_retries = 5;                 // retries of one request before the run fails
  double retry_base_s = 1, retry_max_s = 30;  // backoff: base * 2^(attempt-1), capped
  double endpoint_cooldown_s = 10;     // an endpoint that failed to answer rests this long
  double wait_for_server_s = 0;        // while no endpoint answers /v1/models, probe again this long
                                       // (a server still loading; a managed server being restarted)
  bool chat_endpoint = false;          // generation through /v1/chat/completions
  bool quiet = false;                  // no warnings on stderr
};

// Connects (GET /v1/models on every endpoint: an unreachable one is skipped with a warning;
// none reachable within wait_for_server_s, a refused key or a missing served model is an
// rvec::Error) and loads the tokenizer.
std::unique_ptr<eval::LanguageModel> open_openai_model(const OpenAIOptions& opts);

}  // namespace rvec::backend
