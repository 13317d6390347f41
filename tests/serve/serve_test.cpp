// rvec serve end to end on a tiny fixture model: the server runs in-process (or as the rvec
// binary for the signal tests) and is driven over HTTP. Expectations come from the engine's
// own in-process results (Engine::loglikelihood / generate, `rvec score`, `rvec generate`) and
// from lm-eval's documented use of the OpenAI completions API.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "infer/engine.h"
#include "serve/server.h"
#include "test_util.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace rvec;

namespace {

const fs::path kModel = fs::path(RVEC_SHARED_DIR) / "fixtures" / "qwen2_tiny_tied_gqa14x2" / "model";
const std::string kBin = RVEC_BIN;
const char* kChatml =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    // Qwen3's switch, to see chat_template_kwargs reach the template.
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}";

struct Running {
  std::unique_ptr<serve::Server> srv;
  std::thread th;
  int port = 0;
  ~Running() {
    srv->stop(2);
    th.join();
  }
};

const infer::Model& tiny_model() {
  static auto m = infer::load_model(kModel);
  return *m;
}

fs::path chat_template_file() {
  static fs::path p = [] {
    fs::path f = fs::temp_directory_path() / fmt::format("rvec_serve_chatml_{}.jinja", ::getpid());
    std::ofstream(f) << kChatml;
    return f;
  }();
  return p;
}

std::unique_ptr<Running> start(serve::ServerOptions o = {}) {
  o.port = 0;
  o.access_log = false;
  if (o.chat_template.empty()) o.chat_template = chat_template_file();
  auto r = std::make_unique<Running>();
  r->srv = std::make_unique<serve::Server>(tiny_model(), o);
  r->port = r->srv->bind();
  r->th = std::thread([s = r->srv.get()] { s->run(); });
  return r;
}

// The shared server of most tests (batch 8, so 64 clients really share steps and queue).
Running& server() {
  static std::unique_ptr<Running> s = [] {
    serve::ServerOptions o;
    o.batch = 8;
    o.served_model_name = "tiny";
    o.max_body_bytes = 1 << 20;
    return start(o);
  }();
  return *s;
}

httplib::Result post(int port, const std::string& path, const std::string& body,
                     const httplib::Headers& h = {}) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(60, 0);
  return c.Post(path.c_str(), h, body, "application/json");
}
json post_json(int port, const std::string& path, const json& body, int want_status = 200) {
  auto r = post(port, path, body.dump());
  EXPECT_TRUE(r) << path;
  if (!r) return nullptr;
  EXPECT_EQ(r->status, want_status) << path << " " << body.dump() << " -> " << r->body;
  return json::parse(r->body);
}
bool healthy(int port) {
  httplib::Client c("127.0.0.1", port);
  auto r = c.Get("/health");
  return r && r->status == 200;
}

std::vector<int32_t> encode(const std::string& s) { return tiny_model().tokenizer()->encode(s); }

infer::GenerationResult run_alone(const infer::GenerationRequest& rq) {
  infer::Engine eng(tiny_model(), {.max_batch = 1, .max_context = size_t(tiny_model().config().max_position_embeddings)});
  infer::GenerationResult out;
  eng.generate({rq}, [&](size_t, infer::GenerationResult r) { out = std::move(r); });
  return out;
}

// lm-eval local-completions (lm_eval/models/openai_completions.py): the log-likelihood
// payload, and its parse: sum(token_logprobs[ctxlen:-1]), greedy iff each token's logprob
// equals max(top_logprobs[i].values()).
std::pair<double, bool> lmeval_loglik(int port, const std::vector<int32_t>& ctx, const std::vector<int32_t>& cont) {
  std::vector<int32_t> all(ctx);
  all.insert(all.end(), cont.begin(), cont.end());
  json payload = {{"model", "tiny"},          {"prompt", json::array({all})}, {"temperature", 0},
                  {"max_tokens", 1},          {"logprobs", 1},                {"seed", 1234},
                  {"echo", true}};
  json r = post_json(port, "/v1/completions", payload);
  const auto& lp = r["choices"][0]["logprobs"];
  const auto& tl = lp["token_logprobs"];
  EXPECT_EQ(tl.size(), all.size() + 1);  // the prompt, then the one generated token
  EXPECT_TRUE(tl[0].is_null());
  double sum = 0;
  bool greedy = true;
  for (size_t i = ctx.size(); i + 1 < tl.size(); ++i) {
    sum += tl[i].get<double>();
    double mx = -1e300;
    for (const auto& [k, v] : lp["top_logprobs"][i].items()) mx = std::max(mx, v.get<double>());
    if (tl[i].get<double>() != mx) greedy = false;
  }
  return {sum, greedy};
}

}  // namespace

