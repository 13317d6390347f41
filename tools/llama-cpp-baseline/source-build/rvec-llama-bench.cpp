// rvec-llama-bench: times llama.cpp through its public llama.h API on the measurements that
// `rvec bench --json` makes, and prints one JSON line per measurement with rvec's field names
// (prefill_tokens_per_s, decode_tokens_per_s, batch, prompt_tokens, gen_tokens, threads).
//   pp:      one llama_decode of N random prompt tokens (n_batch = n_ubatch = N), logits of
//            the last one only, as llama-bench's pp and rvec's prefill.
//   tg:      after an untimed prompt of P tokens, N decode steps of one token each, the next
//            token being the argmax of the logits (rvec bench's decode loop).
//   batched: B sequences (seq ids 0..B-1, one KV stream each, as llama-batched-bench without
//            -kvu), each given P prompt tokens, then N steps of B tokens per llama_decode;
//            decode tok/s is B*N over the steps' time (batched-bench's S_TG).
// Each measurement is the best of --reps after an untimed warm-up decode. Context defaults
// (f16 KV cache, flash attention auto) are left as llama.cpp's tools leave them.
//
// Usage: rvec-llama-bench MODEL.gguf [--threads 2] [--reps 3] [--pp 128,512] [--tg 64]
//        [--tg-prompt 128] [--batch 16,64] [--batch-prompt 128] [--batch-gen 32] [--verbose]
// A list may be empty ("--batch ''") to skip that measurement.
#include "llama.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#ifndef LLAMA_CPP_VERSION
#define LLAMA_CPP_VERSION "unknown"
#endif

namespace {

struct Options {
  std::string model;
  int threads = 2, reps = 3, tg = 64, tg_prompt = 128, batch_prompt = 128, batch_gen = 32;
  std::vector<int> pp{128, 512}, batch{16, 64};
  bool verbose = false;
};

[[noreturn]] void fail(const std::string& msg) {
  std::fprintf(stderr, "rvec-llama-bench: %s\n", msg.c_str());
  std::exit(1);
}

int parse_int(const std::string& flag, const std::string& s, int min) {
  size_t used = 0;
  int v = 0;
  try {
    v = std::stoi(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != s.size() || v < min)
    fail(flag + ": '" + s + "' is not an integer >= " + std::to_string(min));
  return v;
}

std::vector<int> parse_list(const std::string& flag, const std::string& s) {
  std::vector<int> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) out.push_back(parse_int(flag, item, 1));
  return out;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail(a + " needs a value");
      return argv[++i];
    };
    if (a == "--threads") o.threads = parse_int(a, value(), 1);
    else if (a == "--reps") o.reps = parse_int(a, value(), 1);
    else if (a == "--pp") o.pp = parse_list(a, value());
    else if (a == "--tg") o.tg = parse_int(a, value(), 0);
    else if (a == "--tg-prompt") o.tg_prompt = parse_int(a, value(), 1);
    else if (a == "--batch") o.batch = parse_list(a, value());
    else if (a == "--batch-prompt") o.batch_prompt = parse_int(a, value(), 1);
    else if (a == "--batch-gen") o.batch_gen = parse_int(a, value(), 1);
    else if (a == "--verbose") o.verbose = true;
    else if (!a.empty() && a[0] == '-') fail("unknown option " + a);
    else if (o.model.empty()) o.model = a;
    else fail("more than one model given: " + o.model + ", " + a);
  }
  if (o.model.empty()) fail("usage: rvec-llama-bench MODEL.gguf [options] (see the source's header)");
  return o;
}

