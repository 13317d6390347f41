// The model as the evaluation harness sees it. eval does not link the inference engine or any
// HTTP client: src/backend implements this interface (rvec's engine in-process, OpenAI-compatible
// servers) and the CLI / experiment hand a LanguageModel to the runner. Tests script one.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace rvec::eval {

struct GenRequest {
  std::string prompt;
  std::vector<std::string> until;
  int max_new_tokens = 256;
  double temperature = 0;
  double top_p = 1;  // nucleus sampling mass (temperature > 0 only)
  uint64_t seed = 0;
  int top_k = 0;     // keep the k most likely tokens (0: no limit; temperature > 0 only)
};
struct LoglikRequest {
  std::string context, continuation;
};
struct LoglikResult {
  double logprob;
  bool is_greedy;
};

class LanguageModel {
 public:
  virtual ~LanguageModel() = default;
  virtual std::string name() const = 0;
  // Runs all requests (the engine batches them); calls on_done(i, text) as each finishes, in any
  // order (calls are serialised by the implementation). The text is the raw continuation with the
  // `until` cut already applied (lm-eval: the text before the first occurrence of any until string).
  virtual void generate(const std::vector<GenRequest>& reqs,
                        const std::function<void(size_t, const std::string&)>& on_done) = 0;
  virtual void loglikelihood(const std::vector<LoglikRequest>& reqs,
                             const std::function<void(size_t, const LoglikResult&)>& on_done) = 0;
  // Chat template rendering for --chat (nullopt: the model has no template -> clear error if --chat).
  // template_kwargs: extra template variables (a JSON object, e.g. {"enable_thinking": false}), as
  // transformers' apply_chat_template(**kwargs) and vLLM's chat_template_kwargs pass them.
  virtual std::optional<std::string> apply_chat_template(
      const std::vector<std::pair<std::string, std::string>>& role_content, bool add_generation_prompt,
      const nlohmann::ordered_json& template_kwargs) const = 0;
  // Where the results came from, recorded as config.backend in results_*.json (kind, endpoints,
  // served model, server version ...); null: nothing to record.
  virtual nlohmann::json provenance() const { return nullptr; }
  // "" when loglikelihood() works; otherwise why not (run_eval then names the tasks that need
  // it and stops before any request is made).
  virtual std::string loglikelihood_unsupported() const { return ""; }
  // A short throughput note for the progress line (e.g. "3.1 req/s 420 tok/s"); "" for none.
  virtual std::string throughput() const { return ""; }
};

// lm-eval's stop rule: the text before the first occurrence of any `until` string.
std::string cut_at_stop(const std::string& text, const std::vector<std::string>& until);

}  // namespace rvec::eval
