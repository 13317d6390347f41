#include "core/build_info.h"
#include "exp/config.h"
#include "exp/runner.h"

#include <gtest/gtest.h>

#include "core/error.h"

using namespace rvec::experiment;

TEST(ExpConfig, DefaultsAndResolution) {
  auto c = parse_config(R"(
models: {sft: m/sft, grpo: /abs/grpo, instruct: m/instruct}
tasks: [toy_arith]
)",
                        "/base", "t.yaml");
  EXPECT_EQ(c.model_path("sft"), "/base/m/sft");
  EXPECT_EQ(c.model_path("grpo"), "/abs/grpo");
  ASSERT_EQ(c.targets.size(), 1u);
  EXPECT_EQ(c.targets[0], "instruct");
  ASSERT_EQ(c.vectors.size(), 1u);
  EXPECT_EQ(c.vectors[0].tuned, "grpo");
  EXPECT_EQ(c.vectors[0].base, "sft");
  EXPECT_EQ(c.alphas, (std::vector<double>{-1, 0, 0.25, 0.5, 0.75, 1, 1.5}));
  ASSERT_EQ(c.conditions.size(), 1u);
  EXPECT_EQ(c.conditions[0].name, "plain");
  EXPECT_TRUE(c.control.enabled);
  EXPECT_EQ(c.control.alphas, (std::vector<double>{1, -1}));
  EXPECT_EQ(c.tasks[0].limit, -1);
  EXPECT_FALSE(c.keep_models);
}

TEST(ExpConfig, FullConfig) {
  auto c = parse_config(R"(
name: paper
models: {a: A, b: B, t1: T1, t2: T2}
targets: [t1, t2]
vectors:
  - {name: reason, expr: "b - a"}
alphas: [0, 0.5]
conditions: [plain, think, "perturb:distractor,shuffle", {name: both, think: true, perturb: [distractor]}]
tasks:
  - {name: gsm8k, limit: 50, num_fewshot: 5, chat: true, max_gen_tokens: 64}
  - sciq
random_control: {seed: 7, alphas: [1]}
eval: {threads: 2, batch: 8, seed: 3}
out: results
keep_models: true
)",
                        "/cfg", "t.yaml");
  EXPECT_EQ(c.name, "paper");
  EXPECT_EQ(c.targets, (std::vector<std::string>{"t1", "t2"}));
  EXPECT_EQ(c.vectors[0].name, "reason");
  EXPECT_EQ(c.vectors[0].tuned, "b");
  EXPECT_EQ(c.vectors[0].base, "a");
  ASSERT_EQ(c.conditions.size(), 4u);
  EXPECT_TRUE(c.conditions[1].think);
  EXPECT_EQ(c.conditions[2].perturb, (std::vector<std::string>{"distractor", "shuffle"}));
  EXPECT_TRUE(c.conditions[3].think);
  EXPECT_EQ(c.tasks[0].limit, 50);
  EXPECT_EQ(c.tasks[0].num_fewshot, 5);
  EXPECT_TRUE(c.tasks[0].chat);
  EXPECT_EQ(c.tasks[1].name, "sciq");
  EXPECT_NE(c.tasks[0].key(), c.tasks[1].key());
  EXPECT_EQ(c.control.seed, 7u);
  EXPECT_EQ(c.threads, 2);
  EXPECT_EQ(c.batch, 8);
  EXPECT_EQ(c.out, "/cfg/results");
  EXPECT_TRUE(c.keep_models);
}

TEST(ExpConfig, Errors) {
  auto bad = [](const std::string& y) { return [y] { parse_config(y, "/b", "bad.yaml"); }; };
  EXPECT_THROW(bad("models: {a: x}\ntasks: [t]\n")(), rvec::Error);  // default target/vector models missing
  EXPECT_THROW(bad("models: {sft: a, grpo: b, instruct: c}\ntasks: [t]\nalpha: [1]\n")(), rvec::Error);  // typo
  EXPECT_THROW(bad("models: {sft: a, grpo: b, instruct: c}\n")(), rvec::Error);  // no tasks
  EXPECT_THROW(bad("models: {sft: a, grpo: b, instruct: c}\ntasks: [t]\nvector: grpo\n")(), rvec::Error);
  EXPECT_THROW(bad("models: {sft: a, grpo: b, instruct: c}\ntasks: [t]\nconditions: [bogus]\n")(), rvec::Error);
  EXPECT_THROW(bad("models: {sft: a, grpo: b, instruct: c}\ntasks: [{name: t, limit: 0}]\n")(), rvec::Error);
  EXPECT_THROW(bad("models: {sft: a, grpo: b, instruct: c}\ntasks: [{name: t, limit: x}]\n")(), rvec::Error);
  EXPECT_THROW(bad("models: [\n")(), rvec::Error);
  try {
    bad("models: {sft: a, grpo: b, instruct: c}\ntasks: [t]\nalpha: [1]\n")();
  } catch (const rvec::Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.yaml:3"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("alpha"), std::string::npos);
  }
}

