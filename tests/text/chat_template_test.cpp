// Chat template tests: expected strings derived by hand from the templates' semantics
// (HF apply_chat_template renders with trim_blocks=True, lstrip_blocks=True).
#include "text/chat_template.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"

using rvec::text::ChatMessage;
using rvec::text::ChatTemplate;
using json = nlohmann::ordered_json;
namespace fs = std::filesystem;

namespace {
const fs::path kData = RVEC_TESTDATA_DIR;
const std::string kQwenSys = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n";

std::string r(const std::string& src, const json& vars = json::object()) {
  return ChatTemplate::from_string(src).render_json(json::array(), false, vars);
}
}  // namespace

TEST(ChatTemplate, Qwen25DefaultSystemPrompt) {
  auto t = ChatTemplate::from_model_dir(kData / "tokenizers/qwen2.5");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->eos_token(), "<|im_end|>");
  EXPECT_EQ(t->render({{"user", "Hello"}}, true),
            kQwenSys + "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(t->render({{"user", "Hello"}}, false), kQwenSys + "<|im_start|>user\nHello<|im_end|>\n");
}

TEST(ChatTemplate, Qwen25SystemAndMultiTurn) {
  auto t = ChatTemplate::from_model_dir(kData / "tokenizers/qwen2.5");
  ASSERT_TRUE(t.has_value());
  std::vector<ChatMessage> m = {{"system", "Be terse."}, {"user", "2+2?"}, {"assistant", "4"}, {"user", " Why? "}};
  EXPECT_EQ(t->render(m, true),
            "<|im_start|>system\nBe terse.<|im_end|>\n"
            "<|im_start|>user\n2+2?<|im_end|>\n"
            "<|im_start|>assistant\n4<|im_end|>\n"
            "<|im_start|>user\n Why? <|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(ChatTemplate, Qwen25ToolCallsAndTools) {
  // chat_template.jinja and tokenizer_config.json carry the same template.
  auto t = ChatTemplate::from_file(kData / "tokenizers/qwen2.5/chat_template.jinja");
  json msgs = json::parse(R"([
    {"role": "user", "content": "Weather?"},
    {"role": "assistant", "content": "", "tool_calls": [
      {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}]},
    {"role": "tool", "content": "sunny"},
    {"role": "tool", "content": "warm"}
  ])");
  EXPECT_EQ(t.render_json(msgs, true),
            kQwenSys +
                "<|im_start|>user\nWeather?<|im_end|>\n"
                "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
                "{\"city\": \"Paris\", \"days\": 2}}\n</tool_call><|im_end|>\n"
                "<|im_start|>user\n<tool_response>\nsunny\n</tool_response>\n<tool_response>\nwarm\n</tool_response>"
                "<|im_end|>\n<|im_start|>assistant\n");
  json tools = json::parse(R"([{"type": "function", "function": {"name": "f", "description": "é \"q\"", "parameters": {}}}])");
  std::string out = t.render_json(json::parse(R"([{"role": "user", "content": "x"}])"), false, {{"tools", tools}});
  EXPECT_EQ(out,
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools\n\n"
            "You may call one or more functions to assist with the user query.\n\n"
            "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
            "{\"type\": \"function\", \"function\": {\"name\": \"f\", \"description\": \"é \\\"q\\\"\", "
            "\"parameters\": {}}}\n</tools>\n\n"
            "For each function call, return a json object with function name and arguments within "
            "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
            "<args-json-object>}\n</tool_call><|im_end|>\n<|im_start|>user\nx<|im_end|>\n");
}