bool g_verbose = false;
void log_cb(ggml_log_level level, const char* text, void*) {
  if (g_verbose || level == GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A context with its own KV cache, freed on scope exit.
struct Context {
  llama_context* ctx = nullptr;
  Context(llama_model* model, const Options& o, uint32_t n_ctx, uint32_t n_batch, uint32_t n_ubatch, uint32_t n_seq) {
    llama_context_params p = llama_context_default_params();
    p.n_ctx = n_ctx;
    p.n_batch = n_batch;
    p.n_ubatch = n_ubatch;
    p.n_seq_max = n_seq;
    p.kv_unified = false;
    p.n_threads = p.n_threads_batch = o.threads;
    p.no_perf = true;
    ctx = llama_init_from_model(model, p);
    if (!ctx) fail("llama_init_from_model failed for n_ctx " + std::to_string(n_ctx));
  }
  ~Context() { llama_free(ctx); }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  void clear() const { llama_memory_clear(llama_get_memory(ctx), true); }
};

// A batch of tokens, each (token, pos, seq, wants logits).
struct Batch {
  llama_batch b;
  explicit Batch(int capacity) : b(llama_batch_init(capacity, 0, 1)) {}
  ~Batch() { llama_batch_free(b); }
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;
  void clear() { b.n_tokens = 0; }
  void add(llama_token t, llama_pos pos, llama_seq_id seq, bool logits) {
    const int i = b.n_tokens++;
    b.token[i] = t;
    b.pos[i] = pos;
    b.n_seq_id[i] = 1;
    b.seq_id[i][0] = seq;
    b.logits[i] = logits;
  }
};

void decode(llama_context* ctx, Batch& batch) {
  const int rc = llama_decode(ctx, batch.b);
  if (rc != 0) fail("llama_decode of " + std::to_string(batch.b.n_tokens) + " tokens returned " + std::to_string(rc));
}

llama_token argmax(llama_context* ctx, int i, int n_vocab) {
  const float* l = llama_get_logits_ith(ctx, i);
  if (!l) fail("no logits for batch row " + std::to_string(i));
  return llama_token(std::max_element(l, l + n_vocab) - l);
}

struct Bench {
  llama_model* model;
  const Options& o;
  int n_vocab;
  std::mt19937 rng{42};

  llama_token random_token() { return std::uniform_int_distribution<llama_token>(0, n_vocab - 1)(rng); }

  // Decodes `prompt` random tokens into each of sequences 0..n_seq-1 in chunks of n_batch,
  // keeping the logits of each sequence's last token; returns the seconds taken.
  double prompt(const Context& c, Batch& batch, int n_seq, int prompt, int n_batch) {
    batch.clear();
    const auto t0 = std::chrono::steady_clock::now();
    for (int s = 0; s < n_seq; ++s)
      for (int t = 0; t < prompt; ++t) {
        batch.add(random_token(), t, s, t + 1 == prompt);
        if (batch.b.n_tokens == n_batch) {
          decode(c.ctx, batch);
          batch.clear();
        }
      }
    if (batch.b.n_tokens > 0) decode(c.ctx, batch);
    llama_synchronize(c.ctx);
    return seconds_since(t0);
  }

  // n_steps decode steps of one token for each of n_seq sequences that hold `prompt` tokens,
  // starting from random tokens (a chunked prompt keeps only its last chunk's logits);
  // returns the seconds taken.
  double steps(const Context& c, Batch& batch, int n_seq, int prompt, int n_steps) {
    std::vector<llama_token> next(static_cast<size_t>(n_seq));
    for (auto& t : next) t = random_token();
    const auto t0 = std::chrono::steady_clock::now();
    for (int g = 0; g < n_steps; ++g) {
      batch.clear();
      for (int s = 0; s < n_seq; ++s) batch.add(next[size_t(s)], prompt + g, s, true);
      decode(c.ctx, batch);
      for (int s = 0; s < n_seq; ++s) next[size_t(s)] = argmax(c.ctx, s, n_vocab);
    }
    return seconds_since(t0);
  }

  void warm_up(const Context& c, Batch& batch) {
    prompt(c, batch, 1, 16, 16);
    steps(c, batch, 1, 16, 2);
    c.clear();
  }

  void print(const char* test, int batch, int prompt_tokens, int gen_tokens, double pp, double tg) const {
    std::printf(
        "{\"engine\":\"llama.cpp\",\"version\":\"%s\",\"test\":\"%s\",\"threads\":%d,\"batch\":%d,"
        "\"prompt_tokens\":%d,\"gen_tokens\":%d,\"reps\":%d,\"prefill_tokens_per_s\":%.3f,"
        "\"decode_tokens_per_s\":%.3f}\n",
        LLAMA_CPP_VERSION, test, o.threads, batch, prompt_tokens, gen_tokens, o.reps, pp, tg);
    std::fflush(stdout);
  }

  void run_pp(int n) {
    Context c(model, o, uint32_t(n), uint32_t(n), uint32_t(n), 1);
    Batch batch(n);
    warm_up(c, batch);
    double best = 0;
    for (int r = 0; r < o.reps; ++r) {
      best = std::max(best, n / prompt(c, batch, 1, n, n));
      c.clear();
    }
    print("pp", 1, n, 0, best, 0);
  }

  void run_tg() {
    const int n_ctx = o.tg_prompt + o.tg + 1;
    Context c(model, o, uint32_t(n_ctx), uint32_t(o.tg_prompt), uint32_t(o.tg_prompt), 1);
    Batch batch(o.tg_prompt);
    warm_up(c, batch);
    double best = 0;
    for (int r = 0; r < o.reps; ++r) {
      prompt(c, batch, 1, o.tg_prompt, o.tg_prompt);
      best = std::max(best, o.tg / steps(c, batch, 1, o.tg_prompt, o.tg));
      c.clear();
    }
    print("tg", 1, o.tg_prompt, o.tg, 0, best);
  }

  void run_batched(int n_seq) {
    // n_ctx is split evenly over the n_seq KV streams; n_batch/n_ubatch as batched-bench's defaults.
    const int per_seq = o.batch_prompt + o.batch_gen + 1, n_batch = 2048;
    Context c(model, o, uint32_t(n_seq * per_seq), n_batch, 512, uint32_t(n_seq));
    Batch batch(std::max(n_batch, n_seq));
    warm_up(c, batch);
    double best_pp = 0, best_tg = 0;
    for (int r = 0; r < o.reps; ++r) {
      const double pp_s = prompt(c, batch, n_seq, o.batch_prompt, n_batch);
      const double tg_s = steps(c, batch, n_seq, o.batch_prompt, o.batch_gen);
      best_pp = std::max(best_pp, double(n_seq) * o.batch_prompt / pp_s);
      best_tg = std::max(best_tg, double(n_seq) * o.batch_gen / tg_s);
      c.clear();
    }
    print("batched", n_seq, o.batch_prompt, o.batch_gen, best_pp, best_tg);
  }
};

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  g_verbose = o.verbose;
  llama_log_set(log_cb, nullptr);
  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;
  llama_model* model = llama_model_load_from_file(o.model.c_str(), mp);
  if (!model) fail("cannot load model " + o.model);
  const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  std::printf("{\"engine\":\"llama.cpp\",\"version\":\"%s\",\"test\":\"info\",\"model\":\"%s\",\"system_info\":\"%s\"}\n",
              LLAMA_CPP_VERSION, o.model.c_str(), llama_print_system_info());
  Bench b{model, o, n_vocab};
  for (int n : o.pp) b.run_pp(n);
  if (o.tg > 0) b.run_tg();
  for (int n : o.batch) b.run_batched(n);
  llama_model_free(model);
  llama_backend_free();
  return 0;
}
