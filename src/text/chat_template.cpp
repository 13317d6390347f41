// A small Jinja2 interpreter for Hugging Face chat templates (see chat_template.h).
#include "text/chat_template.h"

// The pieces live in chat_template_{lexer,parser,value,eval}.cpp; this file is the API.
#include <fmt/format.h>

#include "core/error.h"
#include "core/input_file.h"
#include "text/chat_template_eval.h"
#include "text/chat_template_parser.h"

namespace rvec::text {

using json = nlohmann::ordered_json;

struct ChatTemplate::Program {
  std::string source;
  jinja::Body body;
};

ChatTemplate ChatTemplate::from_string(std::string source, std::string bos_token, std::string eos_token) {
  auto prog = std::make_shared<Program>();
  prog->source = std::move(source);
  prog->body = jinja::parse_template(prog->source);
  ChatTemplate t;
  t.prog_ = std::move(prog);
  t.bos_ = std::move(bos_token);
  t.eos_ = std::move(eos_token);
  return t;
}

ChatTemplate ChatTemplate::from_file(const std::filesystem::path& jinja_file, std::string bos_token,
                                     std::string eos_token) {
  try {
    return from_string(read_file(jinja_file, kMaxTemplateFileBytes), std::move(bos_token), std::move(eos_token));
  } catch (const Error& e) {
    fail("{}: {}", jinja_file.string(), e.what());
  }
}

std::optional<ChatTemplate> ChatTemplate::from_model_dir(const std::filesystem::path& dir) {
  std::string bos, eos, source;
  bool found = false;
  auto cfg_path = dir / "tokenizer_config.json";
  if (std::filesystem::exists(cfg_path)) {
    json cfg;
    try {
      cfg = json::parse(read_file(cfg_path, kMaxTemplateFileBytes));
    } catch (const json::exception& e) {
      fail("{}: invalid JSON: {}", cfg_path.string(), e.what());
    }
    auto tok_str = [&](const char* key) -> std::string {
      if (!cfg.is_object() || !cfg.contains(key)) return "";
      const json& v = cfg.at(key);
      if (v.is_string()) return v.get<std::string>();
      if (v.is_object() && v.contains("content") && v.at("content").is_string()) return v.at("content").get<std::string>();
      return "";
    };
    bos = tok_str("bos_token");
    eos = tok_str("eos_token");
    if (cfg.is_object() && cfg.contains("chat_template")) {
      const json& ct = cfg.at("chat_template");
      if (ct.is_string()) {
        source = ct.get<std::string>();
        found = true;
      } else if (ct.is_array()) {
        for (const auto& e : ct)
          if (e.is_object() && e.contains("name") && e.at("name") == "default" && e.contains("template") && e.at("template").is_string()) {
            source = e.at("template").get<std::string>();
            found = true;
          }
        if (!found) fail("{}: chat_template list has no \"default\" entry", cfg_path.string());
      }
    }
  }
  auto jinja = dir / "chat_template.jinja";
  if (std::filesystem::exists(jinja)) {
    source = read_file(jinja, kMaxTemplateFileBytes);
    found = true;
  }
  if (!found) return std::nullopt;
  try {
    return from_string(std::move(source), std::move(bos), std::move(eos));
  } catch (const Error& e) {
    fail("{}: {}", dir.string(), e.what());
  }
}

const std::string& ChatTemplate::source() const { return prog_->source; }

std::string ChatTemplate::render(const std::vector<ChatMessage>& msgs, bool add_generation_prompt,
                                 const json& extra) const {
  json m = json::array();
  for (const auto& x : msgs) m.push_back({{"role", x.role}, {"content", x.content}});
  return render_json(m, add_generation_prompt, extra);
}

std::string ChatTemplate::render_json(const json& messages, bool add_generation_prompt, const json& extra) const {
  return jinja::evaluate(prog_->body, messages, add_generation_prompt, extra, bos_, eos_, limits_);
}

}  // namespace rvec::text