TEST(Serve, LmEvalLoglikelihoodPayloadMatchesEngine) {
  Running& s = server();
  infer::Engine eng(tiny_model(), {.max_batch = 4});
  const auto ctx = encode("The quick brown fox jumps over the lazy");
  // A greedy continuation (the engine's own argmax tokens) and an arbitrary one.
  infer::GenerationRequest g{ctx, 3, {}, {}, {}};
  auto greedy_cont = run_alone(g).tokens;
  ASSERT_EQ(greedy_cont.size(), 3u);
  const std::vector<std::vector<int32_t>> conts = {greedy_cont, encode(" dog and cat"), {7}};
  for (const auto& cont : conts) {
    infer::Engine::Loglik ref{};
    eng.loglikelihood({{ctx, cont}}, [&](size_t, infer::Engine::Loglik l) { ref = l; });
    auto [sum, greedy] = lmeval_loglik(s.port, ctx, cont);
    // The same forward pass and log-softmax; only the lm_head's row count differs (echo asks
    // for every prompt position), and the engine's matmul shapes sum in different orders
    // (matmul_simd.inc: ~1e-7 relative), so the sums agree to that, not bit for bit.
    EXPECT_NEAR(sum, ref.logprob, 1e-5 * std::abs(ref.logprob)) << sum - ref.logprob;
    EXPECT_EQ(greedy, ref.is_greedy);
  }
  EXPECT_TRUE(lmeval_loglik(s.port, ctx, greedy_cont).second);
}

TEST(Serve, EchoLogprobsEqualRvecScore) {
  Running& s = server();
  auto r = test_util::run_shell(kBin + " score " + test_util::shell_quote(kModel.string()) +
                                " --context 'Question: what is two plus two? Answer:' --continuation ' four' 2>/dev/null");
  ASSERT_EQ(r.rc, 0);
  json sc = json::parse(r.out);
  const auto ctx = encode("Question: what is two plus two? Answer:");
  ASSERT_EQ(sc["context_tokens"].get<size_t>(), ctx.size());
  auto [sum, greedy] = lmeval_loglik(s.port, ctx, sc["continuation_tokens"].get<std::vector<int32_t>>());
  EXPECT_NEAR(sum, sc["logprob"].get<double>(), 1e-5 * std::abs(sc["logprob"].get<double>()));
  EXPECT_EQ(greedy, sc["is_greedy"].get<bool>());
}

TEST(Serve, GreedyCompletionEqualsRvecGenerate) {
  Running& s = server();
  const std::string prompt = "Once upon a time";
  auto r = test_util::run_shell(kBin + " generate " + test_util::shell_quote(kModel.string()) + " --prompt '" +
                                prompt + "' --max-tokens 24 2>/dev/null");
  ASSERT_EQ(r.rc, 0);
  json out = post_json(s.port, "/v1/completions",
                       {{"prompt", prompt}, {"max_tokens", 24}, {"temperature", 0}});
  EXPECT_EQ(out["object"], "text_completion");
  EXPECT_EQ(out["choices"][0]["text"].get<std::string>() + "\n", r.out);
  EXPECT_EQ(out["usage"]["prompt_tokens"].get<size_t>(), encode(prompt).size());
  EXPECT_EQ(out["usage"]["total_tokens"].get<size_t>(),
            out["usage"]["prompt_tokens"].get<size_t>() + out["usage"]["completion_tokens"].get<size_t>());
}

