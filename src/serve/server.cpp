#include "serve/server.h"

#include <fmt/format.h>
#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/atomic_output.h"
#include "core/error.h"
#include "serve/protocol.h"
#include "serve/scheduler.h"
#include "text/chat_template.h"

namespace rvec::serve {

using nlohmann::json;

namespace {

// tokenizer_config.json's special tokens are strings or {"content": ...} objects.
json token_text(const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return nullptr;
  if (it->is_object() && it->contains("content")) return (*it)["content"];
  return *it;
}

bool same_secret(const std::string& a, const std::string& b) {
  // Compares every byte whatever the first difference (no early exit on the key).
  unsigned char diff = a.size() != b.size();
  for (size_t i = 0; i < a.size(); ++i) diff |= uint8_t(a[i]) ^ uint8_t(i < b.size() ? b[i] : 0);
  return diff == 0;
}

// Paths reported in /metrics (anything else counts as "other", keeping label values bounded).
const char* metric_path(const std::string& p) {
  for (const char* k : {"/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/tokenize",
                        "/detokenize", "/tokenizer_info", "/metrics"})
    if (p == k) return k;
  return "other";
}

}  // namespace

struct Server::Impl {
  const infer::Model& model;
  ServerOptions opts;
  httplib::Server svr;
  std::unique_ptr<Scheduler> sched;
  std::optional<text::ChatTemplate> tpl;
  ModelInfo info;
  Limits lim;
  json tokenizer_info;
  std::atomic<bool> draining{false};
  std::atomic<int> inflight{0};  // completion responses not yet released
  std::atomic<uint64_t> next_id{1};
  std::mutex metrics_m;
  std::map<std::pair<std::string, int>, uint64_t> responses;  // (path, status) -> count
  int64_t created = std::time(nullptr);
  int listen_fd = -1;

