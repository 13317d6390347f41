// `rvec generate MODEL --prompt TEXT [--chat] [--system TEXT] [--max-tokens N] [--temperature T]
//  [--top-p P] [--top-k K] [--seed S] [--stop STR]...`: streams the continuation to stdout and
// prints timing (tokens/s) to stderr.
#include <fmt/format.h>

#include <cstdio>
#include <optional>

#include "cli/chat_options.h"
#include "cli/command.h"
#include "cli/infer_common.h"
#include "text/chat_template.h"

namespace {

struct Args {
  rvec::cli::InferArgs common;
  std::string prompt, system, chat_template, template_kwargs;
  bool chat = false, no_thinking = false;
  int max_tokens = 256;
  float temperature = 0, top_p = 1, min_p = 0;
  double kv_cache_gb = 0;
  int top_k = 0;
  uint64_t seed = 0;
  std::vector<std::string> stop;
};

rvec::cli::Command cmd(
    "generate", "Generate text with a model (streams to stdout, tokens/s to stderr)", [](CLI::App& app) {
      auto a = std::make_shared<Args>();
      rvec::cli::add_infer_options(app, a->common);
      app.add_option("--prompt", a->prompt, "Prompt text (special tokens such as <|im_start|> are parsed)")
          ->required();
      app.add_flag("--chat", a->chat, "Wrap the prompt as a user turn with the model's chat template");
      app.add_option("--system", a->system, "System message (with --chat)");
      app.add_option("--chat-template", a->chat_template, "Jinja chat template file overriding the model's");
      app.add_flag("--no-thinking", a->no_thinking,
                   "With --chat: enable_thinking=false for the template (Qwen3: an empty <think></think> block)");
      app.add_option("--chat-template-kwargs", a->template_kwargs,
                     "With --chat: JSON object of extra template variables, e.g. '{\"enable_thinking\": false}'");
      app.add_option("--max-tokens", a->max_tokens, "Maximum new tokens")->capture_default_str();
      app.add_option("--temperature", a->temperature, "Sampling temperature (0: greedy)")->capture_default_str();
      app.add_option("--top-p", a->top_p, "Nucleus sampling mass")->capture_default_str();
      app.add_option("--top-k", a->top_k, "Top-k sampling (0: off)")->capture_default_str();
      app.add_option("--min-p", a->min_p, "Drop tokens below MIN_P x the top probability (vLLM's min_p; 0: off)")
          ->capture_default_str()
          ->check(CLI::Range(0.0, 1.0));
      rvec::cli::add_kv_cache_option(app, a->kv_cache_gb);
      app.add_option("--seed", a->seed, "Sampling seed")->capture_default_str();
      app.add_option("--stop", a->stop, "Stop string (repeatable)");
      return [a]() -> int {
        using namespace rvec;
        cli::apply_infer_options(a->common);
        auto t0 = std::chrono::steady_clock::now();
        auto model = infer::load_model(a->common.model);
        const text::Tokenizer* tok = model->tokenizer();
        if (!tok) fail("{}: no tokenizer.json; generate needs one", a->common.model);
        std::string prompt = a->prompt;
        const bool chat = a->chat || !a->chat_template.empty();
        if (chat) {
          std::optional<text::ChatTemplate> tpl;
          if (!a->chat_template.empty()) {
            auto base = text::ChatTemplate::from_model_dir(model->dir().path());
            tpl = text::ChatTemplate::from_file(a->chat_template, base ? base->bos_token() : "",
                                                base ? base->eos_token() : "");
          } else {
            tpl = text::ChatTemplate::from_model_dir(model->dir().path());
          }
          if (!tpl) fail("{}: the model has no chat template (tokenizer_config.json / chat_template.jinja); "
                         "use --chat-template FILE", a->common.model);
          nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
          if (!a->system.empty()) msgs.push_back({{"role", "system"}, {"content", a->system}});
          msgs.push_back({{"role", "user"}, {"content", a->prompt}});
          prompt = tpl->render_json(msgs, true, cli::chat_template_kwargs(a->template_kwargs, a->no_thinking));
        } else if (!a->system.empty() || a->no_thinking || !a->template_kwargs.empty()) {
          fail("--system, --no-thinking and --chat-template-kwargs need --chat");
        }
        infer::GenerationRequest req;
        req.prompt = tok->encode(prompt, true);
        // A raw prompt gets the BOS that HF's tokenizer(prompt) adds (add_bos_token: Llama,
        // Mistral); a rendered chat template already starts with the bos_token text, and HF's
        // apply_chat_template tokenizes it without adding another.
        if (!chat && tok->add_bos() && tok->bos_id()) req.prompt.insert(req.prompt.begin(), *tok->bos_id());
        req.max_new_tokens = a->max_tokens;
        req.sampling = {a->temperature, a->top_p, a->top_k, a->seed, a->min_p};
        req.stop_strings = a->stop;
        // The model's context, as eval and serve use it (the prompt is left-truncated to fit the budget).
        const infer::EngineOptions eo{.threads = a->common.threads,
                                      .max_batch = 1,
                                      .max_context = size_t(model->config().max_position_embeddings),
                                      .kv_cache_bytes = infer::kv_cache_cap_bytes(a->kv_cache_gb),
                                      .kv_dtype = cli::kv_dtype(a->common)};
        if (size_t(std::max(a->max_tokens, 0)) >= eo.max_context)
          fail("--max-tokens {} leaves no room for the prompt in the model's context of {} tokens "
               "(max_position_embeddings)",
               a->max_tokens, eo.max_context);
        fmt::print(stderr, "{}\n", infer::kv_cache_report(model->config(), eo));
        infer::Engine eng(*model, eo);
        const double load_s = cli::seconds_since(t0);
        auto t1 = std::chrono::steady_clock::now();
        std::optional<double> first_s;
        infer::GenerationResult res;
        eng.generate(
            {req}, [&](size_t, infer::GenerationResult r) { res = std::move(r); },
            [&](size_t, const std::string& piece) {
              if (!first_s) first_s = cli::seconds_since(t1);
              std::fwrite(piece.data(), 1, piece.size(), stdout);
              std::fflush(stdout);
            });
        const double total = cli::seconds_since(t1);
        std::fputc('\n', stdout);
        const size_t n = res.tokens.size();
        fmt::print(stderr, "[load {:.2f}s; prompt {} tokens; generated {} tokens in {:.2f}s = {:.1f} tok/s; finish: {}]\n",
                   load_s, req.prompt.size(), n, total, total > 0 ? double(n) / total : 0.0, res.finish_reason);
        return 0;
      };
    });

}  // namespace
