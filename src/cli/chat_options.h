// Chat-template variables given on the command line (generate, eval): --chat-template-kwargs JSON
// and its shorthand --no-thinking ({"enable_thinking": false}, Qwen3's switch).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"

namespace rvec::cli {

// The JSON object of --chat-template-kwargs (empty string: {}), with enable_thinking=false added
// by no_thinking; a clear error for invalid JSON or a non-object.
inline nlohmann::ordered_json chat_template_kwargs(const std::string& json_text, bool no_thinking) {
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
  if (!json_text.empty()) {
    try {
      extra = nlohmann::ordered_json::parse(json_text);
    } catch (const nlohmann::json::exception& e) {
      fail("--chat-template-kwargs: invalid JSON: {}", e.what());
    }
    if (!extra.is_object()) fail("--chat-template-kwargs: expected a JSON object, got {}", extra.type_name());
  }
  if (no_thinking) extra["enable_thinking"] = false;
  return extra;
}

}  // namespace rvec::cli
