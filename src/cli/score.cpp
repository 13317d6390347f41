// `rvec score MODEL --context TEXT --continuation TEXT`: log-likelihood of the continuation
// given the context, tokenized like lm-evaluation-harness (_encode_pair: trailing spaces of
// the context move to the continuation; continuation ids = encode(context + continuation)
// minus the context's ids). Prints JSON.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/infer_common.h"

namespace {

struct Args {
  rvec::cli::InferArgs common;
  std::string context, continuation;
};

rvec::cli::Command cmd(
    "score", "Log-likelihood of a continuation given a context (JSON)", [](CLI::App& app) {
      auto a = std::make_shared<Args>();
      rvec::cli::add_infer_options(app, a->common);
      app.add_option("--context", a->context, "Context text")->required();
      app.add_option("--continuation", a->continuation, "Continuation text")->required();
      return [a]() -> int {
        using namespace rvec;
        cli::apply_infer_options(a->common);
        auto model = infer::load_model(a->common.model);
        const text::Tokenizer* tok = model->tokenizer();
        if (!tok) fail("{}: no tokenizer.json; score needs one", a->common.model);
        std::string ctx = a->context, cont = a->continuation;
        size_t n_spaces = ctx.size() - (ctx.find_last_not_of(' ') == std::string::npos ? 0 : ctx.find_last_not_of(' ') + 1);
        if (n_spaces > 0) {
          cont = ctx.substr(ctx.size() - n_spaces) + cont;
          ctx.resize(ctx.size() - n_spaces);
        }
        std::vector<int32_t> ctx_ids, cont_ids;
        if (ctx.empty()) {
          if (model->eos_ids().empty()) fail("empty context and the model has no EOS id to use instead");
          ctx_ids = {model->eos_ids()[0]};  // lm-eval: the EOT token stands for an empty context
          cont_ids = tok->encode(cont);
        } else {
          auto whole = tok->encode(ctx + cont);
          ctx_ids = tok->encode(ctx);
          if (whole.size() < ctx_ids.size()) fail("tokenization of context + continuation is shorter than the context");
          cont_ids.assign(whole.begin() + ctx_ids.size(), whole.end());
        }
        if (cont_ids.empty()) fail("the continuation has no tokens");
        infer::Engine eng(*model, {.threads = a->common.threads,
                                   .max_batch = 1,
                                   .max_context = 32768,
                                   .kv_dtype = cli::kv_dtype(a->common)});
        infer::Engine::Loglik r{};
        eng.loglikelihood({{ctx_ids, cont_ids}}, [&](size_t, infer::Engine::Loglik l) { r = l; });
        nlohmann::json j{{"logprob", r.logprob},
                         {"is_greedy", r.is_greedy},
                         {"context_tokens", ctx_ids.size()},
                         {"continuation_tokens", cont_ids}};
        fmt::print("{}\n", j.dump());
        return 0;
      };
    });

}  // namespace