  Impl(const infer::Model& m, ServerOptions o) : model(m), opts(std::move(o)) {}
  void setup();
  void completions(const httplib::Request& req, httplib::Response& res, bool chat);
  std::string metrics_text();
};

Server::Server(const infer::Model& model, ServerOptions opts) : impl_(std::make_unique<Impl>(model, std::move(opts))) {
  impl_->setup();
}

Server::~Server() {
  if (impl_->sched) impl_->sched->drain(0);
}

namespace {
void reply_json(httplib::Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(j.dump(), "application/json");
}
void reply_error(httplib::Response& res, const ApiError& e) { reply_json(res, e.status, e.body()); }

json parse_body(const httplib::Request& req) {
  try {
    return json::parse(req.body);
  } catch (const json::parse_error& e) {
    throw ApiError(400, fmt::format("Invalid JSON body: {}", e.what()));
  }
}

std::string sse(const json& j) { return "data: " + j.dump() + "\n\n"; }
}  // namespace

void Server::Impl::setup() {
  const auto& cfg = model.config();
  const text::Tokenizer* tok = model.tokenizer();
  if (!tok) fail("{}: no tokenizer.json; rvec serve needs one", model.dir().path().string());
  const size_t max_len = opts.max_model_len ? opts.max_model_len : size_t(cfg.max_position_embeddings);
  if (max_len < 2) fail("--max-model-len must be at least 2");
  if (opts.served_model_name.empty()) opts.served_model_name = model.dir().path().filename().string();
  if (opts.served_model_name.empty()) opts.served_model_name = model.dir().path().parent_path().filename().string();

  json tcfg = json::object();
  const auto tcfg_path = model.dir().path() / "tokenizer_config.json";
  if (std::filesystem::exists(tcfg_path)) {
    try {
      tcfg = json::parse(read_file(tcfg_path));
    } catch (const json::exception& e) {
      fail("{}: invalid JSON: {}", tcfg_path.string(), e.what());
    }
  }
  if (!opts.chat_template.empty()) {
    tpl = text::ChatTemplate::from_file(opts.chat_template, token_text(tcfg, "bos_token").is_string()
                                                                  ? token_text(tcfg, "bos_token").get<std::string>()
                                                                  : "",
                                        token_text(tcfg, "eos_token").is_string()
                                            ? token_text(tcfg, "eos_token").get<std::string>()
                                            : "");
  } else {
    tpl = text::ChatTemplate::from_model_dir(model.dir().path());
  }
  Scheduler::Options so;
  so.engine = {.threads = 0,
               .max_batch = std::max(1, opts.batch),
               .max_context = max_len,
               .share_prefix = false,
               .kv_cache_bytes = infer::kv_cache_cap_bytes(opts.kv_cache_gb),
               .kv_dtype = opts.kv_dtype};
  fmt::print(stderr, "rvec serve: {}\n", infer::kv_cache_report(cfg, so.engine));
  info = {opts.served_model_name, tok,     tpl ? &*tpl : nullptr, cfg.vocab_size, max_len, model.eos_ids(),
          so.engine.kv_cache_bytes,  infer::kv_bytes_per_token(cfg, so.engine.kv_dtype)};
  tokenizer_info = {{"eos_token", token_text(tcfg, "eos_token")},
                    {"bos_token", token_text(tcfg, "bos_token")},
                    {"pad_token", token_text(tcfg, "pad_token")},
                    {"unk_token", token_text(tcfg, "unk_token")},
                    {"chat_template", tpl ? json(tpl->source()) : json(nullptr)},
                    {"add_bos_token", tok->add_bos()},
                    {"eos_token_id", tok->eos_id() ? json(*tok->eos_id()) : json(nullptr)},
                    {"bos_token_id", tok->bos_id() ? json(*tok->bos_id()) : json(nullptr)},
                    {"model_max_length", max_len},
                    {"tokenizer_class", tcfg.value("tokenizer_class", "")},
                    {"vocab_size", cfg.vocab_size}};

  so.threads = opts.threads;
  so.max_queue = opts.max_queue;
  sched = std::make_unique<Scheduler>(model, so);

  // cpp-httplib 0.11 listens with a backlog of 5, which drops connections when many clients
  // connect at once; the listening socket is kept to raise it after bind (listen again).
  svr.set_socket_options([this](socket_t s) {
    int yes = 1;
    ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    listen_fd = s;
  });
  const int nthreads = std::max(4, opts.http_threads);
  svr.new_task_queue = [nthreads] { return new httplib::ThreadPool(size_t(nthreads)); };
  svr.set_payload_max_length(opts.max_body_bytes);
  svr.set_read_timeout(opts.read_timeout_s, 0);
  svr.set_write_timeout(opts.read_timeout_s, 0);
  svr.set_keep_alive_timeout(2);

  svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (opts.api_key.empty() || req.path == "/health" || req.path == "/metrics")
      return httplib::Server::HandlerResponse::Unhandled;
    const std::string h = req.get_header_value("Authorization");
    if (h.rfind("Bearer ", 0) == 0 && same_secret(h.substr(7), opts.api_key))
      return httplib::Server::HandlerResponse::Unhandled;
    reply_error(res, ApiError(401, "Missing or invalid API key (Authorization: Bearer KEY)"));
    return httplib::Server::HandlerResponse::Handled;
  });
  svr.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string msg = res.status == 404   ? fmt::format("Not Found: {} {}", req.method, req.path)
                      : res.status == 413 ? "Request body too large"
                                          : fmt::format("HTTP {}", res.status);
    reply_json(res, res.status, error_json(res.status, msg));
    return httplib::Server::HandlerResponse::Handled;
  }));
  svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string msg = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      msg = e.what();
    } catch (...) {
    }
    reply_json(res, 500, error_json(500, msg));
  });
  svr.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    {
      std::lock_guard lk(metrics_m);
      responses[{metric_path(req.path), res.status}]++;
    }
    // Method, path and status only: never headers (the API key) or bodies.
    if (opts.access_log) fmt::print(stderr, "{} {} {}\n", req.method, req.path, res.status);
  });

  svr.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    res.status = draining ? 503 : 200;
  });
  svr.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    reply_json(res, 200,
               {{"object", "list"},
                {"data", json::array({{{"id", info.name},
                                       {"object", "model"},
                                       {"created", created},
                                       {"owned_by", "rvec"},
                                       {"root", info.name},
                                       {"max_model_len", info.max_model_len}}})}});
  });
  svr.Get("/tokenizer_info", [this](const httplib::Request&, httplib::Response& res) {
    reply_json(res, 200, tokenizer_info);
  });
  svr.Post("/tokenize", [this](const httplib::Request& req, httplib::Response& res) {
    try {
      auto ids = parse_tokenize(parse_body(req), info);
      reply_json(res, 200, {{"tokens", ids}, {"count", ids.size()}, {"max_model_len", info.max_model_len}});
    } catch (const ApiError& e) {
      reply_error(res, e);
    }
  });
  svr.Post("/detokenize", [this](const httplib::Request& req, httplib::Response& res) {
    try {
      auto ids = parse_detokenize(parse_body(req), info);
      reply_json(res, 200, {{"prompt", info.tokenizer->decode(ids)}});
    } catch (const ApiError& e) {
      reply_error(res, e);
    }
  });
  svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_text(), "text/plain; version=0.0.4");
  });
  svr.Post("/v1/completions",
           [this](const httplib::Request& req, httplib::Response& res) { completions(req, res, false); });
  svr.Post("/v1/chat/completions",
           [this](const httplib::Request& req, httplib::Response& res) { completions(req, res, true); });
}

