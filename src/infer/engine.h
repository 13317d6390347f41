// rvec's CPU inference engine for Qwen2 / Qwen3 / Llama / Mistral / OLMo2 checkpoints.
//
//   auto model = rvec::infer::load_model("models/Qwen2.5-0.5B-Instruct");
//   rvec::infer::Engine eng(*model, {.threads = 0, .max_batch = 32});
//   eng.generate(requests, [](size_t i, rvec::infer::GenerationResult r) { ... });
//   eng.loglikelihood({{ctx_ids, cont_ids}, ...}, [](size_t i, Engine::Loglik l) { ... });
//   std::vector<float> lg = eng.logits(ids);  // [T * vocab]
//
// Numerics: f32 activations, f32 KV cache (unless EngineOptions::kv_dtype), weights read in
// place in their stored dtype and widened to f32 (exact) unless set_matmul_precision(BF16Dot)
// (kernels.h) is chosen.
// The forward pass runs any mix of sequences and tokens as one batch of rows: the prefill
// of a prompt (chunks of up to 256 rows, matrix-matrix) and the decode of many sequences
// (one row each) use the same code. An Engine is not thread-safe (one caller at a time);
// it parallelises internally with OpenMP.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "io/model_dir.h"
#include "model/config.h"
#include "model/column_blocks.h"
#include "model/weights.h"
#include "text/tokenizer.h"

namespace rvec::infer {

struct SamplingParams {
  float temperature = 0;  // <= 0: greedy (argmax, lowest id on ties)
  float top_p = 1;        // nucleus: smallest set of tokens whose probability sum >= top_p
  int top_k = 0;          // 0: no limit
  uint64_t seed = 0;      // per request: a request's output does not depend on its batch
  // vLLM's min_p: drop tokens whose probability (after temperature) is below min_p x the top one's;
  // applied before top-k and top-p, as vLLM's sampler does (0: off).
  float min_p = 0;
};

struct GenerationRequest {
  std::vector<int32_t> prompt;
  int max_new_tokens = 256;
  SamplingParams sampling;
  std::vector<std::string> stop_strings;  // lm-eval `until`: stop when the text contains one
  std::vector<int32_t> stop_tokens;       // in addition to the model's EOS ids (always stop tokens)
};

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated ids, including a final stop token if one ended it
  std::string text;             // decoded (without the stop token), cut before the first stop string
  std::string finish_reason;    // "stop_token" | "stop_string" | "length"
};

struct EngineOptions {
  int threads = 0;           // > 0: omp_set_num_threads(threads) for the process; 0: keep default
  int max_batch = 32;        // sequences decoded together
  size_t max_context = 4096;  // tokens per sequence (prompt + generated)
  // generate(): the longest common prefix of the prompts (few-shot exemplars, a system
  // prompt), when at least kMinSharedPrefix tokens, is prefilled once and copied into
  // each sequence's KV cache instead of being recomputed per prompt.
  bool share_prefix = true;
  // KV cache budget in bytes over all running sequences (0: unlimited). Generation reserves each
  // sequence's whole KV cache (kept prompt + max_new_tokens, at most max_context tokens) when it is
  // admitted; a sequence that does not fit next to the running ones waits in the queue until they
  // finish, and one that could never fit is an error naming the cap. Loglikelihood and the shared
  // prompt prefix are not counted.
  size_t kv_cache_bytes = 0;
  // Element type of the KV caches this engine starts: F32 (exact), or BF16 / F16, which halve the
  // cache (keys and values rounded to nearest even when stored, widened to f32 when read).
  DType kv_dtype = DType::F32;
};

// "f32" | "bf16" | "f16" (--kv-cache-dtype) -> the KV cache element type; rvec::Error otherwise.
DType parse_kv_cache_dtype(std::string_view name);
std::string_view kv_cache_dtype_name(DType t);  // "f32", "bf16", "f16"

// KV cache memory: keys and values of every layer, kv_dim elements of kv_dtype each, per token.
int64_t kv_bytes_per_token(const model::ModelConfig& c, DType kv_dtype = DType::F32);
// One line for the start of a run: bytes per token, what max_batch sequences of max_context tokens
// would take, and the cap.
std::string kv_cache_report(const model::ModelConfig& c, const EngineOptions& o);
// The cap of --kv-cache-gb: gb > 0 as given; 0 (auto): half of the memory available now
// (core/memory.h), unlimited when that is unknown.
size_t kv_cache_cap_bytes(double gb);

// Loaded weights + config (+ tokenizer when the directory has tokenizer.json).
class Model {
 public:
  const model::ModelConfig& config() const { return cfg_; }
  const model::Weights& weights() const { return w_; }
  const io::ModelDir& dir() const { return *dir_; }
  const text::Tokenizer* tokenizer() const { return tok_ ? &*tok_ : nullptr; }
  // EOS ids: generation_config.json's eos_token_id (int or list), else config.json's.
  const std::vector<int32_t>& eos_ids() const { return eos_; }
  std::optional<int32_t> bos_id() const { return cfg_.bos_token_id; }

 private:
  friend std::unique_ptr<Model> load_model(const std::filesystem::path& dir, io::Backing weights);
  std::unique_ptr<io::ModelDir> dir_;
  model::ModelConfig cfg_;
  model::Weights w_;
  std::vector<model::OwnedBytes> column_blocks_;  // matrices w_ points at (model/column_blocks.h)
  std::optional<text::Tokenizer> tok_;
  std::vector<int32_t> eos_;
};

