// Chat templates, evaluation: runs a parsed template against the chat context
// (messages, add_generation_prompt, tools=None, documents=None, bos/eos tokens,
// raise_exception, namespace, range, strftime_now, plus `extra`), counting every
// step and every byte computed against ChatTemplateLimits.
#pragma once
#include <string>

#include "text/chat_template.h"
#include "text/chat_template_parser.h"

namespace rvec::text::jinja {

std::string evaluate(const Body& body, const json& messages, bool add_generation_prompt, const json& extra,
                     const std::string& bos, const std::string& eos, const ChatTemplateLimits& limits);

}  // namespace rvec::text::jinja