namespace {
// A request in flight: what the response provider needs between its calls.
struct Flight {
  CompletionRequest req;
  std::shared_ptr<Ticket> ticket;
  ResponseMeta meta;
  std::vector<size_t> lp_sent;  // streaming: logprobs already sent, per sequence
  std::vector<bool> final_sent;
  std::vector<bool> echoed;     // streaming echo: the prompt chunk went out, per sequence
  bool started = false;
  std::atomic<bool> released{false};
};
}  // namespace

void Server::Impl::completions(const httplib::Request& hreq, httplib::Response& res, bool chat) {
  auto f = std::make_shared<Flight>();
  try {
    if (draining) throw ApiError(503, "the server is shutting down");
    const json body = parse_body(hreq);
    f->req = chat ? parse_chat(body, info, lim) : parse_completion(body, info, lim);
    try {
      f->ticket = sched->submit(f->req);
    } catch (const QueueFull& e) {
      throw ApiError(429, e.what());
    } catch (const ShuttingDown& e) {
      throw ApiError(503, e.what());
    }
  } catch (const ApiError& e) {
    reply_error(res, e);
    return;
  }
  f->meta = {fmt::format("{}-{:016x}", chat ? "chatcmpl" : "cmpl", next_id++), info.name, std::time(nullptr)};
  f->lp_sent.assign(f->req.seqs.size(), 0);
  f->final_sent.assign(f->req.seqs.size(), false);
  f->echoed.assign(f->req.seqs.size(), false);
  inflight++;
  // Runs when the response is done or the client went away: unfinished sequences are cancelled.
  auto release = [this, f](bool) {
    if (f->released.exchange(true)) return;
    bool finished;
    {
      std::lock_guard lk(f->ticket->m);
      finished = f->ticket->finished();
    }
    if (!finished) sched->cancel(f->ticket);
    inflight--;
  };
  const auto poll = std::chrono::milliseconds(50);
  const text::Tokenizer& tok = *info.tokenizer;

  if (!f->req.stream) {
    // The JSON is written once everything finished; until then the provider polls, and
    // httplib checks between calls that the client is still connected.
    res.set_chunked_content_provider(
        "application/json",
        [f, poll, &tok](size_t, httplib::DataSink& sink) {
          Ticket& t = *f->ticket;
          std::unique_lock lk(t.m);
          if (!t.cv.wait_for(lk, poll, [&] { return t.finished(); })) return true;
          json out = t.error.empty() ? completion_response(f->req, t.outs, f->meta, tok) : error_json(500, t.error);
          lk.unlock();
          const std::string s = out.dump();
          if (!sink.write(s.data(), s.size())) return false;
          sink.done();
          return true;
        },
        release);
    return;
  }

  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [f, poll, &tok](size_t, httplib::DataSink& sink) {
        Ticket& t = *f->ticket;
        const auto& rq = f->req;
        std::string out;
        // Echo with logprobs: the prompt's chunk carries the prompt tokens' logprobs (vLLM's first
        // chunk), so it waits for the prefill to have scored the whole prompt.
        const bool echo_waits = !rq.chat && rq.prompt_logprobs();
        if (!f->started) {  // chat: the role; echo without logprobs: the prompt at once
          f->started = true;
          for (size_t i = 0; i < rq.seqs.size(); ++i) {
            if (rq.chat) out += sse(stream_chunk(rq, i, "", {}, std::nullopt, f->meta, tok, true));
            else if (rq.echo && !echo_waits)
              out += sse(stream_chunk(rq, i, rq.seqs[i].prompt_text, {}, std::nullopt, f->meta, tok));
          }
        }
        // Called with t.m held: whether sequence i's prompt chunk still has to wait.
        auto echo_pending = [&](size_t i) {
          if (!echo_waits || f->echoed[i]) return false;
          const bool scored = t.outs[i].prompt_logprobs.size() + 1 >= rq.seqs[i].gen.prompt.size();
          return !scored && !t.done[i];
        };
        bool all_final = false;
        std::string error;
        {
          std::unique_lock lk(t.m);
          auto news = [&] {
            if (!t.error.empty()) return true;
            for (size_t i = 0; i < rq.seqs.size(); ++i) {
              if (echo_pending(i)) continue;
              if ((echo_waits && !f->echoed[i]) || !t.pending_text[i].empty() || (t.done[i] && !f->final_sent[i]) ||
                  t.outs[i].logprobs.size() > f->lp_sent[i])
                return true;
            }
            return false;
          };
          if (out.empty() && !t.cv.wait_for(lk, poll, news)) return true;
          error = t.error;
          all_final = true;
          for (size_t i = 0; i < rq.seqs.size(); ++i) {
            if (echo_pending(i)) {
              all_final = false;
              continue;
            }
            std::string text = std::move(t.pending_text[i]);
            t.pending_text[i].clear();
            const auto& all = t.outs[i].logprobs;
            // Logprobs travel with text (or with the final chunk), as vLLM's stream does.
            std::vector<TokenLogprob> lps;
            if (!text.empty() || t.done[i]) {
              lps.assign(all.begin() + long(f->lp_sent[i]), all.end());
              f->lp_sent[i] = all.size();
            }
            if (echo_waits && !f->echoed[i]) {  // the prompt, its logprobs, then what followed
              out += sse(echo_chunk(rq, i, t.outs[i], text, lps, f->meta, tok));
              f->echoed[i] = true;
            } else if (!text.empty() || !lps.empty()) {
              out += sse(stream_chunk(rq, i, text, lps, std::nullopt, f->meta, tok));
            }
            if (t.done[i] && !f->final_sent[i]) {
              out += sse(stream_chunk(rq, i, "", {}, finish_reason(t.outs[i].result), f->meta, tok));
              f->final_sent[i] = true;
            }
            all_final = all_final && f->final_sent[i];
          }
          if (all_final && rq.include_usage) out += sse(usage_chunk(rq, t.outs, f->meta));
        }
        if (!error.empty()) {
          out += sse(error_json(500, error));
          all_final = true;
        }
        if (all_final) out += "data: [DONE]\n\n";
        if (!out.empty() && !sink.write(out.data(), out.size())) return false;
        if (all_final) sink.done();
        return true;
      },
      release);
}

