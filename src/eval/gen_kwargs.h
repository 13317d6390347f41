// lm-eval's `--gen_kwargs k=v,...`: parsed as lm-eval's simple_parse_args_string does (comma-separated
// pairs split at '='; "true"/"false" any case, integers and floats converted) and applied to every
// generation task, overriding its generation_kwargs. Unknown keys and bad values are errors naming them.
#pragma once
#include <string>

#include "eval/runner.h"

namespace rvec::eval {

// Keys: temperature, top_p, top_k, min_p (vLLM's, in [0, 1]), max_gen_toks, do_sample (false: greedy; true without a temperature:
// temperature 1, transformers' default), until (one stop string, as lm-eval wraps a string).
void apply_gen_kwargs(const std::string& spec, EvalOptions& o);

}  // namespace rvec::eval
