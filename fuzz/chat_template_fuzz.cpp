// libFuzzer target: chat-template parsing and rendering with small resource limits on.
// The input is a template; it renders a fixed conversation (with a tool call) under
// limits small enough that any runaway template ends in milliseconds. It must render or
// throw rvec::Error, and an accepted output never exceeds the output limit.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "text/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using json = nlohmann::ordered_json;
  rvec::text::ChatTemplateLimits lim;
  lim.max_output_bytes = 1 << 16;
  lim.max_steps = 100000;
  lim.max_value_bytes = 1 << 20;
  lim.max_total_bytes = 16 << 20;
  static const json messages = json::parse(R"([
    {"role":"system","content":"You are helpful."},
    {"role":"user","content":"What is 2+2? <|im_start|>"},
    {"role":"assistant","content":"","tool_calls":[{"type":"function","function":{"name":"add","arguments":{"a":2,"b":2}}}]},
    {"role":"tool","content":"4"},
    {"role":"assistant","content":"4"}])");
  static const json extra = json::parse(R"({"tools":[{"type":"function","function":{"name":"add",
    "parameters":{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}}}}}]})");
  try {
    auto t = rvec::text::ChatTemplate::from_string(std::string(reinterpret_cast<const char*>(data), size), "<s>", "</s>");
    t.set_limits(lim);
    std::string out = t.render_json(messages, (size & 1) != 0, extra);
    if (out.size() > lim.max_output_bytes) std::abort();
  } catch (const rvec::Error&) {
  }
  return 0;
}
