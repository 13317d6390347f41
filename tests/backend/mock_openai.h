// A loopback OpenAI-compatible server for client tests, built on cpp-httplib: answers
// /v1/models, /version, /v1/completions and /v1/chat/completions in vLLM's response shapes, records every request body,
// and injects faults (429, 500, a stalled answer, a dropped connection) on chosen requests.
#pragma once
#include <fmt/format.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace rvec::backend_test {

enum class Fault { None, TooMany, ServerError, BadRequest, Stall, Drop };

class MockOpenAI {
 public:
  using json = nlohmann::json;
  // Completion text for a request body (generation).
  std::function<std::string(const json& body)> text = [](const json&) { return std::string("ok"); };
  // Logprob of prompt token `id` at position `pos` (>= 1) and whether it is the top-1 token.
  std::function<std::pair<double, bool>(int id, size_t pos)> token_logprob = [](int id, size_t) {
    return std::make_pair(-0.25 * double(id % 7 + 1), id % 2 == 0);
  };
  // Fault for the n-th completion request (0-based, counted across all requests).
  std::function<Fault(size_t n)> fault = [](size_t) { return Fault::None; };
  std::string model_id = "mock-model", owned_by = "vllm";
  double stall_s = 3, delay_s = 0;
  std::atomic<int> models_unavailable{0};  // the next N GET /v1/models answer 503 (a server still loading)

  MockOpenAI() {
    srv_.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      models_probes_++;
      if (models_unavailable.fetch_sub(1) > 0) {
        res.status = 503;
        res.set_content(R"({"error":{"message":"loading","type":"server_error","param":null,"code":null}})",
                        "application/json");
        return;
      }
      json j = {{"object", "list"},
                {"data", json::array({{{"id", model_id}, {"object", "model"}, {"created", 0}, {"owned_by", owned_by},
                                       {"root", model_id}, {"parent", nullptr}, {"max_model_len", 4096}}})}};
      res.set_content(j.dump(), "application/json");
    });
    srv_.Get("/version", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"version":"0.0.mock"})", "application/json");
    });
    srv_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      size_t n;
      {
        std::lock_guard<std::mutex> lk(mu_);
        n = n_requests_++;
        bodies_.push_back(json::parse(req.body));
        authorization_ = req.get_header_value("Authorization");
      }
      Fault f = fault(n);
      if (delay_s > 0) std::this_thread::sleep_for(std::chrono::duration<double>(delay_s));
      if (f == Fault::TooMany || f == Fault::ServerError) {
        res.status = f == Fault::TooMany ? 429 : 500;
        res.set_content(R"({"error":{"message":"injected","type":"server_error","param":null,"code":null}})",
                        "application/json");
        return;
      }
      if (f == Fault::BadRequest) {
        res.status = 400;
        res.set_content(R"({"error":{"message":"bad prompt","type":"invalid_request_error","param":"prompt","code":null}})",
                        "application/json");
        return;
      }
      if (f == Fault::Stall) std::this_thread::sleep_for(std::chrono::duration<double>(stall_s));
      if (f == Fault::Drop) {
        // Headers promising 64 bytes, then the connection closes.
        res.set_content_provider(64, "application/json", [](size_t, size_t, httplib::DataSink&) { return false; });
        return;
      }
      json body = json::parse(req.body);
      json reply = complete(body);
      {
        std::lock_guard<std::mutex> lk(mu_);
        answered_.push_back(body);
      }
      res.set_content(reply.dump(), "application/json");
    });
    srv_.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
      json body = json::parse(req.body);
      {
        std::lock_guard<std::mutex> lk(mu_);
        n_requests_++;
        bodies_.push_back(body);
        answered_.push_back(body);
      }
      json choice = {{"index", 0},
                     {"message", {{"role", "assistant"}, {"content", text(body)}}},
                     {"logprobs", nullptr},
                     {"finish_reason", "stop"}};
      json reply = {{"id", "chatcmpl-mock"}, {"object", "chat.completion"}, {"created", 0}, {"model", model_id},
                    {"choices", json::array({choice})},
                    {"usage", {{"prompt_tokens", 10}, {"total_tokens", 15}, {"completion_tokens", 5}}}};
      res.set_content(reply.dump(), "application/json");
    });
    port_ = srv_.bind_to_any_port("127.0.0.1");
    th_ = std::thread([this] { srv_.listen_after_bind(); });
    while (!srv_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~MockOpenAI() { stop(); }
  void stop() {
    srv_.stop();
    if (th_.joinable()) th_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  int models_probes() const { return models_probes_; }
  size_t requests() {
    std::lock_guard<std::mutex> lk(mu_);
    return n_requests_;
  }
  std::vector<json> bodies() {
    std::lock_guard<std::mutex> lk(mu_);
    return bodies_;
  }
  std::string authorization() {
    std::lock_guard<std::mutex> lk(mu_);
    return authorization_;
  }
  std::vector<json> answered() {
    std::lock_guard<std::mutex> lk(mu_);
    return answered_;
  }

 private:
  json complete(const json& body) {
    json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", "stop"}, {"stop_reason", nullptr}};
    size_t n_prompt = 0, n_gen = 0;
    if (body.value("echo", false)) {
      // vLLM: prompt tokens (the first logprob null), then the generated token.
      std::vector<int> ids = body["prompt"][0].get<std::vector<int>>();
      json tokens = json::array(), lps = json::array(), tops = json::array(), offs = json::array();
      for (size_t i = 0; i < ids.size(); i++) {
        tokens.push_back(fmt::format("t{}", ids[i]));
        offs.push_back(i);
        if (i == 0) {
          lps.push_back(nullptr), tops.push_back(nullptr);
          continue;
        }
        auto [lp, top1] = token_logprob(ids[i], i);
        lps.push_back(lp);
        json t = {{fmt::format("t{}", ids[i]), lp}};
        if (!top1) t["alt"] = lp + 0.5;
        tops.push_back(t);
      }
      tokens.push_back("gen"), lps.push_back(-0.1), tops.push_back({{"gen", -0.1}}), offs.push_back(ids.size());
      choice["text"] = "gen";
      choice["logprobs"] = {{"text_offset", offs}, {"token_logprobs", lps}, {"tokens", tokens}, {"top_logprobs", tops}};
      choice["finish_reason"] = "length";
      n_prompt = ids.size(), n_gen = 1;
    } else {
      choice["text"] = text(body);
      n_prompt = body["prompt"].is_array() ? body["prompt"].size() : 1;
      n_gen = 5;
    }
    return {{"id", "cmpl-mock"},
            {"object", "text_completion"},
            {"created", 0},
            {"model", model_id},
            {"choices", json::array({choice})},
            {"usage", {{"prompt_tokens", n_prompt}, {"total_tokens", n_prompt + n_gen}, {"completion_tokens", n_gen}}}};
  }

  httplib::Server srv_;
  std::thread th_;
  int port_ = 0;
  std::atomic<int> models_probes_{0};
  std::mutex mu_;
  size_t n_requests_ = 0;
  std::vector<json> bodies_, answered_;
  std::string authorization_;
};

}  // namespace rvec::backend_test
