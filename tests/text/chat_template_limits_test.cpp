// Template bombs (issue 10 §3): templates come inside downloaded checkpoints, so each
// resource a template can grow (output, steps, one value, all values, nesting) is
// bounded, and going over is a clear error naming the limit, never a silent cap.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "core/error.h"
#include "text/chat_template.h"

using rvec::text::ChatTemplate;
using rvec::text::ChatTemplateLimits;
using json = nlohmann::ordered_json;

namespace {

// The error of rendering `src` under `lim`, or "" when it renders; also checks that
// giving up took well under the time the bomb would run (seconds, not minutes).
std::string bomb(const std::string& src, ChatTemplateLimits lim = {}) {
  auto t0 = std::chrono::steady_clock::now();
  std::string msg;
  try {
    auto t = ChatTemplate::from_string(src);
    t.set_limits(lim);
    t.render_json(json::array(), false);
  } catch (const rvec::Error& e) {
    msg = e.what();
  }
  // CPU time would be the fairer clock, but even a loaded CI machine stays far below this.
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 120.0) << src;
  return msg;
}

bool has(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

}  // namespace

TEST(ChatTemplateLimits, StringRepetitionIsCheckedNotCapped) {
  // Before: silently capped at 10^6 repeats. Python refuses str * float outright.
  EXPECT_TRUE(has(bomb("{{ 'x' * 100000000000 }}"), "string repetition (1 bytes x 100000000000) would take "
                                                     "100000000000 bytes, over the 67108864-byte limit"));
  EXPECT_TRUE(has(bomb("{{ 'x' * 1e11 }}"), "can't multiply sequence by non-int of type 'float'"));
  EXPECT_EQ(ChatTemplate::from_string("{{ 2.5e-1 + 1E2 }}").render_json(json::array(), false), "100.25");
  // Under the limit it is exact (no cap): 2,000,000 repeats of one byte.
  auto t = ChatTemplate::from_string("{{ ('ab' * 1000000) | length }}");
  EXPECT_EQ(t.render_json(json::array(), false), "2000000");
}

TEST(ChatTemplateLimits, DoublingAStringHitsTheValueLimit) {
  // With the default limits in tests/text/slow/chat_template_bombs_test.cpp.
  ChatTemplateLimits lim;
  lim.max_value_bytes = 1 << 20;
  std::string msg =
      bomb("{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}", lim);
  EXPECT_TRUE(has(msg, "chat template: line 1: a computed value would take 2097152 bytes")) << msg;
  EXPECT_TRUE(has(msg, "over the 1048576-byte limit for one value")) << msg;
}

TEST(ChatTemplateLimits, NestedLoopsHitTheStepBudget) {
  ChatTemplateLimits lim;
  lim.max_steps = 1'000'000;
  std::string msg = bomb("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", lim);
  EXPECT_TRUE(has(msg, "evaluation budget exceeded: more than 1000000 steps")) << msg;
}

TEST(ChatTemplateLimits, OutputAndTotalMemoryLimits) {
  ChatTemplateLimits lim;
  lim.max_output_bytes = 1000;
  EXPECT_TRUE(has(bomb("{% for i in range(200) %}0123456789{% endfor %}", lim), "output exceeds the 1000-byte limit"));
  // Exactly at the limit is fine.
  EXPECT_EQ(bomb("{% for i in range(100) %}0123456789{% endfor %}", lim), "");
  lim = {};
  lim.max_total_bytes = 10'000'000;
  // Each value is small but together they exceed the budget (1000 x 1 MB strings).
  std::string msg = bomb("{% for i in range(1000) %}{% set s = 'y' * 1000000 %}{% endfor %}", lim);
  EXPECT_TRUE(has(msg, "memory budget exceeded: values computed so far take more than 10000000 bytes")) << msg;
  lim = {};
  lim.max_value_bytes = 1000;
  EXPECT_TRUE(has(bomb("{{ range(1000) | list | length }}", lim), "range() of 1000 numbers would take"));
  EXPECT_TRUE(has(bomb("{{ ('a' * 100) | replace('a', 'bbbbbbbbbbbbbbbbbbbbbbbb') }}", lim), "replace()'s result"));
}

TEST(ChatTemplateLimits, DeepNestingAndIntegerOverflowAreErrors) {
  EXPECT_TRUE(has(bomb("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}"),
                  "expression nested too deeply"));
  EXPECT_TRUE(has(bomb("{{ " + std::string(5000, '-') + "1 }}"), "expression nested too deeply"));
  std::string chain = "{{ 1";
  for (int i = 0; i < 5000; ++i) chain += " + 1";
  EXPECT_TRUE(has(bomb(chain + " }}"), "expression nested more than 200 levels deep"));
  EXPECT_TRUE(has(bomb("{{ 9223372036854775807 + 1 }}"), "integer overflow in 9223372036854775807 + 1"));
  EXPECT_TRUE(has(bomb("{{ 3 ** 100 }}"), "integer overflow in 3 ** 100"));
  EXPECT_EQ(ChatTemplate::from_string("{{ range(-3, 3, 2) | list }}").render_json(json::array(), false), "[-3, -1, 1]");
}

TEST(ChatTemplateLimits, NamespaceCyclesAreFreed) {
  // A namespace stored in itself is a reference cycle; the evaluator empties its namespaces when
  // it ends, on success and on error. The ASan run (detect_leaks=1) is what fails on a leak; the
  // fuzzer found it with a template like the first one.
  auto t = ChatTemplate::from_string(
      "{% set ns = namespace(s='x') %}{% for i in range(3) %}{% set ns.me = ns %}{% endfor %}"
      "{{ ns.me.me.s }}{{ ns.s | length }}");
  EXPECT_EQ(t.render_json(json::array(), false), "x1");
  auto a = ChatTemplate::from_string(
      "{% set a = namespace() %}{% set b = namespace(a=a) %}{% set a.b = b %}{{ raise_exception('stop') }}");
  EXPECT_THROW(a.render_json(json::array(), false), std::exception);
}
