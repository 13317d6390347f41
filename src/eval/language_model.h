// The model as the evaluation harness sees it. eval does not link the inference
// engine: `open_model` is declared here and defined by the experiment module
// (src/exp/engine_model.cpp), which adapts rvec's batched engine to this interface.
// Tests use a scripted implementation.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
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
  virtual std::optional<std::string> apply_chat_template(
      const std::vector<std::pair<std::string, std::string>>& role_content, bool add_generation_prompt) const = 0;
};

struct ModelOptions {
  int threads = 0;  // 0: all cores
  int batch = 16;   // maximum concurrent sequences
  std::string chat_template_file;  // overrides the model's chat template when set
};

// Defined in src/exp/engine_model.cpp (links the inference engine).
std::unique_ptr<LanguageModel> open_model(const std::string& path, const ModelOptions& opts);

// lm-eval's stop rule: the text before the first occurrence of any `until` string.
std::string cut_at_stop(const std::string& text, const std::vector<std::string>& until);

}  // namespace rvec::eval
