// The OpenAI client backend against a loopback mock server (vLLM's response shapes): the exact
// payloads sent, lm-eval's loglikelihood arithmetic on echoed prompt logprobs, the until cut,
// retries on 429 / 500 / stalls / dropped connections, re-routing around a dead endpoint,
// provenance, and refusing log-likelihood tasks on a llama.cpp server before any request.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "backend/factory.h"
#include "backend/http.h"
#include "core/error.h"
#include "eval/runner.h"
#include "mock_openai.h"
#include "text/tokenizer.h"

using namespace rvec;
using nlohmann::json;
using backend_test::Fault;
using backend_test::MockOpenAI;

namespace {

const std::string kToyDir = std::string(RVEC_DATA_DIR) + "/toy/instruct";  // tokenizer, template, bos 566

backend::OpenAIOptions opts_for(const std::vector<std::string>& urls) {
  backend::OpenAIOptions o;
  o.base_urls = urls;
  o.tokenizer = kToyDir;
  o.concurrency = 2;
  o.timeout_s = 1.0;
  o.max_retries = 3;
  o.retry_base_s = 0.01;
  o.retry_max_s = 0.05;
  o.endpoint_cooldown_s = 30;
  o.quiet = true;
  return o;
}

std::map<size_t, std::string> generate_all(eval::LanguageModel& m, const std::vector<eval::GenRequest>& reqs) {
  std::map<size_t, std::string> out;
  m.generate(reqs, [&](size_t i, const std::string& s) { out[i] = s; });
  return out;
}

std::vector<eval::GenRequest> three_requests() {
  return {{"What is 2+2?", {"<|im_end|>", "\n\n"}, 32, 0, 1, 7},
          {"", {"<|im_end|>"}, 8, 0, 1, 8},
          {"Q: 1+1", {}, 4, 0.7, 0.9, 9, 20, 0.05}};
}

}  // namespace

TEST(HttpUrls, RootAndV1AreTheSameServerAndCredentialsAreRedacted) {
  EXPECT_EQ(backend::server_root("http://h:8000/v1"), "http://h:8000");
  EXPECT_EQ(backend::server_root("http://h:8000/v1/"), "http://h:8000");
  EXPECT_EQ(backend::server_root("http://h:8000/"), "http://h:8000");
  EXPECT_EQ(backend::server_root("http://h:8000/proxy/v1"), "http://h:8000/proxy");
  EXPECT_EQ(backend::redact_url("https://user:secret@h:8000/v1?key=abc"), "https://h:8000/v1");
  EXPECT_EQ(backend::redact_url("http://h:8000"), "http://h:8000");
}

TEST(OpenAIBackend, GenerationPayloadsAreExactAndUntilIsCutLocally) {
  MockOpenAI srv;
  srv.text = [](const json& b) {
    // A server that ignores `stop`: the client must cut.
    return b["max_tokens"] == 32 ? std::string("four<|im_end|>tail") : std::string("x\n\ny");
  };
  auto m = backend::open_openai_model(opts_for({srv.url() + "/v1"}));
  EXPECT_EQ(m->name(), "mock-model");  // the first id of /v1/models
  auto out = generate_all(*m, three_requests());
  EXPECT_EQ(out.at(0), "four");
  EXPECT_EQ(out.at(1), "x\n\ny");
  EXPECT_EQ(out.at(2), "x\n\ny");

  auto tok = text::Tokenizer::from_model_dir(kToyDir);
  std::map<int, json> by_seed;
  for (auto& b : srv.bodies()) by_seed[b["seed"].get<int>()] = b;
  ASSERT_EQ(by_seed.size(), 3u);
  // Token-id prompts (the engine's tokens: no special tokens added), stop = until, greedy.
  EXPECT_EQ(by_seed[7], (json{{"model", "mock-model"},
                              {"prompt", tok.encode("What is 2+2?")},
                              {"max_tokens", 32},
                              {"temperature", 0.0},
                              {"seed", 7},
                              {"stop", {"<|im_end|>", "\n\n"}}}));
  // An empty prompt is the prefix token (config.json's bos_token_id 566); no `stop` when until is empty.
  EXPECT_EQ(by_seed[8]["prompt"], json::array({566}));
  EXPECT_FALSE(by_seed[9].contains("stop"));
  EXPECT_EQ(by_seed[9]["top_p"], 0.9);
  EXPECT_EQ(by_seed[9]["temperature"], 0.7);
  EXPECT_EQ(by_seed[9]["top_k"], 20);      // vLLM's extra sampling fields, only when set
  EXPECT_EQ(by_seed[9]["min_p"], 0.05);
  EXPECT_FALSE(by_seed[7].contains("min_p"));
}

