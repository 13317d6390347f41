// The engine side of `rvec serve`: one worker thread owns the Engine and an infer::Generator
// and runs continuous batching over the sequences of all requests; HTTP handlers submit a
// request's sequences and wait on its Ticket (text pieces, logprobs, final results).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "infer/engine.h"
#include "serve/protocol.h"

namespace rvec::serve {

// One request's sequences as the worker fills them; guarded by `m`, signalled by `cv`.
struct Ticket {
  std::mutex m;
  std::condition_variable cv;
  std::vector<SeqOutput> outs;
  std::vector<std::string> pending_text;  // streamed text not yet taken, per sequence
  std::vector<bool> done;
  size_t n_done = 0;
  std::string error;  // set when the engine failed or the server shut down
  bool finished() const { return n_done == outs.size() || !error.empty(); }
};

struct QueueFull : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct ShuttingDown : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Scheduler {
 public:
  struct Options {
    infer::EngineOptions engine;
    int threads = 0;          // OpenMP threads of the worker (0: default)
    size_t max_queue = 1024;  // sequences waiting for a batch slot before submit() refuses
  };
  Scheduler(const infer::Model& model, Options opts);
  ~Scheduler();  // cancels everything and joins the worker

  // Queues all sequences of a request (all or none). Throws QueueFull / ShuttingDown.
  std::shared_ptr<Ticket> submit(const CompletionRequest& req);
  void cancel(const std::shared_ptr<Ticket>& t);  // drops its unfinished sequences
  // Refuses new work, waits up to `grace_s` for the running sequences, then cancels the rest
  // (their tickets get an error) and stops the worker.
  void drain(double grace_s);

  struct Stats {
    uint64_t requests = 0, prompt_tokens = 0, generation_tokens = 0;
    size_t queued = 0, running = 0;
  };
  Stats stats() const;

 private:
  void run();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rvec::serve