TEST(ChatTemplate, Llama3Like) {
  auto t = ChatTemplate::from_file(kData / "text/llama3_like.jinja", "<|begin_of_text|>", "<|eot_id|>");
  std::vector<ChatMessage> m = {{"system", "Be brief.  "}, {"user", " Hi "}, {"assistant", "Hello!"}, {"user", "2+2?"}};
  EXPECT_EQ(t.render(m, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(t.render({{"user", "x"}}, false),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nx<|eot_id|>");
  try {
    t.render({{"robot", "x"}}, false);
    FAIL() << "expected raise_exception";
  } catch (const rvec::Error& e) {
    EXPECT_NE(std::string(e.what()).find("Unsupported role: robot"), std::string::npos) << e.what();
  }
}

// The Llama-2-chat and Mistral-Instruct (v0.1/v0.2) templates as their tokenizer_config.json
// files ship them (tests/data/text/*.jinja): system prompt folded into the first user turn,
// role alternation enforced with raise_exception.
TEST(ChatTemplate, Llama2ChatAndMistralInstruct) {
  auto l2 = ChatTemplate::from_file(kData / "text/llama2_chat.jinja", "<s>", "</s>");
  EXPECT_EQ(l2.render({{"system", "Be brief."}, {"user", " Hi "}, {"assistant", "Hello! "}, {"user", "2+2?"}}, true),
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n Hi [/INST] Hello! </s><s>[INST] 2+2? [/INST]");
  EXPECT_EQ(l2.render({{"user", "Hi"}}, true), "<s>[INST] Hi [/INST]");
  auto mi = ChatTemplate::from_file(kData / "text/mistral_instruct.jinja", "<s>", "</s>");
  EXPECT_EQ(mi.render({{"user", "Hi"}, {"assistant", "Hello!"}, {"user", "2+2?"}}, true),
            "<s>[INST] Hi [/INST]Hello!</s>[INST] 2+2? [/INST]");
  for (const auto* t : {&l2, &mi}) {
    try {
      t->render({{"user", "a"}, {"user", "b"}}, true);
      ADD_FAILURE() << "expected raise_exception";
    } catch (const rvec::Error& e) {
      EXPECT_NE(std::string(e.what()).find("Conversation roles must alternate"), std::string::npos) << e.what();
    }
  }
  try {
    mi.render({{"system", "s"}, {"user", "a"}}, true);
    ADD_FAILURE() << "expected raise_exception";
  } catch (const rvec::Error& e) {
    // a system turn at index 0 breaks the alternation check first
    EXPECT_NE(std::string(e.what()).find("Conversation roles must alternate"), std::string::npos) << e.what();
  }
}

TEST(ChatTemplate, WhitespaceControlTrimAndLstripBlocks) {
  // lstrip_blocks removes the indentation before a block tag, trim_blocks the newline after it.
  EXPECT_EQ(r("  {% if x %}\n    yes\n  {% endif %}\nend", {{"x", true}}), "    yes\nend");
  EXPECT_EQ(r("  {% if x %}\n    yes\n  {% endif %}\nend", {{"x", false}}), "end");
  // Variable tags are not affected by either.
  EXPECT_EQ(r("  {{ 'a' }}\nb"), "  a\nb");
  // '-' strips all whitespace on that side, newlines included.
  EXPECT_EQ(r("a  \n {{- 'b' -}} \n\n c"), "abc");
  EXPECT_EQ(r("a\n\n{%- if true %}b{% endif -%}\n\n c"), "abc");
  // '+' disables lstrip_blocks.
  EXPECT_EQ(r("x\n  {%+ if true %}y{% endif %}"), "x\n  y");
  // Whitespace before a tag that is not alone on its line stays.
  EXPECT_EQ(r("a  {% if true %}b{% endif %}"), "a  b");
  // Comments are dropped, trimmed like blocks.
  EXPECT_EQ(r("a\n  {# note #}\nb"), "a\nb");
  EXPECT_EQ(r("{% raw %}{{ x }}{% endraw %}"), "{{ x }}");
}

TEST(ChatTemplate, ExpressionsAndFilters) {
  EXPECT_EQ(r("{{ 'a' + \"b\" ~ 1 ~ none ~ true }}"), "ab1NoneTrue");
  EXPECT_EQ(r("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ 7 / 2 }} {{ 2 * 3 + 1 }} {{ 2 ** 10 }} {{ 1.0 }}"),
            "3 -4 1 3.5 7 1024 1.0");
  EXPECT_EQ(r("{{ 1 < 2 and 'b' > 'a' }} {{ not 1 == 1 }} {{ 'x' in 'xyz' }} {{ 3 not in [1, 2] }}"),
            "True False True True");
  EXPECT_EQ(r("{{ 'yes' if x else 'no' }} {{ x or 'dflt' }} {{ y and 'z' }}", {{"x", 0}, {"y", "s"}}), "no dflt z");
  EXPECT_EQ(r("{{ '  pad ' | trim | upper }}|{{ 'MiXeD' | lower }}|{{ [1, 2, 3] | length }}|{{ 'héllo' | length }}"),
            "PAD|mixed|3|5");
  EXPECT_EQ(r("{{ undefined_var | default('d') }}|{{ '' | default('e', true) }}|{{ '' | default('e') }}|"), "d|e||");
  EXPECT_EQ(r("{{ {'b': [1, 2.5, none, true], 'a': 'é\\n'} | tojson }}"),
            "{\"b\": [1, 2.5, null, true], \"a\": \"é\\n\"}");
  EXPECT_EQ(r("{{ {'a': [1]} | tojson(indent=2) }}"), "{\n  \"a\": [\n    1\n  ]\n}");
  EXPECT_EQ(r("{{ [3, 1] | first }}{{ [3, 1] | last }}{{ ['a', 'b'] | join('-') }}{{ [1, 2] | reverse | list }}"),
            "31a-b[2, 1]");
  EXPECT_EQ(r("{{ ['a', 'b'] }} {{ {'k': 'v'} }} {{ x }}", {{"x", json::array({1, "q'"})}}),
            "['a', 'b'] {'k': 'v'} [1, \"q'\"]");
  EXPECT_EQ(r("{{ 'a,b,,c'.split(',') }} {{ ' x '.strip() }} {{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'c')) }}"),
            "['a', 'b', '', 'c'] x True True");
  EXPECT_EQ(r("{{ m.get('k') }} {{ m.get('z', 9) }} {% for k, v in m.items() %}{{ k }}={{ v }};{% endfor %}",
              {{"m", {{"k", 1}}}}),
            "1 9 k=1;");
  EXPECT_EQ(r("{{ s[1:] }} {{ s[:-1] }} {{ s[::-1] }} {{ l[1:3] }} {{ l[-1] }} {{ s[0] }}",
              {{"s", "abcd"}, {"l", {1, 2, 3, 4}}}),
            "bcd abc dcba [2, 3] 4 a");
  EXPECT_EQ(r("{{ x is defined }} {{ y is defined }} {{ x is none }} {{ x is not none }} {{ 's' is string }} "
              "{{ 4 is even }} {{ 3 is divisibleby 3 }} {{ [1] is iterable }}",
              {{"x", nullptr}}),
            "True False True False True True True True");
  EXPECT_EQ(r("{{ m | selectattr('role', 'equalto', 'u') | map(attribute='c') | join(',') }}",
              {{"m", json::parse(R"([{"role":"u","c":"1"},{"role":"a","c":"2"},{"role":"u","c":"3"}])")}}),
            "1,3");
}

TEST(ChatTemplate, LoopsSetAndNamespace) {
  EXPECT_EQ(r("{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};"
              "{% endfor %}",
              {{"xs", {"a", "b"}}}),
            "10TrueFalse2;21FalseTrue2;");
  EXPECT_EQ(r("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(r("{% for x in range(5) if x is odd %}{{ x }}{% endfor %}"), "13");
  EXPECT_EQ(r("{% for x in range(9) %}{% if x == 3 %}{% break %}{% endif %}{% if x == 1 %}{% continue %}{% endif %}"
              "{{ x }}{% endfor %}"),
            "02");
  // set inside a loop does not leak out; namespace() attributes do.
  EXPECT_EQ(r("{% set c = 0 %}{% set ns = namespace(c=0) %}{% for x in [1, 2, 3] %}{% set c = c + x %}"
              "{% set ns.c = ns.c + x %}{% endfor %}{{ c }} {{ ns.c }}"),
            "0 6");
  EXPECT_EQ(r("{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set blk %}x{{ a }}y{% endset %}[{{ blk }}]"), "12[x1y]");
  EXPECT_EQ(r("{% if a %}1{% elif b %}2{% else %}3{% endif %}", {{"a", false}, {"b", true}}), "2");
}

TEST(ChatTemplate, ErrorsAreClear) {
  auto err = [](const std::string& src, const std::string& needle, const json& vars = json::object()) {
    try {
      r(src, vars);
      ADD_FAILURE() << "no error for " << src;
    } catch (const rvec::Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  err("{% if x %}", "missing");
  err("a\n{% macro f() %}{% endmacro %}", "line 2: unsupported tag");
  err("{{ x | nosuchfilter }}", "unknown filter 'nosuchfilter'");
  err("{{ 'a' + }}", "expected an expression");
  err("{{ x.y }}", "'x' is undefined");
  err("{{ raise_exception('boom') }}", "boom");
  err("{{ 'unterminated }}", "unclosed");
  err("{% break %}", "outside a loop");
  err("{{ 1 + 'a' }}", "unsupported operand");
  // Found by the fuzzer: an index past int64 used to escape as std::out_of_range.
  err("{{ x.99999999999999999999999 }}", "line 1: bad index");
  err("{{ 99999999999999999999999 }}", "line 1: bad number");
  err(std::string("{{ ") + std::string(200, '(') + "1" + std::string(200, ')') + " }}", "nested too deeply");
  auto none = ChatTemplate::from_model_dir(kData / "text");
  EXPECT_FALSE(none.has_value());
}

// Qwen3's template (from ../shared/data/tokenizers/qwen3/tokenizer_config.json): reversed
// slices, namespace bookkeeping, string methods, `is false`; expected output by hand.
TEST(ChatTemplate, Qwen3ThinkingTemplate) {
  auto t = ChatTemplate::from_file(kData / "text/qwen3_chat_template.jinja");
  json m1 = json::parse(R"([{"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "<think>\nr\n</think>\n\nHello"}, {"role": "user", "content": "Bye"}])");
  EXPECT_EQ(t.render_json(m1, true, {{"enable_thinking", false}}),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"
            "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
  EXPECT_EQ(t.render_json(m1, true),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"
            "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n");
  json m2 = json::parse(R"([{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
    {"role": "assistant", "content": "<think>\nmull\n</think>\n\nA"}])");
  EXPECT_EQ(t.render_json(m2, false),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n"
            "<|im_start|>assistant\n<think>\nmull\n</think>\n\nA<|im_end|>\n");
}
