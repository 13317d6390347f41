// A LanguageModel with canned behaviour for scorer and end-to-end tests: generations come from a
// lambda of the prompt, log-likelihoods from a lambda of (context, continuation). Results are
// delivered in reverse request order to exercise out-of-order completion.
#pragma once
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "eval/language_model.h"

namespace rvec::eval::testing {

class ScriptedModel : public LanguageModel {
 public:
  std::function<std::string(const std::string& prompt)> gen = [](const std::string&) { return std::string(); };
  // When set, generations come from the whole request (seed, temperature) instead of `gen`.
  std::function<std::string(const GenRequest& req)> gen_req;
  std::function<double(const std::string& ctx, const std::string& cont)> ll = [](const std::string&,
                                                                                 const std::string&) { return -1.0; };
  bool has_template = true;
  // Simulated interruption: throw after this many completions (across calls); -1 = never.
  long fail_after = -1;
  long completed = 0;
  size_t gen_requests = 0, ll_requests = 0;
  std::vector<GenRequest> last_gen;

  std::string name() const override { return "scripted"; }
  void generate(const std::vector<GenRequest>& reqs,
                const std::function<void(size_t, const std::string&)>& on_done) override {
    gen_requests += reqs.size();
    last_gen = reqs;
    for (size_t k = reqs.size(); k-- > 0;) {
      if (fail_after >= 0 && completed >= fail_after) throw std::runtime_error("simulated kill");
      on_done(k, gen_req ? gen_req(reqs[k]) : gen(reqs[k].prompt));
      completed++;
    }
  }
  void loglikelihood(const std::vector<LoglikRequest>& reqs,
                     const std::function<void(size_t, const LoglikResult&)>& on_done) override {
    ll_requests += reqs.size();
    for (size_t k = reqs.size(); k-- > 0;) {
      if (fail_after >= 0 && completed >= fail_after) throw std::runtime_error("simulated kill");
      on_done(k, LoglikResult{ll(reqs[k].context, reqs[k].continuation), false});
      completed++;
    }
  }
  // A ChatML-like template: "<|im_start|>{role}\n{content}<|im_end|>\n" per message.
  std::optional<std::string> apply_chat_template(const std::vector<std::pair<std::string, std::string>>& msgs,
                                                 bool add_generation_prompt,
      const nlohmann::ordered_json& /*template_kwargs*/) const override {
    if (!has_template) return std::nullopt;
    std::string s;
    for (auto& [role, content] : msgs) s += "<|im_start|>" + role + "\n" + content + "<|im_end|>\n";
    if (add_generation_prompt) s += "<|im_start|>assistant\n";
    return s;
  }
};

}  // namespace rvec::eval::testing