std::string Server::Impl::metrics_text() {
  const auto s = sched->stats();
  std::string o;
  o += "# HELP rvec_requests_total HTTP responses by endpoint and status code.\n"
       "# TYPE rvec_requests_total counter\n";
  {
    std::lock_guard lk(metrics_m);
    for (const auto& [k, n] : responses)
      o += fmt::format("rvec_requests_total{{path=\"{}\",status=\"{}\"}} {}\n", k.first, k.second, n);
  }
  o += fmt::format(
      "# HELP rvec_completion_requests_total Completion requests accepted by the scheduler.\n"
      "# TYPE rvec_completion_requests_total counter\nrvec_completion_requests_total {}\n"
      "# HELP rvec_prompt_tokens_total Prompt tokens of accepted requests.\n"
      "# TYPE rvec_prompt_tokens_total counter\nrvec_prompt_tokens_total {}\n"
      "# HELP rvec_generation_tokens_total Tokens generated.\n"
      "# TYPE rvec_generation_tokens_total counter\nrvec_generation_tokens_total {}\n"
      "# HELP rvec_queue_length Sequences waiting for a batch slot.\n"
      "# TYPE rvec_queue_length gauge\nrvec_queue_length {}\n"
      "# HELP rvec_running_sequences Sequences in the running batch.\n"
      "# TYPE rvec_running_sequences gauge\nrvec_running_sequences {}\n",
      s.requests, s.prompt_tokens, s.generation_tokens, s.queued, s.running);
  return o;
}

int Server::bind() {
  Impl& I = *impl_;
  if (I.opts.port == 0) {
    int p = I.svr.bind_to_any_port(I.opts.host);
    if (p < 0) fail("cannot bind {} (any port)", I.opts.host);
    I.opts.port = p;
  } else if (!I.svr.bind_to_port(I.opts.host, I.opts.port)) {
    fail("cannot bind {}:{} (in use, or not a local address?)", I.opts.host, I.opts.port);
  }
  if (I.listen_fd >= 0) ::listen(I.listen_fd, SOMAXCONN);
  return I.opts.port;
}

void Server::run() { impl_->svr.listen_after_bind(); }

void Server::stop(double grace_s) {
  Impl& I = *impl_;
  if (I.draining.exchange(true)) return;
  I.sched->drain(grace_s);  // finishes or cancels every sequence
  // Let the responses of finished (or cancelled) requests be written before closing.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (I.inflight > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  I.svr.stop();
}

}  // namespace rvec::serve
