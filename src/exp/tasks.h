// Experiment-side pieces of the evaluation: the toy family's benchmark task and the
// lm-eval tokenization of (context, continuation) pairs used by eval::open_model.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "text/tokenizer.h"

namespace rvec::experiment {

// Registers `toy_arith` with the evaluation harness (idempotent; also done at start-up by
// any binary that links eval::open_model). GSM8K format (question / answer ending
// "#### n"), data/toy/toy_arith_test.jsonl (few-shot pool: toy_arith_train.jsonl);
// zero-shot; the prompt is the bare question (meant for --chat: one user message and the
// generation prompt); greedy, <= 96 new tokens, stop at <|im_end|> / <|endoftext|>;
// strict-match `#### (\-?[0-9\.\,]+)` (first match) and gsm8k's exact_match normalisation.
// Also `toy_arith_boxed`: the same problems with a \boxed{} instruction, scored by the math
// pipeline (Qwen toolkit extraction + math_equal; avg@K / pass@K / maj@K with --samples K).
void register_toy_arith();

// lm-eval HFLM._encode_pair: trailing whitespace of the context moves to the continuation;
// continuation tokens = encode(context + continuation)[len(encode(context)):]; an empty
// context becomes {prefix_token}. No special tokens are added.
std::pair<std::vector<int32_t>, std::vector<int32_t>> lm_eval_encode_pair(const text::Tokenizer& tok,
                                                                          std::string context,
                                                                          std::string continuation,
                                                                          int32_t prefix_token);

}  // namespace rvec::experiment
