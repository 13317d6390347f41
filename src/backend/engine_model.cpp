// backend::open_engine_model: rvec's inference engine behind the evaluation harness's LanguageModel,
// tokenizing exactly as lm-evaluation-harness's HF backend does for causal LMs:
//  - no special tokens are added (no BOS; Llama-3 style templates carry their own);
//  - loglikelihood(context, continuation): trailing whitespace of the context moves to the
//    continuation, then whole = encode(context + continuation), ctx = encode(context) and the
//    continuation tokens are whole[len(ctx):]; an empty context becomes the prefix token
//    (BOS if the model has one, else EOS).
#include <fmt/format.h>

#include <mutex>

#include "core/error.h"
#include "backend/encode.h"
#include "backend/engine_model.h"
#include "infer/engine.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace fs = std::filesystem;

namespace rvec::backend {

using eval::GenRequest;
using eval::LanguageModel;
using eval::LoglikRequest;
using eval::LoglikResult;

namespace {

class EngineModel : public LanguageModel {
 public:
  EngineModel(const std::string& path, const EngineOptions& opts) : path_(path) {
    model_ = infer::load_model(path);
    if (!model_->tokenizer()) fail("{}: no tokenizer.json: rvec cannot evaluate a model without its tokenizer", path);
    infer::EngineOptions eo;
    eo.threads = opts.threads;
    eo.max_batch = std::max(1, opts.batch);
    // The model's own context (lm-eval's max_length is max_position_embeddings), so long chains of
    // thought (math tasks: up to 32k tokens) fit; KV caches grow with use, not with this bound.
    eo.max_context = max_context_ = size_t(std::max<int64_t>(4096, model_->config().max_position_embeddings));
    eo.kv_cache_bytes = infer::kv_cache_cap_bytes(opts.kv_cache_gb);
    eo.kv_dtype = opts.kv_dtype;
    fmt::print(stderr, "{}\n", infer::kv_cache_report(model_->config(), eo));
    engine_ = std::make_unique<infer::Engine>(*model_, eo);
    if (!opts.chat_template_file.empty()) {
      auto dir_tpl = text::ChatTemplate::from_model_dir(model_->dir().path());
      tpl_ = text::ChatTemplate::from_file(opts.chat_template_file, dir_tpl ? dir_tpl->bos_token() : "",
                                           dir_tpl ? dir_tpl->eos_token() : "");
    } else {
      tpl_ = text::ChatTemplate::from_model_dir(model_->dir().path());
    }
  }

  std::string name() const override { return path_; }

  std::vector<int32_t> encode(const std::string& s) const { return model_->tokenizer()->encode(s, true); }

  void generate(const std::vector<GenRequest>& reqs,
                const std::function<void(size_t, const std::string&)>& on_done) override {
    std::vector<infer::GenerationRequest> g(reqs.size());
    for (size_t i = 0; i < reqs.size(); ++i) {
      g[i].prompt = encode(reqs[i].prompt);
      if (g[i].prompt.empty()) g[i].prompt.push_back(prefix_token());
      g[i].max_new_tokens = reqs[i].max_new_tokens;
      // The engine keeps the last (context - max_new_tokens) prompt tokens: a budget that fills the
      // context would leave the model (almost) no prompt, so it is refused rather than run.
      if (size_t(reqs[i].max_new_tokens) + 16 > max_context_)
        fail("{}: a generation budget of {} tokens leaves no room for the prompt in the model's context of {} "
             "tokens (max_position_embeddings); lower --max-gen-tokens",
             path_, reqs[i].max_new_tokens, max_context_);
      g[i].sampling.temperature = float(reqs[i].temperature);
      g[i].sampling.top_p = float(reqs[i].top_p);
      g[i].sampling.seed = reqs[i].seed;
      g[i].sampling.top_k = reqs[i].top_k;
      g[i].sampling.min_p = float(reqs[i].min_p);
      g[i].stop_strings = reqs[i].until;
    }
    std::mutex mu;
    engine_->generate(g, [&](size_t i, infer::GenerationResult r) {
      std::lock_guard<std::mutex> lk(mu);
      on_done(i, eval::cut_at_stop(r.text, reqs[i].until));
    });
  }

  void loglikelihood(const std::vector<LoglikRequest>& reqs,
                     const std::function<void(size_t, const LoglikResult&)>& on_done) override {
    std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> pairs;
    pairs.reserve(reqs.size());
    for (auto& r : reqs)
      pairs.push_back(lm_eval_encode_pair(*model_->tokenizer(), r.context, r.continuation, prefix_token()));
    std::mutex mu;
    engine_->loglikelihood(pairs, [&](size_t i, infer::Engine::Loglik l) {
      std::lock_guard<std::mutex> lk(mu);
      on_done(i, LoglikResult{l.logprob, l.is_greedy});
    });
  }

  std::optional<std::string> apply_chat_template(const std::vector<std::pair<std::string, std::string>>& rc,
                                                 bool add_generation_prompt,
                                                 const nlohmann::ordered_json& template_kwargs) const override {
    if (!tpl_) return std::nullopt;
    std::vector<text::ChatMessage> msgs;
    for (auto& [r, c] : rc) msgs.push_back({r, c});
    return tpl_->render(msgs, add_generation_prompt, template_kwargs);
  }

 private:
  int32_t prefix_token() const {
    if (auto b = model_->bos_id()) return *b;
    if (!model_->eos_ids().empty()) return model_->eos_ids().front();
    fail("{}: the model has neither a BOS nor an EOS token id (needed for an empty context)", path_);
  }

  std::string path_;
  size_t max_context_ = 4096;  // the engine's context (tokens per sequence)
  std::unique_ptr<infer::Model> model_;
  std::unique_ptr<infer::Engine> engine_;
  std::optional<text::ChatTemplate> tpl_;
};

}  // namespace

std::unique_ptr<LanguageModel> open_engine_model(const std::string& path, const EngineOptions& opts) {
  return std::make_unique<EngineModel>(path, opts);
}

}  // namespace rvec::backend
