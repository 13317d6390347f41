// `rvec eval MODEL --tasks ...`: lm-evaluation-harness-compatible evaluation with rvec's engine;
// `rvec eval --backend openai --base-url URL --tasks ...`: the same through OpenAI-compatible servers.
// `rvec eval --list-tasks` prints the task names (no model needed).
#include <fmt/format.h>

#include <filesystem>
#include <memory>

#include "backend/factory.h"
#include "cli/chat_options.h"
#include "cli/command.h"
#include "cli/infer_common.h"
#include "core/error.h"
#include "eval/perturb.h"
#include "eval/runner.h"
#include "eval/gen_kwargs.h"
#include "eval/humaneval_exec.h"
#include "eval/sandbox.h"
#include "eval/tasks.h"
#include "exp/tasks.h"
#include "infer/kernels.h"

namespace {

struct Args {
  std::string model, tasks = "gsm8k", out, data_dir, chat_template, lm_eval_version = "0.4.9.2", system_instruction,
      gen_kwargs, template_kwargs;
  bool no_thinking = false;
  bool fewshot_as_multiturn = true;
  std::vector<std::string> perturb;
  int limit = -1, num_fewshot = -1, max_gen_tokens = -1, batch = 16, threads = 0, samples = 1;
  long long seed = -1;
  double temperature = 0, top_p = 1, min_p = 0, exec_timeout = 3.0, kv_cache_gb = 0;
  int top_k = 0;
  bool chat = false, think = false, resume = false, list = false, quiet = false, bf16_dot = false, hugepages = false;
  std::string backend = "engine", kv_cache_dtype = "f32";
  rvec::backend::OpenAIOptions openai;
};

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t p = 0;
  while (p <= s.size()) {
    size_t c = s.find(',', p);
    std::string item = s.substr(p, c == std::string::npos ? std::string::npos : c - p);
    if (!item.empty()) out.push_back(item);
    if (c == std::string::npos) break;
    p = c + 1;
  }
  return out;
}

int list_tasks() {
  using namespace rvec::eval;
  fmt::print("groups:\n");
  for (auto& g : group_names()) fmt::print("  {:<20} {} tasks\n", g, group_members(g).size());
  fmt::print("tasks:\n");
  for (auto& t : task_names()) fmt::print("  {}\n", t);
  fmt::print("perturbations (--perturb):\n");
  for (auto& p : perturbation_names()) fmt::print("  {}\n", p);
  return 0;
}