TEST(OpenAIBackend, LoglikelihoodUsesLmEvalPayloadAndSumsContinuationLogprobs) {
  MockOpenAI srv;
  auto m = backend::open_openai_model(opts_for({srv.url()}));
  std::vector<eval::LoglikRequest> reqs = {{"The answer is", " four"}, {"Q: ", "yes"}, {"", "hello"}};
  std::map<size_t, eval::LoglikResult> out;
  m->loglikelihood(reqs, [&](size_t i, const eval::LoglikResult& r) { out[i] = r; });
  ASSERT_EQ(out.size(), 3u);
  auto tok = text::Tokenizer::from_model_dir(kToyDir);
  // Expected from the mock's rule (logprob -0.25*(id%7+1), top-1 iff id even) on lm-eval's split:
  // continuation = encode(ctx + cont)[len(encode(ctx)):], the context's trailing space moved over.
  auto expect = [&](const std::string& ctx, const std::string& whole, const std::vector<int32_t>& ctx_ids) {
    std::vector<int32_t> all = whole.empty() ? std::vector<int32_t>{} : tok.encode(whole);
    if (ctx.empty()) {
      all.insert(all.begin(), 566);
    }
    size_t c = ctx.empty() ? 1 : ctx_ids.size();
    double s = 0;
    bool greedy = true;
    for (size_t k = c; k < all.size(); k++) s += -0.25 * double(all[k] % 7 + 1), greedy &= all[k] % 2 == 0;
    return std::make_pair(s, greedy);
  };
  auto e0 = expect("The answer is", "The answer is four", tok.encode("The answer is"));
  auto e1 = expect("Q:", "Q: yes", tok.encode("Q:"));
  EXPECT_DOUBLE_EQ(out[0].logprob, e0.first);
  EXPECT_EQ(out[0].is_greedy, e0.second);
  EXPECT_DOUBLE_EQ(out[1].logprob, e1.first);
  EXPECT_EQ(out[1].is_greedy, e1.second);
  std::vector<int32_t> hello = tok.encode("hello");
  double sh = 0;
  for (auto id : hello) sh += -0.25 * double(id % 7 + 1);
  EXPECT_DOUBLE_EQ(out[2].logprob, sh);
  // lm-eval local-completions' payload, exactly.
  for (auto& b : srv.bodies()) {
    std::set<std::string> keys;
    for (auto& [k, v] : b.items()) keys.insert(k);
    EXPECT_EQ(keys, (std::set<std::string>{"model", "prompt", "temperature", "max_tokens", "logprobs", "seed", "echo"}));
    EXPECT_EQ(b["temperature"], 0);
    EXPECT_EQ(b["max_tokens"], 1);
    EXPECT_EQ(b["logprobs"], 1);
    EXPECT_EQ(b["seed"], 1234);
    EXPECT_EQ(b["echo"], true);
    ASSERT_TRUE(b["prompt"].is_array() && b["prompt"].size() == 1 && b["prompt"][0].is_array());
  }
  std::vector<int32_t> want_hello = {566};
  want_hello.insert(want_hello.end(), hello.begin(), hello.end());
  bool seen = false;
  for (auto& b : srv.bodies()) seen |= b["prompt"][0].get<std::vector<int32_t>>() == want_hello;
  EXPECT_TRUE(seen) << "an empty context is sent as the prefix token";
}

TEST(OpenAIBackend, RetriesTooManyRequestsServerErrorsStallsAndDrops) {
  MockOpenAI srv;
  srv.stall_s = 2.5;  // > the client's 1 s timeout
  srv.fault = [](size_t n) {
    switch (n) {
      case 0: return Fault::TooMany;
      case 1: return Fault::ServerError;
      case 2: return Fault::Stall;
      case 3: return Fault::Drop;
      default: return Fault::None;
    }
  };
  auto o = opts_for({srv.url()});
  o.concurrency = 1;
  auto m = backend::open_openai_model(o);
  auto out = generate_all(*m, three_requests());
  EXPECT_EQ(out.size(), 3u);
  EXPECT_EQ(srv.requests(), 7u);  // 4 failures, then the 3 requests
  EXPECT_EQ(srv.answered().size(), 3u);
}

