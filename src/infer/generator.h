// Continuous batching as a step function, for callers whose requests arrive over time
// (rvec serve): add() queues a sequence, step() runs one batched forward pass (the prefill
// of newly admitted sequences, or one decode token for every running one), cancel() drops a
// sequence. Engine::generate is this loop run until idle, so a sequence's tokens and text
// are the same whichever other sequences share its steps (the engine is batch-invariant).
//
//   infer::Generator gen(engine, {.on_done = ..., .on_text = ...});
//   gen.add(42, request);
//   while (!gen.idle()) gen.step();
//
// Not thread-safe: one caller drives it (the serve scheduler's worker thread).
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "infer/engine.h"

namespace rvec::infer {

class Generator {
 public:
  struct Callbacks {
    std::function<void(uint64_t id, GenerationResult)> on_done;  // once per sequence (not cancelled ones)
    // Optional: text as it becomes final (never split UTF-8, never text a stop string may cut).
    std::function<void(uint64_t id, const std::string& piece)> on_text;
    // Optional: each sampled token with the logits it was sampled from ([vocab]), before the
    // on_text/on_done that token causes.
    std::function<void(uint64_t id, int32_t token, const float* logits)> on_token;
    // For sequences added with prompt_logits: rows [n * vocab], row j at prompt position
    // first + j (predicting the token after it), in order, covering the whole prompt.
    std::function<void(uint64_t id, size_t first, const float* logits, size_t n)> on_prompt_logits;
  };
  struct SeqOptions {
    bool prompt_logits = false;  // report the logits of every prompt position (echo + logprobs)
    // A KV cache of the prompt's first prefix->size() tokens (the caller checked they match),
    // copied instead of recomputed; must outlive the sequence's prefill.
    const KVCache* prefix = nullptr;
  };

  Generator(Engine& eng, Callbacks cb);
  ~Generator();
  Generator(const Generator&) = delete;
  Generator& operator=(const Generator&) = delete;

  // A prompt longer than max_context - max_new_tokens keeps its last tokens; an empty prompt
  // fails; max_new_tokens <= 0 finishes with "length" at admission (after the prompt logits
  // if asked for). A sequence whose KV cache (kv_tokens) could never fit the engine's
  // kv_cache_bytes fails here, naming the cap; one that does not fit next to the running
  // sequences waits in the queue (in order: later ones wait behind it).
  void add(uint64_t id, GenerationRequest req, SeqOptions opts);
  void add(uint64_t id, GenerationRequest req) { add(id, std::move(req), SeqOptions()); }
  bool cancel(uint64_t id);  // false if unknown or already finished
  void step();               // no-op when idle
  bool idle() const { return queue_.empty() && active_.empty(); }
  size_t queued() const { return queue_.size(); }
  size_t running() const { return active_.size(); }

  // The first prompt position prefilled (left truncation to max_context - max_new_tokens).
  static size_t prompt_start(const GenerationRequest& rq, size_t max_context);
  // Tokens of KV cache a sequence reserves: its kept prompt plus max_new_tokens, at most max_context.
  static size_t kv_tokens(const GenerationRequest& rq, size_t max_context);
  size_t reserved_kv_bytes() const { return reserved_; }

  struct Seq;

 private:
  void prefill(std::vector<std::unique_ptr<Seq>>& fresh);
  void decode();
  // Takes the sampled token; returns true when the sequence is finished (on_done called).
  bool accept(Seq& s, int32_t t);
  void stream(Seq& s, bool finished);

  Engine& eng_;
  Callbacks cb_;
  std::deque<std::unique_ptr<Seq>> queue_;
  std::vector<std::unique_ptr<Seq>> active_;
  std::vector<float> lg_;  // logits of a step; reused so that big batches do not page-fault every step
  size_t reserved_ = 0;    // KV cache bytes reserved by the running sequences
};

}  // namespace rvec::infer