rvec::cli::Command cmd("eval", "Evaluate a model on GSM8K, HumanEval, SciQ, BBH, GSM-Plus (lm-eval compatible)",
                       [](CLI::App& app) {
  auto a = std::make_shared<Args>();
  app.add_option("model", a->model, "Model directory (HF checkpoint; with --backend openai optional: its tokenizer)");
  app.add_option("--tasks", a->tasks, "Comma-separated task or group names (see --list-tasks)");
  app.add_flag("--list-tasks", a->list, "List the tasks and exit");
  app.add_option("--limit", a->limit, "Evaluate only the first N documents of each task");
  app.add_option("--num-fewshot", a->num_fewshot, "Few-shot examples (default: each task's)");
  app.add_option("--max-gen-tokens", a->max_gen_tokens, "Generation budget (default: each task's)");
  app.add_flag("--chat", a->chat, "Apply the model's chat template (few-shot as alternating turns)");
  app.add_option("--chat-template", a->chat_template, "Jinja chat template file overriding the model's");
  app.add_option("--chat-template-kwargs", a->template_kwargs,
                 "With --chat: JSON object of extra template variables, e.g. '{\"enable_thinking\": false}' "
                 "(sent as chat_template_kwargs with --chat-endpoint)");
  app.add_flag("--no-thinking", a->no_thinking,
               "With --chat: enable_thinking=false for the template (Qwen3: an empty <think></think> block)");
  app.add_option("--lm-eval-version", a->lm_eval_version,
                 "lm-eval release whose prompt rules to follow: 0.4.9.2 (reference, default) or 0.4.11");
  app.add_option("--fewshot-as-multiturn", a->fewshot_as_multiturn,
                 "With --chat: few-shot as alternating turns (true, default) or one user turn (false)");
  app.add_option("--system-instruction", a->system_instruction, "System instruction before the task description");
  app.add_option("--gen-kwargs", a->gen_kwargs,
                 "lm-eval's --gen_kwargs k=v,... for every generation task (temperature, top_p, top_k, min_p, max_gen_toks, "
                 "do_sample, until); applied after --temperature/--top-p/--top-k/--max-gen-tokens");
  app.add_flag("--think", a->think, "Append \"Think step by step.\" to the user turn");
  app.add_option("--perturb", a->perturb, "Adversarial conditions: distractor, shuffle_choices, fewshot_numbers")
      ->delimiter(',');
  app.add_option("--batch", a->batch, "Concurrent sequences in the engine")->check(CLI::PositiveNumber);
  app.add_option("--threads", a->threads, "CPU threads (0: all)");
  app.add_flag("--bf16-dot", a->bf16_dot,
               "Round activations to bf16 and use bf16 dot products (AVX512-BF16, Arm BF16) for bf16 weights "
               "(about 2x faster prefill, ~1e-2 relative; products of 1-4 rows stay exact; with --kv-cache-dtype "
               "bf16 on AVX512-BF16 the attention too; default: exact f32 arithmetic); recorded in model_args");
  app.add_flag("--hugepages", a->hugepages, rvec::cli::kHugepagesHelp);
  app.add_option("--seed", a->seed, "Seed for few-shot sampling and sampling (lm-eval --seed; default 1234 / 0)");
  app.add_option("--temperature", a->temperature, "Sampling temperature (default 0: greedy)");
  app.add_option("--top-p", a->top_p, "Nucleus sampling mass with --temperature (default 1)");
  app.add_option("--top-k", a->top_k, "Sample among the K most likely tokens with --temperature (default 0: all)");
  app.add_option("--min-p", a->min_p,
                 "With --temperature: drop tokens whose probability is below MIN_P x the most likely one's (vLLM's "
                 "min_p; default 0: off)");
  rvec::cli::add_kv_cache_option(app, a->kv_cache_gb);
  rvec::cli::add_kv_cache_dtype_option(app, a->kv_cache_dtype);
  app.add_option("--samples", a->samples,
                 "Generations per document: pass@k (humaneval*), avg@K/pass@K/maj@K (math tasks); needs --temperature");
  app.add_option("--out", a->out, "Output directory (default: eval-out)");
  app.add_flag("--resume", a->resume, "Reuse the samples cached in --out by an interrupted run");
  app.add_option("--data-dir", a->data_dir, "Read task files from DIR (same layout as data/) when present there");
  app.add_option("--exec-timeout", a->exec_timeout, "HumanEval: seconds per program (default 3)");
  app.add_flag("--quiet", a->quiet, "No progress output");
  app.add_option("--backend", a->backend, "engine (rvec's, in-process; default) or openai (OpenAI-compatible servers)")
      ->check(CLI::IsMember({"engine", "openai"}));
  auto& o = a->openai;
  app.add_option("--base-url", o.base_urls, "openai: server URL, root or /v1 (repeat for data parallelism)");
  app.add_option("--served-model", o.served_model, "openai: model id to request (default: first of /v1/models)");
  app.add_option("--api-key-env", o.api_key_env, "openai: environment variable holding the API key");
  app.add_option("--tokenizer", o.tokenizer,
                 "openai: model dir with tokenizer.json and chat template (default: the server's /tokenizer_info "
                 "and /tokenize)");
  app.add_option("--concurrency", o.concurrency, "openai: requests in flight per server (default 8)");
  app.add_option("--timeout", o.timeout_s, "openai: seconds per request (default 600)");
  app.add_option("--max-retries", o.max_retries, "openai: retries per request on connection errors, 429, 5xx (default 5)");
  app.add_option("--wait-for-server", o.wait_for_server_s,
                 "openai: while no server answers /v1/models, keep probing this many seconds (a server still "
                 "loading; default 0: fail at once)");
  app.add_flag("--chat-endpoint", o.chat_endpoint, "openai: generate through /v1/chat/completions (server-side template)");
  return [a]() -> int {
    using namespace rvec::eval;
    rvec::experiment::register_toy_arith();  // the toy family's task (rvec demo) is evaluable too
    if (a->list) return list_tasks();
    const bool remote = a->backend == "openai";
    if (remote && !a->model.empty() && a->openai.tokenizer.empty()) a->openai.tokenizer = a->model;
    if (!remote && a->model.empty()) rvec::fail("eval: a MODEL directory is required (or --backend openai, --list-tasks)");
    if (remote && a->openai.base_urls.empty()) rvec::fail("eval --backend openai: --base-url URL is required");
    if (!remote && !a->openai.base_urls.empty()) rvec::fail("eval: --base-url needs --backend openai");
    EvalOptions o;
    if (a->limit >= 0) o.limit = size_t(a->limit);
    if (a->num_fewshot >= 0) o.num_fewshot = a->num_fewshot;
    if (a->max_gen_tokens > 0) o.max_gen_tokens = a->max_gen_tokens;
    o.chat = a->chat;
    o.think = a->think;
    if ((a->no_thinking || !a->template_kwargs.empty()) && !a->chat)
      rvec::fail("eval: --no-thinking and --chat-template-kwargs need --chat");
    o.chat_template_kwargs = rvec::cli::chat_template_kwargs(a->template_kwargs, a->no_thinking);
    o.lm_eval = parse_lm_eval_version(a->lm_eval_version);
    o.fewshot_as_multiturn = a->fewshot_as_multiturn;
    if (!a->system_instruction.empty()) o.system_instruction = a->system_instruction;
    o.perturb = a->perturb;
    if (a->seed >= 0) o.fewshot_seed = o.gen_seed = uint64_t(a->seed);
    o.temperature = a->temperature;
    o.top_p = a->top_p;
    o.top_k = a->top_k;
    o.min_p = a->min_p;
    o.samples = a->samples;
    if (!a->gen_kwargs.empty()) apply_gen_kwargs(a->gen_kwargs, o);
    o.batch = a->batch;
    o.out_dir = a->out.empty() ? "eval-out" : a->out;
    o.resume = a->resume;
    if (!a->data_dir.empty()) o.data_dir = a->data_dir;
    o.quiet = a->quiet;
    o.model_name = a->model;
    o.model_args = remote ? fmt::format("backend=openai,concurrency={},chat={}{}", a->openai.concurrency, a->chat,
                                        a->openai.chat_endpoint ? ",chat_endpoint=True" : "")
                          : fmt::format("batch={},threads={},chat={}{}{}", a->batch, a->threads, a->chat,
                                        a->bf16_dot ? ",bf16_dot=True" : "",
                                        a->kv_cache_dtype != "f32" ? ",kv_cache_dtype=" + a->kv_cache_dtype : "");
    if (remote && a->kv_cache_dtype != "f32")
      rvec::fail("eval: --kv-cache-dtype is the in-process engine's; a server sets its own (vLLM, SGLang: "
                 "--kv-cache-dtype)");
    if (remote) o.model_name.clear();  // the served model id names it
    if (a->bf16_dot) rvec::cli::enable_bf16_dot();
    if (a->hugepages) rvec::infer::set_default_weight_backing(rvec::io::Backing::HugePages);
    auto names = split_commas(a->tasks);
    if (names.empty()) rvec::fail("eval: --tasks is empty");
    for (auto& p : o.perturb) (void)perturbation_applies(p, Task{});  // unknown names fail early
    std::vector<std::string> expanded;
    for (auto& n : names) {
      auto base = split_perturbed_name(n).first;
      for (auto& e : expand_tasks({base})) expanded.push_back(e);
    }
    check_sampling_options(o, names);  // before the model is loaded
    std::unique_ptr<Sandbox> sandbox;
    for (auto& n : expanded)
      if (n.rfind("humaneval", 0) == 0 && !sandbox) {
        SandboxLimits lim;
        lim.timeout_s = a->exec_timeout;
        sandbox = std::make_unique<Sandbox>(lim);
        fmt::print(stderr, "rvec eval: HumanEval programs run in sandbox mode '{}'\n", sandbox->mode_name());
        if (sandbox->mode() == rvec::eval::SandboxMode::RlimitsOnly)
          fmt::print(stderr,
                     "rvec eval: WARNING: sandbox mode rlimits-only gives NO file-system or network isolation: "
                     "generated programs can read your files and reach the network (see rvec sandbox-check)\n");
        rvec::eval::use_sandbox(*sandbox, o);
      }
    rvec::backend::BackendOptions bo;
    bo.kind = a->backend;
    bo.model = a->model;
    bo.openai = a->openai;
    bo.openai.chat_template_file = a->chat_template;
    bo.openai.quiet = a->quiet;
    bo.engine.threads = a->threads;
    bo.engine.batch = a->batch;
    bo.engine.kv_cache_gb = a->kv_cache_gb;
    bo.engine.kv_dtype = rvec::infer::parse_kv_cache_dtype(a->kv_cache_dtype);
    bo.engine.chat_template_file = a->chat_template;
    auto model = rvec::backend::open_backend(bo);
    EvalResults r = run_eval(*model, names, o);
    fmt::print("{}", r.markdown());
    fmt::print("results: {}/results_{}.json\n", o.out_dir, r.datetime);
    return 0;
  };
});

}  // namespace