TEST(OpenAIBackend, GivesUpAfterMaxRetriesNamingTheServerError) {
  MockOpenAI srv;
  srv.fault = [](size_t) { return Fault::ServerError; };
  auto o = opts_for({srv.url()});
  o.max_retries = 2;
  auto m = backend::open_openai_model(o);
  try {
    generate_all(*m, {three_requests()[0]});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("HTTP 500: injected"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("failed 3 times"), std::string::npos) << e.what();
  }
  EXPECT_EQ(srv.requests(), 3u);
}

TEST(OpenAIBackend, ClientErrorsAreNotRetried) {
  MockOpenAI srv;
  srv.fault = [](size_t) { return Fault::BadRequest; };
  auto m = backend::open_openai_model(opts_for({srv.url()}));
  try {
    generate_all(*m, {three_requests()[0]});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("HTTP 400: bad prompt"), std::string::npos) << e.what();
  }
  EXPECT_EQ(srv.requests(), 1u);
}

TEST(OpenAIBackend, AModelTheServerDoesNotServeIsRefusedAtConnect) {
  MockOpenAI srv;
  auto o = opts_for({srv.url()});
  o.served_model = "other";  // not served: refused at connect, before any completion request
  EXPECT_THROW(backend::open_openai_model(o), Error);
  EXPECT_EQ(srv.requests(), 0u);
}

