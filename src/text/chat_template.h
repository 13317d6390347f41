// Chat templates: a small interpreter for the Jinja2 subset that Hugging Face chat
// templates use, rendering like transformers' apply_chat_template (trim_blocks=True,
// lstrip_blocks=True; variables messages, add_generation_prompt, tools=None,
// documents=None, bos_token/eos_token when given; raise_exception(), strftime_now()).
//
// Supported: {% if/elif/else %}, {% for a[, b] in xs [if cond] %} with loop.index/index0/
// first/last/length/revindex, {% else %} on for, {% break/continue %}, {% set x = e %},
// {% set ns.attr = e %}, {% set x %}...{% endset %}, {% generation %}, {# comments #},
// whitespace control ({%- -%} {{- -}} {%+), string/number/list/dict literals, + - * / // %
// ~, comparisons, and/or/not, in / not in, x if c else y, `is [not] defined|none|string|...`,
// filters (trim, tojson, length, upper, lower, default, first, last, join, string, int,
// items, replace, capitalize, title, reverse, list, abs, map(attribute=), selectattr,
// rejectattr, safe), attribute/subscript/slice access, string and dict methods
// (strip, split, startswith, endswith, items, get, ...), namespace().
// Anything else raises rvec::Error naming the template line.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace rvec::text {

// Templates ship inside downloaded checkpoints, so rendering runs under a budget; going
// over any limit is an rvec::Error naming the limit (never a silently capped result).
struct ChatTemplateLimits {
  uint64_t max_output_bytes = 64ull << 20;   // the rendered text
  uint64_t max_steps = 20'000'000;           // expression evaluations + statements executed
  uint64_t max_value_bytes = 64ull << 20;    // any one string/list/dict computed
  uint64_t max_total_bytes = 2ull << 30;     // all strings/lists/dicts computed, summed
};

// chat_template.jinja / tokenizer_config.json larger than this are refused.
constexpr uint64_t kMaxTemplateFileBytes = 64ull << 20;

struct ChatMessage {
  std::string role, content;
};

class ChatTemplate {
 public:
  static ChatTemplate from_string(std::string source, std::string bos_token = "", std::string eos_token = "");
  // tokenizer_config.json "chat_template" (string, or list of {name, template}: "default"
  // is used) or chat_template.jinja (which wins, as in transformers); bos/eos tokens from
  // tokenizer_config.json. nullopt if the directory has no template.
  static std::optional<ChatTemplate> from_model_dir(const std::filesystem::path& dir);
  static ChatTemplate from_file(const std::filesystem::path& jinja_file, std::string bos_token = "",
                                std::string eos_token = "");

  // extra: template variables added to the context (chat_template_kwargs, e.g. enable_thinking).
  std::string render(const std::vector<ChatMessage>& msgs, bool add_generation_prompt,
                     const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;
  // messages as JSON objects (may carry tool_calls etc.; key order is kept for tojson);
  // extra variables are added to
  // the context (e.g. {"tools": [...]}, {"enable_thinking": false}).
  std::string render_json(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                          const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;

  const std::string& source() const;
  void set_limits(const ChatTemplateLimits& l) { limits_ = l; }
  const ChatTemplateLimits& limits() const { return limits_; }
  const std::string& bos_token() const { return bos_; }
  const std::string& eos_token() const { return eos_; }

  struct Program;

 private:
  std::shared_ptr<const Program> prog_;
  std::string bos_, eos_;
  ChatTemplateLimits limits_;
};

}  // namespace rvec::text