// `weights`: how the safetensors files are held (io/mapped_file.h). HugePages copies them
// into memory on 2 MB pages (fewer TLB misses while decoding); it falls back to mapping the
// files, with a note on stderr, when they would not fit in the memory available.
std::unique_ptr<Model> load_model(const std::filesystem::path& dir, io::Backing weights);
// The same with the process-wide default: PageCache, or HugePages when the environment has
// RVEC_WEIGHTS=hugepages or set_default_weight_backing chose it (the --hugepages flag).
std::unique_ptr<Model> load_model(const std::filesystem::path& dir);
void set_default_weight_backing(io::Backing weights);
io::Backing default_weight_backing();

// The KV cache of one sequence ([layer][position][kv_heads * head_dim] elements of its dtype, set
// by the engine that first appends to it).
class KVCache {
 public:
  int64_t size() const { return len_; }  // tokens cached
  DType dtype() const { return dtype_; }
  // Its memory grows (by doubling) to at most this many tokens' worth, unless more are cached
  // (0: up to the engine's max_context). The Generator sets it to the sequence's reservation.
  void limit_growth(int64_t tokens) { limit_ = tokens; }
  // Benchmarks: n positions of random keys and values (normal, seeded), as if a prompt of n tokens
  // had been prefilled (the cost of attention depends on the length, not on the values), with
  // memory for `room` more tokens (no reallocation inside a timed loop), stored as `dtype`.
  void fill_random_for_bench(const model::ModelConfig& c, int64_t n, int64_t room, uint64_t seed,
                             DType dtype = DType::F32);

 private:
  friend class Engine;
  // Values row-major ([position][kv_dim]); keys transposed in tiles of kAttKeyTile positions
  // (infer/attention.h, attention_key_index), so that attention reads them without transposing,
  // unless the cache was started under the untiled benchmark kernel (k_tiled_ false: row-major).
  // Bytes of dtype_ elements (F32: 4 each, BF16/F16: 2).
  std::vector<std::vector<uint8_t>> k_, v_;
  int64_t len_ = 0, limit_ = 0;
  bool k_tiled_ = true;
  DType dtype_ = DType::F32;
};

class Engine {
 public:
  static constexpr size_t kMinSharedPrefix = 32;
  explicit Engine(const Model& m, EngineOptions opts = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Continuous batching: up to max_batch sequences decode together; finished ones leave and
  // queued ones join (their prompts prefilled together). on_done(i, result) is called once
  // per request, in completion order, from the calling thread. A prompt longer than
  // max_context - max_new_tokens keeps its last tokens (lm-eval's left truncation).
  // on_text (optional) streams each request's text as it becomes final: pieces never split a
  // UTF-8 character and never include text that a stop string could still cut off.
  void generate(const std::vector<GenerationRequest>& reqs,
                const std::function<void(size_t, GenerationResult)>& on_done,
                const std::function<void(size_t, const std::string&)>& on_text = {});

  struct Loglik {
    double logprob;  // sum of log p(continuation token | everything before it)
    bool is_greedy;  // every continuation token is the argmax
  };
  // Pairs (context ids, continuation ids); context must be non-empty (lm-eval puts EOT there
  // for an empty context). Too long inputs keep their last max_context tokens.
  void loglikelihood(const std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>>& ctx_cont,
                     const std::function<void(size_t, Loglik)>& on_done);

  std::vector<float> logits(const std::vector<int32_t>& tokens);  // [T * vocab]
  // The residual stream [n_layers + 1, T, hidden] (embeddings, then after each layer).
  std::vector<float> hidden_states(const std::vector<int32_t>& tokens);

  // Low-level incremental API (tests, custom loops): append tokens[i] to caches[i] in one
  // batched forward pass; returns for each sequence the logits of all appended tokens
  // ([n_i * vocab]) if all_logits, else of its last token ([vocab]).
  std::vector<std::vector<float>> step(const std::vector<KVCache*>& caches,
                                       const std::vector<std::vector<int32_t>>& tokens, bool all_logits = false);

  const Model& model() const { return m_; }
  const EngineOptions& options() const { return opts_; }

  struct Row {
    KVCache* cache;
    int32_t token;
    bool want_logits;
  };
  // Runs rows through the model (rows of one cache in order); writes the logits of the
  // rows with want_logits, in row order, to `logits` ([count * vocab]).
  void forward(const std::vector<Row>& rows, float* logits, std::vector<float>* hidden = nullptr);

 private:
  void forward_chunk(const Row* rows, int64_t n, float* logits, std::vector<float>* hidden);
  const Model& m_;
  EngineOptions opts_;
  std::vector<double> inv_freq_;
  struct Work;
  std::unique_ptr<Work> w_;
};

// log-softmax of one row of logits, in double: the value every logprob rvec reports comes
// from (loglikelihood sums, rvec serve's token and top logprobs), so they agree bit for bit.
class LogSoftmax {
 public:
  LogSoftmax(const float* logits, int64_t vocab);
  double operator()(int32_t t) const { return double(logits_[t]) - double(max_) - log_sum_; }
  int64_t argmax() const { return argmax_; }  // the greedy token (infer::argmax)

 private:
  const float* logits_;
  int64_t argmax_;
  float max_;
  double log_sum_;
};

// Samples a token from logits [vocab] (temperature, then min-p, top-k, top-p, each on the
// renormalised survivors of the previous step, as vLLM orders them; greedy when temperature <= 0).
// `u` is a uniform draw in [0, 1).
int32_t sample_token(const float* logits, int64_t vocab, const SamplingParams& p, double u);

}  // namespace rvec::infer
