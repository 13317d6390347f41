#include "backend/openai_model.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "backend/encode.h"
#include "backend/http.h"
#include "core/error.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace rvec::backend {

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Endpoint {
  std::string root, shown;  // request URL root; the same without credentials
  bool reachable = false;
  std::string owned_by, version;
  Clock::time_point resting_until{};
};

struct Outcome {
  enum Kind { Ok, Retry, Fatal } kind = Ok;
  json body;
  std::string message;
  bool endpoint_fault = false;  // no answer at all (refused, reset, timed out): try another endpoint
  double retry_after_s = -1;
};

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// The server's message from an OpenAI-style error body, else the body's start.
std::string error_text(const std::string& body) {
  try {
    json j = json::parse(body);
    if (j.contains("error")) {
      auto& e = j["error"];
      if (e.is_object() && e.contains("message") && e["message"].is_string()) return e["message"];
      if (e.is_string()) return e;
    }
    if (j.contains("message") && j["message"].is_string()) return j["message"];
  } catch (const json::exception&) {
  }
  return body.substr(0, 300);
}

class OpenAIModel : public eval::LanguageModel {
 public:
  explicit OpenAIModel(const OpenAIOptions& o) : o_(o) {
    if (o_.base_urls.empty()) fail("the openai backend needs --base-url");
    if (o_.concurrency < 1) fail("--concurrency must be at least 1 (got {})", o_.concurrency);
    if (!(o_.timeout_s > 0)) fail("--timeout must be positive (got {})", o_.timeout_s);
    if (o_.max_retries < 0) fail("--max-retries must be >= 0 (got {})", o_.max_retries);
    if (!o_.api_key_env.empty()) {
      const char* k = std::getenv(o_.api_key_env.c_str());
      if (!k || !*k) fail("--api-key-env {}: the environment variable is not set", o_.api_key_env);
      headers_.push_back(std::string("Authorization: Bearer ") + k);
    }
    for (auto& u : o_.base_urls) {
      if (u.rfind("http://", 0) != 0 && u.rfind("https://", 0) != 0)
        fail("--base-url {}: must start with http:// or https://", redact_url(u));
      Endpoint e;
      e.root = server_root(u);
      e.shown = server_root(redact_url(u));
      eps_.push_back(e);
    }
    connect();
    load_tokenizer();
  }

  std::string name() const override { return model_; }

  void generate(const std::vector<eval::GenRequest>& reqs,
                const std::function<void(size_t, const std::string&)>& on_done) override {
    start_call();
    const bool chat = o_.chat_endpoint;
    run_pool(
        reqs.size(), chat ? "/v1/chat/completions" : "/v1/completions",
        [&](size_t i) { return chat ? chat_payload(reqs[i]) : completion_payload(reqs[i]); },
        [&](size_t i, const json& resp) {
          const json& c0 = first_choice(resp);
          std::string text;
          if (chat) {
            if (!c0.contains("message") || !c0["message"].is_object()) fail("{}: a chat choice without `message`", model_);
            const json& content = c0["message"].value("content", json());
            if (content.is_string()) text = content.get<std::string>();
          } else {
            if (!c0.contains("text") || !c0["text"].is_string()) fail("{}: a completion choice without `text`", model_);
            text = c0["text"].get<std::string>();
          }
          count_tokens(resp, "completion_tokens");
          on_done(i, eval::cut_at_stop(text, reqs[i].until));
        });
  }

