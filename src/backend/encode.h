// lm-eval's tokenization of a (context, continuation) pair, shared by every backend that
// tokenizes locally (the in-process engine, and OpenAI-compatible servers fed token ids).
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "text/tokenizer.h"

namespace rvec::backend {

// lm-eval HFLM._encode_pair: trailing whitespace of the context moves to the continuation;
// continuation tokens = encode(context + continuation)[len(encode(context)):]; an empty
// context becomes {prefix_token}. No special tokens are added.
std::pair<std::vector<int32_t>, std::vector<int32_t>> lm_eval_encode_pair(const text::Tokenizer& tok,
                                                                          std::string context,
                                                                          std::string continuation,
                                                                          int32_t prefix_token);
// The same with any encoder (a server's /tokenize): text -> ids, no special tokens added.
using EncodeFn = std::function<std::vector<int32_t>(const std::string&)>;
std::pair<std::vector<int32_t>, std::vector<int32_t>> lm_eval_encode_pair(const EncodeFn& encode,
                                                                          std::string context,
                                                                          std::string continuation,
                                                                          int32_t prefix_token);

// The token that stands in for an empty context, as the engine picks it for a model directory:
// config.json's bos_token_id, else the first EOS id (generation_config.json's, else config.json's);
// nullopt: neither.
std::optional<int32_t> prefix_token_of_model_dir(const std::filesystem::path& dir);

}  // namespace rvec::backend
