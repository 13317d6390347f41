// The template bombs of issue 10 under the DEFAULT limits (seconds each, hence slow/):
// doubling a string 60 times and two nested range(100000) loops must end in a clear error.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "text/chat_template.h"

using rvec::text::ChatTemplate;
using json = nlohmann::ordered_json;

namespace {
std::string render_error(const std::string& src) {
  try {
    ChatTemplate::from_string(src).render_json(json::array(), false);
  } catch (const rvec::Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(ChatTemplateBombs, DoublingStopsAtTheOneValueLimit) {
  std::string msg =
      render_error("{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}");
  // 2^27 bytes is the first doubling over 64 MiB.
  EXPECT_NE(msg.find("a computed value would take 134217728 bytes, over the 67108864-byte limit"), std::string::npos)
      << msg;
}

TEST(ChatTemplateBombs, NestedLoopsStopAtABudget) {
  std::string msg = render_error("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}");
  // Either the 20M steps or (first, here) the 2 GiB of range() lists built per outer iteration.
  EXPECT_NE(msg.find("budget exceeded"), std::string::npos) << msg;
}