  void loglikelihood(const std::vector<eval::LoglikRequest>& reqs,
                     const std::function<void(size_t, const eval::LoglikResult&)>& on_done) override {
    if (std::string why = loglikelihood_unsupported(); !why.empty()) fail("{}: {}", model_, why);
    start_call();
    std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> enc(reqs.size());
    for (size_t i = 0; i < reqs.size(); i++)
      enc[i] = lm_eval_encode_pair([&](const std::string& s) { return encode(s); }, reqs[i].context,
                                   reqs[i].continuation, *prefix_);
    run_pool(
        reqs.size(), "/v1/completions",
        [&](size_t i) {
          std::vector<int32_t> ids = enc[i].first;
          ids.insert(ids.end(), enc[i].second.begin(), enc[i].second.end());
          // lm-eval local-completions' loglikelihood payload, field for field.
          return json{{"model", model_},       {"prompt", json::array({ids})}, {"temperature", 0},
                      {"max_tokens", 1},      {"logprobs", 1},                 {"seed", 1234},
                      {"echo", true}};
        },
        [&](size_t i, const json& resp) {
          const json& c0 = first_choice(resp);
          size_t ctx = enc[i].first.size(), n = enc[i].second.size();
          const json lp = c0.value("logprobs", json());
          if (!lp.is_object() || !lp.contains("token_logprobs") || !lp["token_logprobs"].is_array())
            fail("{}: the server returned no prompt logprobs (echo + logprobs); it cannot score log-likelihood tasks",
                 model_);
          const json& tl = lp["token_logprobs"];
          const json& top = lp.value("top_logprobs", json());
          if (tl.size() < ctx + n)
            fail("{}: {} prompt logprobs returned for a prompt of {} tokens", model_, tl.size(), ctx + n);
          eval::LoglikResult r{0.0, true};
          for (size_t k = ctx; k < ctx + n; k++) {
            if (!tl[k].is_number()) fail("{}: prompt logprob {} is not a number", model_, k);
            double v = tl[k].get<double>();
            r.logprob += v;
            // lm-eval: greedy when each token's logprob equals the largest of its top_logprobs.
            double best = -INFINITY;
            if (top.is_array() && k < top.size() && top[k].is_object())
              for (auto& [tok, x] : top[k].items())
                if (x.is_number()) best = std::max(best, x.get<double>());
            if (v != best) r.is_greedy = false;
          }
          count_tokens(resp, "prompt_tokens");
          on_done(i, r);
        });
  }

  std::optional<std::string> apply_chat_template(const std::vector<std::pair<std::string, std::string>>& rc,
                                                 bool add_generation_prompt,
                                                 const nlohmann::ordered_json& template_kwargs) const override {
    if (o_.chat_endpoint) {
      // The server renders the template; the prompt is the messages as JSON (as lm-eval's
      // local-chat-completions records it), remembered with the template variables so
      // generate() sends them as messages and chat_template_kwargs (vLLM's request field).
      json msgs = json::array();
      for (auto& [r, c] : rc) msgs.push_back({{"role", r}, {"content", c}});
      std::string s = dump(msgs);
      std::lock_guard<std::mutex> lk(chat_mu_);
      chat_prompts_[s] = template_kwargs;
      return s;
    }
    if (!tpl_) return std::nullopt;
    std::vector<text::ChatMessage> msgs;
    for (auto& [r, c] : rc) msgs.push_back({r, c});
    return tpl_->render(msgs, add_generation_prompt, template_kwargs);
  }

  json provenance() const override {
    json urls = json::array();
    for (auto& e : eps_) urls.push_back(e.shown);
    json servers = json::array();
    for (auto& e : eps_) {
      json s = {{"url", e.shown}};
      if (!e.owned_by.empty()) s["owned_by"] = e.owned_by;
      if (!e.version.empty()) s["version"] = e.version;
      servers.push_back(s);
    }
    return {{"kind", "openai"},
            {"base_urls", urls},
            {"served_model", model_},
            {"endpoint", o_.chat_endpoint ? "/v1/chat/completions" : "/v1/completions"},
            {"tokenizer", tok_ ? o_.tokenizer : remote_tokenize_ ? "server /tokenize" : "none"},
            {"servers", servers}};
  }

  std::string loglikelihood_unsupported() const override {
    if (o_.chat_endpoint) return "the chat endpoint (--chat-endpoint) returns no prompt logprobs";
    for (auto& e : eps_)
      if (e.owned_by == "llamacpp")
        return fmt::format("{} is a llama.cpp server, which returns no prompt logprobs (echo + logprobs)", e.shown);
    if (!prefix_) return "no tokenizer to split context and continuation: pass --tokenizer MODEL_DIR";
    return "";
  }

