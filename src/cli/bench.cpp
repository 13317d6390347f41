// `rvec bench MODEL [--prompt-tokens 128] [--gen-tokens 64] [--batch 1] [--threads N] [--json]`:
// like llama-bench: prefill of `batch` prompts of random tokens, then `gen-tokens` decode
// steps of all `batch` sequences together; tokens/s are aggregates over the batch.
// `--context N` measures decode after N cached positions instead: each KV cache is filled with N
// random positions (no prefill; attention's cost depends on the length, not the values);
// `--attention untiled` runs the previous attention kernel for before/after comparisons.
// `--paired-bound` reads the weights once after every decode step (a read-sum over the same
// pages, timed apart from the steps), so decode is compared with the bound of the same moments:
// a shared host's read bandwidth swings by a third between seconds.
// The figures are each the best of `--reps`; the JSON also lists every repetition's, and the
// text gives their median and slowest.
#include <fmt/format.h>
#include <omp.h>

#include <nlohmann/json.hpp>
#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/infer_common.h"
#include "core/memory.h"
#include "model/config.h"
#include "core/cpu.h"
#include "infer/attention.h"
#include "infer/kernels.h"
#include "infer/read_sum.h"

namespace {

// Copy bandwidth (bytes read + bytes written per second) of 256 MB buffers with all
// threads, the best of 3 (reported for comparison with memcpy-based figures).
double copy_bandwidth() {
  const size_t n = size_t(256) << 20;
  std::vector<char> a(n, 1), b(n, 2);
  double best = 0;
  for (int r = 0; r < 3; ++r) {
    auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel
    {
      const size_t nt = size_t(omp_get_num_threads()), t = size_t(omp_get_thread_num());
      const size_t per = n / nt, beg = t * per, len = t + 1 == nt ? n - beg : per;
      std::memcpy(b.data() + beg, a.data() + beg, len);
    }
    best = std::max(best, 2.0 * double(n) / rvec::cli::seconds_since(t0));
  }
  return best;
}

// Read bandwidth (bytes/s) of a 512 MB buffer summed by all threads, the best of 3: a
// decode step reads every weight once and writes almost nothing, so this is its bound.
double read_bandwidth() {
  const size_t n = (size_t(512) << 20) / sizeof(uint64_t);
  std::vector<uint64_t> a(n, 1);
  double best = 0;
  uint64_t sink = 0;
  for (int r = 0; r < 3; ++r) {
    auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel reduction(+ : sink)
    sink += rvec::infer::read_sum_share(a.data(), n);
    best = std::max(best, double(n * sizeof(uint64_t)) / rvec::cli::seconds_since(t0));
  }
  if (sink != n * 3) rvec::fail("bench: read-bandwidth checksum {} != {}", sink, n * 3);  // keeps the loads
  return best;
}

volatile uint64_t g_read_sink = 0;

constexpr int kMaxBatch = 65536, kMaxTokens = 1 << 24;

// Bytes bench allocates beyond the weights: the f32 KV caches, the logits, the prefill
// rows and their activations (residual, q/k/v, MLP; an estimate, not a bound).
double bench_memory_estimate(const rvec::model::ModelConfig& c, int batch, int prompt, int gen) {
  const double ctx = double(prompt) + gen + 1, rows = double(batch) * prompt;
  const double kv = double(batch) * ctx * c.num_layers * 2.0 * c.kv_dim() * 4;
  const double logits = double(batch) * c.vocab_size * 4 * 2;
  const double act = rows * (4.0 * c.hidden_size + 3.0 * c.intermediate_size + c.q_dim() + 2.0 * c.kv_dim()) * 4;
  return kv + logits + act + rows * 24;
}

// "best of N: median M, slowest S" of the repetitions' figures (N >= 1).
std::string spread(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  const double median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  return fmt::format("best of {}: median {:.1f}, slowest {:.1f}", n, median, v.front());
}

struct Args {
  rvec::cli::InferArgs common;
  int prompt_tokens = 128, gen_tokens = 64, batch = 1, reps = 1, context = 0;
  std::string attention = "tiled";
  bool json = false, no_bandwidth = false, paired_bound = false;
};

rvec::cli::Command cmd(
    "bench", "Measure prefill and decode throughput (tokens/s) on random tokens", [](CLI::App& app) {
      auto a = std::make_shared<Args>();
      rvec::cli::add_infer_options(app, a->common);
      app.add_option("--prompt-tokens", a->prompt_tokens, "Prompt length per sequence")->capture_default_str();
      app.add_option("--gen-tokens", a->gen_tokens, "Decode steps")->capture_default_str();
      app.add_option("--batch", a->batch, "Sequences processed together")->capture_default_str();
      app.add_option("--reps", a->reps, "Repetitions (the best is reported)")->capture_default_str();
      app.add_option("--context", a->context,
                     "Decode after this many cached positions (random keys/values; no prefill is measured)");
      app.add_option("--attention", a->attention, "Attention kernel: tiled (the engine's) or untiled (the previous one)")
          ->check(CLI::IsMember({"tiled", "untiled"}))
          ->capture_default_str();
      app.add_flag("--json", a->json, "Print one JSON object");
      app.add_flag("--no-bandwidth", a->no_bandwidth, "Skip the memory copy-bandwidth measurement");
      app.add_flag("--paired-bound", a->paired_bound,
                   "After every decode step, read the weights it read (same pages, all threads; timed apart) and "
                   "report decode as a fraction of that bound");
      return [a]() -> int {
        using namespace rvec;
        cli::apply_infer_options(a->common);
        if (a->prompt_tokens < 1 || a->gen_tokens < 0 || a->batch < 1 || a->reps < 1)
          fail("bench: --prompt-tokens, --batch and --reps must be >= 1, --gen-tokens >= 0");
        // Sane bounds first (they also keep the estimate below far from overflow).
        if (a->batch > kMaxBatch) fail("bench: --batch {} is over the limit of {}", a->batch, kMaxBatch);
        if (a->prompt_tokens > kMaxTokens) fail("bench: --prompt-tokens {} is over the limit of {}", a->prompt_tokens, kMaxTokens);
        if (a->gen_tokens > kMaxTokens) fail("bench: --gen-tokens {} is over the limit of {}", a->gen_tokens, kMaxTokens);
        if (a->reps > 1000) fail("bench: --reps {} is over the limit of 1000", a->reps);
        if (a->context < 0 || a->context > kMaxTokens) fail("bench: --context must be in [0, {}]", kMaxTokens);
        if (a->attention == "untiled") infer::set_attention_kernel(infer::AttentionKernel::Untiled);
        const int prompt = a->context > 0 ? a->context : a->prompt_tokens;
        auto model = infer::load_model(a->common.model);
        const auto& c = model->config();
        check_memory(bench_memory_estimate(c, a->batch, prompt, a->gen_tokens),
                     fmt::format("bench: --batch {} x (--prompt-tokens/--context {} + --gen-tokens {})", a->batch,
                                 prompt, a->gen_tokens));
        const DType kv_dtype = cli::kv_dtype(a->common);
        if (kv_dtype != DType::F32 && a->attention == "untiled")
          fail("bench: --attention untiled needs --kv-cache-dtype f32");
        infer::Engine eng(*model, {.threads = a->common.threads,
                                   .max_batch = a->batch,
                                   .max_context = size_t(prompt + a->gen_tokens + 1),
                                   .kv_dtype = kv_dtype});
        std::mt19937 rng(42);
        std::uniform_int_distribution<int32_t> dist(0, c.vocab_size - 1);
        double best_pp = 0, best_tg = 0, paired_bound = 0;  // paired_bound: of the best rep
        std::vector<double> pp_reps, tg_reps;  // every rep's figure: the spread shows a noisy machine
        const auto decode_matrices = model->weights().decode_matrices();
        uint64_t paired_sink = 0;
        {  // untimed: the first pass maps every weight page (page faults, not compute)
          infer::KVCache warm;
          std::vector<float> lg(size_t(c.vocab_size));
          eng.forward({{&warm, 0, true}}, lg.data());
        }
        for (int rep = 0; rep < a->reps; ++rep) {
          // Engine::forward with one reused logits buffer, as generation does.
          std::vector<infer::KVCache> caches(a->batch);
          std::vector<infer::Engine::Row> rows;
          const int64_t V = c.vocab_size;
          std::vector<float> lg(size_t(a->batch) * V);
          double pp_s = 0;
          if (a->context > 0) {
            for (int b = 0; b < a->batch; ++b) {
              caches[b].fill_random_for_bench(c, a->context, a->gen_tokens + 1, uint64_t(b + 1), kv_dtype);
              lg[size_t(b * V + dist(rng))] = 1.f;  // the first decode token
            }
          } else {
            for (int b = 0; b < a->batch; ++b)
              for (int t = 0; t < a->prompt_tokens; ++t)
                rows.push_back({&caches[b], dist(rng), t + 1 == a->prompt_tokens});
            auto t0 = std::chrono::steady_clock::now();
            eng.forward(rows, lg.data());
            pp_s = cli::seconds_since(t0);
          }
          auto next_rows = [&] {
            rows.clear();
            for (int b = 0; b < a->batch; ++b) {
              const float* l = lg.data() + b * V;
              rows.push_back({&caches[b], int32_t(infer::argmax(l, V)), true});
            }
          };
          next_rows();
          double tg_s = 0, read_s = 0;
          auto t1 = std::chrono::steady_clock::now();
          for (int g = 0; g < a->gen_tokens; ++g) {
            eng.forward(rows, lg.data());
            next_rows();
            if (a->paired_bound) {
              tg_s += cli::seconds_since(t1);
              auto t2 = std::chrono::steady_clock::now();
              paired_sink += infer::read_sum_matrices(decode_matrices);
              read_s += cli::seconds_since(t2);
              t1 = std::chrono::steady_clock::now();
            }
          }
          if (!a->paired_bound) tg_s = cli::seconds_since(t1);
          if (pp_s > 0) {
            pp_reps.push_back(double(a->batch) * a->prompt_tokens / pp_s);
            best_pp = std::max(best_pp, pp_reps.back());
          }
          const double tg = double(a->batch) * a->gen_tokens / tg_s;
          if (a->gen_tokens > 0) {
            tg_reps.push_back(tg);
            if (tg > best_tg) {
              best_tg = tg;
              paired_bound = read_s > 0 ? double(a->batch) * a->gen_tokens / read_s : 0.0;
            }
          }
        }
        const uint64_t wbytes = model->weights().matmul_bytes_per_token();
        uint64_t blocked_bytes = 0;  // of wbytes, in column blocks (model/column_blocks.h)
        for (const model::Matrix* m : decode_matrices)
          if (m->kblock > 0) blocked_bytes += m->bytes();
        g_read_sink = paired_sink;  // the sums are used, so the reads stay
        const bool bfdot =
            infer::matmul_precision() == infer::MatmulPrecision::BF16Dot && infer::bf16_dot_supported();
        int threads = a->common.threads > 0 ? a->common.threads : omp_get_max_threads();
        const double bw = a->no_bandwidth ? 0.0 : copy_bandwidth();
        const double rbw = a->no_bandwidth ? 0.0 : read_bandwidth();
        // Decode must read every weight once per step (for the whole batch).
        const double bound = rbw > 0 ? rbw / double(wbytes) * a->batch : 0.0;
        nlohmann::json j{{"model", a->common.model},
                         {"architecture", c.architecture},
                         {"threads", threads},
                         {"batch", a->batch},
                         {"prompt_tokens", a->prompt_tokens},
                         {"gen_tokens", a->gen_tokens},
                         {"context", a->context},
                         {"attention", a->attention},
                         {"kv_cache_dtype", a->common.kv_cache_dtype},
                         {"kv_bytes_per_token", infer::kv_bytes_per_token(c, kv_dtype)},
                         {"prefill_tokens_per_s", best_pp},
                         {"decode_tokens_per_s", best_tg},
                         {"prefill_tokens_per_s_reps", pp_reps},
                         {"decode_tokens_per_s_reps", tg_reps},
                         {"weight_bytes_per_decode_step", wbytes},
                         {"column_block_bytes", blocked_bytes},
                         {"copy_bandwidth_bytes_per_s", bw},
                         {"read_bandwidth_bytes_per_s", rbw},
                         {"decode_bandwidth_bound_tokens_per_s", bound},
                         {"decode_paired_bound_tokens_per_s", paired_bound},
                         {"decode_fraction_of_paired_bound", paired_bound > 0 ? best_tg / paired_bound : 0.0},
                         {"isa", std::string(cpu_isa_name(cpu_isa())) + (cpu_has_bf16_dot() ? "+bf16" : "")},
                         {"matmul", bfdot ? "bf16dot" : "f32"}};
        if (a->json) {
          fmt::print("{}\n", j.dump());
        } else {
          fmt::print("model {} ({}), {} threads, batch {}, matmul {}\n", a->common.model, c.architecture, threads,
                     a->batch, bfdot ? "bf16dot" : "f32");
          if (a->context > 0)
            fmt::print("context {} cached positions (random; {} KV cache: {:.0f} MB per sequence read per step), "
                       "attention {}\n",
                       a->context, a->common.kv_cache_dtype,
                       double(a->context) * double(infer::kv_bytes_per_token(c, kv_dtype)) / 1e6, a->attention);
          else
            fmt::print("prefill pp{}: {:.1f} tok/s{}\n", a->prompt_tokens, best_pp,
                       pp_reps.size() > 1 ? " (" + spread(pp_reps) + ")" : std::string());
          if (a->gen_tokens > 0)
            fmt::print("decode  tg{}: {:.1f} tok/s (aggregate{}), weights {:.0f} MB read per step{}\n", a->gen_tokens,
                       best_tg, tg_reps.size() > 1 ? "; " + spread(tg_reps) : std::string(), double(wbytes) / 1e6,
                       blocked_bytes ? fmt::format(" ({:.0f} MB of them in column blocks)", double(blocked_bytes) / 1e6)
                                     : std::string());
          if (paired_bound > 0)
            fmt::print("paired bound: the weights read between the steps at {:.1f} GB/s -> {:.1f} tok/s; decode at "
                       "{:.2f} of it\n",
                       paired_bound / a->batch * double(wbytes) / 1e9, paired_bound, best_tg / paired_bound);
          if (bw > 0)
            fmt::print("memory read bandwidth {:.1f} GB/s (copy {:.1f}) -> decode bound {:.1f} tok/s (batch {})\n",
                       rbw / 1e9, bw / 1e9, bound, a->batch);
        }
        return 0;
      };
    });

}  // namespace