TEST(Serve, LmEvalGenerationPayloadHonoursStopAndMaxTokens) {
  Running& s = server();
  const std::vector<std::string> prompts = {"Q: 1+1=?\nA:", "Q: the capital of France?\nA:"};
  // Pick a stop string that the greedy output contains, so the cut is exercised.
  auto free_run = run_alone({encode(prompts[0]), 32, {}, {}, {}});
  ASSERT_GE(free_run.text.size(), 6u);
  const std::string stop = free_run.text.substr(4, 2);
  json payload = {{"model", "tiny"},  {"prompt", prompts},   {"max_tokens", 32},
                  {"temperature", 0}, {"stop", {stop, "\n\n"}}, {"seed", 1234}};
  json out = post_json(s.port, "/v1/completions", payload);
  ASSERT_EQ(out["choices"].size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    auto ref = run_alone({encode(prompts[i]), 32, {0, 1, 0, 1234}, {stop, "\n\n"}, {}});
    EXPECT_EQ(out["choices"][i]["index"], i);
    EXPECT_EQ(out["choices"][i]["text"], ref.text);
    EXPECT_EQ(out["choices"][i]["finish_reason"], ref.finish_reason == "length" ? "length" : "stop");
  }
  EXPECT_EQ(out["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(out["choices"][0]["text"], free_run.text.substr(0, free_run.text.find(stop)));
}

TEST(Serve, SixtyFourConcurrentClientsGetTheirAloneResults) {
  Running& s = server();
  constexpr int kClients = 64;
  std::vector<json> got(kClients);
  std::vector<std::thread> th;
  auto body = [](int i) {
    return json{{"prompt", fmt::format("Client {} says", i)},
                {"max_tokens", 8 + i % 9},
                {"temperature", i % 2 ? 0.9 : 0.0},
                {"top_k", i % 3 ? 0 : 20},
                {"seed", 100 + i}};
  };
  for (int i = 0; i < kClients; ++i)
    th.emplace_back([&, i] {
      auto r = post(s.port, "/v1/completions", body(i).dump());
      if (r && r->status == 200) got[i] = json::parse(r->body);
      else got[i] = r ? json(r->status) : json(httplib::to_string(r.error()));
    });
  for (auto& t : th) t.join();
  for (int i = 0; i < kClients; ++i) {
    ASSERT_TRUE(got[i].is_object()) << i << ": " << got[i].dump();
    json b = body(i);
    infer::GenerationRequest rq{encode(b["prompt"]), b["max_tokens"], {}, {}, {}};
    rq.sampling = {b["temperature"].get<float>(), 1, b["top_k"].get<int>(), b["seed"].get<uint64_t>()};
    EXPECT_EQ(got[i]["choices"][0]["text"], run_alone(rq).text) << i;
  }
  EXPECT_TRUE(healthy(s.port));
}

TEST(Serve, StreamingConcatenatesToTheFullText) {
  Running& s = server();
  json req = {{"prompt", "Streaming works"}, {"max_tokens", 20}, {"temperature", 0}, {"stream", true},
              {"stream_options", {{"include_usage", true}}}};
  auto r = post(s.port, "/v1/completions", req.dump());
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  EXPECT_NE(r->get_header_value("Content-Type").find("text/event-stream"), std::string::npos);
  std::string text, finish;
  bool done = false, usage = false;
  std::istringstream in(r->body);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    ASSERT_EQ(line.rfind("data: ", 0), 0u) << line;
    std::string d = line.substr(6);
    if (d == "[DONE]") {
      done = true;
      continue;
    }
    json c = json::parse(d);
    if (c.contains("usage")) usage = c["usage"]["completion_tokens"].get<int>() > 0;
    for (const auto& ch : c["choices"]) {
      text += ch["text"].get<std::string>();
      if (!ch["finish_reason"].is_null()) finish = ch["finish_reason"];
    }
  }
  EXPECT_TRUE(done);
  EXPECT_TRUE(usage);
  req.erase("stream");
  req.erase("stream_options");
  json full = post_json(s.port, "/v1/completions", req);
  EXPECT_EQ(text, full["choices"][0]["text"]);
  EXPECT_EQ(finish, full["choices"][0]["finish_reason"]);
}

TEST(Serve, StreamedEchoCarriesThePromptLogprobs) {
  // vLLM's stream with echo + logprobs: each choice's first chunk is the prompt (and what was
  // generated with it) with the prompt tokens' logprobs, the first one null; the streamed
  // tokens, logprobs and top alternatives, concatenated, are the non-streamed echo's.
  Running& s = server();
  const std::vector<std::string> prompts = {"Streaming echo works", "A second prompt, longer than the first one"};
  json req = {{"prompt", prompts}, {"max_tokens", 6}, {"temperature", 0}, {"echo", true}, {"logprobs", 2},
              {"stream", true}};
  auto r = post(s.port, "/v1/completions", req.dump());
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  std::map<int, std::vector<json>> chunks;  // per choice index, in order
  std::istringstream in(r->body);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("data: ", 0) != 0 || line == "data: [DONE]") continue;
    json c = json::parse(line.substr(6));
    for (const auto& ch : c["choices"]) chunks[ch["index"].get<int>()].push_back(ch);
  }
  req.erase("stream");
  const json full = post_json(s.port, "/v1/completions", req);
  ASSERT_EQ(chunks.size(), prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    SCOPED_TRACE(i);
    const auto& ch = chunks[int(i)];
    const json& want = full["choices"][i];
    const size_t P = encode(prompts[i]).size();
    ASSERT_GT(P, 1u);
    ASSERT_FALSE(ch.empty());
    // The first chunk: the prompt's text and its P logprobs, the first null, offsets from 0.
    const json& first = ch[0];
    ASSERT_EQ(first["text"].get<std::string>().rfind(prompts[i], 0), 0u) << first["text"];
    const json& flp = first["logprobs"];
    ASSERT_TRUE(flp.is_object()) << first.dump();
    ASSERT_GE(flp["token_logprobs"].size(), P);
    EXPECT_TRUE(flp["token_logprobs"][0].is_null());
    EXPECT_TRUE(flp["top_logprobs"][0].is_null());
    for (size_t k = 0; k < P; ++k) {
      EXPECT_EQ(flp["tokens"][k], want["logprobs"]["tokens"][k]) << k;
      EXPECT_EQ(flp["token_logprobs"][k], want["logprobs"]["token_logprobs"][k]) << k;
      EXPECT_EQ(flp["top_logprobs"][k], want["logprobs"]["top_logprobs"][k]) << k;
      EXPECT_EQ(flp["text_offset"][k], want["logprobs"]["text_offset"][k]) << k;
    }
    // All chunks together: the non-streamed echo's text, tokens and logprobs.
    std::string text;
    json tokens = json::array(), lps = json::array(), tops = json::array();
    for (const auto& c : ch) {
      text += c["text"].get<std::string>();
      if (c["logprobs"].is_null()) continue;
      for (size_t k = 0; k < c["logprobs"]["tokens"].size(); ++k) {
        tokens.push_back(c["logprobs"]["tokens"][k]);
        lps.push_back(c["logprobs"]["token_logprobs"][k]);
        tops.push_back(c["logprobs"]["top_logprobs"][k]);
      }
    }
    EXPECT_EQ(text, want["text"]);
    EXPECT_EQ(tokens, want["logprobs"]["tokens"]);
    EXPECT_EQ(lps, want["logprobs"]["token_logprobs"]);
    EXPECT_EQ(tops, want["logprobs"]["top_logprobs"]);
    EXPECT_GT(lps.size(), P);  // generated tokens' logprobs streamed too
  }
}