  std::string throughput() const override {
    double s = std::chrono::duration<double>(Clock::now() - call_start_.load()).count();
    if (s <= 0 || done_ == 0) return "";
    return fmt::format("{:.1f} req/s {:.0f} tok/s", double(done_) / s, double(tokens_) / s);
  }

 private:
  // ---- connection ----
  void connect() {
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(std::max(0.0, o_.wait_for_server_s)));
    for (int round = 1;; round++) {
      probe_endpoints(round == 1);
      if (!model_.empty()) return;
      std::vector<std::string> shown;
      for (auto& e : eps_) shown.push_back(e.shown);
      auto pause = backoff(round, 0);
      if (Clock::now() + pause > deadline)
        fail("no server answers at {}{}", fmt::join(shown, ", "),
             o_.wait_for_server_s > 0 ? fmt::format(" (waited {:g} s)", o_.wait_for_server_s) : std::string());
      if (!o_.quiet && round == 1)
        fmt::print(stderr, "rvec: waiting up to {:g} s for a server to answer at {}\n", o_.wait_for_server_s,
                   fmt::join(shown, ", "));
      std::this_thread::sleep_for(pause);
    }
  }

  // GET /v1/models (and /version) on each endpoint not yet reachable; the first that answers
  // fixes the served model.
  void probe_endpoints(bool warn) {
    HttpClient h;
    for (auto& e : eps_) {
      if (e.reachable) continue;
      auto r = h.request("GET", e.root + "/v1/models", "", headers_, std::min(o_.timeout_s, 30.0));
      if (r.status != 200) {
        std::string why = r.status ? fmt::format("HTTP {}: {}", r.status, error_text(r.body)) : r.error;
        if (r.status == 401 || r.status == 403) fail("{}/v1/models: {} (check --api-key-env)", e.shown, why);
        if (!o_.quiet && warn) fmt::print(stderr, "rvec: warning: {}/v1/models: {}; skipping it for now\n", e.shown, why);
        e.resting_until = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(o_.endpoint_cooldown_s));
        continue;
      }
      json j;
      try {
        j = json::parse(r.body);
      } catch (const json::exception&) {
        fail("{}/v1/models: the answer is not JSON", e.shown);
      }
      if (!j.contains("data") || !j["data"].is_array()) fail("{}/v1/models: no `data` list", e.shown);
      std::vector<std::string> ids;
      for (auto& m : j["data"])
        if (m.is_object() && m.contains("id") && m["id"].is_string()) ids.push_back(m["id"]);
      if (model_.empty()) model_ = o_.served_model.empty() ? (ids.empty() ? "" : ids[0]) : o_.served_model;
      if (model_.empty()) fail("{}/v1/models lists no model", e.shown);
      if (std::find(ids.begin(), ids.end(), model_) == ids.end())
        fail("{} does not serve '{}' (it serves: {})", e.shown, model_, fmt::join(ids, ", "));
      for (auto& m : j["data"])
        if (m.value("id", "") == model_ && m.contains("owned_by") && m["owned_by"].is_string()) e.owned_by = m["owned_by"];
      auto v = h.request("GET", e.root + "/version", "", headers_, std::min(o_.timeout_s, 10.0));
      if (v.status == 200) {
        try {
          json vj = json::parse(v.body);
          if (vj.contains("version") && vj["version"].is_string()) e.version = vj["version"];
        } catch (const json::exception&) {
        }
      }
      e.reachable = true;
      e.resting_until = {};
    }
  }

  void load_tokenizer() {
    if (!o_.tokenizer.empty()) {
      tok_ = std::make_unique<text::Tokenizer>(text::Tokenizer::from_model_dir(o_.tokenizer));
      prefix_ = prefix_token_of_model_dir(o_.tokenizer);
      if (!prefix_) prefix_ = tok_->bos_id() ? tok_->bos_id() : tok_->eos_id();
      if (!o_.chat_template_file.empty()) {
        auto d = text::ChatTemplate::from_model_dir(o_.tokenizer);
        tpl_ = text::ChatTemplate::from_file(o_.chat_template_file, d ? d->bos_token() : "", d ? d->eos_token() : "");
      } else {
        tpl_ = text::ChatTemplate::from_model_dir(o_.tokenizer);
      }
      return;
    }
    // The server's tokenizer (vLLM, rvec serve): /tokenizer_info for the chat template and the
    // special tokens, /tokenize for ids.
    const Endpoint* e = nullptr;
    for (auto& x : eps_)
      if (x.reachable && !e) e = &x;
    HttpClient h;
    auto r = h.request("GET", e->root + "/tokenizer_info", "", headers_, std::min(o_.timeout_s, 30.0));
    json info;
    if (r.status == 200) {
      try {
        info = json::parse(r.body);
      } catch (const json::exception&) {
      }
    }
    auto str = [&](const char* k) { return info.is_object() && info.contains(k) && info[k].is_string() ? info[k].get<std::string>() : std::string(); };
    if (!o_.chat_template_file.empty()) tpl_ = text::ChatTemplate::from_file(o_.chat_template_file, str("bos_token"), str("eos_token"));
    else if (!str("chat_template").empty()) tpl_ = text::ChatTemplate::from_string(str("chat_template"), str("bos_token"), str("eos_token"));
    auto probe = h.request("POST", e->root + "/tokenize", dump({{"prompt", "a"}, {"add_special_tokens", false}}), headers_,
                           std::min(o_.timeout_s, 30.0));
    if (probe.status != 200) return;
    remote_tokenize_ = true;
    for (std::string special : {str("bos_token"), str("eos_token")}) {
      if (special.empty() || prefix_) continue;
      auto ids = encode(special);
      if (ids.size() == 1) prefix_ = ids[0];
    }
  }

  std::vector<int32_t> encode(const std::string& s) {
    if (tok_) return tok_->encode(s, true);
    std::lock_guard<std::mutex> lk(tok_mu_);
    if (auto it = tok_cache_.find(s); it != tok_cache_.end()) return it->second;
    const Endpoint* e = nullptr;
    for (auto& x : eps_)
      if (x.reachable && !e) e = &x;
    for (int attempt = 0;; attempt++) {
      auto r = tok_http_.request("POST", e->root + "/tokenize", dump({{"prompt", s}, {"add_special_tokens", false}}),
                                 headers_, o_.timeout_s);
      if (r.status == 200) {
        json j = json::parse(r.body, nullptr, false);
        if (!j.is_object() || !j.contains("tokens") || !j["tokens"].is_array())
          fail("{}/tokenize: no `tokens` list in the answer", e->shown);
        return tok_cache_[s] = j["tokens"].get<std::vector<int32_t>>();
      }
      bool retry = r.status == 0 || r.status == 429 || r.status >= 500;
      if (!retry || attempt >= o_.max_retries)
        fail("{}/tokenize: {}", e->shown, r.status ? fmt::format("HTTP {}: {}", r.status, error_text(r.body)) : r.error);
      std::this_thread::sleep_for(backoff(attempt + 1, r.retry_after_s));
    }
  }

  // ---- payloads ----
  json completion_payload(const eval::GenRequest& g) {
    json p = {{"model", model_}};
    if (tok_) {
      // The engine's own token ids: no special tokens added, an empty prompt is the prefix token.
      std::vector<int32_t> ids = tok_->encode(g.prompt, true);
      if (ids.empty() && prefix_) ids.push_back(*prefix_);
      p["prompt"] = ids;
    } else {
      p["prompt"] = g.prompt;
    }
    add_sampling(p, g);
    return p;
  }

  json chat_payload(const eval::GenRequest& g) {
    json msgs;
    std::optional<nlohmann::ordered_json> kwargs;
    {
      std::lock_guard<std::mutex> lk(chat_mu_);
      if (auto it = chat_prompts_.find(g.prompt); it != chat_prompts_.end()) kwargs = it->second;
    }
    if (kwargs) msgs = json::parse(g.prompt);
    else msgs = json::array({{{"role", "user"}, {"content", g.prompt}}});
    json p = {{"model", model_}, {"messages", msgs}};
    if (kwargs && !kwargs->empty()) p["chat_template_kwargs"] = json::parse(kwargs->dump());
    add_sampling(p, g);
    return p;
  }

  void add_sampling(json& p, const eval::GenRequest& g) const {
    p["max_tokens"] = g.max_new_tokens;
    p["temperature"] = g.temperature;
    if (g.top_p != 1) p["top_p"] = g.top_p;
    // vLLM's extra sampling fields (OpenAI's API has neither)
    if (g.top_k > 0) p["top_k"] = g.top_k;
    if (g.min_p > 0) p["min_p"] = g.min_p;
    p["seed"] = g.seed;
    json stop = json::array();
    for (auto& u : g.until)
      if (!u.empty()) stop.push_back(u);
    if (!stop.empty()) p["stop"] = stop;
  }

  const json& first_choice(const json& resp) const {
    if (!resp.is_object() || !resp.contains("choices") || !resp["choices"].is_array() || resp["choices"].empty() ||
        !resp["choices"][0].is_object())
      fail("{}: the answer has no `choices`", model_);
    return resp["choices"][0];
  }

  void count_tokens(const json& resp, const char* field) {
    done_++;
    if (resp.contains("usage") && resp["usage"].is_object() && resp["usage"].contains(field) &&
        resp["usage"][field].is_number_integer())
      tokens_ += resp["usage"][field].get<uint64_t>();
  }

  void start_call() {
    call_start_ = Clock::now();
    done_ = 0;
    tokens_ = 0;
  }

  std::chrono::milliseconds backoff(int attempt, double retry_after_s) const {
    double d = std::min(o_.retry_max_s, o_.retry_base_s * std::ldexp(1.0, std::max(0, attempt - 1)));
    if (retry_after_s > 0) d = std::min(std::max(d, retry_after_s), std::max(o_.retry_max_s, d));
    return std::chrono::milliseconds(int64_t(d * 1000));
  }

  Outcome post(HttpClient& h, const Endpoint& e, const std::string& path, const json& body) const {
    auto r = h.request("POST", e.root + path, dump(body), headers_, o_.timeout_s);
    Outcome out;
    if (r.status == 0) {
      out.kind = Outcome::Retry;
      out.endpoint_fault = true;
      out.message = fmt::format("{}{}: {}", e.shown, path, r.timed_out ? fmt::format("no answer within {} s", o_.timeout_s) : r.error);
      return out;
    }
    if (r.status == 429 || r.status >= 500) {
      out.kind = Outcome::Retry;
      out.retry_after_s = r.retry_after_s;
      out.message = fmt::format("{}{}: HTTP {}: {}", e.shown, path, r.status, error_text(r.body));
      return out;
    }
    if (r.status != 200) {
      out.kind = Outcome::Fatal;
      out.message = fmt::format("{}{}: HTTP {}: {}", e.shown, path, r.status, error_text(r.body));
      return out;
    }
    out.body = json::parse(r.body, nullptr, false);
    if (out.body.is_discarded()) {
      out.kind = Outcome::Fatal;
      out.message = fmt::format("{}{}: the answer is not JSON", e.shown, path);
    }
    return out;
  }

  // Sends requests 0..n-1 (payload(i)) to `path` from concurrency x endpoints workers; on_ok
  // runs (serialised) as each answer arrives. Throws the first fatal error after the workers stop.
  void run_pool(size_t n, const std::string& path, const std::function<json(size_t)>& payload,
                const std::function<void(size_t, const json&)>& on_ok) {
    if (n == 0) return;
    std::mutex mu, cb_mu;
    std::condition_variable cv;
    std::deque<size_t> queue;
    for (size_t i = 0; i < n; i++) queue.push_back(i);
    std::vector<int> attempts(n, 0);
    std::vector<Clock::time_point> not_before(n, Clock::time_point{});
    size_t finished = 0;
    bool stop = false;
    std::exception_ptr error;
    auto set_error = [&](std::exception_ptr p) {  // with mu held
      if (!error) error = p;
      stop = true;
      cv.notify_all();
    };
    auto worker = [&](size_t ei) {
      HttpClient http;
      Endpoint& e = eps_[ei];
      for (;;) {
        size_t i = 0;
        {
          std::unique_lock<std::mutex> lk(mu);
          for (;;) {
            if (stop || finished == n) return;
            auto now = Clock::now();
            auto wake = now + std::chrono::seconds(1);
            if (e.resting_until > now) {
              wake = std::min(wake, e.resting_until);
            } else {
              auto it = std::find_if(queue.begin(), queue.end(), [&](size_t j) { return not_before[j] <= now; });
              if (it != queue.end()) {
                i = *it;
                queue.erase(it);
                break;
              }
              for (size_t j : queue) wake = std::min(wake, not_before[j]);
            }
            cv.wait_until(lk, wake);
          }
        }
        Outcome out;
        try {
          json body = payload(i);
          out = post(http, e, path, body);
          if (out.kind == Outcome::Ok) {
            std::lock_guard<std::mutex> cl(cb_mu);
            on_ok(i, out.body);
          }
        } catch (...) {
          std::lock_guard<std::mutex> lk(mu);
          set_error(std::current_exception());
          return;
        }
        std::lock_guard<std::mutex> lk(mu);
        if (out.kind == Outcome::Ok) {
          if (++finished == n) cv.notify_all();
          continue;
        }
        if (out.kind == Outcome::Fatal) {
          set_error(std::make_exception_ptr(Error(out.message)));
          return;
        }
        if (++attempts[i] > o_.max_retries) {
          set_error(std::make_exception_ptr(
              Error(fmt::format("{} (request failed {} times; --max-retries {})", out.message, attempts[i], o_.max_retries))));
          return;
        }
        auto now = Clock::now();
        bool others = std::any_of(eps_.begin(), eps_.end(), [&](const Endpoint& x) { return &x != &e && x.resting_until <= now; });
        if (out.endpoint_fault && others) {
          // Re-route: this endpoint rests, the request goes straight to another one.
          if (e.resting_until <= now && !o_.quiet)
            fmt::print(stderr, "\nrvec: {}; re-routing its requests for {} s\n", out.message, o_.endpoint_cooldown_s);
          e.resting_until = now + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(o_.endpoint_cooldown_s));
          not_before[i] = now;
        } else {
          not_before[i] = now + backoff(attempts[i], out.retry_after_s);
        }
        queue.push_front(i);
        cv.notify_all();
      }
    };
    std::vector<std::thread> pool;
    for (size_t ei = 0; ei < eps_.size(); ei++)
      for (int k = 0; k < o_.concurrency; k++) pool.emplace_back(worker, ei);
    for (auto& t : pool) t.join();
    if (error) std::rethrow_exception(error);
  }

  OpenAIOptions o_;
  std::vector<Endpoint> eps_;
  std::vector<std::string> headers_;
  std::string model_;
  std::unique_ptr<text::Tokenizer> tok_;
  std::optional<text::ChatTemplate> tpl_;
  std::optional<int32_t> prefix_;
  bool remote_tokenize_ = false;
  std::mutex tok_mu_;
  HttpClient tok_http_;
  std::map<std::string, std::vector<int32_t>> tok_cache_;
  mutable std::mutex chat_mu_;
  mutable std::map<std::string, nlohmann::ordered_json> chat_prompts_;  // messages JSON -> template kwargs
  std::atomic<Clock::time_point> call_start_{Clock::now()};
  std::atomic<uint64_t> done_{0}, tokens_{0};
};

}  // namespace

std::unique_ptr<eval::LanguageModel> open_openai_model(const OpenAIOptions& opts) {
  return std::make_unique<OpenAIModel>(opts);
}

}  // namespace rvec::backend