// A server that is not ready yet (vLLM loading weights; a managed server being restarted) is
// probed again with backoff for wait_for_server_s; without it, connect fails at once.
TEST(OpenAIBackend, WaitsForAServerThatIsNotReadyYetOnlyWhenAsked) {
  MockOpenAI srv;
  auto o = opts_for({srv.url()});
  srv.models_unavailable = 1;
  try {
    backend::open_openai_model(o);
    ADD_FAILURE() << "connected to a server answering 503";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no server answers at " + srv.url()), std::string::npos) << e.what();
  }
  EXPECT_EQ(srv.models_probes(), 1);

  srv.models_unavailable = 3;
  o.wait_for_server_s = 5;  // backoff 0.01, 0.02, 0.04 s: the fourth probe answers
  auto m = backend::open_openai_model(o);
  EXPECT_EQ(srv.models_probes(), 5);
  EXPECT_EQ(m->name(), "mock-model");
  EXPECT_EQ(generate_all(*m, {{"p", {}, 4, 0, 1, 1}}).size(), 1u);

  // Still not answering when the wait is over: the error says how long it waited.
  srv.models_unavailable = 1000;
  o.wait_for_server_s = 0.2;
  auto t0 = std::chrono::steady_clock::now();
  try {
    backend::open_openai_model(o);
    ADD_FAILURE() << "connected to a server answering 503";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("(waited 0.2 s)"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
}

TEST(OpenAIBackend, ReroutesADeadEndpointsRequests) {
  MockOpenAI a, b;
  a.delay_s = 0.05;
  b.delay_s = 0.05;
  auto o = opts_for({a.url(), b.url()});
  auto m = backend::open_openai_model(o);
  a.stop();  // endpoint a dies after connect: its requests must go to b
  std::vector<eval::GenRequest> reqs;
  for (int i = 0; i < 12; i++) reqs.push_back({fmt::format("p{}", i), {}, 4, 0, 1, uint64_t(i)});
  auto out = generate_all(*m, reqs);
  EXPECT_EQ(out.size(), 12u);
  EXPECT_EQ(b.answered().size(), 12u);
  json p = m->provenance();
  EXPECT_EQ(p["kind"], "openai");
  EXPECT_EQ(p["served_model"], "mock-model");
  EXPECT_EQ(p["base_urls"], json::array({a.url(), b.url()}));
  EXPECT_EQ(p["servers"][1]["version"], "0.0.mock");
  EXPECT_EQ(p["servers"][1]["owned_by"], "vllm");
}

TEST(OpenAIBackend, SpreadsRequestsOverEndpoints) {
  MockOpenAI a, b;
  a.delay_s = b.delay_s = 0.05;
  auto m = backend::open_openai_model(opts_for({a.url(), b.url()}));
  std::vector<eval::GenRequest> reqs;
  for (int i = 0; i < 16; i++) reqs.push_back({fmt::format("p{}", i), {}, 4, 0, 1, uint64_t(i)});
  generate_all(*m, reqs);
  EXPECT_EQ(a.answered().size() + b.answered().size(), 16u);
  EXPECT_GE(a.answered().size(), 4u);
  EXPECT_GE(b.answered().size(), 4u);
}

TEST(OpenAIBackend, LlamaCppServerStopsLoglikelihoodTasksBeforeSending) {
  MockOpenAI srv;
  srv.owned_by = "llamacpp";
  auto m = backend::open_openai_model(opts_for({srv.url()}));
  EXPECT_NE(m->loglikelihood_unsupported().find("llama.cpp"), std::string::npos);
  eval::EvalOptions eo;
  eo.limit = 2;
  eo.quiet = true;
  try {
    eval::run_eval(*m, {"sciq"}, eo);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sciq"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("nothing was sent"), std::string::npos) << e.what();
  }
  EXPECT_EQ(srv.requests(), 0u);
}

TEST(OpenAIBackend, ApiKeyIsSentAsBearerAndAMissingVariableIsAnError) {
  MockOpenAI srv;
  auto o = opts_for({srv.url()});
  o.api_key_env = "RVEC_TEST_UNSET_KEY_VAR";
  ::unsetenv("RVEC_TEST_UNSET_KEY_VAR");
  try {
    backend::open_openai_model(o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("RVEC_TEST_UNSET_KEY_VAR"), std::string::npos);
  }
  ::setenv("RVEC_TEST_UNSET_KEY_VAR", "sk-test-123", 1);
  auto m = backend::open_openai_model(o);
  generate_all(*m, {three_requests()[0]});
  EXPECT_EQ(srv.authorization(), "Bearer sk-test-123");
  EXPECT_EQ(m->provenance().dump().find("sk-test"), std::string::npos);  // never recorded
  ::unsetenv("RVEC_TEST_UNSET_KEY_VAR");
}

TEST(OpenAIBackend, ChatEndpointSendsMessagesAndRefusesLoglikelihood) {
  MockOpenAI srv;
  srv.text = [](const json&) { return std::string("#### 4<|im_end|>more"); };
  auto o = opts_for({srv.url()});
  o.chat_endpoint = true;
  auto m = backend::open_openai_model(o);
  // The harness's chat turns become the request's messages (the prompt records them as JSON),
  // template variables become vLLM's chat_template_kwargs.
  auto prompt = m->apply_chat_template({{"user", "2+2?"}, {"assistant", "#### 4"}, {"user", "1+3?"}}, true,
                                       nlohmann::ordered_json{{"enable_thinking", false}});
  ASSERT_TRUE(prompt);
  auto out = generate_all(*m, {{*prompt, {"<|im_end|>"}, 16, 0, 1, 3}, {"plain prompt", {}, 8, 0, 1, 4}});
  EXPECT_EQ(out.at(0), "#### 4");
  std::map<int, json> by_seed;
  for (auto& b : srv.bodies()) by_seed[b["seed"].get<int>()] = b;
  EXPECT_EQ(by_seed[3], (json{{"model", "mock-model"},
                              {"messages",
                               {{{"role", "user"}, {"content", "2+2?"}},
                                {{"role", "assistant"}, {"content", "#### 4"}},
                                {{"role", "user"}, {"content", "1+3?"}}}},
                              {"chat_template_kwargs", {{"enable_thinking", false}}},
                              {"max_tokens", 16},
                              {"temperature", 0.0},
                              {"seed", 3},
                              {"stop", {"<|im_end|>"}}}));
  // A prompt the harness built without a template is one user message.
  EXPECT_EQ(by_seed[4]["messages"], (json{{{"role", "user"}, {"content", "plain prompt"}}}));
  EXPECT_FALSE(by_seed[4].contains("chat_template_kwargs"));
  EXPECT_NE(m->loglikelihood_unsupported().find("chat endpoint"), std::string::npos);
}
