// The OpenAI-compatible protocol of `rvec serve`, apart from any HTTP or scheduling: request
// parsing and validation (a request either parses completely or raises ApiError naming the
// field), and the response / stream-chunk JSON, with vLLM's field names and shapes.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "infer/engine.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace rvec::serve {

// An OpenAI-style error: {"error": {"message", "type", "param", "code"}} with an HTTP status.
struct ApiError : std::runtime_error {
  int status;
  std::string type, param;
  ApiError(int status, std::string message, std::string param = "", std::string type = "");
  nlohmann::json body() const;
};
nlohmann::json error_json(int status, const std::string& message, const std::string& type = "",
                          const std::string& param = "");

// What validation needs to know about the served model.
struct ModelInfo {
  std::string name;                        // served model name (the "model" field must match it)
  const text::Tokenizer* tokenizer;        // required: the server needs a tokenizer.json
  const text::ChatTemplate* chat_template;  // nullptr: chat completions answer 400
  int64_t vocab_size;
  size_t max_model_len;  // prompt + max_tokens must fit
  std::vector<int32_t> eos_ids;
  // The engine's KV cache cap and cost (0: no cap): a sequence whose prompt + max_tokens could never
  // fit is refused (400); others wait for room.
  size_t kv_cache_bytes = 0;
  int64_t kv_bytes_per_token = 0;
};

struct Limits {
  int max_n = 16;                 // choices per prompt
  size_t max_sequences = 256;     // prompts x n per request
  int max_logprobs = 20;          // top alternatives per token
  size_t max_stop = 16;           // stop strings
  size_t max_stop_len = 1024;     // bytes per stop string
};

// One engine sequence of a request: prompt i, sample j.
struct SeqSpec {
  infer::GenerationRequest gen;
  std::string prompt_text;  // for echo
  size_t choice_index;  // prompt-major: prompt i, sample j -> i * n + j
  size_t sample_index;
};

struct CompletionRequest {
  bool chat = false;
  std::vector<SeqSpec> seqs;
  bool stream = false, include_usage = false;
  bool echo = false;
  int logprobs = -1;  // -1: no logprobs; else the number of top alternatives (chat: top_logprobs)
  bool prompt_logprobs() const { return echo && logprobs >= 0; }
};

// Parse a request body (already JSON-decoded). Throws ApiError (400, or 404 for an unknown model).
CompletionRequest parse_completion(const nlohmann::json& body, const ModelInfo& m, const Limits& lim);
CompletionRequest parse_chat(const nlohmann::json& body, const ModelInfo& m, const Limits& lim);
// {prompt | messages, add_special_tokens, add_generation_prompt} -> ids.
std::vector<int32_t> parse_tokenize(const nlohmann::json& body, const ModelInfo& m);
std::vector<int32_t> parse_detokenize(const nlohmann::json& body, const ModelInfo& m);

// A token's log-probability and its top alternatives (ids by descending logprob).
struct TokenLogprob {
  int32_t token;
  double logprob;
  std::vector<std::pair<int32_t, double>> top;
};
// From the logits the token was sampled from (or scored against): top = the k best.
TokenLogprob token_logprob(const float* logits, int64_t vocab, int32_t token, int k);

// What the engine produced for one sequence.
struct SeqOutput {
  std::vector<TokenLogprob> prompt_logprobs;  // for prompt tokens 1..P-1 (echo + logprobs)
  std::vector<TokenLogprob> logprobs;         // per generated token (when asked for)
  infer::GenerationResult result;
};

std::string finish_reason(const infer::GenerationResult& r);  // "stop" | "length"

struct ResponseMeta {
  std::string id, model;
  int64_t created;
};
// Full (non-streaming) responses; outs[i] belongs to req.seqs[i].
nlohmann::json completion_response(const CompletionRequest& req, const std::vector<SeqOutput>& outs,
                                   const ResponseMeta& meta, const text::Tokenizer& tok);
nlohmann::json usage_json(const CompletionRequest& req, const std::vector<SeqOutput>& outs);

// Streaming chunks for sequence i: a text delta with the logprobs of tokens [lp_from, lp_to)
// of outs' sequence, or (finish set) the final chunk. Chat's first chunk carries the role.
nlohmann::json stream_chunk(const CompletionRequest& req, size_t i, const std::string& text,
                            const std::vector<TokenLogprob>& lps, const std::optional<std::string>& finish,
                            const ResponseMeta& meta, const text::Tokenizer& tok, bool first = false);
// Streaming with echo (completions): the first chunk of sequence i as vLLM sends it, the prompt
// followed by the generated `text` so far; with logprobs asked, the logprobs of the prompt tokens
// (the first one null, as in the non-streamed echo: out.prompt_logprobs) then `lps`, text_offset
// from 0 at the prompt's start.
nlohmann::json echo_chunk(const CompletionRequest& req, size_t i, const SeqOutput& out, const std::string& text,
                          const std::vector<TokenLogprob>& lps, const ResponseMeta& meta, const text::Tokenizer& tok);
nlohmann::json usage_chunk(const CompletionRequest& req, const std::vector<SeqOutput>& outs,
                           const ResponseMeta& meta);

}  // namespace rvec::serve
