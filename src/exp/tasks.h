// Experiment-side pieces of the evaluation: the toy family's benchmark task.
#pragma once

namespace rvec::experiment {

// Registers `toy_arith` with the evaluation harness (idempotent; `rvec eval` and the
// experiment's evaluator call it). GSM8K format (question / answer ending
// "#### n"), data/toy/toy_arith_test.jsonl (few-shot pool: toy_arith_train.jsonl);
// zero-shot; the prompt is the bare question (meant for --chat: one user message and the
// generation prompt); greedy, <= 96 new tokens, stop at <|im_end|> / <|endoftext|>;
// strict-match `#### (\-?[0-9\.\,]+)` (first match) and gsm8k's exact_match normalisation.
// Also `toy_arith_boxed`: the same problems with a \boxed{} instruction, scored by the math
// pipeline (Qwen toolkit extraction + math_equal; avg@K / pass@K / maj@K with --samples K).
void register_toy_arith();

}  // namespace rvec::experiment