TEST(Serve, ChatUsesTheTemplateAndReportsLogprobs) {
  Running& s = server();
  json out = post_json(s.port, "/v1/chat/completions",
                       {{"messages", {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi"}}}},
                        {"max_tokens", 10},
                        {"temperature", 0},
                        {"logprobs", true},
                        {"top_logprobs", 3}});
  EXPECT_EQ(out["object"], "chat.completion");
  const std::string rendered =
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
  infer::GenerationRequest rq{encode(rendered), 10, {}, {}, {}};
  rq.stop_tokens = {*tiny_model().tokenizer()->eos_id()};
  auto ref = run_alone(rq);
  const auto& ch = out["choices"][0];
  EXPECT_EQ(ch["message"]["role"], "assistant");
  EXPECT_EQ(ch["message"]["content"], ref.text);
  ASSERT_EQ(ch["logprobs"]["content"].size(), ref.tokens.size());
  for (const auto& t : ch["logprobs"]["content"]) {
    ASSERT_EQ(t["top_logprobs"].size(), 3u);
    // Greedy: the chosen token is the best alternative, with the identical value.
    EXPECT_EQ(t["top_logprobs"][0]["logprob"].get<double>(), t["logprob"].get<double>());
    EXPECT_LE(t["logprob"].get<double>(), 0.0);
  }
  EXPECT_EQ(out["usage"]["prompt_tokens"].get<size_t>(), rq.prompt.size());
}

// vLLM's chat_template_kwargs: extra variables for the template (here Qwen3's enable_thinking).
TEST(Serve, ChatTemplateKwargsReachTheTemplate) {
  Running& s = server();
  json req = {{"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"max_tokens", 1}, {"temperature", 0}};
  const std::string base = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
  EXPECT_EQ(post_json(s.port, "/v1/chat/completions", req)["usage"]["prompt_tokens"].get<size_t>(),
            encode(base).size());
  req["chat_template_kwargs"] = {{"enable_thinking", false}};
  EXPECT_EQ(post_json(s.port, "/v1/chat/completions", req)["usage"]["prompt_tokens"].get<size_t>(),
            encode(base + "<think>\n\n</think>\n\n").size());
}

TEST(Serve, InfoEndpoints) {
  Running& s = server();
  httplib::Client c("127.0.0.1", s.port);
  auto m = c.Get("/v1/models");
  ASSERT_TRUE(m);
  json models = json::parse(m->body);
  EXPECT_EQ(models["data"][0]["id"], "tiny");
  EXPECT_EQ(models["data"][0]["object"], "model");
  json tk = post_json(s.port, "/tokenize", {{"prompt", "Hello world"}});
  EXPECT_EQ(tk["tokens"].get<std::vector<int32_t>>(), encode("Hello world"));
  EXPECT_EQ(tk["count"], tk["tokens"].size());
  json dt = post_json(s.port, "/detokenize", {{"tokens", tk["tokens"]}});
  EXPECT_EQ(dt["prompt"], "Hello world");
  auto ti = c.Get("/tokenizer_info");
  ASSERT_TRUE(ti);
  json info = json::parse(ti->body);
  EXPECT_EQ(info["chat_template"], kChatml);
  EXPECT_TRUE(info.contains("eos_token"));
  auto me = c.Get("/metrics");
  ASSERT_TRUE(me);
  for (const char* k : {"rvec_requests_total{", "rvec_prompt_tokens_total ", "rvec_generation_tokens_total ",
                        "rvec_queue_length ", "rvec_running_sequences "})
    EXPECT_NE(me->body.find(k), std::string::npos) << k;
}

TEST(Serve, MalformedAndHostileRequestsGet4xx) {
  Running& s = server();
  const std::string big_ids = [] {
    std::string v = "[";
    for (int i = 0; i < 5000; ++i) v += fmt::format("{}{}", i ? "," : "", i % 1000);
    return v + "]";
  }();
  struct Case {
    std::string path, body;
    int status;
  };
  const std::vector<Case> cases = {
      {"/v1/completions", "{not json", 400},
      {"/v1/completions", "", 400},
      {"/v1/completions", "[]", 400},
      {"/v1/completions", "\"prompt\"", 400},
      {"/v1/completions", R"({"max_tokens": 3})", 400},
      {"/v1/completions", R"({"prompt": 5})", 400},
      {"/v1/completions", R"({"prompt": []})", 400},
      {"/v1/completions", R"({"prompt": ""})", 400},
      {"/v1/completions", R"({"prompt": [[]]})", 400},
      {"/v1/completions", R"({"prompt": ["a", 3]})", 400},
      {"/v1/completions", R"({"prompt": [1, "a"]})", 400},
      {"/v1/completions", R"({"prompt": [1, 2.5]})", 400},
      {"/v1/completions", R"({"prompt": [-1]})", 400},
      {"/v1/completions", R"({"prompt": [1024]})", 400},
      {"/v1/completions", R"({"prompt": [[1, 99999999999]]})", 400},
      {"/v1/completions", R"({"prompt": "hi", "max_tokens": "3"})", 400},
      {"/v1/completions", R"({"prompt": "hi", "max_tokens": -1})", 400},
      {"/v1/completions", R"({"prompt": "hi", "max_tokens": 1000000000000})", 400},
      {"/v1/completions", R"({"prompt": "hi", "max_tokens": 1e300})", 400},
      {"/v1/completions", R"({"prompt": "hi", "n": 1000000})", 400},
      {"/v1/completions", R"({"prompt": "hi", "n": 0})", 400},
      {"/v1/completions", R"({"prompt": "hi", "temperature": -1})", 400},
      {"/v1/completions", R"({"prompt": "hi", "temperature": "hot"})", 400},
      {"/v1/completions", R"({"prompt": "hi", "top_p": 0})", 400},
      {"/v1/completions", R"({"prompt": "hi", "top_k": -5})", 400},
      {"/v1/completions", R"({"prompt": "hi", "logprobs": 1000})", 400},
      {"/v1/completions", R"({"prompt": "hi", "logprobs": true})", 400},
      {"/v1/completions", R"({"prompt": "hi", "echo": "yes"})", 400},
      {"/v1/completions", R"({"prompt": "hi", "stream": 1})", 400},
      {"/v1/completions", R"({"prompt": "hi", "stop": 5})", 400},
      {"/v1/completions", R"({"prompt": "hi", "stop": [1, 2]})", 400},
      {"/v1/completions", R"({"prompt": "hi", "seed": "x"})", 400},
      {"/v1/completions", R"({"prompt": "hi", "frequency_penalty": 1.5})", 400},
      {"/v1/completions", R"({"prompt": "hi", "model": "gpt-4"})", 404},
      {"/v1/completions", R"({"prompt": "hi", "model": 7})", 400},
      {"/v1/completions", R"({"prompt": )" + big_ids + R"(, "max_tokens": 1})", 400},  // longer than the context
      {"/v1/completions", std::string(200000, '['), 400},
      {"/v1/chat/completions", R"({"messages": []})", 400},
      {"/v1/chat/completions", R"({"messages": "hi"})", 400},
      {"/v1/chat/completions", R"({"messages": [{"content": "hi"}]})", 400},
      {"/v1/chat/completions", R"({"messages": [{"role": "wizard", "content": "hi"}]})", 400},
      {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": 5}]})", 400},
      {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": "hi"}], "chat_template_kwargs": 1})", 400},
      {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2})", 400},
      {"/tokenize", R"({"prompt": 5})", 400},
      {"/detokenize", R"({"tokens": [1, -2]})", 400},
      {"/detokenize", R"({"tokens": "abc"})", 400},
      {"/v1/nothing", "{}", 404},
      {"/v1/completions", std::string(2 << 20, ' '), 413},  // over the 1 MiB cap of this server
  };
  ASSERT_GE(cases.size(), 30u);
  for (const auto& c : cases) {
    auto r = post(s.port, c.path, c.body);
    ASSERT_TRUE(r) << c.path << " " << c.body.substr(0, 80);
    EXPECT_EQ(r->status, c.status) << c.path << " " << c.body.substr(0, 80) << " -> " << r->body.substr(0, 200);
    json e = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(e.is_object() && e.contains("error")) << r->body.substr(0, 200);
    for (const char* k : {"message", "type", "param", "code"}) EXPECT_TRUE(e["error"].contains(k)) << k;
    EXPECT_TRUE(healthy(s.port));
  }
}

TEST(Serve, HugeBodyAndSlowLorisAreCutOffWhileHealthAnswers) {
  serve::ServerOptions o;
  o.max_body_bytes = 1 << 20;
  o.read_timeout_s = 1;  // short, for the test (default 10)
  auto sp = start(o);
  Running& s = *sp;
  // 100 MB body: refused (413) or the connection is cut; the server keeps serving.
  {
    auto r = post(s.port, "/v1/completions", std::string(100u << 20, 'x'));
    if (r) {
      EXPECT_EQ(r->status, 413);
    }
    EXPECT_TRUE(healthy(s.port));
  }
  // Slow loris: a request that stops arriving is dropped after the read timeout (1 s here).
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(s.port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  const std::string head = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro";
  ASSERT_EQ(::send(fd, head.data(), head.size(), MSG_NOSIGNAL), ssize_t(head.size()));
  EXPECT_TRUE(healthy(s.port));
  const auto t0 = std::chrono::steady_clock::now();
  char buf[256];
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ssize_t n = ::recv(fd, buf, sizeof buf, 0);  // 0 (closed) or a 4xx answer, well before 10 s
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(waited, 8.0);
  if (n > 0) {
    EXPECT_EQ(std::string(buf, size_t(n)).substr(9, 1), "4") << std::string(buf, size_t(n));
  }
  ::close(fd);
  EXPECT_TRUE(healthy(s.port));
}

TEST(Serve, AuthQueueLimitAndDisconnect) {
  serve::ServerOptions o;
  o.api_key = "s3cret-key";
  o.max_queue = 2;
  o.batch = 1;
  auto s = start(o);
  json req = {{"prompt", "hi"}, {"max_tokens", 2}};
  EXPECT_EQ(post(s->port, "/v1/completions", req.dump())->status, 401);
  EXPECT_EQ(post(s->port, "/v1/completions", req.dump(), {{"Authorization", "Bearer wrong"}})->status, 401);
  const httplib::Headers auth = {{"Authorization", "Bearer s3cret-key"}};
  EXPECT_EQ(post(s->port, "/v1/completions", req.dump(), auth)->status, 200);
  EXPECT_TRUE(healthy(s->port));  // /health needs no key
  req["n"] = 3;                   // more sequences than the queue holds
  auto q = post(s->port, "/v1/completions", req.dump(), auth);
  EXPECT_EQ(q->status, 429);
  EXPECT_EQ(json::parse(q->body)["error"]["code"], 429);

  // A streaming client that goes away: its sequence leaves the running batch.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(s->port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  // Greedy on this prompt runs to max_tokens (no EOS), so only the disconnect can end it early.
  const std::string body =
      json{{"prompt", "tell a long story"}, {"max_tokens", 3000}, {"stream", true}, {"temperature", 0}}.dump();
  const std::string msg = fmt::format(
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-key\r\n"
      "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
      body.size(), body);
  ASSERT_EQ(::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL), ssize_t(msg.size()));
  std::string got;
  char buf[512];
  while (got.find("data: ") == std::string::npos) {  // the first streamed text
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    ASSERT_GT(n, 0);
    got.append(buf, size_t(n));
  }
  auto running = [&] {
    httplib::Client c("127.0.0.1", s->port);
    auto m = c.Get("/metrics");
    auto p = m->body.find("\nrvec_running_sequences ");
    return std::stoi(m->body.substr(p + 24));
  };
  EXPECT_EQ(running(), 1);
  ::close(fd);
  int left = 1;
  for (int i = 0; i < 100 && left; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    left = running();
  }
  EXPECT_EQ(left, 0);
}

// The binary under SIGTERM while 16 clients stream: it exits 0 within the grace period plus
// a bound, and the clients see complete responses or a closed connection (no hang).
TEST(Serve, SigtermUnderLoadExitsZero) {
  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::close(out[0]);
    ::execl(kBin.c_str(), kBin.c_str(), "serve", kModel.c_str(), "--port", "0", "--grace", "1", "--batch", "4",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(out[1]);
  std::string line;
  char ch;
  while (::read(out[0], &ch, 1) == 1 && ch != '\n') line += ch;
  ASSERT_EQ(line.rfind("listening on http://127.0.0.1:", 0), 0u) << line;
  const int port = std::stoi(line.substr(line.rfind(':') + 1));
  std::atomic<int> answered{0};
  std::vector<std::thread> th;
  for (int i = 0; i < 16; ++i)
    th.emplace_back([&, i] {
      json b = {{"prompt", fmt::format("load {}", i)}, {"max_tokens", 2000}, {"stream", i % 2 == 0}};
      auto r = post(port, "/v1/completions", b.dump());
      if (r) answered++;
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  int st = 0;
  ASSERT_EQ(::waitpid(pid, &st, 0), pid);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (auto& t : th) t.join();
  ::close(out[0]);
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0);
  EXPECT_LT(took, 10.0);
}

// --kv-cache-gb: a cap that holds one request's prompt + max_tokens but not two. Both concurrent
// requests are answered (the second waits for the first's KV cache, not an error) with the text
// they get on an uncapped server; a request that could never fit is a 400 naming the cap.
TEST(Serve, KvCacheCapQueuesRequestsAndRefusesOnesThatNeverFit) {
  const int64_t per = infer::kv_bytes_per_token(tiny_model().config());
  const std::vector<std::string> prompts = {"Once upon a time", "The capital of France is"};
  size_t most = 0;
  for (const auto& p : prompts) most = std::max(most, encode(p).size());
  serve::ServerOptions o;
  o.kv_cache_gb = double(per) * double(most + 20 + 4) / double(1 << 30);  // one sequence of prompt + 20, not two
  auto capped = start(o);
  std::vector<json> got(2);
  std::vector<std::thread> th;
  for (size_t i = 0; i < 2; ++i)
    th.emplace_back([&, i] {
      got[i] = post_json(capped->port, "/v1/completions", {{"prompt", prompts[i]}, {"max_tokens", 20}, {"temperature", 0}});
    });
  for (auto& t : th) t.join();
  for (size_t i = 0; i < 2; ++i) {
    json alone =
        post_json(server().port, "/v1/completions", {{"model", "tiny"}, {"prompt", prompts[i]}, {"max_tokens", 20}, {"temperature", 0}});
    ASSERT_TRUE(got[i].is_object()) << i;
    EXPECT_EQ(got[i]["choices"][0]["text"], alone["choices"][0]["text"]) << i;
  }
  json err = post_json(capped->port, "/v1/completions", {{"prompt", prompts[0]}, {"max_tokens", 200}}, 400);
  EXPECT_NE(err.dump().find("--kv-cache-gb"), std::string::npos) << err.dump();
}

// A bf16 KV cache (--kv-cache-dtype) reserves half the bytes per token: a cap of 100 tokens' bf16
// bytes admits a prompt + max_tokens of 90 and refuses 110, which an f32 cache of that cap would
// refuse both of (50 tokens).
TEST(Serve, Bf16KvCacheHalvesEachRequestsReservation) {
  const int64_t per = infer::kv_bytes_per_token(tiny_model().config(), DType::BF16);
  ASSERT_EQ(per * 2, infer::kv_bytes_per_token(tiny_model().config()));
  const size_t p = encode("Once upon a time").size();
  serve::ServerOptions o;
  o.kv_dtype = DType::BF16;
  o.kv_cache_gb = double(per) * 100 / double(1 << 30);
  auto half = start(o);
  json ok = post_json(half->port, "/v1/completions",
                      {{"prompt", "Once upon a time"}, {"max_tokens", int(90 - p)}, {"temperature", 0}});
  ASSERT_TRUE(ok.is_object());
  EXPECT_TRUE(ok.contains("choices")) << ok.dump();
  json err =
      post_json(half->port, "/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", int(110 - p)}}, 400);
  EXPECT_NE(err.dump().find("--kv-cache-gb"), std::string::npos) << err.dump();
}
