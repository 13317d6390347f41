// `rvec serve MODEL [--host H] [--port P] [--api-key KEY | --api-key-env VAR] ...`: an
// OpenAI-compatible HTTP server on rvec's engine (src/serve). Prints `listening on
// http://HOST:PORT` once ready; SIGINT/SIGTERM stop it gracefully (exit 0).
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>

#include "cli/command.h"
#include "cli/infer_common.h"
#include "serve/server.h"

namespace {

struct Args {
  rvec::cli::InferArgs common;
  rvec::serve::ServerOptions opts;
  std::string api_key_env, chat_template;
  double grace = 30;
};

rvec::cli::Command cmd(
    "serve", "OpenAI-compatible HTTP server (completions, chat, tokenize, metrics) on rvec's engine",
    [](CLI::App& app) {
      auto a = std::make_shared<Args>();
      rvec::cli::add_infer_options(app, a->common);
      auto& o = a->opts;
      app.add_option("--host", o.host, "Address to bind (0.0.0.0 for all interfaces)")->capture_default_str();
      app.add_option("--port", o.port, "Port (0: any free port)")->capture_default_str()->check(CLI::Range(0, 65535));
      auto key = app.add_option("--api-key", o.api_key, "Require 'Authorization: Bearer KEY'");
      app.add_option("--api-key-env", a->api_key_env, "Read the API key from this environment variable")
          ->excludes(key);
      app.add_option("--served-model-name", o.served_model_name, "Model id in /v1/models (default: the directory name)");
      app.add_option("--batch", o.batch, "Sequences decoded together")->capture_default_str()->check(CLI::Range(1, 4096));
      app.add_option("--max-queue", o.max_queue, "Waiting sequences before requests get 429")
          ->capture_default_str()
          ->check(CLI::Range(size_t(1), size_t(1) << 30));
      app.add_option("--chat-template", a->chat_template, "Jinja chat template file overriding the model's");
      app.add_option("--max-model-len", o.max_model_len, "Context length (default: max_position_embeddings)");
      rvec::cli::add_kv_cache_option(app, o.kv_cache_gb);
      app.add_option("--max-body", o.max_body_bytes, "Largest request body in bytes (413 above)")->capture_default_str();
      app.add_option("--grace", a->grace, "Seconds running requests get to finish on SIGINT/SIGTERM")
          ->capture_default_str();
      return [a]() -> int {
        using namespace rvec;
        auto& o = a->opts;
        if (!a->api_key_env.empty()) {
          const char* v = std::getenv(a->api_key_env.c_str());
          if (!v || !*v) fail("--api-key-env {}: the variable is not set", a->api_key_env);
          o.api_key = v;
        }
        o.threads = a->common.threads;
        o.kv_dtype = cli::kv_dtype(a->common);
        o.chat_template = a->chat_template;
        cli::apply_infer_options(a->common);
        // Signals are taken by sigwait below; block them before any thread starts.
        sigset_t sigs;
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGINT);
        sigaddset(&sigs, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
        signal(SIGPIPE, SIG_IGN);

        auto model = infer::load_model(a->common.model);
        serve::Server srv(*model, o);
        const int port = srv.bind();
        std::atomic<bool> ended{false};
        std::thread runner([&] {
          srv.run();
          ended = true;
        });
        fmt::print("listening on http://{}:{}\n", o.host, port);
        std::fflush(stdout);
        int sig = 0;
        const timespec tick{0, 200'000'000};
        while (!ended && sig <= 0) sig = sigtimedwait(&sigs, nullptr, &tick);
        if (sig > 0) {
          fmt::print(stderr, "rvec serve: {}, shutting down (up to {}s for running requests)\n",
                     sig == SIGINT ? "SIGINT" : "SIGTERM", a->grace);
          std::thread([&] { srv.stop(a->grace); }).detach();
          // Bounded: idle keep-alive or stalled connections must not hold the exit.
          const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(a->grace + 5);
          while (!ended && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
          if (!ended) {
            fmt::print(stderr, "rvec serve: connections still open after the grace period; exiting\n");
            std::fflush(stderr);
            std::_Exit(0);
          }
        }
        runner.join();
        return 0;
      };
    });

}  // namespace