// chat_template_kwargs: a YAML mapping typed as YAML's core schema (quoted scalars stay
// strings), part of the task's cache identity, and only with chat.
TEST(ExpConfig, ChatTemplateKwargs) {
  auto c = parse_config(
      "models: {sft: a, grpo: b, instruct: c}\n"
      "tasks:\n"
      "  - {name: gsm8k, chat: true, chat_template_kwargs: {enable_thinking: false, n: 3, x: 0.5, s: 'false'}}\n"
      "  - {name: sciq, chat: true}\n",
      "/b", "k.yaml");
  EXPECT_EQ(c.tasks[0].chat_template_kwargs.dump(), R"({"enable_thinking":false,"n":3,"x":0.5,"s":"false"})");
  EXPECT_TRUE(c.tasks[1].chat_template_kwargs.empty());
  TaskConfig plain = c.tasks[0];
  plain.chat_template_kwargs = nlohmann::ordered_json::object();
  EXPECT_NE(c.tasks[0].key(), plain.key());
  try {
    parse_config("models: {sft: a, grpo: b, instruct: c}\ntasks: [{name: t, chat_template_kwargs: {a: 1}}]\n", "/b",
                 "k.yaml");
    ADD_FAILURE() << "chat_template_kwargs without chat was accepted";
  } catch (const rvec::Error& e) {
    EXPECT_NE(std::string(e.what()).find("needs chat: true"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_config("models: {sft: a, grpo: b, instruct: c}\n"
                            "tasks: [{name: t, chat: true, chat_template_kwargs: [1]}]\n",
                            "/b", "k.yaml"),
               rvec::Error);
}

TEST(ExpConfig, FormatAlpha) {
  EXPECT_EQ(format_alpha(0.25), "0.25");
  EXPECT_EQ(format_alpha(-1), "-1");
  EXPECT_EQ(format_alpha(1.5), "1.5");
  EXPECT_EQ(format_alpha(-0.0), "0");
  EXPECT_EQ(format_alpha(0.1), "0.1");
}

TEST(ExpConfig, ShippedExamplesParse) {
  auto paper = load_config(std::string(RVEC_SOURCE_DIR) + "/examples/paper.yaml");
  EXPECT_EQ(paper.tasks.size(), 4u);
  EXPECT_EQ(paper.conditions.size(), 2u);
  EXPECT_TRUE(paper.conditions[1].think);
  EXPECT_EQ(paper.model_path("instruct"), "/path/to/Qwen2.5-1.5B-Instruct");
  auto toy = load_config(std::string(RVEC_SOURCE_DIR) + "/examples/toy.yaml");
  EXPECT_EQ(toy.model_path("grpo"), std::filesystem::path(RVEC_SOURCE_DIR) / "data/toy/grpo");
  EXPECT_EQ(toy.tasks[0].name, "toy_arith");
  EXPECT_TRUE(toy.tasks[0].chat);
  auto math = load_config(std::string(RVEC_SOURCE_DIR) + "/examples/math.yaml");
  ASSERT_EQ(math.tasks.size(), 5u);
  EXPECT_EQ(math.tasks[1].name, "aime24");
  EXPECT_EQ(math.tasks[1].samples, 8);
  EXPECT_EQ(math.tasks[1].temperature, 0.6);
  EXPECT_EQ(math.tasks[0].samples, 1);
  // Sampling settings enter the cache key only when used (greedy keys are unchanged).
  EXPECT_EQ(math.tasks[0].key().find("samples"), std::string::npos);
  EXPECT_NE(math.tasks[1].key().find("samples=8"), std::string::npos);
}

TEST(ExpConfig, BackendSection) {
  const std::string m = "models: {sft: a, grpo: b, instruct: c}\ntasks: [t]\n";
  auto c = parse_config(m + R"(backend:
  kind: openai
  launch: "vllm serve {model} --port {port}"
  instances: 2
  gpus: [0, "2,3"]
  ready_timeout: 60
  concurrency: 32
)",
                        "/b", "b.yaml");
  EXPECT_EQ(c.backend.kind, "openai");
  EXPECT_EQ(c.backend.instances, 2);
  EXPECT_EQ(c.backend.gpus, (std::vector<std::string>{"0", "2,3"}));
  EXPECT_EQ(c.backend.ready_timeout, 60);
  EXPECT_EQ(c.backend.concurrency, 32);
  EXPECT_EQ(parse_config(m, "/b", "b.yaml").backend.kind, "engine");
  EXPECT_EQ(parse_config(m, "/b", "b.yaml").backend.key(), "");  // engine cells keep their fingerprints
  EXPECT_NE(c.backend.key(), "");
  auto c2 = parse_config(m + "backend: {kind: openai, base_url: http://h:8000/v1}\n", "/b", "b.yaml");
  EXPECT_EQ(c2.backend.base_urls, std::vector<std::string>{"http://h:8000/v1"});
  auto err = [&](const std::string& b) {
    try {
      parse_config(m + b, "/b", "bad.yaml");
    } catch (const rvec::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(err("backend: {kind: vllm}\n").find("backend.kind 'vllm'"), std::string::npos);
  EXPECT_NE(err("backend: {kind: openai}\n").find("exactly one of `launch`"), std::string::npos);
  EXPECT_NE(err("backend: {kind: openai, launch: \"x {model}\"}\n").find("{port}"), std::string::npos);
  EXPECT_NE(err("backend: {kind: openai, launch: \"x {model} {port}\", base_url: http://h}\n").find("exactly one"),
            std::string::npos);
  EXPECT_NE(err("backend: {kind: openai, base_url: http://h, instance: 2}\n").find("unknown key 'instance'"),
            std::string::npos);
  EXPECT_NE(err("backend: {launch: \"x {model} {port}\"}\n").find("kind: openai"), std::string::npos);
  auto vllm = load_config(std::string(RVEC_SOURCE_DIR) + "/examples/paper-vllm.yaml");
  EXPECT_EQ(vllm.backend.kind, "openai");
  EXPECT_EQ(vllm.backend.instances, 4);
  EXPECT_EQ(vllm.tasks.size(), 4u);
}

// eval.kv_cache_dtype: the engine's KV cache type (default f32), part of each cell's fingerprint
// unless f32 (results computed with another cache are not reused), refused for servers (they set
// their own) and for names rvec does not have.
TEST(ExpConfig, KvCacheDtype) {
  const std::string m = "models: {sft: a, grpo: b, instruct: c}\ntasks: [t]\n";
  const auto plain = parse_config(m, "/b", "k.yaml");
  const auto f32 = parse_config(m + "eval: {kv_cache_dtype: f32}\n", "/b", "k.yaml");
  const auto bf16 = parse_config(m + "eval: {batch: 4, kv_cache_dtype: bf16}\n", "/b", "k.yaml");
  EXPECT_EQ(plain.kv_cache_dtype, "f32");
  EXPECT_EQ(bf16.kv_cache_dtype, "bf16");
  const auto v = plan_variants(plain);
  ASSERT_FALSE(v.empty());
  ASSERT_EQ(v[0].alpha, 0);
  auto fp = [&](const ExperimentConfig& c) { return cell_fingerprint(c, v[0], c.conditions[0], c.tasks[0]); };
  EXPECT_EQ(fp(plain), fp(f32));
  EXPECT_NE(fp(plain), fp(bf16));
  auto err = [&](const std::string& y) {
    try {
      parse_config(m + y, "/b", "bad.yaml");
    } catch (const rvec::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(err("eval: {kv_cache_dtype: q8_0}\n").find("eval.kv_cache_dtype must be f32, bf16 or f16"),
            std::string::npos);
  EXPECT_NE(err("eval: {kv_cache_dtype: f16}\nbackend: {kind: openai, base_url: http://h:8000/v1}\n")
                .find("a server sets its own"),
            std::string::npos);
}
