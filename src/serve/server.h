// `rvec serve`'s HTTP layer (cpp-httplib): the OpenAI-compatible endpoints on top of the
// Scheduler, API-key checks, body-size cap, disconnect detection, /metrics, graceful stop.
//
//   serve::Server srv(*model, opts);
//   int port = srv.bind();   // opts.port 0: any free port
//   std::thread t([&] { srv.run(); });
//   ...; srv.stop(10);       // from any thread; run() returns
#pragma once
#include <filesystem>
#include <memory>
#include <string>

#include "infer/engine.h"

namespace rvec::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string api_key;            // empty: no authentication
  std::string served_model_name;  // empty: the model directory's name
  int batch = 32;                 // sequences decoded together
  int threads = 0;                // engine threads (0: default)
  size_t max_queue = 1024;        // waiting sequences before 429
  std::filesystem::path chat_template;  // overrides the model's
  size_t max_model_len = 0;       // 0: the model's max_position_embeddings
  double kv_cache_gb = 0;         // KV cache cap (infer::kv_cache_cap_bytes; 0: half the available memory)
  DType kv_dtype = DType::F32;    // KV cache element type (infer::EngineOptions::kv_dtype)
  size_t max_body_bytes = size_t(16) << 20;
  int read_timeout_s = 10;        // per read of a request (slow clients are cut off)
  int http_threads = 128;         // connections served at once
  bool access_log = true;         // one line per request to stderr (never headers or keys)
};

class Server {
 public:
  Server(const infer::Model& model, ServerOptions opts);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int bind();  // binds host:port; returns the port. Throws rvec::Error when it cannot.
  void run();  // serves until stop()
  // Stops accepting new completions (503), lets running ones finish for up to grace_s, cancels
  // the rest, then closes the listener. Thread-safe; run() returns afterwards.
  void stop(double grace_s = 10);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace rvec::serve
